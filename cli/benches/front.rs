//! Front benchmark: the Node MCP example (TypeScript SDK 1.x, sessionful) reached directly,
//! through the mcpd front, and through nginx configured as the deployment guides say
//! (`proxy_buffering off`, `proxy_read_timeout 3600s`, HTTP/1.1 keep-alive upstream). Prints
//! requests/s and p50/p99 latency of small tool calls (16 keep-alive connections over 8
//! sessions, 5 s each), and the median time to the first SSE event of a fresh call.
//! Needs `npm ci --prefix examples/mcp-node` and nginx (`apt-get install nginx`).
//! Run with `cargo bench -p mcpd-cli --bench front`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
const SESSIONS: usize = 8;
const CONNECTIONS: usize = 16;
const RUN: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(port: u16) -> Sender {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

fn request(port: u16, session: Option<&str>, body: &str) -> hyper::Request<Full<Bytes>> {
    let mut b = hyper::Request::post("/mcp")
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(id) = session {
        b = b.header("mcp-session-id", id);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

async fn open_session(port: u16) -> String {
    let mut s = connect(port).await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
    let r = s.send_request(request(port, None, init)).await.unwrap();
    let id = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    r.into_body().collect().await.unwrap();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r = s.send_request(request(port, Some(&id), note)).await.unwrap();
    r.into_body().collect().await.unwrap();
    id
}

/// (requests/s, p50 ms, p99 ms, median ms to the first SSE event of a fresh call)
async fn measure(port: u16) -> (f64, f64, f64, f64) {
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(open_session(port).await);
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for c in 0..CONNECTIONS {
        let session = sessions[c % SESSIONS].clone();
        workers.push(tokio::spawn(async move {
            let mut sender = connect(port).await;
            let mut times = Vec::new();
            let mut n = 0u64;
            while started.elapsed() < RUN {
                let body = format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"add","arguments":{{"a":{n},"b":1}}}}}}"#);
                let t = Instant::now();
                let r = sender.send_request(request(port, Some(&session), &body)).await.expect("call");
                assert!(r.status().is_success(), "status {}", r.status());
                r.into_body().collect().await.unwrap();
                times.push(t.elapsed().as_secs_f64() * 1e3);
                n += 1;
            }
            times
        }));
    }
    let mut all: Vec<f64> = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    let mut first_event = Vec::new();
    for n in 0..50 {
        let mut sender = connect(port).await;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"add","arguments":{{"a":1,"b":2}}}}}}"#
        );
        let t = Instant::now();
        let mut r = sender.send_request(request(port, Some(&sessions[0]), &body)).await.unwrap();
        while let Some(frame) = r.body_mut().frame().await {
            if frame.unwrap().data_ref().is_some_and(|d| d.windows(5).any(|w| w == b"data:")) {
                break;
            }
        }
        first_event.push(t.elapsed().as_secs_f64() * 1e3);
    }
    first_event.sort_by(f64::total_cmp);
    (all.len() as f64 / secs, pct(0.50), pct(0.99), first_event[first_event.len() / 2])
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mcp-node");
    if !node_dir.join("node_modules/@modelcontextprotocol/sdk").exists() {
        println!("run `npm ci --prefix examples/mcp-node` first");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();

    let direct_port = free_port();
    let _direct = Kill(
        Command::new("node")
            .arg("server.js")
            .env("PORT", direct_port.to_string())
            .current_dir(&node_dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(direct_port);
    rows.push(("direct", rt.block_on(measure(direct_port))));

    let front_port = free_port();
    let home = dir.path().join("home");
    let config = dir.path().join("front.toml");
    std::fs::write(
        &config,
        format!("[apps.mcp]\ncommand = \"node\"\nargs = [\"server.js\"]\ncwd = {node_dir:?}\nfront = {{ listen = \"127.0.0.1:{front_port}\" }}\nready = {{ mcp = \"http://127.0.0.1:{front_port}/mcp\" }}\n"),
    )
    .unwrap();
    let status = Command::new(MCPD)
        .args(["start", config.to_str().unwrap()])
        .env("MCPD_HOME", &home)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    rows.push(("mcpd front", rt.block_on(measure(front_port))));
    let _ = Command::new(MCPD).arg("kill").env("MCPD_HOME", &home).stdout(Stdio::null()).status();

    match Command::new("nginx").arg("-v").output() {
        Ok(_) => {
            let nginx_port = free_port();
            let conf = dir.path().join("nginx.conf");
            std::fs::write(
                &conf,
                format!(
                    "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{ worker_connections 1024; }}\n\
                     http {{\n  access_log off;\n  client_body_temp_path {dir}; proxy_temp_path {dir};\n\
                     upstream mcp {{ server 127.0.0.1:{direct_port}; keepalive 32; }}\n\
                     server {{\n    listen 127.0.0.1:{nginx_port};\n    location /mcp {{\n      proxy_pass http://mcp;\n\
                     proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n\
                     proxy_cache off;\n      proxy_read_timeout 3600s;\n    }}\n  }}\n}}\n",
                    dir = dir.path().display()
                ),
            )
            .unwrap();
            let _nginx = Kill(
                Command::new("nginx").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
            );
            wait_port(nginx_port);
            rows.push(("nginx", rt.block_on(measure(nginx_port))));
        }
        Err(_) => println!("nginx is not installed (apt-get install nginx): its row is missing"),
    }

    println!("small tool calls to the Node MCP example, {CONNECTIONS} keep-alive connections over {SESSIONS} sessions, {}s each:", RUN.as_secs());
    println!("  {:<11} {:>9} {:>9} {:>9} {:>16}", "", "req/s", "p50 ms", "p99 ms", "first event ms");
    for (name, (rps, p50, p99, first)) in &rows {
        println!("  {name:<11} {rps:>9.0} {p50:>9.2} {p99:>9.2} {first:>16.2}");
    }
    let (direct, front) = (rows[0].1, rows[1].1);
    println!(
        "  front vs direct: {:.1}% of the throughput, +{:.2} ms p50 (targets: within 10%, at most +0.3 ms)",
        front.0 / direct.0 * 100.0,
        front.1 - direct.1
    );
}
