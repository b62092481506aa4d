//! Update in place (`mcpd update`): the daemon re-executes its binary at the same pid and hands
//! the new daemon everything the apps depend on.
//!
//! The hand-over is a JSON document in a memfd whose number is in [`FD_ENV`]; every fd it
//! names (the control socket, the home's lock, the guard's pipe, each generation's output
//! pipes, notify socket and IPC channel, `listen` sockets, fronts' public sockets and their
//! client connections) stays open across `execve` under the same number. The apps stay the
//! daemon's children (same pid), so the new daemon waits for them as the old one did.
//!
//! The document is versioned ([`VERSION`]): a daemon reads every older version it knows (new
//! fields carry defaults) and refuses a newer one. Before anything is frozen the new binary is
//! run with `--check-handover` on a sample; after freezing, on the real document; only then is
//! it executed. If either check or the exec fails, the old daemon adopts its own hand-over
//! again and keeps serving.

use crate::handover::{set_cloexec, take, FrontState, GuardState};
use crate::supervisor::AppState;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The hand-over's format version.
pub const VERSION: u32 = 1;
/// Names the memfd holding the hand-over in the new daemon's environment.
pub const FD_ENV: &str = "MCPD_HANDOVER_FD";
/// `mcpd-daemon --check-handover` prints this, then the version it reads, on success.
pub const CHECK_OK: &str = "handover-ok";

/// What the old daemon hands over.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Handover {
    pub version: u32,
    /// The old daemon's version, for the answer to `mcpd update`.
    pub from: String,
    /// When the first daemon of this line started (uptime survives updates).
    #[serde(with = "crate::handover::mono")]
    pub started: Instant,
    /// The control socket (listening).
    pub control: RawFd,
    /// The connection that asked for the update: the new daemon answers it.
    pub reply: Option<RawFd>,
    /// `[daemon] http`, listening.
    pub http: Option<RawFd>,
    /// The home's lock.
    pub lock: RawFd,
    pub guard: Option<GuardState>,
    /// The saved and boot apps were started (READY=1 was sent).
    pub booted: bool,
    /// The resource sampling interval.
    pub sample_every_ms: u64,
    /// The open-files limit apps get (the daemon raised its own: the new daemon cannot tell
    /// what it was).
    #[serde(default)]
    pub apps_nofile: u64,
    /// What `[daemon] http` listens on, when its socket is handed over.
    #[serde(default)]
    pub http_addr: Option<mcpd_core::config::ListenAddr>,
    pub apps: Vec<AppState>,
    pub fronts: Vec<FrontState>,
    /// The binary and arguments to execute.
    pub exe: PathBuf,
    pub args: Vec<String>,
}

impl Handover {
    /// The apps whose log files did not take their last lines in time (a stuck disk).
    pub fn stalled(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .apps
            .iter()
            .filter(|a| a.gens.iter().any(|g| !g.stdout.flushed || !g.stderr.flushed))
            .map(|a| a.config.name.to_string())
            .collect();
        names.dedup();
        names
    }

    /// Every fd the document names.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.control, self.lock];
        fds.extend(self.reply);
        fds.extend(self.http);
        fds.extend(self.guard.as_ref().map(|g| g.pipe));
        for app in &self.apps {
            fds.extend(&app.listen);
            for g in &app.gens {
                fds.extend([g.stdout.fd, g.stderr.fd].into_iter().filter(|fd| *fd >= 0));
                fds.extend(g.notify.as_ref().map(|n| n.1));
                fds.extend(g.ipc);
            }
        }
        for f in &self.fronts {
            fds.push(f.public);
            fds.extend(f.connections.iter().map(|c| c.fd));
        }
        fds
    }
}

