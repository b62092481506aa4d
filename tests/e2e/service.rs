//! The daemon as a service: sd_notify to its own manager, save/resurrect, PID 1 of a PID
//! namespace, the generated unit, completions and man page.

use crate::common::{alive, exists, signal, wait_for, Home, MCPD};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An app that gets ready after a pause (writing `ready.txt` just before READY=1) and writes
/// `drained-PID.txt` from its SIGTERM handler.
const SLOW_READY: &str = r#"
import os, signal, socket, sys, time
def drain(*_):
    open(f"drained-{os.getpid()}.txt", "w").write("drained")
    sys.exit(0)
signal.signal(signal.SIGTERM, drain)
time.sleep(0.6)
open("ready.txt", "w").write(str(time.time()))
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
while True:
    time.sleep(1)
"#;

fn have(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn the_daemon_speaks_sd_notify_to_its_manager() {
    let home = Home::new();
    home.write("slow.py", SLOW_READY);
    let config =
        home.write("slow.toml", "[apps.slow]\ncommand = \"python3\"\nargs = [\"slow.py\"]\nready = \"notify\"\n");
    home.ok(&["start", config.to_str().unwrap()]);
    home.ok(&["save"]);
    home.ok(&["kill"]);
    let _ = std::fs::remove_file(home.file("ready.txt"));

    let manager_path = home.file("manager.sock");
    let manager = UnixDatagram::bind(&manager_path).unwrap();
    manager.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut daemon = home
        .command(&["daemon"])
        .env("NOTIFY_SOCKET", &manager_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut messages: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv = |messages: &mut Vec<String>| -> String {
        let n = manager.recv(&mut buf).expect("a message from the daemon");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        messages.push(text.clone());
        text
    };
    let ready = loop {
        let text = recv(&mut messages);
        if text.contains("READY=1") {
            break text;
        }
    };
    assert!(home.file("ready.txt").exists(), "READY=1 came only after the saved app was ready: {messages:?}");
    assert!(ready.contains("STATUS=1 online"), "{ready}");
    let started = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if recv(&mut messages).contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_millis(1500), "WATCHDOG=1 about every 200ms: {messages:?}");
    // STATUS= follows the apps.
    home.ok(&["start", "--name", "extra", "--", "sleep", "infinity"]);
    loop {
        if recv(&mut messages).contains("STATUS=2 online") {
            break;
        }
    }
    let app_pid = home.pid("slow");
    signal(daemon.id(), libc::SIGTERM);
    loop {
        if recv(&mut messages).contains("STOPPING=1") {
            break;
        }
    }
    let status = daemon.wait().unwrap();
    assert!(status.success(), "a clean exit after the drain: {status}");
    assert!(home.file(&format!("drained-{app_pid}.txt")).exists(), "the app's drain handler ran");
}

#[test]
fn saved_apps_come_back_after_the_daemon_is_killed() {
    let home = Home::new();
    let config = home.write(
        "apps.toml",
        "[apps.keep]\ncommand = \"sleep\"\nargs = [\"infinity\"]\nkill_timeout = \"7s\"\n\n[apps.parked]\ncommand = \"sleep\"\nargs = [\"infinity\"]\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    home.ok(&["stop", "parked"]);
    let out = home.ok(&["save"]);
    assert!(out.contains("saved 2 apps"), "{out}");
    let daemon = home.daemon_pid().unwrap();
    signal(daemon, libc::SIGKILL);
    wait_for("the daemon to die", Duration::from_secs(10), || if alive(daemon) { Err("alive".into()) } else { Ok(()) });
    // The next verb starts a daemon, which brings the saved apps back just after it listens.
    home.wait_app("keep", "the saved app back online", |r| r["status"] == "online");
    let rows = home.list();
    let status =
        |name: &str| rows.iter().find(|r| r["name"] == name).map(|r| r["status"].as_str().unwrap_or("").to_string());
    assert_eq!(status("keep").as_deref(), Some("online"), "{rows:?}");
    assert_eq!(status("parked").as_deref(), Some("stopped"), "{rows:?}");
    assert_eq!(home.describe("keep")["config"]["kill_timeout"], 7000);
}

#[test]
fn a_dump_from_the_first_release_resurrects() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/fixtures/dump-v1-first-release.json");
    std::fs::copy(fixture, home.path().join("dump.json")).unwrap();
    let web = home.wait_app("web", "online from the old dump", |r| r["status"] == "online");
    assert!(web["pid"].is_u64());
    assert_eq!(home.app("api").unwrap()["status"], "stopped");
    assert_eq!(home.describe("web")["config"]["kill_signal"], "SIGINT");
}

#[test]
fn as_pid_1_of_a_pid_namespace_it_reaps_every_orphan_and_drains_on_sigterm() {
    if !have("unshare")
        || Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "true"])
            .status()
            .map_or(true, |s| !s.success())
    {
        eprintln!("cannot create a PID namespace here; skipping");
        return;
    }
    let home = Home::new();
    std::fs::create_dir_all(home.path()).unwrap();
    // Five grandchildren are orphaned at once and exit 200 ms later; the leader stays.
    let dump = serde_json::json!({
        "version": 1,
        "apps": [{
            "config": {
                "name": "orphans", "command": "sh", "cwd": home.file("").to_string_lossy(),
                "args": ["-c", "trap 'echo drained > drained.txt; exit 0' TERM; for i in 1 2 3 4 5; do (sleep 0.2 &); done; while :; do sleep 0.05; done"]
            },
            "running": true
        }]
    });
    std::fs::write(home.path().join("dump.json"), dump.to_string()).unwrap();
    let mut ns = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", MCPD, "daemon"])
        .env("MCPD_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = wait_for("the daemon (PID 1 inside) to run", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", ns.id(), ns.id()))
            .map_err(|e| e.to_string())
            .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()).ok_or(c))
    });
    let nspid = std::fs::read_to_string(format!("/proc/{daemon}/status")).unwrap();
    assert!(
        nspid.lines().any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "mcpd is PID 1 inside: {nspid}"
    );
    home.wait_socket();
    home.wait_app("orphans", "online", |r| r["status"] == "online");
    let children = |pid: u32| -> Vec<(u32, char)> {
        let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        list.split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .map(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                (p, stat.rsplit(')').next().and_then(|s| s.trim_start().chars().next()).unwrap_or('?'))
            })
            .collect()
    };
    // The orphans are re-parented to mcpd; once they exit, none stays a zombie.
    wait_for("the orphans to be reaped", Duration::from_secs(10), || {
        let kids = children(daemon);
        let sleeping = kids
            .iter()
            .filter(|(p, _)| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep"))
            .count();
        let zombies = kids.iter().filter(|(_, s)| *s == 'Z').count();
        if zombies == 0 && sleeping == 0 {
            Ok(())
        } else {
            Err(format!("{zombies} zombies, {sleeping} orphans alive: {kids:?}"))
        }
    });
    signal(daemon, libc::SIGTERM);
    let status = ns.wait().unwrap();
    assert!(status.success(), "mcpd drained and exited 0 as PID 1: {status}");
    assert_eq!(std::fs::read_to_string(home.file("drained.txt")).unwrap_or_default().trim(), "drained");
    assert!(!exists(daemon));
}

