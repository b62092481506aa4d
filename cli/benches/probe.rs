//! MCP probe latency: the median of 50 probes against each example MCP server under mcpd
//! (Node and Python: handshake, tools/list, ping, DELETE; Rust: the stateless revision). Needs `npm ci --prefix examples/mcp-node` and
//! `pip install -r examples/mcp-python/requirements.txt`.
//! Run with `cargo bench -p mcpd-cli --bench probe`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
const RUNS: usize = 50;

fn mcpd(home: &Path, args: &[&str]) -> String {
    let out = Command::new(MCPD).args(args).env("MCPD_HOME", home).stdin(Stdio::null()).output().expect("run mcpd");
    assert!(out.status.success(), "mcpd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn main() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!("MCP probe latency, median of {RUNS} (first probe excluded):");
    // The Rust example is built by `cargo build --example mcp-rust` (or `cargo test --workspace`).
    let rust = examples.join("../target/debug/examples/mcp-rust");
    for (name, port) in [("mcp-node", 3100), ("mcp-python", 3200), ("mcp-rust", 3300)] {
        if name == "mcp-rust" && !rust.exists() {
            println!("  {name:<11} not built: run `cargo build --example mcp-rust` first");
            continue;
        }
        let config = std::fs::read_to_string(examples.join(format!("{name}.toml")))
            .unwrap()
            .replace(&format!("cwd = \"{name}\""), &format!("cwd = {:?}", examples.join(name)))
            .replace("\"../target/debug/examples/mcp-rust\"", &format!("{:?}", rust.display().to_string()));
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, config).unwrap();
        mcpd(&home, &["start", file.to_str().unwrap()]);
        let url = format!("http://127.0.0.1:{port}/mcp");
        let mut times: Vec<f64> = (0..=RUNS)
            .map(|_| rt.block_on(mcpd_core::mcp::probe(&url, Duration::from_secs(5))).expect("probe").latency_ms)
            .skip(1)
            .collect();
        times.sort_by(f64::total_cmp);
        let report = rt.block_on(mcpd_core::mcp::probe(&url, Duration::from_secs(5))).unwrap();
        println!(
            "  {name:<11} {} {} ({} tools): median {:.2} ms, min {:.2} ms, max {:.2} ms",
            report.server_name,
            report.revision,
            report.tool_count,
            times[RUNS / 2],
            times[0],
            times[RUNS - 1]
        );
    }
    mcpd(&home, &["kill"]);
}