/// Writes `json` to a memfd (not close-on-exec) positioned at its start.
pub(crate) fn to_memfd(json: &[u8]) -> std::io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    // SAFETY: memfd_create with a valid C string; flags 0 (kept across exec).
    let fd = unsafe { libc::memfd_create(c"mcpd-handover".as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just made and is owned by nothing else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(json)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok(file.into())
}

/// Reads the hand-over named by [`FD_ENV`], if any, and removes the variable (so apps started
/// later do not inherit it). Call while single-threaded.
pub(crate) fn inherited() -> Option<Result<Handover, String>> {
    use std::io::Read;
    let value = std::env::var_os(FD_ENV)?;
    // The caller is single-threaded: nothing else reads the environment.
    std::env::remove_var(FD_ENV);
    let fd: RawFd = match value.to_str().and_then(|v| v.parse().ok()).filter(|fd| *fd > 2) {
        Some(fd) => fd,
        None => return Some(Err(format!("{FD_ENV}={}: not an fd", value.to_string_lossy()))),
    };
    let mut file = match take(fd) {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => return Some(Err(format!("{FD_ENV}={fd}: {e}"))),
    };
    let mut json = Vec::new();
    if let Err(e) = file.read_to_end(&mut json) {
        return Some(Err(format!("cannot read the hand-over: {e}")));
    }
    let parsed = parse(&json);
    if let Ok(h) = &parsed {
        // No app started from here on inherits a handed-over fd, whether or not it is taken
        // over (each is made close-on-exec again when taken).
        for fd in h.fds() {
            let _ = set_cloexec(fd, true);
        }
    }
    Some(parsed)
}

/// Parses a hand-over document of this version or an older one.
pub(crate) fn parse(json: &[u8]) -> Result<Handover, String> {
    #[derive(Deserialize)]
    struct Head {
        version: u32,
    }
    let head: Head = serde_json::from_slice(json).map_err(|e| format!("not a hand-over: {e}"))?;
    if head.version > VERSION {
        return Err(format!(
            "hand-over version {} is newer than this daemon's {VERSION}: a daemon cannot be downgraded in place",
            head.version
        ));
    }
    serde_json::from_slice(json).map_err(|e| format!("cannot read the hand-over (version {}): {e}", head.version))
}

/// A hand-over with nothing in it, for the check run before anything is frozen.
pub(crate) fn sample() -> Vec<u8> {
    let sample = Handover {
        version: VERSION,
        from: crate::version(),
        started: Instant::now(),
        control: -1,
        reply: None,
        http: None,
        lock: -1,
        guard: None,
        booted: true,
        sample_every_ms: 1000,
        apps_nofile: 0,
        http_addr: None,
        apps: Vec::new(),
        fronts: Vec::new(),
        exe: PathBuf::new(),
        args: Vec::new(),
    };
    serde_json::to_vec(&sample).unwrap_or_default()
}

/// `mcpd-daemon --check-handover`: reads a hand-over on stdin, says whether this binary can take
/// it over, and exits (0 when it can).
pub fn check_main() -> std::process::ExitCode {
    use std::io::Read;
    let mut json = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut json) {
        eprintln!("mcpd-daemon: cannot read the hand-over: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match parse(&json) {
        Ok(h) => {
            println!("{CHECK_OK} {VERSION} {} apps {}", crate::version(), h.apps.len());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcpd-daemon: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `exe --check-handover` with `json` on its stdin; Ok with what it printed if it takes
/// it. Blocking (a thread of its own), bounded by [`CHECK_TIMEOUT`].
/// `leaders` are the children the reapers leave alone: the check's process is one while it runs.
pub(crate) fn check_binary(
    exe: &std::path::Path,
    json: Vec<u8>,
    leaders: &std::sync::Mutex<std::collections::HashSet<u32>>,
) -> Result<String, String> {
    use std::process::{Command, Stdio};
    let mut held = leaders.lock().expect("leaders lock");
    let child = Command::new(exe)
        .arg("--check-handover")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let pid = child.id();
    held.insert(pid);
    drop(held);
    let result = run_check(exe, json, child, pid);
    leaders.lock().expect("leaders lock").remove(&pid);
    result
}

fn run_check(exe: &std::path::Path, json: Vec<u8>, mut child: std::process::Child, pid: u32) -> Result<String, String> {
    use std::io::Write;
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(&json);
        }
    });
    // Bounded: a binary that hangs is killed and refused.
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(CHECK_TIMEOUT) {
        Ok(output) => output.map_err(|e| format!("cannot run {}: {e}", exe.display()))?,
        Err(_) => {
            // SAFETY: kill(2) of our own unreaped child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = waiter.join();
            let _ = writer.join();
            return Err(format!("{} --check-handover did not answer within {:?}", exe.display(), CHECK_TIMEOUT));
        }
    };
    let _ = waiter.join();
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if output.status.success() && stdout.starts_with(CHECK_OK) {
        return Ok(stdout);
    }
    let said = [stderr, stdout].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ");
    Err(format!(
        "{} --check-handover failed ({}){}",
        exe.display(),
        output.status,
        if said.is_empty() { String::new() } else { format!(": {}", said.chars().take(400).collect::<String>()) }
    ))
}

/// How long the new binary has to check a hand-over.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Executes `exe` with the hand-over in `memfd`; returns only if the exec failed (then every
/// fd is close-on-exec again).
pub(crate) fn exec(handover: &Handover, memfd: &OwnedFd) -> std::io::Error {
    use std::os::unix::ffi::OsStrExt;
    let fds = handover.fds();
    for &fd in fds.iter().chain([&memfd.as_raw_fd()]) {
        if let Err(e) = set_cloexec(fd, false) {
            restore(&fds, memfd);
            return std::io::Error::other(format!("cannot keep fd {fd} open across the exec: {e}"));
        }
    }
    let c = |b: &[u8]| std::ffi::CString::new(b).map_err(|_| std::io::Error::other("a NUL byte in an argument"));
    let build = || -> std::io::Result<(std::ffi::CString, Vec<std::ffi::CString>, Vec<std::ffi::CString>)> {
        let exe = c(handover.exe.as_os_str().as_bytes())?;
        let mut argv = vec![exe.clone()];
        for a in &handover.args {
            argv.push(c(a.as_bytes())?);
        }
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os() {
            if k == FD_ENV || k == mcpd_core::lock::LOCK_FD_ENV {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            env.push(c(&kv)?);
        }
        env.push(c(format!("{FD_ENV}={}", memfd.as_raw_fd()).as_bytes())?);
        env.push(c(format!("{}={}", mcpd_core::lock::LOCK_FD_ENV, handover.lock).as_bytes())?);
        Ok((exe, argv, env))
    };
    let error = match build() {
        Ok((exe, argv, env)) => {
            let argv_ptrs: Vec<*const libc::c_char> =
                argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
            let env_ptrs: Vec<*const libc::c_char> =
                env.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
            // SAFETY: NUL-terminated arrays of valid C strings that outlive the call.
            unsafe { libc::execve(exe.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
            std::io::Error::last_os_error()
        }
        Err(e) => e,
    };
    restore(&fds, memfd);
    error
}

fn restore(fds: &[RawFd], memfd: &OwnedFd) {
    for &fd in fds.iter().chain([&memfd.as_raw_fd()]) {
        let _ = set_cloexec(fd, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_hand_over_is_refused_and_an_older_field_set_is_read() {
        let json = sample();
        let parsed = parse(&json).expect("the sample parses");
        assert_eq!(parsed.version, VERSION);
        let newer = String::from_utf8(json).unwrap().replacen(&format!("\"version\":{VERSION}"), "\"version\":99", 1);
        let e = parse(newer.as_bytes()).unwrap_err();
        assert!(e.contains("newer"), "{e}");
        assert!(parse(b"{}").is_err());
    }
}
