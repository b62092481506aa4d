//! `mcpd update`: the daemon executes the binary installed in its place (same pid) and hands
//! every app, socket, log pipe and session over; a broken binary is refused.

use crate::common::{free_port, signal, wait_for, Home, MCPD};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemon's tag marker and room (see `mcpd_daemon::version`).
const TAG_MARKER: &[u8] = b"MCPD_BUILD_TAG=";
const TAG_LEN: usize = 32;

/// Copies `mcpd` and `mcpd-daemon` into `dir`, so that the daemon a test starts runs the copy
/// (which the test then replaces, as a package upgrade does).
fn install(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mcpd = dir.join("mcpd");
    std::fs::copy(MCPD, &mcpd).unwrap();
    std::fs::copy(Path::new(MCPD).with_file_name("mcpd-daemon"), dir.join("mcpd-daemon")).unwrap();
    mcpd
}

/// Installs over `dir/mcpd-daemon` (write a new file, rename it into place) a copy of the
/// daemon that reports version `0.1.0+TAG`.
fn install_tagged_daemon(dir: &Path, tag: &str) {
    let mut bytes = std::fs::read(Path::new(MCPD).with_file_name("mcpd-daemon")).unwrap();
    let at = bytes.windows(TAG_MARKER.len()).position(|w| w == TAG_MARKER).expect("the tag marker in the binary");
    let slot = &mut bytes[at + TAG_MARKER.len()..at + TAG_MARKER.len() + TAG_LEN];
    assert!(tag.len() < TAG_LEN && slot.iter().all(|&b| b == 0), "an empty tag slot");
    slot[..tag.len()].copy_from_slice(tag.as_bytes());
    replace(dir, &bytes);
}

/// Puts `bytes` in place of `dir/mcpd-daemon` by rename (the running daemon's file is not
/// changed: it keeps the old inode).
fn replace(dir: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let new = dir.join("mcpd-daemon.new");
    std::fs::write(&new, bytes).unwrap();
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&new, dir.join("mcpd-daemon")).unwrap();
}

/// Numbered lines, each written in two pieces (so a freeze may fall inside one), in bursts of
/// 500 (at most 10,000 a second) once `go.txt` exists; then it idles.
const FLOODER: &str = r#"
import os, sys, time
w = sys.stdout.buffer
n = int(sys.argv[1])
for _ in range(6000):
    if os.path.exists("go.txt"):
        break
    time.sleep(0.01)
for i in range(1, n + 1):
    w.write(b"n=%d" % i)
    w.flush()
    w.write(b"\n")
    if i % 500 == 0:
        w.flush()
        time.sleep(0.05)
w.flush()
time.sleep(100000)
"#;

/// Ready (sd_notify) after the number of seconds in `delay.txt`.
const SLOW_READY: &str = r#"
import os, socket, time
time.sleep(float(open("delay.txt").read()))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
time.sleep(100000)
"#;

const LINES: u64 = 40_000;

/// Requests to 127.0.0.1:`port` on a new connection each, until stopped: how many were
/// answered 200 and what went wrong otherwise.
struct PlainLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl PlainLoad {
    fn start(port: u16) -> PlainLoad {
        let (stop, ok) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, o) = (stop.clone(), ok.clone());
        let thread = std::thread::spawn(move || {
            let mut errors = Vec::new();
            // Bounded by the stop flag, which the test sets within its own deadlines.
            while !s.load(Ordering::Relaxed) {
                match get(port) {
                    Ok(()) => drop(o.fetch_add(1, Ordering::Relaxed)),
                    Err(e) => errors.push(e),
                }
            }
            errors
        });
        PlainLoad { stop, ok, thread }
    }

    fn wait_past(&self, more: u64) {
        let from = self.ok.load(Ordering::Relaxed);
        wait_for("requests to the plain server", Duration::from_secs(15), || {
            let now = self.ok.load(Ordering::Relaxed);
            if now >= from + more {
                Ok(())
            } else {
                Err(format!("{now} answered"))
            }
        });
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.thread.join().unwrap();
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

/// One request on a new connection to the fixture web app (which keeps connections open, so
/// the answer is read by its length).
fn get(port: u16) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    // Bounded by the read timeout and the answer's size.
    while !got.ends_with(b"\r\n\r\nok\n") && got.len() < 4096 {
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&got))),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if got.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&got).into_owned())
    }
}

