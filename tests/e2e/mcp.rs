//! MCP awareness with real MCP servers: protocol-level readiness, `mcpd probe`, and a health
//! check that restarts a server whose MCP handler broke while its process and /health live.

use crate::common::{free_port, wait_for, Home};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn examples() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Whether the Node example's dependencies are installed (says how to install them if not).
pub(crate) fn node_ready() -> bool {
    let ok = examples().join("mcp-node/node_modules/@modelcontextprotocol/sdk").exists();
    if !ok {
        eprintln!("run `npm ci --prefix examples/mcp-node` first (CI does); skipping");
    }
    ok
}

pub(crate) fn python_ready() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import mcp.server.fastmcp"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("run `pip install -r examples/mcp-python/requirements.txt` first (CI does); skipping");
    }
    ok
}

fn probe_json(home: &Home, target: &str) -> Value {
    serde_json::from_str(&home.ok(&["probe", target, "--json"])).unwrap()
}

/// An example's config with its port replaced by a free one and its cwd made absolute.
fn example_config(home: &Home, name: &str, port: u16, extra: &str) -> PathBuf {
    let (dir, default_port) = if name == "mcp-node" { ("mcp-node", "3100") } else { ("mcp-python", "3200") };
    let text = std::fs::read_to_string(examples().join(format!("{name}.toml")))
        .unwrap()
        .replace(default_port, &port.to_string())
        .replace(&format!("cwd = \"{dir}\""), &format!("cwd = {:?}", examples().join(dir)));
    home.write(&format!("{name}.toml"), &format!("{text}{extra}"))
}

