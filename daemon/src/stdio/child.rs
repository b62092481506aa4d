//! One child of a stdio MCP server: newline-delimited JSON-RPC on its stdin and stdout, its
//! stderr into the app's log (each line tagged with the child's session), its exit collected
//! through a pidfd. Requests written to it wait for the response with the same id, or for its
//! exit, whichever comes first: a child that dies answers every pending request at once with
//! an error that carries its exit status and last stderr lines.

use super::Settings;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

/// A message a child may write on one line; a longer line ends its session (bounded memory).
pub(crate) const MAX_MESSAGE: usize = 16 << 20;
/// Lines queued for a child's stdin; more wait (the child is not reading).
const STDIN_QUEUED: usize = 64;
/// Messages from a child to its client queued while the client's stream is away.
pub(crate) const TO_CLIENT_QUEUED: usize = 256;
/// The stderr lines an exit's error quotes.
const TAIL_LINES: usize = 8;
/// JSON-RPC error code of a request whose server process ended (implementation-defined range).
pub(crate) const CHILD_GONE: i64 = -32000;

/// A running (or ended) child.
#[derive(Debug)]
pub(crate) struct Proc {
    pub pid: u32,
    /// Lines for its stdin; `None` once stdin is closed.
    stdin: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// Requests waiting for their response, by id (its JSON text).
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// `Some(how it ended)` once it exited.
    pub exited: watch::Receiver<Option<String>>,
    /// Its last stderr lines.
    tail: Mutex<VecDeque<String>>,
    /// How its stderr lines are tagged: its pid, then its session.
    tag: Mutex<String>,
    /// Where its requests and notifications to the client go, once it serves a session.
    to_client: Mutex<Option<mpsc::Sender<Value>>>,
    /// Why mcpd ended it, if it did (said in the error of its pending requests).
    reason: Mutex<Option<String>>,
    /// Progress notifications by token (its JSON text), for the request that asked for them:
    /// they go on that request's stream, ahead of its response.
    progress: Mutex<HashMap<String, mpsc::Sender<Value>>>,
}

/// Where children's stderr lines go (the bridge's stderr, which the daemon logs).
pub(crate) type LogTx = mpsc::Sender<String>;

