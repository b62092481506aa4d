//! The session-aware MCP front with real clients of the official TypeScript SDK: no call
//! fails and no session is lost across reloads of a sessionful server.

use crate::common::{free_port, http, signal, wait_for, Home};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

pub(crate) fn mcp_node() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mcp-node")
}

/// The output of a load.js run: "connected N", then "calls N failed M" lines, then the summary.
pub(crate) struct Load {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Load {
    /// Starts `node load.js URL 20` in `dir` and waits until every client is connected.
    pub(crate) fn start(dir: &std::path::Path, port: u16) -> Load {
        Load::start_with(dir, port, &[])
    }

    /// The same with extra environment for load.js (`SLOW_MS`).
    pub(crate) fn start_with(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Load {
        let mut child = Command::new("node")
            .arg("load.js")
            .arg(format!("http://127.0.0.1:{port}/mcp"))
            .arg("20")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "connected 20", "the clients connected through the front");
        Load { child, out }
    }

    /// Reads progress until the clients have made `more` calls since `from`; returns the count.
    pub(crate) fn calls_past(&mut self, from: u64, more: u64) -> u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = String::new();
        while std::time::Instant::now() < deadline {
            let mut line = String::new();
            if self.out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let calls: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
            if calls >= from + more {
                return calls;
            }
            seen = line;
        }
        panic!("the clients did not make {more} calls past {from} within 30 s; last progress: {seen}");
    }

    /// Stops the clients (SIGTERM) and returns their summary.
    pub(crate) fn finish(mut self) -> serde_json::Value {
        signal(self.child.id(), libc::SIGTERM);
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(self.child.wait().unwrap().success(), "{stderr}");
        let summary = rest.lines().find(|l| l.starts_with('{')).unwrap_or_default();
        let stats: serde_json::Value = serde_json::from_str(summary).unwrap_or_else(|e| panic!("{e}: {rest} {stderr}"));
        eprintln!("clients: {stats}");
        stats
    }
}

/// The pids of an app's instances (instance 0 first).
pub(crate) fn instance_pids(home: &Home, name: &str) -> Vec<u32> {
    home.list().iter().filter(|r| r["name"] == name).map(|r| r["pid"].as_u64().unwrap_or(0) as u32).collect()
}

/// Sessions held per generation, as `list --json` shows them.
pub(crate) fn sessions_held(home: &Home, name: &str) -> Vec<(u32, u64)> {
    home.app(name).unwrap()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["pid"].as_u64().unwrap() as u32, s["sessions"].as_u64().unwrap()))
        .collect()
}