#[test]
fn the_generated_and_packaged_units_verify() {
    if !have("systemd-analyze") {
        eprintln!("systemd-analyze is not installed; skipping (CI installs it)");
        return;
    }
    let home = Home::new();
    let unit = home.ok(&["startup", "systemd"]);
    assert!(unit.contains("Type=notify") && unit.contains("TimeoutStopSec="), "{unit}");
    let exe = std::fs::canonicalize(MCPD).unwrap();
    let packaged = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/mcpd.service"),
    )
    .unwrap();
    // The packaged unit is the generated one for /usr/bin/mcpd and /var/lib/mcpd.
    let expected = Command::new(MCPD)
        .args(["startup", "systemd"])
        .env("MCPD_HOME", "/nonexistent-mcpd-home/var/lib/mcpd")
        .output()
        .unwrap();
    let expected = String::from_utf8_lossy(&expected.stdout)
        .replace(&exe.display().to_string(), "/usr/bin/mcpd")
        .replace("/nonexistent-mcpd-home", "")
        .replace("written by `mcpd startup systemd`", "the packaged unit (the same as `mcpd startup systemd` writes)");
    let strip_state = |t: &str| t.lines().filter(|l| !l.starts_with("StateDirectory")).collect::<Vec<_>>().join("\n");
    assert_eq!(
        strip_state(&packaged),
        strip_state(&expected),
        "packaging/systemd/mcpd.service is what `mcpd startup systemd` writes"
    );
    for (name, text) in [
        ("generated.service", unit),
        ("packaged.service", packaged.replace("/usr/bin/mcpd", &exe.display().to_string())),
    ] {
        let path = home.write(name, &text);
        let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&path).output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let home = Home::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = home.ok(&["completions", shell]);
        assert!(out.contains("reload") && out.contains("monit"), "{shell} completions know the verbs");
    }
    let man = home.ok(&["man"]);
    assert!(man.contains(".TH mcpd") && man.contains("reload"), "{}", &man[..man.len().min(300)]);
}

#[test]
fn apps_can_drop_to_another_user_when_the_daemon_is_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root; skipping");
        return;
    }
    let home = Home::new();
    let config = home.write(
        "u.toml",
        "[apps.low]\ncommand = \"sh\"\nargs = [\"-c\", \"echo uid=$(id -u) gid=$(id -g) home=$HOME; exec sleep infinity\"]\nuser = \"nobody\"\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let line = wait_for("the app's id line", Duration::from_secs(10), || {
        let out = home.ok(&["logs", "low", "--out"]);
        out.lines().find(|l| l.contains("uid=")).map(str::to_string).ok_or(out)
    });
    assert!(line.contains("uid=65534") && line.contains("home=/nonexistent"), "{line}");
    let bad = home.write("bad.toml", "[apps.ghost]\ncommand = \"true\"\nuser = \"no-such-user-here\"\n");
    let err = home.fails(&["start", bad.to_str().unwrap()]);
    assert!(err.contains("no user \"no-such-user-here\""), "{err}");
}

#[test]
fn daemon_start_runs_a_config_at_boot_and_refuses_a_bad_one() {
    let home = Home::new();
    let config = home.write("boot.toml", "[apps.boot]\ncommand = \"sleep\"\nargs = [\"infinity\"]\n");
    let mut daemon = home
        .command(&["daemon", "--start", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    home.wait_socket();
    home.wait_app("boot", "online from --start", |r| r["status"] == "online");
    let pid = home.pid("boot");
    signal(daemon.id(), libc::SIGTERM);
    assert!(daemon.wait().unwrap().success());
    assert!(!exists(pid), "the app was drained with the daemon");
    let bad = home.write("bad.toml", "[apps.x]\ncommand = 5\n");
    let out = home.command(&["daemon", "--start", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.toml:2:11: apps.x.command"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
