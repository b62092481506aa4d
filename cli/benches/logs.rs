//! Log pipeline benchmark: a child writes 200 MiB of lines as fast as it can. Prints the time
//! until every byte is in the log file (plain and timestamped), the same program writing
//! straight to a file, their ratio, and the daemon's peak RSS during the flood.
//! Run with `cargo bench -p mcpd-cli --bench logs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
const BYTES: u64 = 200 << 20;
const LINE: &str = "2026-11-24 12:00:00 INFO request served path=/mcp method=tools/call status=200 took=1.2ms";
const RUNS: usize = 3;

fn writer(target: &str) -> String {
    format!("yes '{LINE}' | head -c {BYTES}{target}")
}

fn mcpd(home: &Path, args: &[&str]) {
    let out = Command::new(MCPD).args(args).env("MCPD_HOME", home).stdin(Stdio::null()).output().expect("run mcpd");
    assert!(out.status.success(), "mcpd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn vm_hwm_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn direct() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("direct.log");
    let t = Instant::now();
    let status = Command::new("sh").args(["-c", &writer(&format!(" > {}", file.display()))]).status().unwrap();
    assert!(status.success());
    t.elapsed()
}

/// Returns (time until the file holds every byte, daemon peak RSS in KiB).
fn through_mcpd(stamped: bool) -> (Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    mcpd(&home, &["ping"]);
    let daemon = std::fs::read_to_string(home.join("daemon.lock")).unwrap().trim().to_string();
    let lines = BYTES / (LINE.len() as u64 + 1);
    let partial = BYTES % (LINE.len() as u64 + 1);
    let stamp_bytes = if stamped { (lines + u64::from(partial > 0)) * 25 } else { 0 };
    let expected = BYTES + stamp_bytes + u64::from(partial > 0);
    let config = dir.path().join("flood.toml");
    std::fs::write(
        &config,
        format!(
            "[apps.flood]\ncommand = \"sh\"\nargs = [\"-c\", \"{}\"]\nrestart = \"never\"\nlog_date_format = \"{}\"\nlog_max_size = \"1G\"\n",
            writer(""),
            if stamped { "rfc3339" } else { "none" }
        ),
    )
    .unwrap();
    let file = home.join("logs/flood.out.log");
    let t = Instant::now();
    mcpd(&home, &["start", "--no-wait", config.to_str().unwrap()]);
    let mut peak = 0;
    loop {
        peak = peak.max(vm_hwm_kib(&daemon));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        if size >= expected {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "only {size} of {expected} bytes arrived");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t.elapsed();
    peak = peak.max(vm_hwm_kib(&daemon));
    mcpd(&home, &["kill"]);
    (took, peak)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let direct = median((0..RUNS).map(|_| direct()).collect());
    println!(
        "a child writes {} MiB of {}-byte lines as fast as it can (median of {RUNS} runs):",
        BYTES >> 20,
        LINE.len() + 1
    );
    println!("  straight to a file:                 {:>7.0} ms", direct.as_secs_f64() * 1e3);
    for (label, stamped) in
        [("through mcpd, log_date_format = none", false), ("through mcpd, timestamped (default)", true)]
    {
        let runs: Vec<(Duration, u64)> = (0..RUNS).map(|_| through_mcpd(stamped)).collect();
        let took = median(runs.iter().map(|r| r.0).collect());
        let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
        println!(
            "  {label}: {:>7.0} ms   ratio {:.2} (target <= 1.3)   daemon peak RSS {:.1} MiB (target <= 32 MiB)",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() / direct.as_secs_f64(),
            peak as f64 / 1024.0
        );
    }
}
