//! The front's bounds: idle sessions leave the table (and the daemon's memory), a slow sender of
//! headers and an idle kept-alive connection are closed, connections past the bound wait in
//! the backlog, and bodies past `max_body` get 413.

use crate::common::{free_port, wait_for, Home};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A cheap session-minting MCP server (stdlib only) on the socket mcpd hands over: an
/// `initialize` without a session gets a new `Mcp-Session-Id`; any other POST gets an empty
/// result for whatever session it names (so a 404 can only come from the front); a GET opens an
/// SSE stream of comments until the client goes away. Bodies may be chunked.
const MINT_PY: &str = r#"
import http.server, json, os, socket, time, uuid

class Mint(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def body(self):
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("content-length", 0)))
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def do_POST(self):
        message = json.loads(self.body() or b"{}")
        data = json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": {}}).encode()
        self.send_response(200)
        if message.get("method") == "initialize" and not self.headers.get("mcp-session-id"):
            self.send_header("mcp-session-id", uuid.uuid4().hex)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.close_connection = True
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b": ping\n\n")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mint, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
server.daemon_threads = True
path = os.environ["NOTIFY_SOCKET"]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.sendto(b"READY=1", "\0" + path[1:] if path.startswith("@") else path)
server.serve_forever()
"#;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

/// Starts the minting server behind a front on a free port with `front_keys` added to its
/// `front = { ... }`; returns the port once the app is online.
fn start(home: &Home, front_keys: &str) -> u16 {
    let port = free_port();
    let script = home.write("mint.py", MINT_PY);
    let config = home.write(
        "bounds.toml",
        &format!(
            "[apps.mint]\ncommand = \"python3\"\nargs = [{script:?}]\nready = \"notify\"\n\
             front = {{ listen = \"127.0.0.1:{port}\", {front_keys} }}\n"
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    port
}

/// One kept-alive client connection to the front.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// An answer: status, `Mcp-Session-Id` if any, body.
type Answer = (u16, Option<String>, String);

impl Conn {
    fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the front");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn { reader: BufReader::new(stream.try_clone().unwrap()), stream }
    }

    /// Sends a POST (keep-alive) and reads its answer.
    fn post(&mut self, session: Option<&str>, body: &str) -> Result<Answer, String> {
        self.send(session, body)?;
        self.answer()
    }

    fn send(&mut self, session: Option<&str>, body: &str) -> Result<(), String> {
        let sid = session.map_or(String::new(), |id| format!("Mcp-Session-Id: {id}\r\n"));
        let request = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n{sid}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))
    }

    /// Reads one answer with a body of known length (chunked bodies are read whole too).
    fn answer(&mut self) -> Result<Answer, String> {
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(|e| format!("read status: {e}"))?;
        let status: u16 = line.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| format!("not HTTP: {line:?}"))?;
        let (mut length, mut chunked, mut session) = (0usize, false, None);
        loop {
            let mut header = String::new();
            self.reader.read_line(&mut header).map_err(|e| format!("read headers: {e}"))?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').ok_or_else(|| format!("bad header {header:?}"))?;
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().map_err(|_| format!("{header:?}"))?,
                "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
                "mcp-session-id" => session = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            for _ in 0..10_000 {
                let mut size = String::new();
                self.reader.read_line(&mut size).map_err(|e| e.to_string())?;
                let n = usize::from_str_radix(size.trim(), 16).map_err(|_| format!("chunk size {size:?}"))?;
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
                body.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        } else {
            body.resize(length, 0);
            self.reader.read_exact(&mut body).map_err(|e| format!("read body: {e}"))?;
        }
        Ok((status, session, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Waits (up to `within`) for the front to close the connection; returns how long it took.
    fn closed_within(&mut self, within: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => Ok(start.elapsed()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => Ok(start.elapsed()),
            Err(e) => Err(format!("still open after {:?} ({e}); read {rest:?}", start.elapsed())),
        }
    }
}

/// Opens `count` sessions through the front over `threads` kept-alive connections, abandoning
/// each (no DELETE); returns the ids.
fn open_sessions(port: u16, count: usize, threads: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let deadline = Instant::now() + Duration::from_secs(120);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (next, ids) = (next.clone(), ids.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(port);
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    assert!(Instant::now() < deadline, "opening {count} sessions took over 120 s");
                    let (status, id, body) = conn.post(None, INIT).unwrap_or_else(|e| panic!("initialize: {e}"));
                    let id = id.unwrap_or_else(|| panic!("initialize gave no session ({status}): {body}"));
                    ids.lock().unwrap().push(id);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client thread failed");
    }
    let ids = std::mem::take(&mut *ids.lock().unwrap());
    ids
}

/// Sessions in the front's table, as `list --json` shows them (all generations).
fn sessions(home: &Home) -> u64 {
    let row = home.app("mint").expect("the app is listed");
    row["sessions"].as_array().map_or(0, |gens| gens.iter().filter_map(|g| g["sessions"].as_u64()).sum())
}

/// The daemon's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn ten_thousand_abandoned_sessions_leave_an_empty_table_and_give_the_memory_back() {
    let home = Home::new();
    let idle = Duration::from_secs(10);
    let port = start(&home, "session_idle_timeout = \"10s\"");
    let daemon = home.daemon_pid().expect("the daemon's pid");
    // A first round of the same shape warms up what the daemon keeps (buffers, pools, the
    // runtime's structures), so that the baseline is the daemon serving, not the daemon idle.
    let threads = 8;
    open_sessions(port, 500, threads);
    wait_for("the warm-up sessions to expire", idle + Duration::from_secs(15), || match sessions(&home) {
        0 => Ok(()),
        n => Err(format!("{n} sessions")),
    });
    let before = rss_kib(daemon);
    let start = Instant::now();
    let ids = open_sessions(port, 10_000, threads);
    let opened = start.elapsed();
    let held = sessions(&home);
    let peak = rss_kib(daemon);
    eprintln!("10000 sessions opened in {opened:?}; {held} in the table just after; RSS {before} KiB before, {peak} KiB at the peak");
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (10_000, 10_000), "each initialize minted its own session");
    assert!(held > 0, "the front pinned the sessions it saw minted");
    let mut conn = Conn::open(port);
    let (status, _, body) = conn.post(ids.last().map(String::as_str), LIST).unwrap();
    assert_eq!(status, 200, "a fresh session is routed: {body}");
    let emptied = wait_for("the session table to empty", idle + Duration::from_secs(20), || match sessions(&home) {
        0 => Ok(start.elapsed()),
        n => Err(format!("{n} sessions")),
    });
    let after = wait_for("the daemon's RSS to come back within 1 MiB", Duration::from_secs(10), || {
        let now = rss_kib(daemon);
        if now <= before + 1024 {
            Ok(now)
        } else {
            Err(format!("{now} KiB, was {before} KiB"))
        }
    });
    eprintln!("table empty {emptied:?} after the first session; RSS {after} KiB after (before {before} KiB)");
    let mut conn = Conn::open(port);
    let (status, _, body) = conn.post(Some(&ids[0]), LIST).unwrap();
    assert_eq!(status, 404, "an expired session gets 404, so its client starts a new one: {body}");
    assert!(body.contains("-32001"), "{body}");
    let (status, fresh, _) = conn.post(None, INIT).unwrap();
    assert!(status == 200 && fresh.is_some(), "a new session works ({status})");
}

