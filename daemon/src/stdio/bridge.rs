//! The bridge: Streamable HTTP on the generation's private socket (fd 3), children of the app's
//! program behind it.
//!
//! `POST` with an `initialize` and no session starts a session: a child from the warm pool
//! (or a new one) gets the client's `initialize`, and its answer carries a new
//! `Mcp-Session-Id`. Later `POST`s of the session write their messages to the child; requests
//! are answered on the `POST` (JSON) with the child's response, or with a JSON-RPC error at
//! once if the child exits. What the child sends on its own (notifications, its requests to
//! the client) goes to the session's `GET` stream, queued (bounded) while none is open; the
//! client's answers come back in `POST`s. Heartbeat comments keep the stream's path alive and
//! find a client that is gone.
//!
//! A session ends on `DELETE`; when it is idle (nothing in flight, no open stream) for the
//! front's `session_idle_timeout`; when its child exits (later requests get 404, so clients
//! start a new session); when its child goes over `max_memory_restart`. Ending a child: close
//! its stdin, then its kill signal, then SIGKILL after `kill_timeout`.

use super::child::{LogTx, Proc, CHILD_GONE, TO_CLIENT_QUEUED};
use super::Settings;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

/// How often an open stream carries a comment, so a path to a client that is gone fails.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// How often idle sessions, memory and the warm pool are looked at.
const SWEEP: Duration = Duration::from_secs(1);
/// Bound of a request body the bridge reads (the front bounds them first).
const MAX_BODY: usize = 16 << 20;
/// Stream frames queued for a client's connection.
const STREAM_QUEUED: usize = 64;

/// `mcpd-stdio-bridge`.
pub fn main() -> ExitCode {
    let settings: Settings = match std::env::var(super::ENV)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcpd stdio bridge: no settings in {}: {e}", super::ENV);
            return ExitCode::from(2);
        }
    };
    // One malloc arena (as the daemon): the blocking threads would each keep one.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mcpd stdio bridge: cannot start its runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcpd stdio bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One session: its child, and the stream to its client.
#[derive(Debug)]
struct Session {
    id: String,
    proc: Arc<Proc>,
    last: Mutex<Instant>,
    /// POSTs of the session being answered.
    active: AtomicUsize,
    /// The open GET stream, if any.
    stream: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// What the child sent while no stream was open (bounded by TO_CLIENT_QUEUED).
    queued: Mutex<VecDeque<Bytes>>,
    /// The child is shared: this session's requests carry ids the bridge gives them (the
    /// client's id → the child's id, while in flight).
    shared: bool,
    renamed: Mutex<HashMap<String, Value>>,
    /// Requests of the 2026-07-28 revision (no session): results say `resultType`.
    modern: bool,
}

impl Session {
    fn touch(&self) {
        *self.last.lock().expect("last") = Instant::now();
    }

    fn streaming(&self) -> bool {
        self.stream.lock().expect("stream").as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Sends a frame to the client's stream (waiting while the client reads slowly: its own
    /// child then waits), or queues it (bounded) until one opens.
    async fn push(&self, frame: Bytes) {
        let stream = self.stream.lock().expect("stream").clone();
        if let Some(tx) = stream {
            if tx.send(frame.clone()).await.is_ok() {
                return;
            }
        }
        self.queue(frame);
    }

    /// Sends a frame to the client's stream without waiting: a shared child's notification
    /// must not wait for any one client. A client that does not read has it queued (bounded).
    fn push_now(&self, frame: Bytes) {
        let stream = self.stream.lock().expect("stream").clone();
        if let Some(tx) = stream {
            match tx.try_send(frame) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(frame) | mpsc::error::TrySendError::Closed(frame)) => {
                    return self.queue(frame)
                }
            }
        }
        self.queue(frame);
    }

    fn queue(&self, frame: Bytes) {
        let mut queued = self.queued.lock().expect("queued");
        if queued.len() == TO_CLIENT_QUEUED {
            queued.pop_front();
            // A client with no stream open misses the oldest (bounded queue).
        }
        queued.push_back(frame);
    }
}

/// The one child of a `shared` bridge, initialized by the bridge.
#[derive(Debug)]
struct SharedChild {
    proc: Arc<Proc>,
    /// Its answer to `initialize`: every session's answer.
    init: Value,
    /// Ids the bridge gives requests (unique across sessions).
    next: std::sync::atomic::AtomicU64,
}

/// The protocol revision a shared child is initialized with (it answers with the newest it
/// knows, which every session is then told).
const SHARED_REVISION: &str = "2025-11-25";

#[derive(Debug)]
struct Bridge {
    settings: Settings,
    /// Bounded by `max_sessions`.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Children started ahead; bounded by `warm`.
    warm: Mutex<VecDeque<Arc<Proc>>>,
    log: LogTx,
    notify: Option<std::path::PathBuf>,
    /// The last status told to the daemon.
    status: Mutex<String>,
    /// `shared`: the child every session uses.
    shared: std::sync::OnceLock<Arc<SharedChild>>,
    /// `per-session`: the child, initialized by the bridge, that answers requests without a
    /// session (the 2026-07-28 revision's `server/discover` and per-request calls); started
    /// on first use (one start at a time), and again if it ended.
    stateless: Mutex<Option<Arc<SharedChild>>>,
    starting: tokio::sync::Mutex<()>,
    /// Children of ended sessions still on their way out: they count against `max_sessions`.
    ending: AtomicUsize,
    /// SIGTERM came: no child is started any more.
    closing: std::sync::atomic::AtomicBool,
}

