//! The session-aware MCP front with real clients of the official TypeScript SDK: no call
//! fails and no session is lost across reloads of a sessionful server.

use crate::common::{signal, wait_for, Home};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

fn mcp_node() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mcp-node")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn sdk_clients_keep_every_session_and_call_across_five_reloads() {
    if !crate::mcp::node_ready() {
        return;
    }
    let home = Home::new();
    let port = free_port();
    let config = home.write(
        "front.toml",
        &format!(
            "[apps.mcp]\ncommand = \"node\"\nargs = [\"server.js\"]\ncwd = {:?}\n\
             front = {{ listen = \"127.0.0.1:{port}\", session_idle_timeout = \"2s\", drain_deadline = \"2m\" }}\n\
             ready = {{ mcp = \"http://127.0.0.1:{port}/mcp\" }}\nkill_timeout = \"10s\"\n",
            mcp_node()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let first = home.pid("mcp");
    let mut clients = Command::new("node")
        .arg("load.js")
        .arg(format!("http://127.0.0.1:{port}/mcp"))
        .arg("20")
        .current_dir(mcp_node())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(clients.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected 20", "the clients connected through the front");
    let mut pids = vec![first];
    for i in 0..5 {
        let said = home.ok(&["reload", "mcp"]);
        assert!(said.contains("takes new sessions"), "reload {i}: {said}");
        pids.push(home.pid("mcp"));
        // New sessions (the probe's) reach the new generation while the old keeps its own.
        home.ok(&["probe", "mcp"]);
    }
    let row = home.app("mcp").unwrap();
    let held: Vec<(u64, u64)> = row["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["pid"].as_u64().unwrap(), s["sessions"].as_u64().unwrap()))
        .collect();
    assert!(held.contains(&(u64::from(first), 20)), "the first generation still holds the 20 busy sessions: {held:?}");
    signal(clients.id(), libc::SIGTERM);
    let mut summary = String::new();
    out.read_to_string(&mut summary).unwrap();
    let mut stderr = String::new();
    clients.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(clients.wait().unwrap().success(), "{stderr}");
    let stats: serde_json::Value =
        serde_json::from_str(summary.trim()).unwrap_or_else(|e| panic!("{e}: {summary} {stderr}"));
    assert_eq!((stats["failed"].as_u64(), stats["lost"].as_u64()), (Some(0), Some(0)), "{stats}");
    assert!(stats["calls"].as_u64().unwrap() > 100 && stats["slow_calls"].as_u64().unwrap() > 0, "{stats}");
    // The sessions were deleted: once idle, every old generation drains and only the newest stays.
    let newest = *pids.last().unwrap();
    wait_for("the old generations to drain once their sessions ended", Duration::from_secs(20), || {
        let row = home.app("mcp").unwrap();
        let gens: Vec<u64> = row["sessions"].as_array().unwrap().iter().map(|s| s["pid"].as_u64().unwrap()).collect();
        if gens == [u64::from(newest)] {
            Ok(())
        } else {
            Err(format!("{gens:?}"))
        }
    });
    let exits = home.describe("mcp")["last_exits"].clone();
    let drained = exits.as_array().unwrap().iter().filter(|e| e["reason"] == "user reload" && e["code"] == 0).count();
    assert_eq!(drained, 5, "five old generations drained and exited 0: {exits}");
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
    let reply = wait_for("the front to answer", Duration::from_secs(10), || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.write_all(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(|e| e.to_string())?;
        Ok::<_, String>(text)
    });
    assert!(reply.starts_with("HTTP/1.1 503") && reply.to_ascii_lowercase().contains("retry-after: 1"), "{reply}");
}

/// POSTs a JSON-RPC message through the front; returns (status, session header, body).
fn post(port: u16, session: Option<&str>, body: &str) -> (u16, Option<String>, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let sid =
        session.map_or(String::new(), |id| format!("Mcp-Session-Id: {id}\r\nMcp-Protocol-Version: 2025-06-18\r\n"));
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{sid}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
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