fn row(home: &Home, name: &str) -> Value {
    home.app(name).unwrap_or_else(|| panic!("no app {name}"))
}

/// The numbers of the flooder's lines in its log, in order.
fn numbers(home: &Home) -> Vec<u64> {
    let text = std::fs::read_to_string(home.path().join("logs/flood.out.log")).unwrap_or_default();
    text.lines().filter_map(|l| l.rsplit("n=").next().and_then(|n| n.parse().ok())).collect()
}

#[test]
fn an_update_keeps_every_app_pid_session_socket_and_log_line() {
    let home = Home::new();
    let bin = home.file("bin");
    let mcpd = install(&bin);
    let (web_port, front_port) = (free_port(), free_port());
    home.write("web.py", crate::isolation::WEB_APP);
    home.write("flood.py", FLOODER);
    home.write("slow.py", SLOW_READY);
    home.write("delay.txt", "0");
    let node = crate::mcp::node_ready();
    let mcp_app = if node {
        format!(
            "[apps.mcp]\ncommand = \"node\"\nargs = [\"server.js\"]\ncwd = {:?}\n\
             front = {{ listen = \"127.0.0.1:{front_port}\", session_idle_timeout = \"30s\", drain_deadline = \"2m\" }}\n\
             ready = {{ mcp = \"http://127.0.0.1:{front_port}/mcp\" }}\n",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mcp-node")
        )
    } else {
        String::new()
    };
    let config = home.write(
        "apps.toml",
        &format!(
            "[apps.web]\ncommand = \"python3\"\nargs = [\"web.py\"]\nlisten = [\"tcp://127.0.0.1:{web_port}\"]\n\
             ready = {{ tcp = \"127.0.0.1:{web_port}\" }}\n\n\
             [apps.crash]\ncommand = \"sh\"\nargs = [\"-c\", \"exit 3\"]\nexp_backoff_restart_delay = \"100ms\"\n\
             exp_backoff_factor = 2.0\nexp_backoff_max = \"30s\"\nmax_restarts = 1000\n\n\
             [apps.slow]\ncommand = \"python3\"\nargs = [\"slow.py\"]\nready = \"notify\"\nready_timeout = \"60s\"\n\n\
             [apps.flood]\ncommand = \"python3\"\nargs = [\"flood.py\", \"{LINES}\"]\n\n{mcp_app}"
        ),
    );
    // The daemon runs the installed copy.
    let started = Command::new(&mcpd)
        .args(["start", config.to_str().unwrap(), "--no-wait"])
        .env("MCPD_HOME", home.path())
        .current_dir(home.file(""))
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let daemon = home.daemon_pid().expect("the daemon's pid");
    for app in ["web", "slow", "flood"].into_iter().chain(node.then_some("mcp")) {
        home.wait_app(app, "online", |r| r["status"] == "online");
    }
    let web_pid = home.pid("web");
    let flood_pid = home.pid("flood");
    let mcp_pid = node.then(|| home.pid("mcp"));
    // The crash loop is a few restarts into its backoff: the next delays are seconds long.
    home.wait_app("crash", "4 restarts into its backoff", |r| {
        r["restarts"].as_u64().unwrap_or(0) >= 4 && r["status"] == "waiting-restart"
    });
    // A reload whose new generation takes 4 s to get ready.
    std::fs::write(home.file("delay.txt"), "4").unwrap();
    let old_slow = home.pid("slow");
    let reload = home.command(&["reload", "slow"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let during = home.wait_app("slow", "its reload started", |r| r["reload"]["phase"] == "starting-new");
    let new_slow = during["reload"]["new_pid"].as_u64().unwrap() as u32;
    std::fs::write(home.file("go.txt"), "").unwrap();
    let mut load = node.then(|| crate::front::Load::start_with(&crate::front::mcp_node(), front_port, &[]));
    let mut calls = load.as_mut().map_or(0, |l| l.calls_past(0, 50));
    let plain = PlainLoad::start(web_port);
    plain.wait_past(20);
    let lines_before = numbers(&home).len() as u64;
    assert!(lines_before < LINES, "the flooder is still writing at the update ({lines_before} lines)");
    let crash_before = row(&home, "crash");
    // A follower of the flooder's log, across the update: following once it printed a line.
    let mut follower = home
        .command(&["logs", "-f", "flood", "--lines", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let followed = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let reading = {
        let (out, followed) = (follower.stdout.take().unwrap(), followed.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            // Ends when the follower's stdout closes.
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(n) = line.rsplit("n=").next().and_then(|n| n.parse().ok()) {
                    followed.lock().unwrap().push(n);
                }
            }
        })
    };
    wait_for("the follower's first line", Duration::from_secs(10), || {
        if followed.lock().unwrap().is_empty() {
            Err("none".into())
        } else {
            Ok(())
        }
    });

    install_tagged_daemon(&bin, "update-test");
    let t = Instant::now();
    let said = home.ok(&["update"]);
    let took = t.elapsed();
    eprintln!("update: {said} ({took:?})");
    assert!(said.contains("0.1.0 → 0.1.0+update-test") && said.contains(&format!("pid {daemon}")), "{said}");

    // The new daemon, same pid.
    let pong = home.ok(&["ping"]);
    assert!(pong.contains(&format!("pid {daemon} (mcpd 0.1.0+update-test)")), "{pong}");
    let version = home.ok(&["--version"]);
    assert!(version.contains(&format!("daemon 0.1.0+update-test (pid {daemon})")), "{version}");
    assert_eq!(home.daemon_pid(), Some(daemon));
    // The same processes serve.
    assert_eq!((home.pid("web"), home.pid("flood")), (web_pid, flood_pid), "the same app pids");
    if let Some(pid) = mcp_pid {
        assert_eq!(home.pid("mcp"), pid, "the same MCP server pid");
    }
    // The backoff goes on where it was: the restart count is kept and the next delay is long.
    let crash_after = row(&home, "crash");
    assert!(
        crash_after["restarts"].as_u64() >= crash_before["restarts"].as_u64(),
        "restarts kept: {crash_before} then {crash_after}"
    );
    let restarts = crash_after["restarts"].as_u64().unwrap();
    let next = home.wait_app("crash", "its next restart, and crash", |r| {
        r["restarts"].as_u64().unwrap_or(0) > restarts && r["status"] == "waiting-restart"
    });
    assert!(
        next["next_start_in_ms"].as_u64().unwrap_or(0) > 1000,
        "the backoff did not start over from 100 ms: {next}"
    );
    // The reload goes on: the same new generation gets ready, the old one drains.
    let after = home.wait_app("slow", "the reload done", |r| r["status"] == "online" && r["reload"].is_null());
    assert_eq!(after["pid"].as_u64(), Some(u64::from(new_slow)), "the reload's own new generation took over");
    wait_for("the old generation of the reload to exit", Duration::from_secs(15), || {
        if crate::common::alive(old_slow) {
            Err(format!("{old_slow} alive"))
        } else {
            Ok(())
        }
    });
    let out = reload.wait_with_output().unwrap();
    let told = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(told.contains("updated in place while this request waited"), "the waiting reload was told: {told}");

    // The follower goes on with the new daemon.
    assert!(crate::common::alive(follower.id()), "the follower still runs");
    // The flooder wrote its last line after the update: the follower prints it.
    wait_for("the follower to print the flooder's last line", Duration::from_secs(30), || {
        let last = followed.lock().unwrap().last().copied();
        if last == Some(LINES) {
            Ok(())
        } else {
            Err(format!("last n={last:?}"))
        }
    });
    signal(follower.id(), libc::SIGTERM);
    let said = follower.wait_with_output().unwrap();
    reading.join().unwrap();
    let err = String::from_utf8_lossy(&said.stderr);
    assert!(err.contains("updated in place; still following"), "{err}");

    // Every line of the flooder, exactly once, in order.
    wait_for("every flooder line in its log", Duration::from_secs(30), || {
        let n = numbers(&home).len() as u64;
        if n >= LINES {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    });
    let seen = numbers(&home);
    let expected: Vec<u64> = (1..=LINES).collect();
    if seen != expected {
        let dupes = seen.len() as u64 - LINES.min(seen.len() as u64);
        let first_bad = seen.iter().zip(&expected).position(|(a, b)| a != b);
        panic!("{} lines, {dupes} extra; first out of place at index {first_bad:?}", seen.len());
    }

    plain.wait_past(20);
    let (answered, errors) = plain.finish();
    assert!(
        errors.is_empty(),
        "{} of {} requests to the plain server failed: {:?}",
        errors.len(),
        answered,
        &errors[..errors.len().min(5)]
    );
    if let Some(mut load) = load.take() {
        calls = load.calls_past(calls, 100);
        let stats = load.finish();
        assert_eq!(
            (stats["failed"].as_u64(), stats["lost"].as_u64()),
            (Some(0), Some(0)),
            "{stats} after {calls} calls"
        );
    }
    // The guard still watches the apps: a killed daemon takes them with it.
    signal(daemon, libc::SIGKILL);
    wait_for("the apps to end with the killed daemon", Duration::from_secs(10), || {
        let left: Vec<u32> = [web_pid, flood_pid, new_slow].into_iter().filter(|p| crate::common::alive(*p)).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?} alive"))
        }
    });
}

#[test]
fn a_broken_binary_is_refused_and_the_old_daemon_keeps_serving() {
    let home = Home::new();
    let bin = home.file("bin");
    let mcpd = install(&bin);
    let port = free_port();
    home.write("web.py", crate::isolation::WEB_APP);
    let config = home.write(
        "apps.toml",
        &format!("[apps.web]\ncommand = \"python3\"\nargs = [\"web.py\"]\nlisten = [\"tcp://127.0.0.1:{port}\"]\n"),
    );
    let started =
        Command::new(&mcpd).args(["start", config.to_str().unwrap()]).env("MCPD_HOME", home.path()).output().unwrap();
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let (daemon, web) = (home.daemon_pid().unwrap(), home.pid("web"));
    let plain = PlainLoad::start(port);
    plain.wait_past(10);
    // A binary that exits 1 at once.
    replace(&bin, b"#!/bin/sh\necho broken >&2\nexit 1\n");
    let said = home.fails(&["update"]);
    assert!(said.contains("--check-handover failed") && said.contains("broken"), "{said}");
    assert!(said.contains("every app is unchanged"), "{said}");
    // Not even frozen: the same daemon and app serve.
    let pong = home.ok(&["ping"]);
    assert!(pong.contains(&format!("pid {daemon} (mcpd 0.1.0)")), "{pong}");
    assert_eq!(home.pid("web"), web);
    plain.wait_past(10);
    let (answered, errors) = plain.finish();
    assert!(errors.is_empty(), "{} of {answered} requests failed: {errors:?}", errors.len());
    // A binary that takes the sample but not the real hand-over: the apps, frozen, are taken
    // back by the old daemon.
    replace(
        &bin,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --check-handover ]; then input=$(cat); case \"$input\" in *'\"apps\":[]'*) echo 'handover-ok 1'; exit 0;; esac; echo 'cannot read it' >&2; exit 1; fi\nexec {:?} \"$@\"\n",
            Path::new(MCPD).with_file_name("mcpd-daemon")
        )
        .as_bytes(),
    );
    let plain = PlainLoad::start(port);
    plain.wait_past(10);
    let said = home.fails(&["update"]);
    assert!(said.contains("cannot read it") && said.contains("the old daemon keeps running"), "{said}");
    assert_eq!((home.daemon_pid(), home.pid("web")), (Some(daemon), web));
    plain.wait_past(10);
    let (answered, errors) = plain.finish();
    assert!(errors.is_empty(), "{} of {answered} requests failed: {errors:?}", errors.len());
    // Its log pipe was taken back too: the app's output still reaches its log.
    home.ok(&["stop", "web"]);
}