async fn run(settings: Settings) -> Result<(), String> {
    if std::env::var("LISTEN_FDS").ok().as_deref() != Some("1") {
        return Err("no private socket (LISTEN_FDS=1) was handed over".into());
    }
    // Close-on-exec from here: no child may inherit (and accept on) the socket.
    let listener = std::os::unix::net::UnixListener::from(
        crate::handover::take(3).map_err(|e| format!("the private socket (fd 3): {e}"))?,
    );
    listener.set_nonblocking(true).map_err(|e| format!("the private socket: {e}"))?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| format!("the private socket: {e}"))?;
    // Children's stderr lines, written to the bridge's stderr by one task (bounded queue: a
    // slow log holds back this app only).
    let (log, mut lines) = mpsc::channel::<String>(1024);
    tokio::spawn(crate::boxed(async move {
        use tokio::io::AsyncWriteExt;
        // The daemon's log pipe, written without blocking the runtime; anything else (run by
        // hand) is written from a blocking thread.
        let pipe = crate::handover::dup(2).and_then(tokio::net::unix::pipe::Sender::from_owned_fd);
        match pipe {
            Ok(mut pipe) => {
                while let Some(line) = lines.recv().await {
                    let _ = pipe.write_all(format!("{line}\n").as_bytes()).await;
                }
            }
            Err(_) => {
                while let Some(line) = lines.recv().await {
                    let _ = tokio::task::spawn_blocking(move || {
                        use std::io::Write;
                        let _ = writeln!(std::io::stderr(), "{line}");
                    })
                    .await;
                }
            }
        }
    }));
    let notify = std::env::var_os("NOTIFY_SOCKET").map(std::path::PathBuf::from);
    let bridge = Arc::new(Bridge {
        settings,
        sessions: Mutex::default(),
        warm: Mutex::default(),
        log,
        notify,
        status: Mutex::default(),
        shared: std::sync::OnceLock::new(),
        stateless: Mutex::new(None),
        starting: tokio::sync::Mutex::new(()),
        ending: AtomicUsize::new(0),
        closing: std::sync::atomic::AtomicBool::new(false),
    });
    match bridge.settings.sessions {
        mcpd_core::config::StdioSessions::PerSession => {
            bridge.probe().await?;
            bridge.fill_warm();
        }
        mcpd_core::config::StdioSessions::Shared => bridge.start_shared().await?,
    }
    // READY=1 must arrive: retried (bounded) while the daemon's socket is full.
    for _ in 0..100 {
        if bridge.say("READY=1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bridge.tell_status();
    let sweep = tokio::spawn(crate::boxed(bridge.clone().sweep()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let bridge = bridge.clone();
                    tokio::spawn(crate::boxed(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let bridge = bridge.clone();
                            async move { Ok::<_, Infallible>(bridge.handle(req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }));
                }
                Err(e) => {
                    let _ = bridge.log.try_send(format!("[mcpd] accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = bridge.say("STOPPING=1");
    bridge.closing.store(true, Ordering::SeqCst);
    sweep.abort();
    bridge.shutdown().await;
    Ok(())
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn error_response(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    json_response(status, &json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } }))
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = status;
    r
}

/// The answer to a POST: 202 when it held no request, else the responses (an array for a
/// batch).
fn answered(answers: Vec<Value>, batch: bool) -> Response<Body> {
    match (answers.len(), batch) {
        (0, _) => empty(StatusCode::ACCEPTED),
        (_, true) => json_response(StatusCode::OK, &Value::Array(answers)),
        (_, false) => json_response(StatusCode::OK, &answers[0]),
    }
}

fn session_id(req: &Request<Incoming>) -> Option<String> {
    req.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// A new session id: 128 random bits, hex.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != 16 {
        // Unreachable on Linux 3.17+; still unique enough for one bridge's table.
        let t = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
        bytes = t.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_request(m: &Value) -> bool {
    m.get("method").is_some() && m.get("id").is_some_and(|id| !id.is_null())
}

fn event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

impl Bridge {
    /// Sends a line to the daemon's notify socket (READY=1, STATUS=...); whether it went.
    fn say(&self, text: &str) -> bool {
        let Some(path) = &self.notify else { return true };
        // Never waits: a daemon that does not read its notify socket now gets the line from a
        // later call (the status is sent again each second until it goes).
        let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else { return false };
        let _ = socket.set_nonblocking(true);
        socket.send_to(text.as_bytes(), path).is_ok()
    }

    /// `STATUS=` with the sessions (and their children's pids, the first few) and the warm
    /// children, when it changed.
    fn tell_status(&self) {
        let pids: Vec<u32> = self.sessions.lock().expect("sessions").values().map(|s| s.proc.pid).collect();
        let warm = self.warm.lock().expect("warm").len();
        let mut shown: Vec<String> = pids.iter().take(5).map(u32::to_string).collect();
        if pids.len() > 5 {
            shown.push("...".into());
        }
        let children = if pids.is_empty() { String::new() } else { format!(" (pids {})", shown.join(" ")) };
        let text = match self.shared.get() {
            Some(shared) => format!("{} session(s) sharing pid {}", pids.len(), shared.proc.pid),
            None => format!("{} session(s){children}, {warm} warm child(ren)", pids.len()),
        };
        let mut last = self.status.lock().expect("status");
        if *last != text && self.say(&format!("STATUS={text}")) {
            *last = text;
        }
    }

    /// The readiness check: a child answers `initialize` and `tools/list`, then is ended.
    async fn probe(&self) -> Result<(), String> {
        let proc = Proc::spawn(&self.settings, self.log.clone())
            .map_err(|e| format!("cannot start {}: {e}", self.settings.program.display()))?;
        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "mcpd-ready", "version": env!("CARGO_PKG_VERSION") } }
        });
        let answer = proc.request(&init).await;
        if let Some(e) = answer.get("error") {
            proc.end(&self.settings).await;
            return Err(format!("the MCP server did not initialize: {}", e.get("message").unwrap_or(e)));
        }
        let _ = proc.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await;
        let tools = proc.request(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" })).await;
        proc.end(&self.settings).await;
        match tools.get("error") {
            // A server without tools is ready too (it answered).
            Some(e) if e.get("code").and_then(Value::as_i64) == Some(CHILD_GONE) => {
                Err(format!("the MCP server did not answer tools/list: {}", e.get("message").unwrap_or(e)))
            }
            _ => Ok(()),
        }
    }

    /// `shared`: starts the child, initializes it (declaring no client capability: a request
    /// of the server's has no one session to go to), and checks `tools/list`. If the child
    /// ends later, the bridge ends too: the daemon restarts the generation as for any crash.
    async fn start_shared(self: &Arc<Self>) -> Result<(), String> {
        let (child, from_child) = self.initialized_child().await?;
        tokio::spawn(crate::boxed(self.clone().fan_out(child.proc.clone(), from_child, true)));
        let _ = self.shared.set(child);
        Ok(())
    }

    /// A child the bridge initialized itself (declaring no client capability: a request of
    /// the server's would have no one client to go to), checked with `tools/list`; and what it
    /// sends on its own.
    async fn initialized_child(&self) -> Result<(Arc<SharedChild>, mpsc::Receiver<Value>), String> {
        let proc = Proc::spawn(&self.settings, self.log.clone())
            .map_err(|e| format!("cannot start {}: {e}", self.settings.program.display()))?;
        // Ended if anything below fails or the start is given up.
        let mut guard = EndOnDrop { proc: Some(proc.clone()), settings: self.settings.clone(), armed: true };
        let init = json!({
            "jsonrpc": "2.0", "id": "mcpd-init", "method": "initialize",
            "params": { "protocolVersion": SHARED_REVISION, "capabilities": {}, "clientInfo": { "name": "mcpd", "version": env!("CARGO_PKG_VERSION") } }
        });
        let answer = proc.request(&init).await;
        let Some(result) = answer.get("result").cloned() else {
            return Err(format!("the MCP server did not initialize: {}", answer.get("error").unwrap_or(&answer)));
        };
        let _ = proc.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await;
        let tools = proc.request(&json!({ "jsonrpc": "2.0", "id": "mcpd-tools", "method": "tools/list" })).await;
        if let Some(e) = tools.get("error").filter(|e| e.get("code").and_then(Value::as_i64) == Some(CHILD_GONE)) {
            return Err(format!("the MCP server did not answer tools/list: {}", e.get("message").unwrap_or(e)));
        }
        guard.armed = false;
        let (to_client, from_child) = mpsc::channel(TO_CLIENT_QUEUED);
        proc.serve("shared", to_client);
        Ok((Arc::new(SharedChild { proc, init: result, next: std::sync::atomic::AtomicU64::new(1) }), from_child))
    }

    /// The child that answers requests without a session: the shared one, or (per-session)
    /// one of its own, started now if none runs.
    async fn stateless_child(self: &Arc<Self>) -> Result<Arc<SharedChild>, String> {
        if let Some(shared) = self.shared.get() {
            return Ok(shared.clone());
        }
        let alive = || self.stateless.lock().expect("stateless").clone().filter(|c| !c.proc.gone());
        if let Some(child) = alive() {
            return Ok(child);
        }
        let _one = self.starting.lock().await;
        if let Some(child) = alive() {
            return Ok(child);
        }
        if self.closing.load(Ordering::SeqCst) {
            return Err("the bridge is stopping".into());
        }
        // Started on a task of its own that keeps the child: a client that gives up while it
        // starts leaves no child behind.
        let bridge = self.clone();
        let started = tokio::spawn(crate::boxed(async move {
            match tokio::time::timeout(bridge.settings.init_timeout(), bridge.initialized_child()).await {
                Ok(Ok((child, from_child))) => {
                    tokio::spawn(crate::boxed(bridge.clone().fan_out(child.proc.clone(), from_child, false)));
                    *bridge.stateless.lock().expect("stateless") = Some(child);
                }
                Ok(Err(e)) => drop(
                    bridge.log.try_send(format!("[mcpd] cannot start a child for requests without a session: {e}")),
                ),
                Err(_) => drop(
                    bridge
                        .log
                        .try_send("[mcpd] a child for requests without a session did not initialize in time".into()),
                ),
            }
        }));
        let _ = started.await;
        alive().ok_or_else(|| {
            "the MCP server could not be started for requests without a session (see the app's log)".into()
        })
    }

    /// (`ends_bridge`: the shared child; the stateless one is started again when needed.)
    async fn fan_out(self: Arc<Self>, proc: Arc<Proc>, mut from_child: mpsc::Receiver<Value>, ends_bridge: bool) {
        while let Some(message) = from_child.recv().await {
            if is_request(&message) {
                let refusal = json!({
                    "jsonrpc": "2.0", "id": message.get("id"),
                    "error": { "code": -32601, "message": "mcpd shares this server among its sessions and passes no server request to a client" }
                });
                // Not waited for here: the child may be blocked writing to us.
                let proc = proc.clone();
                tokio::spawn(crate::boxed(async move { drop(proc.send(&refusal).await) }));
                continue;
            }
            // Progress of a request whose client did not stream it: its token was renamed, so
            // no session knows it.
            if message.get("method").and_then(Value::as_str) == Some("notifications/progress") {
                continue;
            }
            if !ends_bridge {
                // Requests without a session: nobody to tell.
                continue;
            }
            let frame = event(&message);
            let sessions: Vec<Arc<Session>> = self.sessions.lock().expect("sessions").values().cloned().collect();
            for s in sessions {
                s.push_now(frame.clone());
            }
        }
        if !ends_bridge {
            return;
        }
        let mut exited = proc.exited.clone();
        let _ = exited.wait_for(Option::is_some).await;
        let how = proc.exited.borrow().clone().unwrap_or_default();
        let _ = self
            .log
            .send(format!("[shared] the MCP server process (pid {}) {how}; the bridge ends with it", proc.pid))
            .await;
        // Every session's requests were answered with the error; the generation ends.
        std::process::exit(1);
    }

    /// Starts children until `warm` wait ahead (one pass; the sweep calls it again).
    fn fill_warm(&self) {
        if self.shared.get().is_some() || self.closing.load(Ordering::SeqCst) {
            return;
        }
        let mut warm = self.warm.lock().expect("warm");
        warm.retain(|p| !p.gone());
        while warm.len() < self.settings.warm as usize {
            match Proc::spawn(&self.settings, self.log.clone()) {
                Ok(p) => warm.push_back(p),
                Err(e) => {
                    let _ = self.log.try_send(format!("[mcpd] cannot start a warm child: {e}"));
                    break;
                }
            }
        }
    }

    /// A child for a new session: a warm one if one is alive, else a new one.
    fn take_child(&self) -> std::io::Result<Arc<Proc>> {
        let warm = {
            let mut warm = self.warm.lock().expect("warm");
            let mut found = None;
            while let Some(p) = warm.pop_front() {
                if !p.gone() {
                    found = Some(p);
                    break;
                }
            }
            found
        };
        match warm {
            Some(p) => Ok(p),
            None => Proc::spawn(&self.settings, self.log.clone()),
        }
    }

    async fn handle(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        match *req.method() {
            hyper::Method::POST => self.post(req).await,
            hyper::Method::GET => self.get(req),
            hyper::Method::DELETE => self.delete(req),
            _ => empty(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    async fn post(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let session = session_id(&req);
        let streams =
            req.headers().get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
        let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return error_response(StatusCode::PAYLOAD_TOO_LARGE, -32600, "request too large"),
        };
        let parsed: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error_response(StatusCode::BAD_REQUEST, -32700, &format!("Parse error: {e}")),
        };
        let batch = parsed.is_array();
        let messages: Vec<Value> = match parsed {
            Value::Array(items) => items,
            other => vec![other],
        };
        if messages.is_empty() || messages.iter().any(|m| !m.is_object()) {
            return error_response(
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: a JSON-RPC message or a batch of them",
            );
        }
        let initialize = messages.iter().any(|m| m.get("method").and_then(Value::as_str) == Some("initialize"));
        let session = match session {
            Some(id) => match self.sessions.lock().expect("sessions").get(&id).cloned() {
                Some(s) => s,
                None => return error_response(StatusCode::NOT_FOUND, -32001, "Session not found"),
            },
            None if initialize && messages.len() == 1 => {
                return self.initialize(messages.into_iter().next().unwrap_or_default()).await
            }
            // The 2026-07-28 revision: no session, each request carries what it needs.
            None => return self.sessionless(messages, batch, streams).await,
        };
        // Counted until answered, or until the client goes away (the handler is dropped).
        let active = Active::new(&session);
        // A request that asks for progress is answered on a stream: its progress
        // notifications, then its response.
        if let ([m], true) = (messages.as_slice(), streams) {
            if let Some(token) = m.pointer("/params/_meta/progressToken").filter(|_| is_request(m)).cloned() {
                return self.post_streamed(session, m.clone(), token, active);
            }
        }
        if let Some(shared) = self.shared.get() {
            let answers =
                futures_util::future::join_all(messages.iter().map(|m| self.shared_message(shared, &session, m))).await;
            drop(active);
            let answers: Vec<Value> = answers.into_iter().flatten().collect();
            return answered(answers, batch);
        }
        let answers = futures_util::future::join_all(messages.iter().map(|m| {
            let proc = session.proc.clone();
            async move {
                if is_request(m) {
                    // The client's id is kept: one child has one client.
                    let id = m.get("id").cloned().unwrap_or(Value::Null);
                    let mut guard = Forget { proc: proc.clone(), id, armed: true };
                    let answer = proc.request(m).await;
                    guard.armed = false;
                    Some(answer)
                } else {
                    // A notification, or the client's answer to the server's request.
                    let _ = proc.send(m).await;
                    None
                }
            }
        }))
        .await;
        drop(active);
        let answers: Vec<Value> = answers.into_iter().flatten().collect();
        answered(answers, batch)
    }

    /// Requests without a session (the 2026-07-28 revision's): `server/discover` is answered
    /// from the bridge's own child's `initialize` (the revision is served by translation: the
    /// child keeps speaking the one it knows); other requests go to that child, ids renamed.
    async fn sessionless(self: &Arc<Self>, messages: Vec<Value>, batch: bool, streams: bool) -> Response<Body> {
        if !messages.iter().any(is_request) {
            return error_response(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: no valid session id (send initialize first)",
            );
        }
        let child = match self.stateless_child().await {
            Ok(c) => c,
            Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, CHILD_GONE, &e),
        };
        // A throwaway session: the renaming table of these requests.
        let session = Arc::new(Session {
            id: String::new(),
            proc: child.proc.clone(),
            last: Mutex::new(Instant::now()),
            active: AtomicUsize::new(0),
            stream: Mutex::new(None),
            queued: Mutex::default(),
            shared: true,
            renamed: Mutex::default(),
            modern: true,
        });
        if let ([m], true) = (messages.as_slice(), streams) {
            if let Some(token) = m.pointer("/params/_meta/progressToken").filter(|_| is_request(m)).cloned() {
                let active = Active::new(&session);
                return self.post_streamed_via(&child, session, m.clone(), token, active);
            }
        }
        let answers = futures_util::future::join_all(messages.iter().map(|m| {
            let (child, session) = (child.clone(), session.clone());
            async move {
                let method = m.get("method").and_then(Value::as_str);
                if method == Some("server/discover") {
                    return Some(discover(&child, m));
                }
                let answer = self.shared_message(&child, &session, m).await?;
                Some(modern(answer, method))
            }
        }))
        .await;
        let answers: Vec<Value> = answers.into_iter().flatten().collect();
        answered(answers, batch)
    }

    /// `shared`: one message of a session to the shared child, its request id renamed (and
    /// its progress token, which the routing table then names); returns the answer to a
    /// request, its id the client's again.
    async fn shared_message(&self, shared: &SharedChild, session: &Arc<Session>, m: &Value) -> Option<Value> {
        let method = m.get("method").and_then(Value::as_str);
        if !is_request(m) {
            match method {
                // The bridge sent it once, for every session.
                Some("notifications/initialized") => {}
                Some("notifications/cancelled") => {
                    let asked = m.pointer("/params/requestId").map(Value::to_string).unwrap_or_default();
                    let renamed = session.renamed.lock().expect("renamed").get(&asked).cloned();
                    if let Some(id) = renamed {
                        let mut m = m.clone();
                        m["params"]["requestId"] = id;
                        let _ = shared.proc.send(&m).await;
                    }
                }
                // Other notifications of a client (there is no server request to answer).
                _ => drop(shared.proc.send(m).await),
            }
            return None;
        }
        let original = m.get("id").cloned().unwrap_or(Value::Null);
        if method == Some("initialize") {
            // The one server every session uses is initialized once, by the bridge.
            return Some(json!({ "jsonrpc": "2.0", "id": original, "result": shared.init }));
        }
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        let id = json!(format!("mcpd-{n}"));
        let mut renamed = m.clone();
        renamed["id"] = id.clone();
        if renamed.pointer("/params/_meta/progressToken").is_some() {
            // Never the client's own token: another session's could be the same (or forged).
            renamed["params"]["_meta"]["progressToken"] = json!(format!("mcpd-progress-{n}"));
        }
        session.renamed.lock().expect("renamed").insert(original.to_string(), id.clone());
        let _renamed = Renamed { session: session.clone(), key: original.to_string() };
        let mut guard = Forget { proc: shared.proc.clone(), id: id.clone(), armed: true };
        let mut answer = shared.proc.request(&renamed).await;
        guard.armed = false;
        answer["id"] = original;
        Some(answer)
    }

    /// One request answered on an event stream: the progress notifications its server sends
    /// for it, then its response.
    fn post_streamed(
        self: &Arc<Self>,
        session: Arc<Session>,
        message: Value,
        token: Value,
        active: Active,
    ) -> Response<Body> {
        match self.shared.get() {
            Some(shared) => self.post_streamed_via(&shared.clone(), session, message, token, active),
            None => self.post_streamed_on(None, session, message, token, active),
        }
    }

    fn post_streamed_via(
        self: &Arc<Self>,
        child: &Arc<SharedChild>,
        session: Arc<Session>,
        message: Value,
        token: Value,
        active: Active,
    ) -> Response<Body> {
        self.post_streamed_on(Some(child), session, message, token, active)
    }

    fn post_streamed_on(
        self: &Arc<Self>,
        shared: Option<&Arc<SharedChild>>,
        session: Arc<Session>,
        message: Value,
        token: Value,
        active: Active,
    ) -> Response<Body> {
        let (tx, rx) = mpsc::channel::<Value>(STREAM_QUEUED);
        // Shared: the id and the progress token are the bridge's while in flight (no two
        // sessions' can collide); the client gets its own back.
        let original = (message.get("id").cloned().unwrap_or(Value::Null), token.clone());
        let mut renaming = None;
        let (message, token) = match shared {
            Some(shared) => {
                let n = shared.next.fetch_add(1, Ordering::Relaxed);
                let (id, token) = (json!(format!("mcpd-{n}")), json!(format!("mcpd-progress-{n}")));
                session.renamed.lock().expect("renamed").insert(original.0.to_string(), id.clone());
                renaming = Some(Renamed { session: session.clone(), key: original.0.to_string() });
                let mut m = message;
                m["id"] = id;
                m["params"]["_meta"]["progressToken"] = token.clone();
                (m, token)
            }
            None => (message, token),
        };
        session.proc.route_progress(&token, tx.clone());
        let translate = session.modern.then(|| message.get("method").and_then(Value::as_str).map(str::to_string));
        tokio::spawn(crate::boxed(async move {
            let id = message.get("id").cloned().unwrap_or(Value::Null);
            let mut guard = Forget { proc: session.proc.clone(), id, armed: true };
            // A client that goes away stops waiting (its request is forgotten).
            let answer = tokio::select! {
                answer = session.proc.request(&message) => Some(answer),
                _ = tx.closed() => None,
            };
            session.proc.unroute(&token);
            drop(active);
            drop(renaming);
            let Some(answer) = answer else { return };
            guard.armed = false;
            // After every progress notification (queued in order before the response).
            let _ = tx.send(answer).await;
        }));
        let stream =
            futures_util::stream::unfold((rx, original, translate), |(mut rx, original, translate)| async move {
                let mut message = rx.recv().await?;
                if message.get("method").is_some() {
                    message["params"]["progressToken"] = original.1.clone();
                } else {
                    message["id"] = original.0.clone();
                    if let Some(method) = &translate {
                        message = modern(message, method.as_deref());
                    }
                }
                Some((Ok::<_, Infallible>(Frame::data(event(&message))), (rx, original, translate)))
            });
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/event-stream"));
        r.headers_mut().insert("cache-control", hyper::header::HeaderValue::from_static("no-cache"));
        r
    }

    /// A new session: a child answers the client's `initialize`.
    async fn initialize(self: &Arc<Self>, message: Value) -> Response<Body> {
        if self.closing.load(Ordering::SeqCst) {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, -32000, "the server is stopping");
        }
        // Children of ended sessions count until they are gone: max_sessions bounds children.
        let held = self.sessions.lock().expect("sessions").len()
            + if self.shared.get().is_some() { 0 } else { self.ending.load(Ordering::SeqCst) };
        if held >= self.settings.max_sessions as usize {
            let mut r = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                -32000,
                &format!(
                    "{} holds its most sessions ({}); try again shortly",
                    self.settings.app, self.settings.max_sessions
                ),
            );
            r.headers_mut().insert("retry-after", hyper::header::HeaderValue::from_static("1"));
            return r;
        }
        if let Some(shared) = self.shared.get() {
            let id = new_id();
            let session = Arc::new(Session {
                id: id.clone(),
                proc: shared.proc.clone(),
                last: Mutex::new(Instant::now()),
                active: AtomicUsize::new(0),
                stream: Mutex::new(None),
                queued: Mutex::default(),
                shared: true,
                renamed: Mutex::default(),
                modern: false,
            });
            self.sessions.lock().expect("sessions").insert(id.clone(), session);
            self.tell_status();
            let answer = json!({ "jsonrpc": "2.0", "id": message.get("id"), "result": shared.init });
            let mut r = json_response(StatusCode::OK, &answer);
            if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            return r;
        }
        let proc = match self.take_child() {
            Ok(p) => p,
            Err(e) => {
                let text = format!("cannot start the MCP server {}: {e}", self.settings.program.display());
                return json_response(
                    StatusCode::OK,
                    &json!({ "jsonrpc": "2.0", "id": message.get("id"), "error": { "code": CHILD_GONE, "message": text } }),
                );
            }
        };
        self.fill_warm();
        let id = new_id();
        let (to_client, from_child) = mpsc::channel(TO_CLIENT_QUEUED);
        proc.serve(&id, to_client);
        let session = Arc::new(Session {
            id: id.clone(),
            proc: proc.clone(),
            last: Mutex::new(Instant::now()),
            active: AtomicUsize::new(0),
            stream: Mutex::new(None),
            queued: Mutex::default(),
            shared: false,
            renamed: Mutex::default(),
            modern: false,
        });
        let active = Active::new(&session);
        self.sessions.lock().expect("sessions").insert(id.clone(), session.clone());
        tokio::spawn(crate::boxed(self.clone().forward(session.clone(), from_child)));
        // A client that goes away, or a child that never answers, ends the session.
        let mut abandon = EndSession { bridge: self.clone(), id: id.clone(), armed: true };
        let answer = match tokio::time::timeout(self.settings.init_timeout(), proc.request(&message)).await {
            Ok(answer) => answer,
            Err(_) => {
                proc.forget(&message.get("id").cloned().unwrap_or(Value::Null));
                json!({ "jsonrpc": "2.0", "id": message.get("id"), "error": { "code": CHILD_GONE, "message": format!("the MCP server (pid {}) did not answer initialize within {:?}", proc.pid, self.settings.init_timeout()) } })
            }
        };
        drop(active);
        abandon.armed = answer.get("error").is_some();
        drop(abandon);
        // With an error there is no session (ended above): the client gets the error (a child
        // that died says how).
        self.tell_status();
        let mut r = json_response(StatusCode::OK, &answer);
        if answer.get("result").is_some() {
            if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
                r.headers_mut().insert("mcp-session-id", v);
            }
        }
        r
    }

    /// What the child sends on its own goes to the session's stream, or waits for one.
    async fn forward(self: Arc<Self>, session: Arc<Session>, mut from_child: mpsc::Receiver<Value>) {
        while let Some(message) = from_child.recv().await {
            session.push(event(&message)).await;
        }
        // The child is gone: so is the session (later requests get 404).
        if !session.proc.gone() {
            return;
        }
        let how = session.proc.exited.borrow().clone().unwrap_or_default();
        let _ = self.log.try_send(format!(
            "[session {}] the MCP server process (pid {}) {how}; the session ended",
            &session.id[..8.min(session.id.len())],
            session.proc.pid
        ));
        self.end(&session.id);
    }

    /// The session's stream of what its child sends on its own.
    fn get(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let Some(id) = session_id(&req) else {
            return error_response(StatusCode::BAD_REQUEST, -32000, "Bad Request: no session id");
        };
        let Some(session) = self.sessions.lock().expect("sessions").get(&id).cloned() else {
            return error_response(StatusCode::NOT_FOUND, -32001, "Session not found");
        };
        let (tx, rx) = mpsc::channel::<Bytes>(STREAM_QUEUED);
        // What waited for a stream goes first (the channel holds it all: both are bounded
        // the same way, and the queue is at most TO_CLIENT_QUEUED frames).
        let waiting: Vec<Bytes> = session.queued.lock().expect("queued").drain(..).collect();
        let mut first = VecDeque::from(waiting);
        // A newer stream replaces an older one (which ends).
        *session.stream.lock().expect("stream") = Some(tx);
        session.touch();
        let stream = futures_util::stream::unfold(
            (rx, tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT)),
            move |(mut rx, mut beat)| {
                let next = first.pop_front();
                async move {
                    if let Some(frame) = next {
                        return Some((Ok::<_, Infallible>(Frame::data(frame)), (rx, beat)));
                    }
                    tokio::select! {
                        frame = rx.recv() => frame.map(|f| (Ok(Frame::data(f)), (rx, beat))),
                        _ = beat.tick() => Some((Ok(Frame::data(Bytes::from_static(b": ping\n\n"))), (rx, beat))),
                    }
                }
            },
        );
        let mut r = Response::new(StreamBody::new(stream).boxed());
        r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/event-stream"));
        r.headers_mut().insert("cache-control", hyper::header::HeaderValue::from_static("no-cache"));
        r
    }

    fn delete(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let Some(id) = session_id(&req) else {
            return error_response(StatusCode::BAD_REQUEST, -32000, "Bad Request: no session id");
        };
        if self.end(&id) {
            empty(StatusCode::OK)
        } else {
            error_response(StatusCode::NOT_FOUND, -32001, "Session not found")
        }
    }

    /// Ends a session and its child (on a task of its own); whether it existed.
    fn end(self: &Arc<Self>, id: &str) -> bool {
        let Some(session) = self.sessions.lock().expect("sessions").remove(id) else { return false };
        *session.stream.lock().expect("stream") = None;
        if session.shared {
            self.tell_status();
            return true;
        }
        let bridge = self.clone();
        self.ending.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(crate::boxed(async move {
            session.proc.end(&bridge.settings).await;
            bridge.ending.fetch_sub(1, Ordering::SeqCst);
            bridge.tell_status();
        }));
        self.tell_status();
        true
    }

    /// Every second: idle sessions end, children over their memory limit end, the warm pool
    /// is filled again.
    async fn sweep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP);
        loop {
            tick.tick().await;
            let idle = self.settings.idle();
            let sessions: Vec<Arc<Session>> = self.sessions.lock().expect("sessions").values().cloned().collect();
            for s in &sessions {
                // A shared child's requests in flight are every session's: the session's own
                // POSTs count.
                let in_flight = if s.shared { 0 } else { s.proc.in_flight() };
                let quiet = s.active.load(Ordering::Acquire) == 0 && in_flight == 0 && !s.streaming();
                if quiet && s.last.lock().expect("last").elapsed() >= idle {
                    let _ = self.log.try_send(format!(
                        "[session {}] idle for {:?}: the session ended",
                        &s.id[..8.min(s.id.len())],
                        idle
                    ));
                    self.end(&s.id);
                }
            }
            if let Some(max) = self.settings.memory_max.filter(|_| self.shared.get().is_none()) {
                let procs: Vec<(String, Arc<Proc>)> = sessions.iter().map(|s| (s.id.clone(), s.proc.clone())).collect();
                // /proc is read off the runtime thread.
                let over = tokio::task::spawn_blocking(move || {
                    procs.into_iter().filter_map(|(id, p)| (p.rss() > max).then_some((id, p))).collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for (id, proc) in over {
                    proc.set_reason(format!("went over its memory limit ({} MiB) and was ended", max >> 20));
                    let _ = self.log.try_send(format!(
                        "[session {}] over the memory limit ({} MiB): the session ended",
                        &id[..8.min(id.len())],
                        max >> 20
                    ));
                    self.end(&id);
                }
            }
            self.fill_warm();
            self.tell_status();
        }
    }

    /// SIGTERM: every child ends (in parallel), then the bridge exits.
    async fn shutdown(self: &Arc<Self>) {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().expect("sessions").drain().map(|(_, s)| s).collect();
        let mut warm: Vec<Arc<Proc>> = self.warm.lock().expect("warm").drain(..).collect();
        warm.extend(self.shared.get().map(|s| s.proc.clone()));
        warm.extend(self.stateless.lock().expect("stateless").take().map(|s| s.proc.clone()));
        let procs = sessions.into_iter().filter(|s| !s.shared).map(|s| s.proc.clone()).chain(warm);
        futures_util::future::join_all(procs.map(|p| {
            let settings = self.settings.clone();
            async move { p.end(&settings).await }
        }))
        .await;
    }
}

