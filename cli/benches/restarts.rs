//! Restart benchmark: how fast a memory limit is acted on (limit crossed → stop signal sent,
//! and → new generation ready), by restart and by reload, and the measured backoff delays of
//! the first 8 restarts next to PM2's formula.
//! Run with `cargo bench -p mcpd-cli --bench restarts`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
const RUNS: usize = 9;

fn mcpd(home: &Path, args: &[&str]) -> String {
    let out = Command::new(MCPD).args(args).env("MCPD_HOME", home).stdin(Stdio::null()).output().expect("run mcpd");
    assert!(out.status.success(), "mcpd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Times (seconds) of `event` lines in the leak log, in order.
fn events(log: &str, event: &str) -> Vec<f64> {
    log.lines().filter(|l| l.starts_with(event)).filter_map(|l| l.split(' ').nth(1)?.parse().ok()).collect()
}

/// One memory-limit run; returns (crossed → SIGTERM, crossed → new generation ready) in ms.
fn memory_run(ready: &str) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let leak = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/fixtures/leak.py");
    let log = dir.path().join("leak.log");
    let config = format!(
        "[apps.leaky]\ncommand = \"sh\"\nargs = [\"-c\", \"python3 {}; true\"]\nready = {ready}\nmax_memory_restart = \"150M\"\n\
         env = {{ LEAK_JITTER = \"1\", LIMIT_BYTES = \"{}\", LEAK_LOG = {:?}, LEAK_MARKER = {:?} }}\n",
        leak.display(),
        150u64 << 20,
        log.display(),
        dir.path().join("marker").display()
    );
    let file = dir.path().join("leak.toml");
    std::fs::write(&file, config).unwrap();
    mcpd(&home, &["start", file.to_str().unwrap()]);
    wait_until("a new generation after the memory limit", Duration::from_secs(30), || {
        events(&std::fs::read_to_string(&log).unwrap_or_default(), "started").len() >= 2
            && events(&std::fs::read_to_string(&log).unwrap_or_default(), "sigterm").len() == 1
    });
    mcpd(&home, &["kill"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let crossed = events(&text, "crossed")[0];
    let sigterm = events(&text, "sigterm")[0];
    let ready = events(&text, "started")[1];
    ((sigterm - crossed) * 1e3, (ready - crossed) * 1e3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn backoff_run() -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let starts = dir.path().join("starts.txt");
    let config = format!(
        "[apps.crashy]\ncommand = \"sh\"\nargs = [\"-c\", \"date +%s.%N >> {}; exit 1\"]\nexp_backoff_restart_delay = \"100ms\"\nmax_restarts = 50\n",
        starts.display()
    );
    let file = dir.path().join("crash.toml");
    std::fs::write(&file, config).unwrap();
    mcpd(&home, &["start", "--no-wait", file.to_str().unwrap()]);
    let read = || -> Vec<f64> {
        std::fs::read_to_string(&starts).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
    };
    wait_until("9 starts", Duration::from_secs(30), || read().len() >= 9);
    mcpd(&home, &["kill"]);
    read().windows(2).take(8).map(|w| (w[1] - w[0]) * 1e3).collect()
}

fn main() {
    for (label, ready) in [("restart (ready = \"none\")", "\"none\""), ("reload (ready = \"notify\")", "\"notify\"")] {
        let runs: Vec<(f64, f64)> = (0..RUNS).map(|_| memory_run(ready)).collect();
        println!("memory limit 150M, default memory_check_interval (1s), {label}, {RUNS} runs:");
        let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
        let stops: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let readies: Vec<f64> = runs.iter().map(|r| r.1).collect();
        println!(
            "  limit crossed -> stop signal sent:     median {:.0} ms  max {:.0} ms  ({} ms)",
            median(stops.clone()),
            stops.iter().cloned().fold(0.0, f64::max),
            fmt(&stops)
        );
        println!(
            "  limit crossed -> new generation ready: median {:.0} ms  max {:.0} ms  ({} ms)",
            median(readies.clone()),
            readies.iter().cloned().fold(0.0, f64::max),
            fmt(&readies)
        );
    }
    let delays = backoff_run();
    println!("exp_backoff_restart_delay = 100ms: delay between starts (measured, from one start to the next)");
    println!("  restart  formula(ms)  measured(ms)");
    for (i, measured) in delays.iter().enumerate() {
        let formula = (100.0 * 1.5f64.powi(i as i32)).floor().min(15000.0);
        println!("  {:>7}  {:>11.0}  {:>12.1}", i + 1, formula, measured);
    }
}