impl Proc {
    /// Starts a child of `settings`' program, in the bridge's process group (so the daemon's
    /// group and cgroup tracking cover it, and a kill of the generation ends it).
    pub fn spawn(settings: &Settings, log: LogTx) -> std::io::Result<Arc<Proc>> {
        use std::process::{Command, Stdio};
        let mut command = Command::new(&settings.program);
        command
            .args(&settings.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove(super::ENV)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES");
        let mut child = command.spawn()?;
        let pid = child.id();
        // Until it is watched (pidfd) and read (pipes), a failure ends it.
        let watched = (|| -> std::io::Result<_> {
            let stdin = OwnedFd::from(child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?);
            let stdout = OwnedFd::from(child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?);
            let stderr = OwnedFd::from(child.stderr.take().ok_or_else(|| std::io::Error::other("no stderr"))?);
            let pidfd = crate::pidfd::open(pid)?;
            Ok((
                tokio::net::unix::pipe::Sender::from_owned_fd(stdin)?,
                tokio::net::unix::pipe::Receiver::from_owned_fd(stdout)?,
                tokio::net::unix::pipe::Receiver::from_owned_fd(stderr)?,
                pidfd,
            ))
        })();
        let (stdin, stdout, stderr, pidfd) = match watched {
            Ok(parts) => parts,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        // Waited for through the pidfd from here (the std handle is not used again).
        drop(child);
        let (stdin_tx, stdin_rx) = mpsc::channel(STDIN_QUEUED);
        let (exited_tx, exited) = watch::channel(None);
        let proc = Arc::new(Proc {
            pid,
            stdin: Mutex::new(Some(stdin_tx)),
            pending: Mutex::default(),
            exited,
            tail: Mutex::default(),
            tag: Mutex::new(format!("pid {pid}")),
            to_client: Mutex::new(None),
            reason: Mutex::new(None),
            progress: Mutex::default(),
        });
        let proc_for_reader = proc.clone();
        tokio::spawn(crate::boxed(write_stdin(stdin, stdin_rx)));
        let (read_all, stdout_done) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(crate::boxed(async move {
            read_stdout(proc_for_reader, stdout).await;
            let _ = read_all.send(());
        }));
        tokio::spawn(crate::boxed(read_stderr(proc.clone(), stderr, log)));
        let p = proc.clone();
        tokio::spawn(crate::boxed(async move {
            let how = match crate::pidfd::wait(pid, pidfd).await {
                Ok(status) => describe(status),
                Err(e) => format!("could not be waited for ({e})"),
            };
            // What it wrote before it exited is read first (answers to pending requests),
            // bounded: a descendant may hold its stdout open.
            let _ = tokio::time::timeout(Duration::from_secs(1), stdout_done).await;
            p.ended(how, &exited_tx);
        }));
        Ok(proc)
    }

    /// Its stderr lines are tagged with `session` from now on, and its messages to the client
    /// go to `to_client`.
    pub fn serve(&self, session: &str, to_client: mpsc::Sender<Value>) {
        *self.tag.lock().expect("tag") = format!("session {}", &session[..session.len().min(8)]);
        *self.to_client.lock().expect("to_client") = Some(to_client);
    }

    /// Says why mcpd ends it (before it does), for the error its pending requests get.
    pub fn set_reason(&self, reason: String) {
        *self.reason.lock().expect("reason") = Some(reason);
    }

    /// Whether it has exited.
    pub fn gone(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// Writes one message (a line). Fails once stdin is closed or the child is gone.
    pub async fn send(&self, message: &Value) -> Result<(), String> {
        let tx = self.stdin.lock().expect("stdin").clone().ok_or("the server's stdin is closed")?;
        let mut line = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        line.push(b'\n');
        tx.send(line).await.map_err(|_| "the server process is gone".to_string())
    }

    /// Sends a request and waits for its response (or for the child's end, answered as a
    /// JSON-RPC error). `message` must carry an `id`.
    pub async fn request(&self, message: &Value) -> Value {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let key = id.to_string();
        let (tx, rx) = oneshot::channel();
        if let Some(how) = self.exited.borrow().clone() {
            return self.gone_error(&id, &how);
        }
        self.pending.lock().expect("pending").insert(key.clone(), tx);
        // Registered before the exit check above could go stale: `ended` answers every
        // registered request, so a request is answered whichever comes first.
        if let Some(how) = self.exited.borrow().clone() {
            self.pending.lock().expect("pending").remove(&key);
            return self.gone_error(&id, &how);
        }
        if let Err(e) = self.send(message).await {
            self.pending.lock().expect("pending").remove(&key);
            let how = self.exited.borrow().clone().unwrap_or(e);
            return self.gone_error(&id, &how);
        }
        match rx.await {
            Ok(response) => response,
            Err(_) => {
                let how = self.exited.borrow().clone().unwrap_or_else(|| "ended".into());
                self.gone_error(&id, &how)
            }
        }
    }

    /// Progress notifications carrying `token` go to `to` until [`Proc::unroute`].
    pub fn route_progress(&self, token: &Value, to: mpsc::Sender<Value>) {
        self.progress.lock().expect("progress").insert(token.to_string(), to);
    }

    pub fn unroute(&self, token: &Value) {
        self.progress.lock().expect("progress").remove(&token.to_string());
    }

    /// Forgets a request whose client went away.
    pub fn forget(&self, id: &Value) {
        self.pending.lock().expect("pending").remove(&id.to_string());
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.lock().expect("pending").len()
    }

    /// The JSON-RPC error a request gets when its server process ended.
    pub fn gone_error(&self, id: &Value, how: &str) -> Value {
        let tail: Vec<String> = self.tail.lock().expect("tail").iter().cloned().collect();
        let how = self.reason.lock().expect("reason").clone().unwrap_or_else(|| how.to_string());
        let mut message = format!("the MCP server process (pid {}) {how}", self.pid);
        if !tail.is_empty() {
            message.push_str(&format!("; its last stderr lines: {}", tail.join(" | ")));
        }
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": CHILD_GONE, "message": message, "data": { "pid": self.pid, "exit": how, "stderr": tail } }
        })
    }

    /// The child exited: every pending request is answered.
    fn ended(&self, how: String, exited: &watch::Sender<Option<String>>) {
        exited.send_replace(Some(how.clone()));
        *self.stdin.lock().expect("stdin") = None;
        let pending: Vec<(String, oneshot::Sender<Value>)> = self.pending.lock().expect("pending").drain().collect();
        for (key, tx) in pending {
            let id: Value = serde_json::from_str(&key).unwrap_or(Value::Null);
            let _ = tx.send(self.gone_error(&id, &how));
        }
        *self.to_client.lock().expect("to_client") = None;
    }

    /// Ends the child: closes its stdin (a well-behaved server exits), then `kill_signal` to it
    /// and its descendants, then SIGKILL after `kill_timeout`.
    pub async fn end(&self, settings: &Settings) {
        // Its descendants now (a wrapper such as `npx` or `sh` may exit on stdin's close and
        // leave the real server running): they are ended after it.
        let pid = self.pid;
        let family = tokio::task::spawn_blocking(move || tree(pid)).await.unwrap_or_default();
        *self.stdin.lock().expect("stdin") = None;
        let exited = self.exited.clone();
        let gone = |wait: Duration| {
            let mut exited = exited.clone();
            async move { tokio::time::timeout(wait, exited.wait_for(Option::is_some)).await.is_ok() }
        };
        if !gone(STDIN_GRACE.min(settings.kill_timeout())).await {
            self.kill(settings.kill_signal).await;
            if !gone(settings.kill_timeout()).await {
                self.kill(libc::SIGKILL).await;
                gone(Duration::from_secs(5)).await;
            }
        }
        // What it left behind (reparented, so no longer in its tree).
        let left: Vec<u32> = family.into_iter().filter(|p| *p != pid).collect();
        if !left.is_empty() {
            tokio::task::spawn_blocking(move || {
                for p in &left {
                    // SAFETY: kill(2) touches no memory.
                    unsafe { libc::kill(*p as i32, libc::SIGKILL) };
                }
            })
            .await
            .ok();
        }
    }

    /// Sends `signal` to it and its descendants, unless it was reaped (its pid could be
    /// another process's by then). The /proc walk runs off the runtime thread.
    async fn kill(&self, signal: libc::c_int) {
        if self.gone() {
            return;
        }
        let pid = self.pid;
        let _ = tokio::task::spawn_blocking(move || kill_tree(pid, signal)).await;
    }

    /// The resident memory of it and its descendants, in bytes.
    pub fn rss(&self) -> u64 {
        // SAFETY: sysconf takes no pointer.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        tree(self.pid)
            .into_iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/statm")).ok())
            .filter_map(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>()
            * page
    }
}

/// How long a child has to exit once its stdin is closed, before its kill signal.
const STDIN_GRACE: Duration = Duration::from_secs(1);

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".into(),
    }
}