/// A result as the 2026-07-28 revision has it: `resultType` says it is complete (the child,
/// of an earlier revision, never asks for more input).
/// A list's result says how long it may be cached, and by whom: not at all, as the child
/// (of an earlier revision) never said.
fn modern(mut answer: Value, method: Option<&str>) -> Value {
    if let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) {
        result.entry("resultType").or_insert_with(|| json!("complete"));
        if method.is_some_and(|m| m.ends_with("/list")) {
            result.entry("ttlMs").or_insert_with(|| json!(0));
            result.entry("cacheScope").or_insert_with(|| json!("private"));
        }
    }
    answer
}

/// The answer to `server/discover` (2026-07-28), from what the child said to `initialize`.
fn discover(child: &SharedChild, request: &Value) -> Value {
    let init = &child.init;
    let mut versions = vec![json!("2026-07-28")];
    versions.extend(init.get("protocolVersion").cloned());
    let mut result = json!({
        "supportedVersions": versions,
        "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "ttlMs": 0,
        "cacheScope": "private",
        "resultType": "complete",
    });
    if let Some(text) = init.get("instructions") {
        result["instructions"] = text.clone();
    }
    if let Some(info) = init.get("serverInfo") {
        result["_meta"] = json!({ "io.modelcontextprotocol/serverInfo": info });
    }
    json!({ "jsonrpc": "2.0", "id": request.get("id"), "result": result })
}