#[test]
fn a_session_with_an_open_stream_does_not_expire() {
    let home = Home::new();
    let port = start(&home, "session_idle_timeout = \"2s\"");
    let mut conn = Conn::open(port);
    let streaming = conn.post(None, INIT).unwrap().1.expect("a session");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /mcp HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nMcp-Session-Id: {streaming}\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200", "the stream is open");
    let idle = conn.post(None, INIT).unwrap().1.expect("a session");
    wait_for("the idle session to expire", Duration::from_secs(10), || match sessions(&home) {
        1 => Ok(()),
        n => Err(format!("{n} sessions")),
    });
    let mut other = Conn::open(port);
    assert_eq!(other.post(Some(&idle), LIST).unwrap().0, 404, "the idle one expired");
    assert_eq!(other.post(Some(&streaming), LIST).unwrap().0, 200, "the one with an open stream did not");
    drop(stream);
    wait_for("the session to expire once its stream closed", Duration::from_secs(10), || match sessions(&home) {
        0 => Ok(()),
        n => Err(format!("{n} sessions")),
    });
}

#[test]
fn a_slow_sender_of_headers_and_an_idle_kept_alive_connection_are_closed() {
    let home = Home::new();
    let port = start(&home, "header_timeout = \"1s\"");
    let mut loris = Conn::open(port);
    loris.stream.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty").unwrap();
    let took = loris.closed_within(Duration::from_secs(10)).expect("the front closes a half-sent header");
    assert!(took >= Duration::from_millis(900), "closed by the header timeout, not at once ({took:?})");
    let mut kept = Conn::open(port);
    assert_eq!(kept.post(None, INIT).unwrap().0, 200);
    assert_eq!(kept.post(None, INIT).unwrap().0, 200, "the connection is kept alive between requests");
    let took = kept.closed_within(Duration::from_secs(10)).expect("the front closes an idle kept-alive connection");
    assert!(took >= Duration::from_millis(900), "closed once idle for the timeout ({took:?})");
}

