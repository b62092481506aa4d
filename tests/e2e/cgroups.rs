//! A cgroup per generation (issue 17): what leaves its process group is still the app's.
//! These tests need a writable cgroup v2 hierarchy (found as the daemon finds it); without
//! one they say so and pass.

use crate::common::{alive, signal, wait_for, Home};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// 20 children, each in a session of its own (`setsid`), ignoring SIGTERM; their pids go to
/// kids.txt, one per line, once all are running.
const SETSID_APP: &str = r#"
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
kids = []
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        while True:
            time.sleep(3600)
    kids.append(pid)
with open("kids.tmp", "w") as f:
    f.write("".join(f"{k}\n" for k in kids))
os.rename("kids.tmp", "kids.txt")
signal.signal(signal.SIGTERM, signal.SIG_DFL)
while True:
    time.sleep(3600)
"#;

const KILL_TIMEOUT: Duration = Duration::from_secs(2);

/// The directory of this process's cgroup v2, if it can create a cgroup there.
fn writable_cgroup_v2() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|l| {
        let (fields, tail) = l.split_once(" - ")?;
        let fields: Vec<&str> = fields.split(' ').collect();
        (tail.starts_with("cgroup2 ") && fields.get(3) == Some(&"/")).then(|| fields[4].to_string())
    })?;
    let dir = PathBuf::from(mount).join(path.trim_start_matches('/'));
    static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!("mcpd-e2e-probe-{}-{n}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(dir)
}

fn skip_without_cgroups(test: &str) -> bool {
    if writable_cgroup_v2().is_none() {
        eprintln!("{test}: skipped: no writable cgroup v2 hierarchy on this machine");
        return true;
    }
    false
}

fn start_setsid_app(home: &Home) -> Vec<u32> {
    home.write("kids.py", SETSID_APP);
    let config = home.write(
        "kids.toml",
        &format!(
            "[apps.kids]\ncommand = \"python3\"\nargs = [\"kids.py\"]\nkill_timeout = \"{}s\"\n",
            KILL_TIMEOUT.as_secs()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let kids: Vec<u32> = wait_for("20 pids in kids.txt", Duration::from_secs(15), || {
        let text = std::fs::read_to_string(home.file("kids.txt")).map_err(|e| e.to_string())?;
        let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
        if pids.len() == 20 {
            Ok(pids)
        } else {
            Err(format!("{pids:?}"))
        }
    });
    assert!(kids.iter().all(|&k| alive(k)), "every child runs");
    kids
}

fn still_alive(pids: &[u32]) -> Vec<u32> {
    pids.iter().copied().filter(|&p| alive(p)).collect()
}

#[test]
fn stop_ends_children_that_left_the_process_group() {
    if skip_without_cgroups("stop_ends_children_that_left_the_process_group") {
        return;
    }
    let home = Home::new();
    let kids = start_setsid_app(&home);
    let detail = home.describe("kids");
    let tracking = detail["tracking"].as_str().unwrap_or_default().to_string();
    assert!(tracking.starts_with("cgroup "), "describe shows cgroup tracking: {detail}");
    let text = home.ok(&["describe", "kids"]);
    assert!(text.contains("tracking") && text.contains("cgroup"), "{text}");

    let began = Instant::now();
    home.ok(&["stop", "kids"]);
    let took = began.elapsed();
    assert!(took <= KILL_TIMEOUT + Duration::from_secs(1), "stop took {took:?}");
    // The daemon reaps its adopted children (SIGKILLed by then) within its next sample.
    wait_for("every setsid child gone", Duration::from_secs(3), || {
        let left = still_alive(&kids);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} of 20 alive: {left:?}", left.len()))
        }
    });
    assert!(
        !std::path::Path::new(tracking.trim_start_matches("cgroup ").split(" (").next().unwrap())
            .join("app-kids")
            .join("g1")
            .exists(),
        "the generation's cgroup is removed: {tracking}"
    );
}

#[test]
fn a_new_daemon_kills_what_a_dead_daemon_and_guard_left() {
    if skip_without_cgroups("a_new_daemon_kills_what_a_dead_daemon_and_guard_left") {
        return;
    }
    let home = Home::new();
    let kids = start_setsid_app(&home);
    let leader = home.pid("kids");
    let daemon = home.daemon_pid().expect("daemon pid");
    let guard: u32 = std::fs::read_to_string(format!("/proc/{daemon}/task/{daemon}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p: &u32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "mcpd-guard"))
        .expect("the guard process");
    signal(guard, libc::SIGKILL);
    wait_for("the guard gone", Duration::from_secs(5), || if alive(guard) { Err("alive".into()) } else { Ok(()) });
    signal(daemon, libc::SIGKILL);
    wait_for("the daemon gone", Duration::from_secs(5), || if alive(daemon) { Err("alive".into()) } else { Ok(()) });
    let orphaned = still_alive(&kids);
    assert_eq!(orphaned.len(), 20, "with guard and daemon dead, the apps run on unsupervised");

    // Any verb starts a new daemon in this home.
    home.ok(&["list"]);
    wait_for("every process of the dead daemon's app gone", Duration::from_secs(5), || {
        let mut left = still_alive(&kids);
        if alive(leader) {
            left.push(leader);
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} alive: {left:?}", left.len()))
        }
    });
    // The history of the app, once it is defined again, says what happened.
    let config = home.file("kids.toml");
    home.ok(&["start", config.to_str().unwrap()]);
    let detail = home.describe("kids");
    let exits = detail["last_exits"].as_array().cloned().unwrap_or_default();
    let orphan = exits.iter().find(|e| e["reason"].as_str().is_some_and(|r| r.starts_with("orphaned")));
    let orphan = orphan.unwrap_or_else(|| panic!("an orphaned entry in the history: {detail}"));
    assert!(orphan["reason"].as_str().unwrap().contains("21 process(es)"), "{orphan}");
}
