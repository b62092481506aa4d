//! Reload benchmark: five `mcpd reload`s of the Node example (socket handoff, ipc readiness)
//! under ~200 requests/s plus 20 open streams. Prints failed requests, cut streams, the
//! longest gap without a successful response, and each reload's wall time.
//! Run with `cargo bench -p mcpd-cli --bench reload`.

#[path = "../../tests/e2e/load.rs"]
mod load;

use load::{Load, Shape};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");

fn mcpd(home: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(MCPD).args(args).env("MCPD_HOME", home).stdin(Stdio::null()).output().expect("run mcpd");
    assert!(out.status.success(), "mcpd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node/server.js");
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[apps.web]\ncommand = \"node\"\nargs = [{:?}]\nlisten = [\"tcp://{addr}\"]\nready = \"ipc\"\nkill_signal = \"SIGINT\"\nkill_timeout = \"30s\"\n",
            server.display()
        ),
    )
    .unwrap();
    mcpd(&home, &["start", config.to_str().unwrap()]);
    let shape = Shape { rate: 200, request_threads: 4, streams: 20, events: 30, event_ms: 100 };
    let load = Load::start(addr, shape);
    std::thread::sleep(Duration::from_secs(2));
    let mut walls = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        mcpd(&home, &["reload", "web"]);
        walls.push(t.elapsed());
        std::thread::sleep(Duration::from_secs(1));
    }
    let stats = load.stop();
    mcpd(&home, &["kill"]);
    println!("5 reloads of the Node example under {} req/s + {} open streams:", shape.rate, shape.streams);
    println!("  requests ok {}   failed {}   (target 0 failed)", stats.ok, stats.failed);
    println!("  streams ok {}   cut {}   (target 0 cut)", stats.streams_ok, stats.streams_cut);
    println!(
        "  longest gap without a successful response: {:.1} ms   (target < 50 ms)",
        stats.longest_gap().as_secs_f64() * 1e3
    );
    let walls: Vec<String> = walls.iter().map(|w| format!("{:.0} ms", w.as_secs_f64() * 1e3)).collect();
    println!("  reload wall times (until the old generation drained its streams): {}", walls.join(", "));
    if !stats.errors.is_empty() {
        println!("  first errors: {:?}", stats.errors);
    }
}
