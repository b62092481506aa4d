//! Control-path benchmark: median wall time of `mcpd list --json` over 20 runs, and the
//! daemon's RSS, with 20 apps running. Run with `cargo bench -p mcpd-cli --bench control`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
const APPS: usize = 20;
const RUNS: usize = 20;

fn mcpd(home: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(MCPD).args(args).env("MCPD_HOME", home).stdin(Stdio::null()).output().expect("run mcpd");
    assert!(out.status.success(), "mcpd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let mut config = String::new();
    for i in 0..APPS {
        config.push_str(&format!("[apps.app{i:02}]\ncommand = \"sleep\"\nargs = [\"1000\"]\n\n"));
    }
    let file = dir.path().join("bench.toml");
    std::fs::write(&file, config).unwrap();
    let sibling = Path::new(MCPD).with_file_name("mcpd-daemon");
    if !sibling.is_file() {
        println!("note: {} is not built (cargo build --release): measuring the in-process daemon", sibling.display());
    }
    mcpd(&home, &["start", file.to_str().unwrap()]);
    let daemon = std::fs::read_to_string(home.join("daemon.lock")).unwrap().trim().to_string();
    // Let the sampler run at least once so list carries memory figures, as in real use.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(3) {
        let list: String = String::from_utf8(mcpd(&home, &["list", "--json"]).stdout).unwrap();
        if !list.contains("\"memory_bytes\":null") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut times: Vec<Duration> = (0..RUNS + 3)
        .map(|_| {
            let t = Instant::now();
            let out = mcpd(&home, &["list", "--json"]);
            let took = t.elapsed();
            assert_eq!(out.stdout.iter().filter(|&&b| b == b'{').count(), APPS, "20 apps listed");
            took
        })
        .skip(3)
        .collect();
    times.sort();
    let median = (times[RUNS / 2 - 1] + times[RUNS / 2]) / 2;
    let guard = std::fs::read_to_string(format!("/proc/{daemon}/task/{daemon}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "mcpd-guard"))
        .map(str::to_string);
    println!("mcpd list --json with {APPS} apps, {RUNS} runs:");
    println!(
        "  median {:.2} ms   min {:.2} ms   max {:.2} ms   (target <= 2 ms)",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3
    );
    println!("daemon RSS with {APPS} apps: {:.2} MiB   (target <= 5 MiB)", rss_kib(&daemon) as f64 / 1024.0);
    if let Some(guard) = guard {
        println!("guard process RSS: {:.2} MiB", rss_kib(&guard) as f64 / 1024.0);
    }
    mcpd(&home, &["kill"]);
}