#[test]
fn under_a_service_manager_the_update_says_reloading_then_ready_from_the_same_pid() {
    use nix::sys::socket::{recvmsg, setsockopt, sockopt::PassCred, ControlMessageOwned, MsgFlags, UnixAddr};
    let home = Home::new();
    let bin = home.file("bin");
    let mcpd = install(&bin);
    let manager_path = home.file("manager.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&manager_path).unwrap();
    setsockopt(&manager, PassCred, &true).unwrap();
    manager.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut daemon = Command::new(&mcpd)
        .arg("daemon")
        .env("MCPD_HOME", home.path())
        .env("NOTIFY_SOCKET", &manager_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let main_pid = daemon.id();
    let mut messages: Vec<(u32, String)> = Vec::new();
    let recv = |messages: &mut Vec<(u32, String)>| -> String {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        let msg = recvmsg::<UnixAddr>(manager.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty())
            .unwrap_or_else(|e| panic!("no further message from the daemon within 15 s ({e}); so far: {messages:?}"));
        let pid = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid() as u32),
                _ => None,
            })
            .unwrap_or(0);
        let n = msg.bytes;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        messages.push((pid, text.clone()));
        text
    };
    while !recv(&mut messages).contains("READY=1") {}
    home.wait_socket();
    home.ok(&["start", "--name", "sleeper", "--", "sleep", "infinity"]);
    let app = home.pid("sleeper");
    install_tagged_daemon(&bin, "managed");
    let said = home.ok(&["update"]);
    assert!(said.contains("0.1.0+managed"), "{said}");
    let reloading = loop {
        let text = recv(&mut messages);
        if text.contains("RELOADING=1") {
            break text;
        }
    };
    assert!(reloading.contains("MONOTONIC_USEC="), "systemd needs the time with RELOADING=1: {reloading}");
    while !recv(&mut messages).contains("READY=1") {}
    let senders: Vec<u32> = messages.iter().map(|(pid, _)| *pid).collect();
    assert!(senders.iter().all(|p| *p == main_pid), "every message came from MAINPID {main_pid}: {messages:?}");
    assert_eq!(home.pid("sleeper"), app);
    assert!(home.ok(&["ping"]).contains("0.1.0+managed"));
    signal(main_pid, libc::SIGTERM);
    let status = daemon.wait().unwrap();
    assert!(status.success(), "a clean exit after the drain: {status}");
}

