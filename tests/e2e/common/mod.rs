//! A temporary mcpd home, a way to run the real `mcpd` binary in it, and waiting with deadlines.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");

/// How long one `mcpd` invocation may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `probe` until it returns `Ok`, or fails after `timeout` saying what it waited for
/// and what it saw last.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let poll_interval = Duration::from_millis(20);
    loop {
        match probe() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(poll_interval),
        }
    }
}

/// Whether a pid names a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Whether /proc has any entry (zombie included) for a pid.
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends a signal to one pid.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) touches no memory of ours.
    unsafe { libc::kill(pid as i32, sig) };
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends one raw HTTP/1.1 request (saying `Connection: close`) to 127.0.0.1:`port`; returns
/// the status and the whole answer, headers included.
pub fn http(port: u16, request: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text.get(9..12).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not HTTP: {text:?}"))?;
    Ok((status, text))
}

/// The newest modification time of the `.rs` files under `dir`.
fn newest_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_source(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            entry.metadata().and_then(|m| m.modified()).unwrap_or(newest)
        } else {
            continue;
        };
        newest = newest.max(time);
    }
    newest
}

/// `mcpd daemon` execs the `mcpd-daemon` beside `mcpd`, which `cargo test` does not build:
/// it must exist and be newer than the sources it is built from.
fn daemon_binary_is_current() {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let verdict = CHECKED.get_or_init(|| {
        let daemon = Path::new(MCPD).with_file_name("mcpd-daemon");
        let built =
            std::fs::metadata(&daemon).and_then(|m| m.modified()).map_err(|e| format!("{}: {e}", daemon.display()))?;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let newest = newest_source(&root.join("daemon/src")).max(newest_source(&root.join("src")));
        if built < newest {
            return Err(format!("{} is older than its sources", daemon.display()));
        }
        Ok(())
    });
    if let Err(why) = verdict {
        panic!("{why}: `mcpd daemon` execs it and `cargo test` does not build it; run `cargo build --workspace` first");
    }
}

/// A temporary MCPD_HOME with its own daemon, stopped when dropped.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A fresh home in a temporary directory.
    pub fn new() -> Home {
        daemon_binary_is_current();
        let dir = tempfile::Builder::new().prefix("mcpd-e2e").tempdir().expect("tempdir");
        Home { dir }
    }

    /// The home directory (MCPD_HOME).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A path in the test's scratch directory (beside the home).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a scratch file and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.file(name);
        std::fs::write(&path, text).expect("write scratch file");
        path
    }

    /// A `mcpd` command in this home, run from the scratch directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(MCPD);
        command.args(args).env("MCPD_HOME", self.path()).current_dir(self.dir.path());
        command
    }

    /// Runs `mcpd ARGS` to completion (failing the test if it hangs).
    pub fn run(&self, args: &[&str]) -> Output {
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mcpd");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(output) => output.expect("wait for mcpd"),
            Err(_) => {
                signal(pid, libc::SIGKILL);
                panic!("`mcpd {}` did not finish within {COMMAND_TIMEOUT:?}", args.join(" "));
            }
        }
    }

    /// Runs `mcpd ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`mcpd {}` failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `mcpd ARGS`, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`mcpd {}` should have failed:\nstdout: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `mcpd list --json`.
    pub fn list(&self) -> Vec<Value> {
        let text = self.ok(&["list", "--json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("list --json is not JSON ({e}): {text}"))
    }

    /// One app's row from `list --json`, if defined.
    pub fn app(&self, name: &str) -> Option<Value> {
        self.list().into_iter().find(|a| a["name"] == name)
    }

    /// Waits until the app's row satisfies `check`; returns that row.
    pub fn wait_app(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        wait_for(&format!("{name}: {what}"), Duration::from_secs(15), || match self.app(name) {
            Some(row) if check(&row) => Ok(row),
            other => Err(format!("{other:?}")),
        })
    }

    /// `mcpd describe NAME --json`.
    pub fn describe(&self, name: &str) -> Value {
        let text = self.ok(&["describe", name, "--json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("describe --json is not JSON ({e}): {text}"))
    }

    /// The pid of the app's running generation.
    pub fn pid(&self, name: &str) -> u32 {
        let row = self.app(name).unwrap_or_else(|| panic!("no app {name}"));
        row["pid"].as_u64().unwrap_or_else(|| panic!("{name} has no pid: {row}")) as u32
    }

    /// Waits until a daemon started by the test itself listens. Until then a CLI call would
    /// start a second daemon in the background, which would race the test's own for the home.
    pub fn wait_socket(&self) {
        let socket = self.path().join("mcpd.sock");
        wait_for("the daemon's control socket", Duration::from_secs(15), || {
            std::os::unix::net::UnixStream::connect(&socket).map(drop).map_err(|e| e.to_string())
        });
    }

    /// The daemon's pid, as written in its lock file.
    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.path().join("daemon.lock")).ok()?.trim().parse().ok()
    }

    /// Waits for a pid that an app writes to a scratch file.
    pub fn read_pid_file(&self, name: &str) -> u32 {
        let path = self.file(name);
        wait_for(&format!("a pid in {}", path.display()), Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            text.trim().parse::<u32>().map_err(|_| format!("{text:?}"))
        })
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let pid = self.daemon_pid();
        if self.path().join("mcpd.sock").exists() {
            let _ = self.run(&["kill"]);
        }
        if let Some(pid) = pid.filter(|p| alive(*p)) {
            // The daemon did not stop by itself; its guard then ends the apps.
            signal(pid, libc::SIGKILL);
        }
    }
}