/// Runs 20 SDK clients (a call every 100 ms each, some 800 ms calls) through a front over
/// `instances` processes while reloading five times; returns the clients' summary.
fn sessions_across_reloads(instances: u32) {
    if !crate::mcp::node_ready() {
        return;
    }
    let home = Home::new();
    let port = free_port();
    let config = home.write(
        "front.toml",
        &format!(
            "[apps.mcp]\ncommand = \"node\"\nargs = [\"server.js\"]\ncwd = {:?}\ninstances = {instances}\n\
             front = {{ listen = \"127.0.0.1:{port}\", session_idle_timeout = \"2s\", drain_deadline = \"2m\" }}\n\
             ready = {{ mcp = \"http://127.0.0.1:{port}/mcp\" }}\nkill_timeout = \"10s\"\n",
            mcp_node()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let first = instance_pids(&home, "mcp");
    assert_eq!(first.len(), instances as usize, "one row per instance");
    let mut load = Load::start(&mcp_node(), port);
    let spread: Vec<u64> =
        sessions_held(&home, "mcp").iter().filter(|(pid, _)| first.contains(pid)).map(|(_, n)| *n).collect();
    let even = 20 / u64::from(instances);
    assert_eq!(spread, vec![even; instances as usize], "new sessions were spread evenly over the instances");
    let mut pids = first.clone();
    let mut calls = 0;
    for i in 0..5 {
        // Every reload happens while the clients are calling.
        calls = load.calls_past(calls, 100);
        let said = home.ok(&["reload", "mcp"]);
        assert_eq!(said.matches("takes new sessions").count(), instances as usize, "reload {i}: {said}");
        let now = instance_pids(&home, "mcp");
        assert!(now.iter().all(|p| !pids.contains(p)), "reload {i} replaced every instance: {now:?}");
        pids.extend(now);
        // New sessions (the probe's) reach the new generations while the old keep their own.
        home.ok(&["probe", "mcp"]);
    }
    let held = sessions_held(&home, "mcp");
    let on_first: u64 = held.iter().filter(|(pid, _)| first.contains(pid)).map(|(_, n)| n).sum();
    assert_eq!(on_first, 20, "the first generations still hold the 20 busy sessions: {held:?}");
    load.calls_past(calls, 100);
    let stats = load.finish();
    assert_eq!((stats["failed"].as_u64(), stats["lost"].as_u64()), (Some(0), Some(0)), "{stats}");
    assert!(stats["calls"].as_u64().unwrap() > 100 && stats["slow_calls"].as_u64().unwrap() > 0, "{stats}");
    // The sessions were deleted: once idle, every old generation drains and only the newest stay.
    let mut newest = instance_pids(&home, "mcp");
    newest.sort();
    wait_for("the old generations to drain once their sessions ended", Duration::from_secs(20), || {
        let gens: Vec<u32> = sessions_held(&home, "mcp").into_iter().map(|(pid, _)| pid).collect();
        if gens == newest {
            Ok(())
        } else {
            Err(format!("{gens:?}"))
        }
    });
    let exits = home.describe("mcp")["last_exits"].clone();
    let drained = exits.as_array().unwrap().iter().filter(|e| e["reason"] == "user reload" && e["code"] == 0).count();
    assert_eq!(drained, 5, "instance 0's five old generations drained and exited 0: {exits}");
}

#[test]
fn sdk_clients_keep_every_session_and_call_across_five_reloads() {
    sessions_across_reloads(1);
}

#[test]
fn with_two_instances_sessions_spread_and_survive_five_reloads() {
    sessions_across_reloads(2);
}

#[test]
fn a_front_without_a_ready_generation_answers_503() {
    let home = Home::new();
    let port = free_port();
    let config = home.write(
        "slow.toml",
        &format!("[apps.slow]\ncommand = \"sleep\"\nargs = [\"infinity\"]\nfront = {{ listen = \"127.0.0.1:{port}\" }}\nready = \"notify\"\nready_timeout = \"30s\"\n"),
    );
    home.ok(&["start", "--no-wait", config.to_str().unwrap()]);
    let (_, reply) = wait_for("the front to answer", Duration::from_secs(10), || {
        http(port, "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    });
    assert!(reply.starts_with("HTTP/1.1 503") && reply.to_ascii_lowercase().contains("retry-after: 1"), "{reply}");
}

/// DELETEs a session through the front; returns the status.
pub(crate) fn delete(port: u16, session: &str) -> u16 {
    let request = format!(
        "DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: {session}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    http(port, &request).map(|(status, _)| status).unwrap_or(0)
}

/// POSTs a JSON-RPC message through the front; returns (status, session header, body).
pub(crate) fn post(port: u16, session: Option<&str>, body: &str) -> (u16, Option<String>, String) {
    let sid =
        session.map_or(String::new(), |id| format!("Mcp-Session-Id: {id}\r\nMcp-Protocol-Version: 2025-06-18\r\n"));
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{sid}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = http(port, &request).unwrap_or_else(|e| panic!("POST through the front: {e}"));
    let header = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("mcp-session-id:").then(|| l[15..].trim().to_string()));
    (status, header, text)
}

#[test]
fn after_a_crash_its_sessions_get_404_and_new_sessions_work() {
    if !crate::mcp::node_ready() {
        return;
    }
    let home = Home::new();
    let port = free_port();
    let config = home.write(
        "crash.toml",
        &format!(
            "[apps.mcp]\ncommand = \"node\"\nargs = [\"server.js\"]\ncwd = {:?}\nfront = {{ listen = \"127.0.0.1:{port}\" }}\nready = {{ mcp = \"http://127.0.0.1:{port}/mcp\" }}\nrestart_delay = \"100ms\"\n",
            mcp_node()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (status, session, _) = post(port, None, init);
    let session = session.unwrap_or_else(|| panic!("initialize through the front gave no session ({status})"));
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    assert_eq!(post(port, Some(&session), list).0, 200, "the session works");
    let first = home.pid("mcp");
    signal(first, libc::SIGKILL);
    home.wait_app("mcp", "restarted", |r| r["status"] == "online" && r["pid"] != first);
    let (status, _, text) = post(port, Some(&session), list);
    assert_eq!(status, 404, "the crashed generation's session is gone: {text}");
    let (status, fresh, _) = post(port, None, init);
    assert!(status == 200 && fresh.is_some(), "a new session works on the new generation ({status})");
}

pub(crate) fn stateless_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mcp-node-stateless")
}

#[test]
fn sdk2_clients_of_a_stateless_server_lose_no_call_across_five_reloads() {
    if !stateless_dir().join("node_modules/@modelcontextprotocol/server").exists() {
        eprintln!("run `npm ci --prefix examples/mcp-node-stateless` first (CI does); skipping");
        return;
    }
    let home = Home::new();
    let port = free_port();
    let config = home.write(
        "stateless.toml",
        &format!(
            "[apps.stateless]\ncommand = \"node\"\nargs = [\"server.js\"]\ncwd = {:?}\ninstances = 2\n\
             front = {{ listen = \"127.0.0.1:{port}\" }}\nready = {{ mcp = \"http://127.0.0.1:{port}/mcp\" }}\n\
             kill_timeout = \"10s\"\n",
            stateless_dir()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let mut load = Load::start(&stateless_dir(), port);
    let mut seen = instance_pids(&home, "stateless");
    let mut calls = 0;
    for i in 0..5 {
        calls = load.calls_past(calls, 100);
        let said = home.ok(&["reload", "stateless"]);
        assert_eq!(said.matches("takes new sessions").count(), 2, "reload {i}: {said}");
        let now = instance_pids(&home, "stateless");
        assert!(now.iter().all(|p| !seen.contains(p)), "reload {i} replaced both instances: {now:?}");
        seen.extend(now);
    }
    // Calls keep flowing to the newest generations after the last reload.
    let calls_after = home.ok(&["probe", "stateless"]);
    assert!(calls_after.contains("tools"), "{calls_after}");
    load.calls_past(calls, 100);
    let stats = load.finish();
    assert_eq!(stats["failed"].as_u64(), Some(0), "{stats}");
    assert!(stats["calls"].as_u64().unwrap() > 100 && stats["slow_calls"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["protocols"], serde_json::json!(["2025-11-25", "2026-07-28"]), "both revisions were spoken");
    assert!(stats["server_pids"].as_u64().unwrap() >= 2, "calls were spread over processes: {stats}");
}
