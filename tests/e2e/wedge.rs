//! A generation that dies at any point of a reload never wedges the app: `stop` returns within
//! `kill_timeout` + 1 s and no process of any generation is left (issue 14's reproduction).

use crate::common::{exists, signal, wait_for, Home};
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Each generation starts a child, records "leader child" in gens.txt, waits the seconds in
/// delay.txt (if any), says READY=1, and on SIGTERM takes the seconds in drain.txt to exit.
pub(crate) const GEN_APP: &str = r#"
import os, signal, socket, subprocess, sys, time
def seconds(name):
    try:
        return float(open(name).read())
    except FileNotFoundError:
        return 0.0
def term(*_):
    time.sleep(seconds("drain.txt"))
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
child = subprocess.Popen(["sleep", "infinity"])
with open("gens.txt", "a") as f:
    f.write(f"{os.getpid()} {child.pid}\n")
time.sleep(seconds("delay.txt"))
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
while True:
    time.sleep(3600)
"#;

const KILL_TIMEOUT: Duration = Duration::from_secs(4);

fn setup() -> Home {
    let home = Home::new();
    home.write("gen.py", GEN_APP);
    let config = home.write(
        "rb.toml",
        "[apps.rb]\ncommand = \"python3\"\nargs = [\"gen.py\"]\nready = \"notify\"\nready_timeout = \"20s\"\nkill_timeout = \"4s\"\nrestart_delay = \"100ms\"\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    home
}

/// Every pid any generation recorded (leaders and their children).
fn recorded_pids(home: &Home) -> Vec<u32> {
    let text = std::fs::read_to_string(home.file("gens.txt")).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// Waits until `n` generations have recorded their pids (a new one does so as it starts).
fn wait_recorded(home: &Home, n: usize) {
    wait_for(&format!("{n} generations in gens.txt"), Duration::from_secs(10), || {
        let pids = recorded_pids(home);
        if pids.len() >= 2 * n {
            Ok(())
        } else {
            Err(format!("{pids:?}"))
        }
    });
}

/// Starts `mcpd reload rb` in the background.
fn reload_in_background(home: &Home) -> Child {
    home.command(&["reload", "rb"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcpd reload")
}

/// Waits until the row shows a reload in `phase`; returns (old pid, new pid).
fn wait_phase(home: &Home, phase: &str) -> (u32, u32) {
    let row = home.wait_app("rb", &format!("reload phase {phase}"), |r| r["reload"]["phase"] == phase);
    let pid = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("no pid in {row}")) as u32;
    wait_recorded(home, 2);
    (pid(&row["reload"]["old_pid"]), pid(&row["reload"]["new_pid"]))
}

/// Waits (bounded) for the background reload to end; returns whether it succeeded and its output.
fn finish(mut reload: Child) -> (bool, String) {
    let status = wait_for("the background reload to return", Duration::from_secs(30), || {
        reload.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "still running".to_string())
    });
    let out = reload.wait_with_output().expect("reload output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (status.success(), text)
}

/// `mcpd stop rb` returns within kill_timeout + 1 s and leaves no process of any generation.
fn stop_leaves_nothing(home: &Home) {
    let started = Instant::now();
    home.ok(&["stop", "rb"]);
    let took = started.elapsed();
    assert!(took <= KILL_TIMEOUT + Duration::from_secs(1), "stop took {took:?}");
    let row = home.app("rb").expect("rb is defined");
    assert_eq!(row["status"], "stopped", "{row}");
    let pids = recorded_pids(home);
    assert!(pids.len() >= 4, "two generations should have recorded themselves: {pids:?}");
    wait_for("every process of every generation to be gone", Duration::from_secs(2), || {
        let left: Vec<u32> = pids.iter().copied().filter(|p| exists(*p)).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still there: {left:?} of {pids:?}"))
        }
    });
}

#[test]
fn the_serving_generation_crashing_while_the_new_one_gets_ready_does_not_wedge_stop() {
    let home = setup();
    let old = home.pid("rb");
    home.write("delay.txt", "3");
    let reload = reload_in_background(&home);
    let (seen_old, new) = wait_phase(&home, "starting-new");
    assert_eq!(seen_old, old);
    signal(old, libc::SIGKILL);
    let row = home.wait_app("rb", "the new generation online", |r| r["status"] == "online" && r["pid"] == new);
    assert_eq!(row["pid"], new, "{row}");
    let (ok, text) = finish(reload);
    assert!(ok, "the reload's new generation got ready, so the reload succeeded: {text}");
    stop_leaves_nothing(&home);
}

#[test]
fn stop_while_the_new_generation_is_still_getting_ready_after_the_old_one_crashed() {
    let home = setup();
    let old = home.pid("rb");
    home.write("delay.txt", "30");
    let reload = reload_in_background(&home);
    let (_, new) = wait_phase(&home, "starting-new");
    signal(old, libc::SIGKILL);
    home.wait_app("rb", "the new generation starting alone", |r| r["status"] == "starting" && r["pid"] == new);
    stop_leaves_nothing(&home);
    let (ok, text) = finish(reload);
    assert!(!ok && text.contains("reload"), "a reload stopped before it was ready fails: {text}");
}

#[test]
fn the_old_generation_crashing_while_it_drains() {
    let home = setup();
    home.write("drain.txt", "30");
    let reload = reload_in_background(&home);
    let (old, new) = wait_phase(&home, "draining-old");
    signal(old, libc::SIGKILL);
    let (ok, text) = finish(reload);
    assert!(ok, "{text}");
    let row = home.wait_app("rb", "online without a reload", |r| r["status"] == "online" && r["reload"].is_null());
    assert_eq!(row["pid"], new, "{row}");
    std::fs::remove_file(home.file("drain.txt")).unwrap();
    stop_leaves_nothing(&home);
}

#[test]
fn the_new_generation_crashing_while_the_old_one_drains() {
    let home = setup();
    home.write("drain.txt", "30");
    let reload = reload_in_background(&home);
    let (old, new) = wait_phase(&home, "draining-old");
    signal(new, libc::SIGKILL);
    // The new generation is restarted as after any crash; the old one still drains.
    let row = home.wait_app("rb", "a third generation", |r| r["pid"].as_u64().is_some_and(|p| p != new as u64));
    assert_ne!(row["pid"], old, "{row}");
    stop_leaves_nothing(&home);
    let _ = finish(reload);
}

#[test]
fn stop_during_each_reload_phase_ends_every_generation() {
    for phase in ["starting-new", "draining-old"] {
        let home = setup();
        if phase == "starting-new" {
            home.write("delay.txt", "30");
        } else {
            home.write("drain.txt", "30");
        }
        let reload = reload_in_background(&home);
        wait_phase(&home, phase);
        stop_leaves_nothing(&home);
        let (ok, text) = finish(reload);
        // Stopped before its new generation was ready, the reload fails; stopped while the
        // old one drains, it had already succeeded.
        assert_eq!(ok, phase == "draining-old", "{phase}: {text}");
    }
}

#[test]
fn a_second_reload_while_one_runs_is_busy_exit_3() {
    let home = setup();
    home.write("delay.txt", "30");
    let reload = reload_in_background(&home);
    wait_phase(&home, "starting-new");
    let out = home.run(&["reload", "rb"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("a reload is already running") && stderr.contains("[busy]"), "stderr: {stderr}");
    stop_leaves_nothing(&home);
    let (ok, text) = finish(reload);
    assert!(!ok && text.contains("[reload-failed]"), "{text}");
}
