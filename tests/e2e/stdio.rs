//! stdio MCP servers behind the front (`stdio = { ... }`): real servers from npm and PyPI
//! driven by official SDK clients over Streamable HTTP, and the faults a gateway must survive
//! (clients that vanish, children that crash or grow, stop and reload with live sessions).

use crate::common::{free_port, signal, wait_for, Home};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn stdio_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mcp-stdio")
}

/// Whether the reference servers and the SDK are installed (`npm ci --prefix examples/mcp-stdio`).
pub(crate) fn stdio_ready() -> bool {
    let ok = stdio_dir().join("node_modules/@modelcontextprotocol/server-everything").exists()
        && stdio_dir().join("node_modules/@modelcontextprotocol/sdk").exists();
    if !ok {
        eprintln!("run `npm ci --prefix examples/mcp-stdio` first (CI does); skipping");
    }
    ok
}

const FIXTURE: &str = include_str!("fixtures/stdio_server.py");

/// The live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker) && crate::common::alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// A stdio app of the fixture server in `mode`, behind a front on a free port (sessions idle
/// for 2 s end).
fn fixture_app(home: &Home, mode: &str, extra: &str) -> (u16, String) {
    fixture_app_idle(home, mode, extra, "2s")
}

fn fixture_app_idle(home: &Home, mode: &str, extra: &str, idle: &str) -> (u16, String) {
    let script = home.write("stdio_server.py", FIXTURE);
    let port = free_port();
    let config = home.write(
        "stdio.toml",
        &format!(
            "[apps.fixture]\ncommand = \"python3\"\nargs = [{:?}, {mode:?}]\n\
             front = {{ listen = \"127.0.0.1:{port}\", session_idle_timeout = \"{idle}\" }}\n{extra}\n",
            script.display().to_string()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    (port, script.display().to_string())
}

fn initialize(port: u16, name: &str) -> (u16, Option<String>, String) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"{name}","version":"1"}}}}}}"#
    );
    crate::front::post(port, None, &body)
}

fn call(port: u16, session: &str, id: u32, tool: &str, args: &str) -> (u16, String) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
    );
    let (status, _, text) = crate::front::post(port, Some(session), &body);
    (status, text)
}

/// The bridge's status line (`list`): "N session(s) ..., M warm child(ren)".
fn status(home: &Home) -> String {
    home.app("fixture").and_then(|r| r["status_text"].as_str().map(str::to_string)).unwrap_or_default()
}

