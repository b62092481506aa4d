//! Process groups: grandchildren, drain timeouts, and what happens when the daemon dies.

use crate::common::{alive, exists, signal, wait_for, Home};
use std::time::{Duration, Instant};

/// The leader double-forks a grandchild that ignores SIGTERM and writes its pid.
const GRANDCHILD: &str = r#"
[apps.forky]
command = "sh"
args = ["-c", "(sh -c 'trap \"\" TERM; echo $$ > grandchild.pid; exec sleep infinity' &); exec sleep infinity"]
kill_timeout = "500ms"
"#;

#[test]
fn a_double_forked_grandchild_ignoring_sigterm_is_gone_after_stop() {
    let home = Home::new();
    let config = home.write("forky.toml", GRANDCHILD);
    home.ok(&["start", config.to_str().unwrap()]);
    let leader = home.pid("forky");
    let grandchild = home.read_pid_file("grandchild.pid");
    assert!(alive(grandchild), "grandchild {grandchild} should run");
    let started = Instant::now();
    home.ok(&["stop", "forky"]);
    let took = started.elapsed();
    assert!(!exists(leader), "leader {leader} left behind");
    assert!(!exists(grandchild), "grandchild {grandchild} survived stop (or was left a zombie)");
    assert!(
        took >= Duration::from_millis(500),
        "the grandchild ignores SIGTERM, so stop waits kill_timeout; took {took:?}"
    );
}

