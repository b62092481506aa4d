//! Monitor benchmark: CPU used by idle `mcpd monit` sessions (in tmux) over 30 s with 20 apps,
//! and the daemon's extra CPU with 5 monitors attached. Needs tmux.
//! Run with `cargo bench -p mcpd-cli --bench monit`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
const APPS: usize = 20;
const WINDOW: Duration = Duration::from_secs(30);

fn mcpd(home: &Path, args: &[&str]) {
    let out = Command::new(MCPD).args(args).env("MCPD_HOME", home).stdin(Stdio::null()).output().expect("run mcpd");
    assert!(out.status.success(), "mcpd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux").arg("-L").arg(socket).args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn main() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("tmux is not installed: apt-get install tmux");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let config: String =
        (0..APPS).map(|i| format!("[apps.app{i:02}]\ncommand = \"sleep\"\nargs = [\"infinity\"]\n\n")).collect();
    let file = dir.path().join("apps.toml");
    std::fs::write(&file, config).unwrap();
    mcpd(&home, &["start", file.to_str().unwrap()]);
    let daemon = std::fs::read_to_string(home.join("daemon.lock")).unwrap().trim().to_string();
    std::thread::sleep(Duration::from_secs(2));

    let t = Instant::now();
    let d0 = cpu_seconds(&daemon);
    std::thread::sleep(WINDOW);
    let baseline = (cpu_seconds(&daemon) - d0) / t.elapsed().as_secs_f64() * 100.0;

    let socket = format!("mcpd-bench-{}", std::process::id());
    let mut monitors = Vec::new();
    for i in 0..5 {
        let session = format!("m{i}");
        let launch = format!("MCPD_HOME={} exec {MCPD} monit", home.display());
        tmux(&socket, &["-f", "/dev/null", "new-session", "-d", "-s", &session, "-x", "100", "-y", "30", &launch]);
        monitors.push(tmux(&socket, &["display", "-p", "-t", &session, "#{pane_pid}"]));
    }
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    let d0 = cpu_seconds(&daemon);
    let m0: Vec<f64> = monitors.iter().map(|p| cpu_seconds(p)).collect();
    std::thread::sleep(WINDOW);
    let secs = t.elapsed().as_secs_f64();
    let with5 = (cpu_seconds(&daemon) - d0) / secs * 100.0;
    let per_monitor: Vec<f64> = monitors.iter().zip(&m0).map(|(p, s)| (cpu_seconds(p) - s) / secs * 100.0).collect();
    tmux(&socket, &["kill-server"]);
    mcpd(&home, &["kill"]);

    println!("idle `mcpd monit` with {APPS} apps, {}s windows:", WINDOW.as_secs());
    let fmt: Vec<String> = per_monitor.iter().map(|c| format!("{c:.2}%")).collect();
    let worst = per_monitor.iter().cloned().fold(0.0, f64::max);
    println!("  CPU of each of 5 idle monitors: {}   worst {worst:.2}% of one core (target <= 2%)", fmt.join(", "));
    println!(
        "  daemon CPU: {baseline:.2}% with no monitor, {with5:.2}% with 5 monitors: extra {:.2}% of one core",
        with5 - baseline
    );
}
