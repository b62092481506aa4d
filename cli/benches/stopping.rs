//! Stop benchmark: an app of 200 processes (a leader and 199 children that take 0-199 ms to
//! exit after SIGTERM) is stopped; how long after its last process died does the daemon say
//! "stopped"? With a cgroup per generation the daemon learns it from `cgroup.events`
//! (inotify); with process groups (`MCPD_CGROUPS=0`) from SIGCHLD and polling. Median of 5
//! stops each. Target: the cgroup path <= 10 ms. Run with
//! `cargo build --release && cargo bench -p mcpd-cli --bench stopping`.

use std::io::BufRead;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
const RUNS: usize = 5;
const CHILDREN: usize = 199;

const APP: &str = r#"
import os, signal, sys, time
kids = []
for i in range(199):
    pid = os.fork()
    if pid == 0:
        def term(*_, delay=i / 1000):
            time.sleep(delay)
            os._exit(0)
        signal.signal(signal.SIGTERM, term)
        while True:
            time.sleep(3600)
    kids.append(pid)
with open("kids.tmp", "w") as f:
    f.write("".join(f"{k}\n" for k in [os.getpid()] + kids))
os.rename("kids.tmp", "kids.txt")
while True:
    time.sleep(3600)
"#;

fn mcpd(home: &Path, dir: &Path, cgroups: bool, args: &[&str]) -> String {
    let mut command = Command::new(MCPD);
    command.args(args).env("MCPD_HOME", home).current_dir(dir).stdin(Stdio::null());
    if !cgroups {
        command.env("MCPD_CGROUPS", "0");
    }
    let out = command.output().expect("run mcpd");
    assert!(out.status.success(), "mcpd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// Waits (bounded) until the app wrote all its pids.
fn wait_pids(file: &Path) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(file) {
            let pids: Vec<i32> = text.lines().filter_map(|l| l.parse().ok()).collect();
            if pids.len() == CHILDREN + 1 {
                return pids;
            }
        }
        assert!(Instant::now() < deadline, "the app did not write its pids to {}", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wall-clock ms at which the last of `pids` exited (pidfds: no polling), bounded.
fn last_exit_ms(pids: &[i32]) -> f64 {
    let fds: Vec<OwnedFd> = pids
        .iter()
        .map(|&pid| {
            // SAFETY: pidfd_open takes a pid and flags and returns a new fd (or -1).
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
            assert!(fd >= 0, "pidfd_open {pid}: {}", std::io::Error::last_os_error());
            // SAFETY: a new fd we own.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect();
    let mut open: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(fd), events: libc::POLLIN, revents: 0 })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = 0.0;
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "{} processes still alive", open.len());
        // SAFETY: poll over a slice of pollfds we own.
        let n = unsafe { libc::poll(open.as_mut_ptr(), open.len() as libc::nfds_t, 1000) };
        if n > 0 {
            last = now_ms();
            open.retain(|p| p.revents == 0);
        }
    }
    last
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs [`RUNS`] stops; returns the medians of (stopped - last exit, stop command time).
fn measure(cgroups: bool) -> (f64, f64, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::write(dir.path().join("app.py"), APP).unwrap();
    let config = dir.path().join("app.toml");
    std::fs::write(&config, "[apps.many]\ncommand = \"python3\"\nargs = [\"app.py\"]\nkill_timeout = \"10s\"\n")
        .unwrap();
    let kids = dir.path().join("kids.txt");
    let mut after = Vec::new();
    let mut stops = Vec::new();
    let mut tracking = String::new();
    for run in 0..RUNS {
        let _ = std::fs::remove_file(&kids);
        mcpd(&home, dir.path(), cgroups, &["start", config.to_str().unwrap()]);
        if run == 0 {
            let detail = mcpd(&home, dir.path(), cgroups, &["describe", "many"]);
            tracking = detail.lines().find(|l| l.starts_with("tracking")).unwrap_or("tracking ?").to_string();
        }
        let pids = wait_pids(&kids);
        let mut events = Command::new(MCPD)
            .args(["events", "many", "--json", "--samples"])
            .env("MCPD_HOME", &home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mcpd events");
        let lines = std::io::BufReader::new(events.stdout.take().unwrap());
        let (subscribed, open) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in lines.lines() {
                let Ok(line) = line else { break };
                let _ = subscribed.send(());
                let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if event["app"] == "many" && event["status"] == "stopped" {
                    return event["at_unix_ms"].as_f64();
                }
            }
            None
        });
        let watcher = std::thread::spawn(move || last_exit_ms(&pids));
        // The subscription is open once a first sample came through it (within a second).
        open.recv_timeout(Duration::from_secs(10)).expect("a first event");
        let began = Instant::now();
        mcpd(&home, dir.path(), cgroups, &["stop", "many"]);
        stops.push(began.elapsed().as_secs_f64() * 1000.0);
        let last = watcher.join().unwrap();
        let stopped = reader.join().unwrap().expect("a stopped event");
        let _ = events.kill();
        let _ = events.wait();
        after.push(stopped - last);
    }
    mcpd(&home, dir.path(), cgroups, &["kill"]);
    (median(after), median(stops), tracking)
}

fn main() {
    println!("stop an app of {} processes whose last exits ~200 ms after SIGTERM, median of {RUNS}:", CHILDREN + 1);
    for cgroups in [true, false] {
        let (after, stop, tracking) = measure(cgroups);
        println!(
            "  {:<14} stopped {after:>6.1} ms after its last process exited   (mcpd stop took {stop:.0} ms)   {tracking}",
            if cgroups { "cgroup" } else { "process group" }
        );
    }
    println!("  target: the cgroup path <= 10 ms (the event's time has millisecond resolution)");
}