#[test]
fn connections_past_the_bound_wait_while_those_under_it_keep_working() {
    let home = Home::new();
    let port = start(&home, "max_connections = 4");
    let mut conn = Conn::open(port);
    let session = conn.post(None, INIT).unwrap().1.expect("a session");
    // Three connections held by open streams, and `conn`: the bound is reached.
    let streams: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(s, "GET /mcp HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: {session}\r\n\r\n").unwrap();
            let mut first = [0u8; 12];
            s.read_exact(&mut first).unwrap();
            assert_eq!(&first, b"HTTP/1.1 200");
            s
        })
        .collect();
    let mut waiting = Conn::open(port);
    waiting.send(None, INIT).unwrap();
    // What is checked here is that nothing happens, so it can only be watched for a while.
    waiting.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.stream.peek(&mut byte);
    assert!(
        early
            .as_ref()
            .is_err_and(|e| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a fifth connection is not served while four are open: {early:?}"
    );
    assert_eq!(conn.post(Some(&session), LIST).unwrap().0, 200, "the connections under the bound keep working");
    drop(streams);
    waiting.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (status, minted, _) = waiting.answer().expect("the waiting connection is served once a slot frees");
    assert!(status == 200 && minted.is_some(), "{status}");
}

#[test]
fn bodies_past_max_body_get_413() {
    let home = Home::new();
    let port = start(&home, "max_body = \"64K\"");
    let mut conn = Conn::open(port);
    let session = conn.post(None, INIT).unwrap().1.expect("a session");
    let padded = |size: usize| {
        format!(r#"{{"jsonrpc":"2.0","id":3,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(size))
    };
    assert_eq!(conn.post(Some(&session), &padded(60 << 10)).unwrap().0, 200, "under the bound");
    let (status, _, body) = conn.post(Some(&session), &padded(65 << 10)).unwrap();
    assert_eq!(status, 413, "a Content-Length past the bound: {body}");
    // The same without a length: the body is cut as it streams.
    let mut chunked = Conn::open(port);
    let big = padded(100 << 10);
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMcp-Session-Id: {session}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    chunked.stream.write_all(head.as_bytes()).unwrap();
    for part in big.as_bytes().chunks(16 << 10) {
        // The front may answer and close before the whole body is sent.
        if chunked.stream.write_all(format!("{:x}\r\n", part.len()).as_bytes()).is_err()
            || chunked.stream.write_all(part).is_err()
            || chunked.stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = chunked.stream.write_all(b"0\r\n\r\n");
    let (status, _, body) = chunked.answer().unwrap();
    assert_eq!(status, 413, "a chunked body past the bound: {body}");
    let mut after = Conn::open(port);
    assert_eq!(after.post(Some(&session), LIST).unwrap().0, 200, "the session is unharmed");
}