#[test]
fn the_node_sdk_example_is_ready_by_mcp_and_probed() {
    if !node_ready() {
        return;
    }
    let home = Home::new();
    let port = free_port();
    home.ok(&["start", example_config(&home, "mcp-node", port, "").to_str().unwrap()]);
    let report = probe_json(&home, "mcp-node");
    assert_eq!(
        (report["revision"].as_str(), report["transport"].as_str()),
        (Some("2025-11-25"), Some("streamable-http")),
        "{report}"
    );
    assert_eq!(
        (report["server_name"].as_str(), report["tool_count"].as_u64()),
        (Some("mcpd-example-node"), Some(2)),
        "{report}"
    );
    let hash = report["tools_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    home.ok(&["probe", "mcp-node", "--expect-hash", hash]);
    let out = home.run(&["probe", "mcp-node", "--expect-hash", &"0".repeat(64)]);
    assert_eq!(out.status.code(), Some(6), "a hash mismatch exits 6");
    let health = home.run(&["probe", &format!("http://127.0.0.1:{port}/health")]);
    assert_eq!(health.status.code(), Some(4), "a plain HTTP endpoint is not MCP (exit 4)");
    let gone = home.run(&["probe", &format!("http://127.0.0.1:{}/mcp", free_port())]);
    assert_eq!(gone.status.code(), Some(3), "nothing listening is unreachable (exit 3)");
}

#[test]
fn the_python_example_over_streamable_http_and_the_deprecated_sse_transport() {
    if !python_ready() {
        return;
    }
    let home = Home::new();
    let port = free_port();
    home.ok(&["start", example_config(&home, "mcp-python", port, "").to_str().unwrap()]);
    let report = probe_json(&home, "mcp-python");
    assert_eq!(
        (report["transport"].as_str(), report["tool_count"].as_u64()),
        (Some("streamable-http"), Some(2)),
        "{report}"
    );
    let sse_port = free_port();
    let server = examples().join("mcp-python/server.py");
    let config = home.write(
        "sse.toml",
        &format!("[apps.sse]\ncommand = \"python3\"\nargs = [{server:?}]\nenv = {{ TRANSPORT = \"sse\", PORT = \"{sse_port}\" }}\nready = {{ tcp = \"127.0.0.1:{sse_port}\" }}\n"),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let sse = probe_json(&home, &format!("http://127.0.0.1:{sse_port}/sse"));
    assert_eq!((sse["transport"].as_str(), sse["revision"].as_str()), (Some("http+sse"), Some("2024-11-05")), "{sse}");
    assert_eq!(sse["tools_hash"], report["tools_hash"], "the same tools over both transports hash the same");
}

#[test]
fn the_stateless_2026_revision_is_found_first() {
    let home = Home::new();
    let port = free_port();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/fixtures/stateless_mcp.py");
    let config = home.write(
        "s.toml",
        &format!("[apps.stateless]\ncommand = \"python3\"\nargs = [{fixture:?}]\nenv = {{ PORT = \"{port}\" }}\nready = {{ mcp = \"http://127.0.0.1:{port}/mcp\" }}\n"),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let report = probe_json(&home, "stateless");
    assert_eq!(
        (report["revision"].as_str(), report["server_name"].as_str(), report["tool_count"].as_u64()),
        (Some("2026-07-28"), Some("stateless-fixture"), Some(1)),
        "{report}"
    );
}

#[test]
fn a_broken_mcp_handler_is_restarted_although_its_process_and_health_url_live() {
    if !node_ready() {
        return;
    }
    let home = Home::new();
    let port = free_port();
    let extra = "";
    let config = example_config(&home, "mcp-node", port, extra)
        .to_str()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap()
        .replace(
            "interval = \"10s\", timeout = \"3s\", failures = 3",
            "interval = \"300ms\", timeout = \"500ms\", failures = 2",
        );
    let config = home.write("broken.toml", &config);
    home.ok(&["start", config.to_str().unwrap()]);
    let first = home.pid("mcp-node");
    std::fs::write(examples().join("mcp-node/mcp-broken"), first.to_string()).unwrap();
    let cleanup = Cleanup(examples().join("mcp-node/mcp-broken"));
    // The process runs and its plain health URL answers 200...
    let health = http_get(port, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // ...yet the MCP health check restarts it.
    let exit = wait_for("the MCP health check to replace the generation", Duration::from_secs(20), || {
        let exits = home.describe("mcp-node")["last_exits"].clone();
        exits.as_array().into_iter().flatten().find(|e| e["pid"] == first).cloned().ok_or_else(|| exits.to_string())
    });
    let reason = exit["reason"].as_str().unwrap();
    assert!(reason.starts_with("health check failed 2 times in a row"), "{exit}");
    home.wait_app("mcp-node", "a new generation online", |r| r["status"] == "online" && r["pid"] != first);
    drop(cleanup);
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_rust_rmcp_example_speaks_the_stateless_revision() {
    // Built by `cargo test --workspace` (it is an example of the root package).
    let binary = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/mcp-rust");
    if !binary.exists() {
        eprintln!("{} is not built (cargo build --example mcp-rust); skipping", binary.display());
        return;
    }
    let home = Home::new();
    let port = free_port();
    let text = std::fs::read_to_string(examples().join("mcp-rust.toml"))
        .unwrap()
        .replace("3300", &port.to_string())
        .replace("\"../target/debug/examples/mcp-rust\"", &format!("{:?}", binary.display().to_string()));
    let config = home.write("mcp-rust.toml", &text);
    home.ok(&["start", config.to_str().unwrap()]);
    let report = probe_json(&home, "mcp-rust");
    assert_eq!(
        (report["revision"].as_str(), report["server_name"].as_str(), report["tool_count"].as_u64()),
        (Some("2026-07-28"), Some("rmcp"), Some(2)),
        "{report}"
    );
    let pid = home.pid("mcp-rust");
    home.ok(&["stop", "mcp-rust"]);
    let exit = home.describe("mcp-rust")["last_exits"][0].clone();
    assert_eq!(
        (exit["pid"].as_u64(), exit["code"].as_i64()),
        (Some(u64::from(pid)), Some(0)),
        "it drained and exited 0: {exit}"
    );
}

#[test]
fn a_reload_whose_tools_changed_is_rolled_back_with_refuse_and_reported_with_warn() {
    if !node_ready() {
        return;
    }
    let home = Home::new();
    let port = free_port();
    let config = |policy: &str, extra_tool: Option<&str>| {
        let env = extra_tool.map_or(String::new(), |t| format!("env = {{ EXTRA_TOOL = \"{t}\" }}\n"));
        format!(
            "[apps.guarded]\ncommand = \"node\"\nargs = [\"server.js\"]\ncwd = {:?}\nfront = {{ listen = \"127.0.0.1:{port}\" }}\n\
             ready = {{ mcp = \"http://127.0.0.1:{port}/mcp\" }}\non_tools_change = \"{policy}\"\n{env}",
            examples().join("mcp-node")
        )
    };
    let file = home.write("guarded.toml", &config("refuse", None));
    home.ok(&["start", file.to_str().unwrap()]);
    let old = home.pid("guarded");
    let before = probe_json(&home, "guarded");
    // Same tools: the reload goes ahead.
    home.ok(&["reload", "guarded"]);
    let serving = home.pid("guarded");
    assert_ne!(serving, old);
    // One tool more: refused, rolled back, the serving generation untouched.
    let changed = home.write("changed.toml", &config("refuse", Some("bonus")));
    let err = home.fails(&["reload", "guarded", "--config", changed.to_str().unwrap()]);
    assert!(err.contains("tools differ") && err.contains("keeps serving"), "{err}");
    assert_eq!(home.pid("guarded"), serving);
    assert_eq!(probe_json(&home, "guarded")["tools_hash"], before["tools_hash"], "still the old tools");
    // With warn it goes ahead and says so.
    let warned = home.write("warned.toml", &config("warn", Some("bonus")));
    let out = home.ok(&["reload", "guarded", "--config", warned.to_str().unwrap()]);
    assert!(out.contains("warning: the new generation's tools differ"), "{out}");
    assert_eq!(probe_json(&home, "guarded")["tool_count"], 3);
}