/// Runs `node client.js URL N KIND` and returns its summary.
fn sdk_clients(port: u16, n: u32, kind: &str) -> serde_json::Value {
    let out = Command::new("node")
        .args(["client.js", &format!("http://127.0.0.1:{port}/mcp"), &n.to_string(), kind])
        .current_dir(stdio_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no summary from client.js: {text} {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(line).unwrap()
}

#[test]
fn reference_servers_from_npm_serve_sdk_clients_a_child_per_session() {
    if !stdio_ready() {
        return;
    }
    let home = Home::new();
    let (everything, memory, memory_shared) = (free_port(), free_port(), free_port());
    let bin = stdio_dir().join("node_modules/.bin");
    let config = home.write(
        "stdio.toml",
        &format!(
            "[apps.everything]\ncommand = {:?}\nargs = [\"stdio\"]\nfront = {{ listen = \"127.0.0.1:{everything}\" }}\n\
             stdio = {{ sessions = \"per-session\", warm = 2 }}\n\n\
             [apps.memory]\ncommand = {:?}\nfront = {{ listen = \"127.0.0.1:{memory}\" }}\nstdio = {{ warm = 1 }}\n\
             env = {{ MEMORY_FILE_PATH = {:?} }}\n\n\
             [apps.memory-shared]\ncommand = {:?}\nfront = {{ listen = \"127.0.0.1:{memory_shared}\" }}\nstdio = {{ sessions = \"shared\" }}\n\
             env = {{ MEMORY_FILE_PATH = {:?} }}\n",
            bin.join("mcp-server-everything").display().to_string(),
            bin.join("mcp-server-memory").display().to_string(),
            home.file("memory.jsonl").display().to_string(),
            bin.join("mcp-server-memory").display().to_string(),
            home.file("memory-shared.jsonl").display().to_string()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let stats = sdk_clients(everything, 5, "everything");
    eprintln!("server-everything: {stats}");
    for key in ["sessions", "tools", "echo", "progress", "resources", "sampling"] {
        assert_eq!(stats[key].as_u64(), Some(5), "{key}: {stats}");
    }
    let stats = sdk_clients(memory, 3, "memory");
    eprintln!("server-memory: {stats}");
    assert_eq!((stats["sessions"].as_u64(), stats["stored"].as_u64()), (Some(3), Some(3)), "{stats}");
    // Shared: one server (and one graph file) for every session; clients one at a time, as
    // the server's file store expects.
    for round in 0..3 {
        let stats = sdk_clients(memory_shared, 1, "memory");
        assert_eq!(
            (stats["sessions"].as_u64(), stats["stored"].as_u64()),
            (Some(1), Some(1)),
            "round {round}: {stats}"
        );
    }
    // `mcpd probe` goes through the front to a child too.
    let probe = home.ok(&["probe", &format!("http://127.0.0.1:{everything}/mcp")]);
    assert!(probe.contains("mcp-servers/everything"), "{probe}");
    // Each child's stderr is in the app's log, tagged with its session.
    let log = std::fs::read_to_string(home.path().join("logs/everything.err.log")).unwrap_or_default();
    assert!(log.contains("[session "), "{log}");
}

#[test]
fn a_child_that_crashes_answers_its_client_with_an_error_at_once() {
    let home = Home::new();
    let (port, _) = fixture_app(&home, "crash-init", "stdio = { warm = 1 }");
    let started = Instant::now();
    let (status, session, text) = initialize(port, "client");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "answered after {took:?}: {text}");
    assert_eq!((status, session), (200, None), "{text}");
    assert!(text.contains("exited with code 3") && text.contains("crashing during initialize"), "{text}");
    home.ok(&["delete", "fixture"]);

    let home = Home::new();
    let (port, _) = fixture_app(&home, "crash-call", "stdio = { warm = 1 }");
    let (status, session, text) = initialize(port, "client");
    assert_eq!(status, 200, "{text}");
    let session = session.expect("a session id");
    let started = Instant::now();
    let (status, text) = call(port, &session, 2, "echo", r#"{"message":"x"}"#);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "answered after {took:?}: {text}");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("exited with code 4") && text.contains("crashing in the middle of a call"), "{text}");
    // The session is gone with its child: the client is told to start a new one.
    wait_for("the session to be forgotten", Duration::from_secs(5), || match call(port, &session, 3, "echo", "{}") {
        (404, _) => Ok(()),
        (status, text) => Err(format!("{status} {text}")),
    });
}

#[test]
fn a_child_over_its_memory_limit_ends_only_its_own_session() {
    let home = Home::new();
    let (port, _) = fixture_app(&home, "ok", "stdio = { warm = 2 }\nmax_memory_restart = \"150M\"");
    let (_, a, _) = initialize(port, "a");
    let (_, b, _) = initialize(port, "b");
    let (a, b) = (a.expect("session a"), b.expect("session b"));
    let (status, text) = call(port, &a, 2, "hog", r#"{"mib": 400}"#);
    // The hog answers before the next memory sample, or is ended while it allocates.
    if !text.contains("memory limit") {
        assert_eq!(status, 200, "{text}");
        wait_for("the hog's session to end", Duration::from_secs(10), || match call(port, &a, 3, "echo", "{}") {
            (404, _) => Ok(()),
            (status, text) => Err(format!("{status} {text}")),
        });
    }
    let (status, text) = call(port, &b, 2, "echo", r#"{"message":"still here"}"#);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("echo: still here"), "the other session is untouched: {text}");
    let log = std::fs::read_to_string(home.path().join("logs/fixture.err.log")).unwrap_or_default();
    assert!(log.contains("over the memory limit (150 MiB): the session ended"), "{log}");
}

#[test]
fn a_hundred_clients_killed_mid_call_leave_no_child_behind() {
    if !stdio_ready() {
        return;
    }
    let home = Home::new();
    // 5 s: a hundred clients connecting at once on a busy machine may pause that long
    // between their initialize and their next request.
    let (port, script) = fixture_app_idle(&home, "ok", "stdio = { warm = 1, max_sessions = 150 }", "5s");
    let mut clients = Command::new("node")
        .args(["hold.js", &format!("http://127.0.0.1:{port}/mcp"), "100"])
        .current_dir(stdio_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(clients.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "holding 100");
    wait_for("100 sessions with a child each", Duration::from_secs(60), || {
        let n = processes_with(&script).len();
        if n >= 101 {
            Ok(())
        } else {
            Err(format!("{n} children; {}", status(&home)))
        }
    });
    // Every client dies at once, its streams open and its calls in flight.
    signal(clients.id(), libc::SIGKILL);
    let _ = clients.wait();
    let started = Instant::now();
    wait_for("every session's child to end", Duration::from_secs(30), || {
        let n = processes_with(&script).len();
        // The warm child stays.
        if n <= 1 && status(&home).starts_with("0 session") {
            Ok(())
        } else {
            Err(format!("{n} children; {}", status(&home)))
        }
    });
    eprintln!("100 vanished clients' children were gone {:?} after the kill", started.elapsed());
}

#[test]
fn stop_and_reload_with_fifty_live_sessions_leave_no_child_behind() {
    let home = Home::new();
    let (port, script) = fixture_app_idle(&home, "ok", "stdio = { warm = 1 }", "5m");
    let sessions: Vec<String> = (0..50).map(|i| initialize(port, &format!("c{i}")).1.expect("a session")).collect();
    wait_for("50 children and the warm one", Duration::from_secs(20), || {
        let n = processes_with(&script).len();
        if n == 51 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    });
    let old_bridge = home.pid("fixture");
    home.ok(&["reload", "fixture"]);
    // The old bridge keeps its sessions; they still answer.
    let (status, text) = call(port, &sessions[0], 2, "echo", r#"{"message":"old"}"#);
    assert!(status == 200 && text.contains("echo: old"), "{status} {text}");
    for s in &sessions {
        crate::front::delete(port, s);
    }
    wait_for("the old bridge and its children to be gone", Duration::from_secs(30), || {
        let n = processes_with(&script).len();
        // The new generation's warm child only.
        if n == 1 && !crate::common::alive(old_bridge) {
            Ok(())
        } else {
            Err(format!("{n} children, old bridge alive: {}", crate::common::alive(old_bridge)))
        }
    });
    let more: Vec<String> = (0..50).map(|i| initialize(port, &format!("d{i}")).1.expect("a session")).collect();
    assert_eq!(more.len(), 50);
    home.ok(&["stop", "fixture"]);
    let left = processes_with(&script);
    assert!(left.is_empty(), "after stop, children left: {left:?}");
}

#[test]
fn shared_mode_serves_every_session_from_one_child_with_ids_that_never_cross() {
    if !stdio_ready() {
        return;
    }
    let home = Home::new();
    let port = free_port();
    let config = home.write(
        "stdio.toml",
        &format!(
            "[apps.everything]\ncommand = {:?}\nfront = {{ listen = \"127.0.0.1:{port}\" }}\nstdio = {{ sessions = \"shared\" }}\n",
            stdio_dir().join("node_modules/.bin/mcp-server-everything").display().to_string()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    // Five SDK clients, whose request ids all start at 0: each gets its own answers.
    let stats = sdk_clients(port, 5, "everything");
    eprintln!("shared server-everything: {stats}");
    for key in ["sessions", "tools", "echo", "progress", "resources"] {
        assert_eq!(stats[key].as_u64(), Some(5), "{key}: {stats}");
    }
    // The server was told of no client capability: its sampling tool is not there.
    assert_eq!(stats["sampling"].as_u64(), Some(0), "{stats}");
    let row = home.app("everything").unwrap();
    let text = row["status_text"].as_str().unwrap_or_default().to_string();
    assert!(text.contains("sharing pid"), "one child: {row}");
}

/// A FastMCP server (Python `mcp`) on its default transport, stdio.
const FASTMCP_STDIO: &str = r#"
from mcp.server.fastmcp import FastMCP
mcp = FastMCP("py-stdio")

@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b

mcp.run()
"#;

#[test]
fn a_python_fastmcp_server_and_2026_clients_are_served_in_both_modes() {
    if !stdio_ready() || !crate::mcp::python_ready() {
        return;
    }
    let home = Home::new();
    let script = home.write("fastmcp_stdio.py", FASTMCP_STDIO);
    let (per_session, shared, everything) = (free_port(), free_port(), free_port());
    let config = home.write(
        "stdio.toml",
        &format!(
            "[apps.py]\ncommand = \"python3\"\nargs = [{script:?}]\nfront = {{ listen = \"127.0.0.1:{per_session}\" }}\nstdio = {{ warm = 2 }}\n\n\
             [apps.pyshared]\ncommand = \"python3\"\nargs = [{script:?}]\nfront = {{ listen = \"127.0.0.1:{shared}\" }}\nstdio = {{ sessions = \"shared\" }}\n\n\
             [apps.everything]\ncommand = {:?}\nfront = {{ listen = \"127.0.0.1:{everything}\" }}\nstdio = {{ warm = 1 }}\n",
            stdio_dir().join("node_modules/.bin/mcp-server-everything").display().to_string()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    for port in [per_session, shared] {
        let stats = sdk_clients(port, 4, "add");
        eprintln!("FastMCP on {port}: {stats}");
        assert_eq!(
            (stats["sessions"].as_u64(), stats["tools"].as_u64(), stats["echo"].as_u64()),
            (Some(4), Some(4), Some(4)),
            "{stats}"
        );
    }
    // SDK 2.x clients: two negotiate the 2026-07-28 revision (server/discover, requests
    // without a session), two speak the 2025 one.
    let out = Command::new("node")
        .args(["client2.js", &format!("http://127.0.0.1:{everything}/mcp"), "4"])
        .current_dir(stdio_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stats: serde_json::Value =
        serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap_or("{}")).unwrap();
    eprintln!("SDK 2.x: {stats}");
    for key in ["clients", "tools", "echo", "progress"] {
        assert_eq!(stats[key].as_u64(), Some(4), "{key}: {stats}");
    }
    assert_eq!(stats["protocols"], serde_json::json!(["2025-11-25", "2026-07-28"]), "{stats}");
}

#[test]
fn a_child_holds_no_descriptor_of_mcpd_and_leaves_no_process_behind() {
    let home = Home::new();
    let (port, script) = fixture_app(&home, "spawn", "stdio = { warm = 0 }");
    let (_, session, text) = initialize(port, "c");
    let session = session.unwrap_or_else(|| panic!("no session: {text}"));
    // The bridge's listening socket (and anything else of mcpd's) stays out of the child.
    let (status, fds) = call(port, &session, 2, "fds", "{}");
    assert_eq!(status, 200, "{fds}");
    assert!(!fds.contains("socket:"), "the child holds a socket of mcpd's: {fds}");
    // The child started a process of its own: ending the session ends it too, though its
    // parent exits on its own once its stdin closes (and leaves it to the daemon).
    let grandchild = format!("grandchild-of {script}");
    wait_for("the fixture's own child", Duration::from_secs(10), || {
        if processes_with(&grandchild).len() == 1 {
            Ok(())
        } else {
            Err(format!("{:?}", processes_with(&grandchild)))
        }
    });
    assert_eq!(crate::front::delete(port, &session), 200);
    wait_for("the session's child and its own child to end", Duration::from_secs(15), || {
        let (left, below) = (processes_with(&format!("{script} spawn")).len(), processes_with(&grandchild).len());
        if left == 0 && below == 0 {
            Ok(())
        } else {
            Err(format!("{left} children, {below} of their own"))
        }
    });
}