/// Ends a child when dropped armed (a start given up half-way).
struct EndOnDrop {
    proc: Option<Arc<Proc>>,
    settings: Settings,
    armed: bool,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let (true, Some(proc)) = (self.armed, self.proc.take()) {
            let settings = self.settings.clone();
            tokio::spawn(crate::boxed(async move { proc.end(&settings).await }));
        }
    }
}

/// Ends a session whose start did not go through (dropped armed).
struct EndSession {
    bridge: Arc<Bridge>,
    id: String,
    armed: bool,
}

impl Drop for EndSession {
    fn drop(&mut self) {
        if self.armed {
            self.bridge.end(&self.id);
        }
    }
}

/// Removes a shared-mode request's renaming when it ends, however it ends.
struct Renamed {
    session: Arc<Session>,
    key: String,
}

impl Drop for Renamed {
    fn drop(&mut self) {
        self.session.renamed.lock().expect("renamed").remove(&self.key);
    }
}

/// A request of a session being answered (the session is not idle meanwhile).
struct Active(Arc<Session>);

impl Active {
    fn new(session: &Arc<Session>) -> Active {
        session.active.fetch_add(1, Ordering::AcqRel);
        session.touch();
        Active(session.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Forgets a request in its child's table if the client goes away before the answer.
struct Forget {
    proc: Arc<Proc>,
    id: Value,
    armed: bool,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if self.armed {
            self.proc.forget(&self.id);
        }
    }
}
