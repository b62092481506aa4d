//! Crash-respawn benchmark: SIGKILL of a one-process app (`restart_delay = "0ms"`) until its
//! new process has started and written its pid, median of 10 runs, next to the time the same
//! program takes to start when this benchmark spawns it directly. Target: respawn <= the
//! program's own start + 5 ms. Run with `cargo build --release && cargo bench -p mcpd-cli --bench respawn`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
const RUNS: usize = 10;
/// Writes its pid, then waits.
const APP: &str = "echo $$ > \"$1\"; exec sleep 3600";

fn mcpd(home: &Path, args: &[&str]) {
    let out = Command::new(MCPD).args(args).env("MCPD_HOME", home).stdin(Stdio::null()).output().expect("run mcpd");
    assert!(out.status.success(), "mcpd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits (bounded) until `path` names a pid other than `old`; returns when it did.
fn wait_new_pid(path: &Path, old: Option<u32>) -> (u32, Instant) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = read_pid(path).filter(|p| Some(*p) != old) {
            return (pid, Instant::now());
        }
        assert!(Instant::now() < deadline, "no new pid in {}", path.display());
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let pidfile = dir.path().join("pid");

    // The program alone: spawn it, wait for its pid.
    let mut direct = Vec::new();
    for _ in 0..RUNS {
        let _ = std::fs::remove_file(&pidfile);
        let at = Instant::now();
        let mut child = Command::new("sh").args(["-c", APP, "sh"]).arg(&pidfile).spawn().unwrap();
        let (_, seen) = wait_new_pid(&pidfile, None);
        direct.push(seen - at);
        let _ = child.kill();
        let _ = child.wait();
    }

    let config = dir.path().join("app.toml");
    std::fs::write(
        &config,
        format!(
            "[apps.crashy]\ncommand = \"sh\"\nargs = [\"-c\", {APP:?}, \"sh\", {:?}]\nrestart_delay = \"0ms\"\nmin_uptime = \"0ms\"\nmax_restarts = 1000\n",
            pidfile.display()
        ),
    )
    .unwrap();
    let _ = std::fs::remove_file(&pidfile);
    mcpd(&home, &["start", config.to_str().unwrap()]);
    let (mut pid, _) = wait_new_pid(&pidfile, None);
    let mut respawn = Vec::new();
    for _ in 0..RUNS {
        // Restarts of one app are at least 100 ms apart (counted from the previous spawn):
        // let the app run past that, so what is measured is the respawn alone.
        std::thread::sleep(Duration::from_millis(150));
        let at = Instant::now();
        // SAFETY: kill(2) touches no memory of ours.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let (new, seen) = wait_new_pid(&pidfile, Some(pid));
        respawn.push(seen - at);
        pid = new;
    }
    mcpd(&home, &["kill"]);
    let (direct, respawn) = (median(direct), median(respawn));
    println!("respawn after SIGKILL, median of {RUNS}: {:.2} ms", ms(respawn));
    println!("the program's own start, median of {RUNS}: {:.2} ms", ms(direct));
    println!("mcpd's part: {:.2} ms   (target <= 5 ms)", ms(respawn.saturating_sub(direct)));
}