/// `pid` and its descendants (children found through `/proc/PID/task/*/children`), bounded.
fn tree(pid: u32) -> Vec<u32> {
    let mut found = vec![pid];
    let mut i = 0;
    // Bounded: at most 4096 processes are looked at.
    while i < found.len() && found.len() < 4096 {
        let p = found[i];
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            found.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    found
}

/// Sends `signal` to `pid` and its descendants (they share the bridge's process group, so the
/// group cannot be used).
fn kill_tree(pid: u32, signal: libc::c_int) {
    for p in tree(pid) {
        // SAFETY: kill(2) touches no memory.
        unsafe { libc::kill(p as i32, signal) };
    }
}

async fn write_stdin(mut stdin: tokio::net::unix::pipe::Sender, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(line) = rx.recv().await {
        if stdin.write_all(&line).await.is_err() {
            return;
        }
    }
    // Dropping the pipe closes the child's stdin.
}

async fn read_stdout(proc: Arc<Proc>, stdout: tokio::net::unix::pipe::Receiver) {
    let mut reader = tokio::io::BufReader::with_capacity(16 << 10, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a line longer than MAX_MESSAGE ends the read (and the child's session).
        let read = (&mut reader).take(MAX_MESSAGE as u64 + 1).read_until(b'\n', &mut line).await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) if line.len() > MAX_MESSAGE && !line.ends_with(b"\n") => {
                proc.set_reason(format!("wrote a message over {} MiB and was ended", MAX_MESSAGE >> 20));
                proc.kill(libc::SIGKILL).await;
                return;
            }
            Ok(_) => {}
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let Ok(message) = serde_json::from_slice::<Value>(text) else {
            // Not JSON-RPC: a server that prints on stdout. Never passed on.
            continue;
        };
        deliver(&proc, message).await;
    }
}

/// A response goes to the request that waits for it; anything else (a notification, a
/// request of the server's) to the client of the child's session.
async fn deliver(proc: &Proc, message: Value) {
    let is_response =
        message.get("method").is_none() && (message.get("result").is_some() || message.get("error").is_some());
    if is_response {
        let key = message.get("id").map(Value::to_string).unwrap_or_default();
        if let Some(tx) = proc.pending.lock().expect("pending").remove(&key) {
            let _ = tx.send(message);
        }
        return;
    }
    if message.get("method").and_then(Value::as_str) == Some("notifications/progress") {
        let token = message.pointer("/params/progressToken").map(Value::to_string).unwrap_or_default();
        let route = proc.progress.lock().expect("progress").get(&token).cloned();
        if let Some(tx) = route {
            // Queued before any later line (its request's response) is read: they arrive in
            // the order the server wrote them. A client that does not read its stream loses
            // progress notifications rather than hold up the child's other answers.
            let _ = tx.try_send(message);
            return;
        }
    }
    let to_client = proc.to_client.lock().expect("to_client").clone();
    if let Some(tx) = to_client {
        // Waits while the client's queue is full: the child then blocks on its stdout.
        let _ = tx.send(message).await;
    }
}

async fn read_stderr(proc: Arc<Proc>, stderr: tokio::net::unix::pipe::Receiver, log: LogTx) {
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(64 << 10).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned();
        {
            let mut tail = proc.tail.lock().expect("tail");
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text.chars().take(500).collect());
        }
        let tag = proc.tag.lock().expect("tag").clone();
        // Waits when the log is slow: only this app is held back.
        let _ = log.send(format!("[{tag}] {text}")).await;
    }
}