#[test]
fn a_grandchild_left_by_a_crashed_leader_is_ended_before_the_restart() {
    let home = Home::new();
    let config = home.write(
        "orphan.toml",
        "[apps.orphan]\ncommand = \"sh\"\nargs = [\"-c\", \"sh -c 'echo $$ > gc.pid; exec sleep infinity' & while [ ! -s gc.pid ]; do sleep 0.01; done; exit 1\"]\nrestart_delay = \"10s\"\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let grandchild = home.read_pid_file("gc.pid");
    home.wait_app("orphan", "waiting-restart after the crash", |r| r["status"] == "waiting-restart");
    assert!(!exists(grandchild), "the crashed generation's grandchild {grandchild} still runs");
}

#[test]
fn stop_sends_the_configured_signal_then_sigkill_after_kill_timeout() {
    let home = Home::new();
    let config = home.write(
        "sig.toml",
        "[apps.stubborn]\ncommand = \"sh\"\nargs = [\"-c\", \"trap 'echo got-int > signal.txt' INT; while :; do sleep 0.05; done\"]\nkill_signal = \"SIGINT\"\nkill_timeout = \"700ms\"\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let pid = home.pid("stubborn");
    let started = Instant::now();
    home.ok(&["stop", "stubborn"]);
    let took = started.elapsed();
    assert!(!exists(pid));
    assert_eq!(std::fs::read_to_string(home.file("signal.txt")).unwrap_or_default().trim(), "got-int");
    assert!(took >= Duration::from_millis(700), "SIGKILL came before kill_timeout: {took:?}");
    let exit = home.describe("stubborn")["last_exits"][0].clone();
    assert_eq!(exit["signal"], 9, "ended by SIGKILL: {exit}");
}

#[test]
fn apps_do_not_outlive_a_killed_daemon_and_its_stale_socket_is_replaced() {
    let home = Home::new();
    let config = home.write(
        "app.toml",
        "[apps.server]\ncommand = \"sh\"\nargs = [\"-c\", \"sh -c 'echo $$ > child.pid; exec sleep infinity' & exec sleep infinity\"]\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let leader = home.pid("server");
    let child = home.read_pid_file("child.pid");
    let daemon = home.daemon_pid().expect("daemon pid");
    signal(daemon, libc::SIGKILL);
    wait_for("the daemon to die", Duration::from_secs(10), || if alive(daemon) { Err("alive".into()) } else { Ok(()) });
    wait_for("the app's group to be ended by the guard", Duration::from_secs(10), || {
        if alive(leader) || alive(child) {
            Err(format!("leader alive: {}, child alive: {}", alive(leader), alive(child)))
        } else {
            Ok(())
        }
    });
    assert!(home.path().join("mcpd.sock").exists(), "the killed daemon left its socket file");
    let pong = home.ok(&["ping"]);
    let new_daemon = home.daemon_pid().expect("new daemon pid");
    assert_ne!(new_daemon, daemon, "a new daemon replaced the stale socket: {pong}");
    assert!(pong.contains(&format!("daemon pid {new_daemon}")), "{pong}");
}

#[test]
fn kill_stops_every_app_then_the_daemon() {
    let home = Home::new();
    home.ok(&["start", "--name", "one", "--", "sleep", "infinity"]);
    home.ok(&["start", "--name", "two", "--", "sleep", "infinity"]);
    let pids = [home.pid("one"), home.pid("two")];
    let daemon = home.daemon_pid().unwrap();
    let out = home.ok(&["kill"]);
    assert!(out.contains("daemon stopped"), "{out}");
    for pid in pids {
        assert!(!exists(pid), "app pid {pid} survived kill");
    }
    assert!(!alive(daemon), "daemon {daemon} survived kill");
    assert!(!home.path().join("mcpd.sock").exists(), "socket removed on exit");
}

/// The daemon's `mcpd-guard` child, if it has one.
fn guard_of(daemon: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{daemon}/task/{daemon}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p: &u32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "mcpd-guard"))
}

/// Found by the chaos soak: a guard killed by hand (or by the OOM killer) was not replaced, so
/// apps outlived the daemon's own death afterwards (with process groups, for good). Process
/// groups here, where nothing else would end them.
#[test]
fn a_killed_guard_is_replaced_and_apps_still_end_with_the_daemon() {
    let home = Home::new();
    let config = home.write(
        "app.toml",
        "[apps.server]\ncommand = \"sh\"\nargs = [\"-c\", \"sh -c 'echo $$ > child.pid; exec sleep infinity' & exec sleep infinity\"]\n",
    );
    let out = home.command(&["start", config.to_str().unwrap()]).env("MCPD_CGROUPS", "0").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let leader = home.pid("server");
    let child = home.read_pid_file("child.pid");
    let daemon = home.daemon_pid().expect("daemon pid");
    let guard = guard_of(daemon).expect("the guard process");
    signal(guard, libc::SIGKILL);
    let new_guard = wait_for("a new guard", Duration::from_secs(5), || match guard_of(daemon) {
        Some(g) if g != guard => Ok(g),
        other => Err(format!("guard {other:?}")),
    });
    let log = home.ok(&["logs", "--daemon", "--lines", "50"]);
    assert!(log.contains("a new one took its place"), "the daemon log says so: {log}");
    // A guard that knows the app: the daemon's death ends it within a second.
    signal(daemon, libc::SIGKILL);
    let died = Instant::now();
    wait_for("the app's group ended by the new guard", Duration::from_secs(5), || {
        if alive(leader) || alive(child) {
            Err(format!("leader alive: {}, child alive: {}", alive(leader), alive(child)))
        } else {
            Ok(())
        }
    });
    let took = died.elapsed();
    assert!(took <= Duration::from_secs(1), "apps ended {took:?} after the daemon's death");
    wait_for("the new guard gone", Duration::from_secs(5), || {
        if exists(new_guard) && alive(new_guard) {
            Err("alive".into())
        } else {
            Ok(())
        }
    });
}

/// A guard that stops reading its pipe (SIGSTOP, a debugger, a starved machine) must not stop
/// the daemon: before, the daemon's writes to the pipe blocked once its 64 KiB were full
/// (about 300 spawns with cgroups), and with them the whole daemon. Once the guard reads
/// again it learns every group, so the daemon's death still ends every app.
#[test]
fn a_stopped_guard_never_blocks_the_daemon_and_still_learns_every_app() {
    const APPS: usize = 400;
    let home = Home::new();
    let mut config = String::new();
    for i in 0..APPS {
        config.push_str(&format!("[apps.s{i}]\ncommand = \"sleep\"\nargs = [\"infinity\"]\n"));
    }
    let config = home.write("many.toml", &config);
    home.ok(&["ping"]);
    let daemon = home.daemon_pid().expect("daemon pid");
    let guard = guard_of(daemon).expect("the guard process");
    signal(guard, libc::SIGSTOP);
    let started = home.run(&["start", "--no-wait", config.to_str().unwrap()]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let pids: Vec<u32> = wait_for("every app running", Duration::from_secs(60), || {
        let pids: Vec<u32> = home.list().iter().filter_map(|a| a["pid"].as_u64()).map(|p| p as u32).collect();
        if pids.len() == APPS {
            Ok(pids)
        } else {
            Err(format!("{} of {APPS}", pids.len()))
        }
    });
    assert!(home.ok(&["ping"]).contains("pong"), "the daemon answers with its guard stopped");
    signal(guard, libc::SIGCONT);
    // Sleeping, the guard waits in read(2) on an empty pipe: it has read every line.
    wait_for("the guard to have read its pipe", Duration::from_secs(5), || {
        let status = std::fs::read_to_string(format!("/proc/{guard}/status")).map_err(|e| e.to_string())?;
        let state = status.lines().find(|l| l.starts_with("State:")).unwrap_or_default().to_string();
        if state.contains("S (sleeping)") {
            Ok(())
        } else {
            Err(state)
        }
    });
    signal(daemon, libc::SIGKILL);
    wait_for("every app ended by the guard", Duration::from_secs(10), || {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} alive, e.g. {:?}", left.len(), &left[..left.len().min(5)]))
        }
    });
}