#[test]
fn a_log_file_that_takes_no_writes_refuses_the_update_and_loses_no_line() {
    let home = Home::new();
    let fifo = home.file("out.fifo");
    crate::isolation::mkfifo(&fifo);
    // The FIFO's reader: copies into a file until the test stops it by pid.
    let copy = home.file("copied.log");
    let mut reader = Command::new("sh").args(["-c", &format!("exec cat {:?} > {:?}", fifo, copy)]).spawn().unwrap();
    home.write("flood.py", FLOODER);
    let config = home.write(
        "apps.toml",
        &format!("[apps.flood]\ncommand = \"python3\"\nargs = [\"flood.py\", \"{LINES}\"]\nout_file = {fifo:?}\n"),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    std::fs::write(home.file("go.txt"), "").unwrap();
    let count = || std::fs::read_to_string(&copy).unwrap_or_default().lines().count();
    wait_for("the first lines through the FIFO", Duration::from_secs(10), || {
        if count() > 0 {
            Ok(())
        } else {
            Err("none".into())
        }
    });
    // The reader stops: the FIFO fills and the daemon's write to it cannot end.
    signal(reader.id(), libc::SIGSTOP);
    let row = home.wait_app("flood", "a stuck write in its log error", |r| {
        r["log_error"].as_str().is_some_and(|e| e.contains("has not finished"))
    });
    eprintln!("list: {}", row["log_error"]);
    let said = home.fails(&["update"]);
    assert!(said.contains("flood") && said.contains("have not finished a write"), "{said}");
    assert!(home.ok(&["ping"]).contains("(mcpd 0.1.0)"));
    signal(reader.id(), libc::SIGCONT);
    wait_for("every line through the FIFO", Duration::from_secs(30), || {
        let n = count();
        if n as u64 >= LINES {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    });
    let text = std::fs::read_to_string(&copy).unwrap();
    let seen: Vec<u64> = text.lines().filter_map(|l| l.rsplit("n=").next().and_then(|n| n.parse().ok())).collect();
    assert_eq!(seen, (1..=LINES).collect::<Vec<_>>(), "every line once, in order");
    // Once the file takes writes again, the update goes through.
    assert!(home.ok(&["update"]).contains("updated in place"));
    home.ok(&["stop", "flood"]);
    signal(reader.id(), libc::SIGTERM);
    let _ = reader.wait();
}

/// Ready by PM2's `process.send('ready')`; on the `'shutdown'` message, says so in a file and
/// exits 0; if its IPC channel closes, says that instead and exits 3.
const IPC_APP: &str = r#"
const fs = require('fs');
process.on('message', (m) => {
  if (m === 'shutdown') { fs.writeFileSync('got-shutdown.txt', String(process.pid)); process.exit(0); }
});
process.on('disconnect', () => { fs.writeFileSync('disconnected.txt', String(process.pid)); process.exit(3); });
process.send('ready');
setInterval(() => {}, 1000);
"#;

#[test]
fn an_apps_ipc_channel_and_open_files_limit_survive_the_update() {
    if !crate::mcp::node_ready() {
        return;
    }
    let home = Home::new();
    let bin = home.file("bin");
    let mcpd = install(&bin);
    home.write("ipc.js", IPC_APP);
    let config = home.write(
        "apps.toml",
        "[apps.ipc]\ncommand = \"node\"\nargs = [\"ipc.js\"]\nready = \"ipc\"\nshutdown_with_message = true\n\n\
         [apps.limits]\ncommand = \"sh\"\nargs = [\"-c\", \"ulimit -Sn > nofile.$$.txt; exec sleep 1000\"]\n",
    );
    // The daemon starts with a soft open-files limit of 1024, which it raises for itself; apps
    // get 1024.
    let started = Command::new("sh")
        .args(["-c", &format!("ulimit -Sn 1024 && exec {:?} start {:?}", mcpd, config)])
        .env("MCPD_HOME", home.path())
        .current_dir(home.file(""))
        .output()
        .unwrap();
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let ipc = home.pid("ipc");
    let nofile = |pid: u32| -> String {
        wait_for("the app's open-files limit", Duration::from_secs(10), || {
            std::fs::read_to_string(home.file(&format!("nofile.{pid}.txt"))).map_err(|e| e.to_string())
        })
        .trim()
        .to_string()
    };
    assert_eq!(nofile(home.pid("limits")), "1024");
    install_tagged_daemon(&bin, "ipc");
    assert!(home.ok(&["update"]).contains("0.1.0+ipc"));
    // An app started by the new daemon gets the limit apps got before.
    home.ok(&["restart", "limits"]);
    assert_eq!(nofile(home.pid("limits")), "1024", "the apps' open-files limit after the update");
    // The IPC channel is whole: the shutdown message reaches the app.
    assert_eq!(home.pid("ipc"), ipc);
    home.ok(&["stop", "ipc"]);
    assert!(!home.file("disconnected.txt").exists(), "the app saw its IPC channel close");
    let got = std::fs::read_to_string(home.file("got-shutdown.txt")).unwrap_or_default();
    assert_eq!(got, ipc.to_string(), "the 'shutdown' message went over the handed-over channel");
}
