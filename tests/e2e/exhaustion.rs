//! Clients that connect and say nothing, or say nonsense: the daemon bounds them, closes
//! them after a while, answers nonsense with an error, and keeps serving everyone else.

use crate::common::{free_port, http, wait_for, Home};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// CPU time (user + system, in clock ticks) a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

#[test]
fn idle_control_connections_are_bounded_and_closed() {
    let home = Home::new();
    home.ok(&["ping"]);
    let daemon = home.daemon_pid().unwrap();
    let socket = home.path().join("mcpd.sock");
    // Twice the daemon's limit of open control connections, none saying hello.
    let idle: Vec<UnixStream> = (0..512).filter_map(|_| UnixStream::connect(&socket).ok()).collect();
    assert!(idle.len() >= 256, "connected {}", idle.len());
    let before = cpu_ticks(daemon);
    let at = Instant::now();
    // A real client still gets its answer (at worst once the idle ones are closed).
    let out = home.ok(&["list", "--json"]);
    assert!(out.trim_start().starts_with('['), "{out}");
    assert!(at.elapsed() < Duration::from_secs(25), "list took {:?}", at.elapsed());
    // The idle connections are closed by the daemon, and it did not spin meanwhile.
    let mut first = idle.into_iter().next().unwrap();
    first.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 16];
    match first.read(&mut buf) {
        Ok(0) => {}
        other => panic!("an idle connection must be closed by the daemon; read gave {other:?}"),
    }
    let used = cpu_ticks(daemon) - before;
    assert!(used < 300, "the daemon used {used} ticks of CPU while clients idled");
}

#[test]
fn a_request_that_is_not_one_gets_an_error_before_the_close() {
    let home = Home::new();
    home.ok(&["ping"]);
    let mut s = UnixStream::connect(home.path().join("mcpd.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let hello = br#"{"protocol":1,"client_version":"test"}"#;
    s.write_all(&(hello.len() as u32).to_be_bytes()).unwrap();
    s.write_all(hello).unwrap();
    let garbage = b"{\"NoSuchVerb\":{}}";
    s.write_all(&(garbage.len() as u32).to_be_bytes()).unwrap();
    s.write_all(garbage).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("InvalidRequest") || text.contains("invalid"), "the daemon said: {text}");
    home.ok(&["ping"]);
}

#[test]
fn a_slow_client_of_the_http_endpoint_is_closed() {
    let home = Home::new();
    let port = free_port();
    let mut daemon = home
        .command(&["daemon"])
        .env("MCPD_HTTP", format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    home.wait_socket();
    wait_for("the endpoint", Duration::from_secs(10), || {
        http(port, "GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").map(drop)
    });
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let at = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(at.elapsed() < Duration::from_secs(15), "a half-sent request was kept {:?}", at.elapsed());
    home.ok(&["kill"]);
    let _ = daemon.wait();
}
