//! Front benchmark: one process of the Node MCP example (TypeScript SDK 1.x, sessionful) under
//! mcpd, reached three ways: directly on its own socket, through the mcpd front, and through
//! nginx configured as the deployment guides say (`proxy_buffering off`, `proxy_read_timeout
//! 3600s`, HTTP/1.1 keep-alive upstream) with that same socket as its upstream. The same
//! process behind all three, a warm-up of each, then rounds taking turns, so neither JIT
//! warm-up nor drift favours one path. Prints requests/s and p50/p99 latency of small tool
//! calls (16 keep-alive connections over 8 sessions) and the median time to the first SSE
//! event of a fresh call: the median over the rounds of each figure.
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
const RUN: Duration = Duration::from_secs(3);
const ROUNDS: usize = 5;

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

/// Where the requests go: a TCP port, or the app's own Unix socket.
#[derive(Clone, Debug)]
enum Target {
    Tcp(u16),
    Unix(std::path::PathBuf),
}

async fn connect(target: &Target) -> Sender {
    let io = match target {
        Target::Tcp(port) => {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", *port)).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            return sender;
        }
        Target::Unix(path) => tokio::net::UnixStream::connect(path).await.unwrap(),
    };
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    sender
}

fn request(session: Option<&str>, body: &str) -> hyper::Request<Full<Bytes>> {
    let mut b = hyper::Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(id) = session {
        b = b.header("mcp-session-id", id);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

async fn open_session(target: &Target) -> String {
    let mut s = connect(target).await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
    let r = s.send_request(request(None, init)).await.unwrap();
    let id = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    r.into_body().collect().await.unwrap();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r = s.send_request(request(Some(&id), note)).await.unwrap();
    r.into_body().collect().await.unwrap();
    id
}

/// (requests/s, p50 ms, p99 ms, median ms to the first SSE event of a fresh call)
type Figures = (f64, f64, f64, f64);

async fn measure(target: Target) -> Figures {
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(open_session(&target).await);
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for c in 0..CONNECTIONS {
        let session = sessions[c % SESSIONS].clone();
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = connect(&target).await;
            let mut times = Vec::new();
            let mut n = 0u64;
            while started.elapsed() < RUN {
                let body = format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"add","arguments":{{"a":{n},"b":1}}}}}}"#);
                let t = Instant::now();
                if sender.ready().await.is_err() {
                    // The server ended the connection (nginx does after keepalive_requests, 1000
                    // by default): open another, as clients do; the time counts.
                    sender = connect(&target).await;
                }
                let r = sender
                    .send_request(request(Some(&session), &body))
                    .await
                    .unwrap_or_else(|e| panic!("{target:?}: call {n}: {e}"));
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
        let mut sender = connect(&target).await;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"add","arguments":{{"a":1,"b":2}}}}}}"#
        );
        let t = Instant::now();
        let mut r = sender.send_request(request(Some(&sessions[0]), &body)).await.unwrap();
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

/// nginx, stopped with SIGTERM so its master takes its workers down with it (a SIGKILLed
/// master leaves them running).
struct Nginx(Child);
impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on the pid of our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mcp-node");
    if !node_dir.join("node_modules/@modelcontextprotocol/sdk").exists() {
        println!("run `npm ci --prefix examples/mcp-node` first");
        return;
    }
    if Command::new("nginx").arg("-v").stderr(Stdio::null()).status().is_err() {
        println!("nginx is not installed (apt-get install nginx)");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();

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
    struct StopDaemon(std::path::PathBuf);
    impl Drop for StopDaemon {
        fn drop(&mut self) {
            let _ = Command::new(MCPD).arg("kill").env("MCPD_HOME", &self.0).stdout(Stdio::null()).status();
        }
    }
    let _daemon = StopDaemon(home.clone());
    // The app's private socket, the one the front forwards to.
    let app_socket = std::fs::read_dir(home.join("run"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "upstream"))
        .expect("the app's private socket");

    let nginx_port = free_port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\n{user}worker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}; proxy_temp_path {dir};\n\
             upstream mcp {{ server unix:{socket}; keepalive 32; }}\n\
             server {{\n    listen 127.0.0.1:{nginx_port};\n    location /mcp {{\n      proxy_pass http://mcp;\n\
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n\
             proxy_cache off;\n      proxy_read_timeout 3600s;\n    }}\n  }}\n}}\n",
            dir = dir.path().display(),
            socket = app_socket.display(),
            // nginx's workers must be able to open the app's socket, which is the daemon's.
            user = if unsafe { libc::geteuid() } == 0 { "user root;\n" } else { "" }
        ),
    )
    .unwrap();
    let _nginx =
        Nginx(Command::new("nginx").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    wait_port(nginx_port);

    let targets = [
        ("direct", Target::Unix(app_socket.clone())),
        ("mcpd front", Target::Tcp(front_port)),
        ("nginx", Target::Tcp(nginx_port)),
    ];
    for (_, target) in &targets {
        rt.block_on(measure(target.clone()));
    }
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); targets.len()];
    for _ in 0..ROUNDS {
        for (i, (_, target)) in targets.iter().enumerate() {
            runs[i].push(rt.block_on(measure(target.clone())));
        }
    }
    let rows: Vec<(&str, Figures)> = targets
        .iter()
        .zip(&runs)
        .map(|((name, _), r)| {
            let m = |f: fn(&Figures) -> f64| median(r.iter().map(f).collect());
            (*name, (m(|x| x.0), m(|x| x.1), m(|x| x.2), m(|x| x.3)))
        })
        .collect();

    println!(
        "small tool calls to one Node MCP example process, {CONNECTIONS} keep-alive connections over {SESSIONS} sessions, \
         median of {ROUNDS} rounds of {}s (after a warm-up of each):",
        RUN.as_secs()
    );
    println!("  {:<11} {:>9} {:>9} {:>9} {:>16}", "", "req/s", "p50 ms", "p99 ms", "first event ms");
    for (name, (rps, p50, p99, first)) in &rows {
        println!("  {name:<11} {rps:>9.0} {p50:>9.2} {p99:>9.2} {first:>16.2}");
    }
    let (direct, front, nginx) = (rows[0].1, rows[1].1, rows[2].1);
    println!(
        "  front vs direct: {:.1}% of the throughput, +{:.2} ms p50 (targets: within 10%, at most +0.3 ms)",
        front.0 / direct.0 * 100.0,
        front.1 - direct.1
    );
    println!(
        "  front vs nginx: {:.1}% of its throughput, {:+.2} ms p50, {:+.2} ms p99, {:+.2} ms to the first event",
        front.0 / nginx.0 * 100.0,
        front.1 - nginx.1,
        front.2 - nginx.2,
        front.3 - nginx.3
    );
}
