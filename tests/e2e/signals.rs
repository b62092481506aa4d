//! Signals to the daemon (the README's "Signals" table): HUP reopens the log files, USR1, USR2
//! and PIPE are ignored, QUIT drains like TERM. None of them ends an app undrained.

use crate::common::{alive, signal, wait_for, Home};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// The daemon's own log files (`mcpd-daemon.YYYY-MM-DD.log`).
fn daemon_logs(home: &Home) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(home.path().join("logs"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    found.retain(|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        name.starts_with("mcpd-daemon.") && name.ends_with(".log")
    });
    found.sort();
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until the daemon's log has a line containing `text`; fails at once if the daemon
/// (`pid`) is gone.
fn wait_daemon_log(home: &Home, pid: u32, text: &str) {
    wait_for(&format!("the daemon's log to say {text:?}"), Duration::from_secs(10), || {
        assert!(alive(pid), "the daemon (pid {pid}) is gone");
        let logs: String = daemon_logs(home).iter().map(|p| read(p)).collect();
        if logs.contains(text) {
            Ok(())
        } else {
            Err(logs.lines().rev().take(3).collect::<Vec<_>>().join(" | "))
        }
    });
}

/// Sends `sig` to the daemon of a home running one app; the daemon must log `logged`, and it
/// and the app must still run, the app with the same pid.
fn survives(sig: i32, logged: &str) {
    let home = Home::new();
    home.ok(&["start", "--name", "calm", "--", "sleep", "infinity"]);
    let app = home.pid("calm");
    let daemon = home.daemon_pid().expect("the daemon's pid");
    signal(daemon, sig);
    wait_daemon_log(&home, daemon, logged);
    let out = home.ok(&["ping"]);
    assert!(out.contains(&format!("daemon pid {daemon}")), "the same daemon answers: {out}");
    assert_eq!(home.pid("calm"), app, "the app was not restarted");
    assert!(alive(app), "the app still runs");
}

#[test]
fn sighup_leaves_the_daemon_and_its_apps_running() {
    survives(libc::SIGHUP, "SIGHUP: reopened");
}

#[test]
fn sigusr1_is_ignored_with_a_log_line() {
    survives(libc::SIGUSR1, "SIGUSR1: ignored");
}

#[test]
fn sigusr2_is_ignored_with_a_log_line() {
    survives(libc::SIGUSR2, "SIGUSR2: ignored");
}

#[test]
fn sigpipe_is_ignored() {
    let home = Home::new();
    home.ok(&["start", "--name", "calm", "--", "sleep", "infinity"]);
    let app = home.pid("calm");
    let daemon = home.daemon_pid().expect("the daemon's pid");
    signal(daemon, libc::SIGPIPE);
    // The answer comes after the kernel delivered the signal: had it a default action, the
    // daemon would be gone by then.
    let out = home.ok(&["ping"]);
    assert!(out.contains(&format!("daemon pid {daemon}")), "the same daemon answers: {out}");
    assert!(alive(daemon) && alive(app));
    assert_eq!(home.pid("calm"), app);
}

#[test]
fn sighup_reopens_app_logs_renamed_aside_and_the_daemon_log() {
    let home = Home::new();
    home.ok(&[
        "start",
        "--name",
        "chatty",
        "--",
        "sh",
        "-c",
        "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.02; done",
    ]);
    let live = home.path().join("logs/chatty.out.log");
    let aside = home.path().join("logs/chatty.out.log.1");
    wait_for("the app's first lines", Duration::from_secs(10), || {
        let text = read(&live);
        if text.lines().count() >= 3 {
            Ok(())
        } else {
            Err(text)
        }
    });
    let daemon_log = daemon_logs(&home).pop().expect("the daemon's log file");
    let daemon_aside = daemon_log.with_extension("log.1");
    // What logrotate does before its postrotate `kill -HUP`.
    std::fs::rename(&live, &aside).unwrap();
    std::fs::rename(&daemon_log, &daemon_aside).unwrap();
    let daemon = home.daemon_pid().expect("the daemon's pid");
    signal(daemon, libc::SIGHUP);
    // New lines go to a fresh file at the original path...
    wait_for("a fresh log file at the original path", Duration::from_secs(10), || {
        let text = read(&live);
        if text.lines().count() >= 2 {
            Ok(())
        } else {
            Err(format!("{:?}", text))
        }
    });
    // ...and none to the renamed one any more: it stays the same while the fresh one grows.
    let before = read(&aside);
    let fresh = read(&live).lines().count();
    wait_for("more lines in the fresh file", Duration::from_secs(10), || {
        let now = read(&live).lines().count();
        if now >= fresh + 5 {
            Ok(())
        } else {
            Err(format!("{now} lines"))
        }
    });
    assert_eq!(read(&aside), before, "the renamed file got no line after the reopen");
    assert!(before.lines().count() >= 3, "{before}");
    let last_aside: u64 = before.lines().last().and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap();
    let first_fresh: u64 =
        read(&live).lines().next().and_then(|l| l.rsplit(' ').next()?.parse().ok()).expect("a numbered line");
    assert_eq!(first_fresh, last_aside + 1, "no line lost between the two files");
    // The daemon's own log is reopened too, and says so in the fresh file.
    wait_for("the daemon's log reopened", Duration::from_secs(10), || {
        let text = read(&daemon_log);
        if text.contains("SIGHUP: reopened") {
            Ok(())
        } else {
            Err(text)
        }
    });
    assert!(alive(daemon));
    home.ok(&["stop", "chatty"]);
}

/// A daemon the test runs in the foreground; killed by its pid if the test ends early.
struct Foreground(Child);

impl Drop for Foreground {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            signal(self.0.id(), libc::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// An app that writes `drained-PID.txt` with the signal it got, then exits 0.
const DRAINS: &str = r#"
import os, signal, sys, time
def drain(sig, _):
    open(f"drained-{os.getpid()}.txt", "w").write(signal.Signals(sig).name)
    sys.exit(0)
signal.signal(signal.SIGUSR1, drain)
open("started.txt", "w").write(str(os.getpid()))
while True:
    time.sleep(1)
"#;

#[test]
fn sigquit_drains_every_app_and_exits_0() {
    let home = Home::new();
    home.write("drains.py", DRAINS);
    let config = home.write(
        "q.toml",
        "[apps.q]\ncommand = \"python3\"\nargs = [\"drains.py\"]\nkill_signal = \"SIGUSR1\"\nkill_timeout = \"10s\"\n",
    );
    let mut daemon = Foreground(
        home.command(&["daemon", "--start", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    home.wait_socket();
    let app = home.read_pid_file("started.txt");
    home.wait_app("q", "online", |r| r["status"] == "online" && r["pid"] == app);
    signal(daemon.0.id(), libc::SIGQUIT);
    let status = wait_for("the daemon to exit after SIGQUIT", Duration::from_secs(20), || {
        daemon.0.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "still running".to_string())
    });
    assert!(status.success(), "a clean exit after the drain: {status}");
    let drained = read(&home.file(&format!("drained-{app}.txt")));
    assert_eq!(drained, "SIGUSR1", "the app got its kill_signal and drained");
    assert!(!alive(app));
}

/// `SigIgn` and `SigBlk` of /proc/PID/status, as hex masks.
fn ignored_and_blocked(status: &str) -> (String, String) {
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
    };
    (field("SigIgn:"), field("SigBlk:"))
}

/// A daemon started from a shell that ignored signals (a `&` job ignores INT and QUIT,
/// `nohup` HUP; here ALRM, TSTP and TTOU, which the daemon has no handler for) must not
/// pass the ignoring on: its apps start with every signal at its default, none blocked, as
/// under systemd.
#[test]
fn apps_start_with_default_signals_whatever_the_daemon_inherited() {
    use std::os::unix::process::CommandExt;
    let home = Home::new();
    let config = home.write(
        "s.toml",
        "[apps.s]\ncommand = \"sh\"\nargs = [\"-c\", \"cat /proc/self/status > status.txt; exec sleep infinity\"]\n",
    );
    let mut command = home.command(&["daemon", "--start", config.to_str().unwrap()]);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: signal() is async-signal-safe; it only changes dispositions in the new process.
    unsafe {
        command.pre_exec(|| {
            for sig in [libc::SIGALRM, libc::SIGTSTP, libc::SIGTTOU] {
                libc::signal(sig, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    let daemon = Foreground(command.spawn().unwrap());
    home.wait_socket();
    let (daemon_ignores, _) = ignored_and_blocked(&read(Path::new(&format!("/proc/{}/status", daemon.0.id()))));
    let status = wait_for("the app to write its status", Duration::from_secs(10), || {
        let text = read(&home.file("status.txt"));
        if text.contains("SigBlk:") {
            Ok(text)
        } else {
            Err("no status yet".to_string())
        }
    });
    assert_ne!(
        u64::from_str_radix(&daemon_ignores, 16).unwrap_or(0) & (1 << (libc::SIGALRM - 1)),
        0,
        "the daemon inherited the ignored SIGALRM (SigIgn {daemon_ignores}): the test's premise"
    );
    let (ignored, blocked) = ignored_and_blocked(&status);
    assert_eq!(u64::from_str_radix(&ignored, 16), Ok(0), "the app ignores no signal (SigIgn {ignored})");
    assert_eq!(u64::from_str_radix(&blocked, 16), Ok(0), "the app blocks no signal (SigBlk {blocked})");
}
