//! stdio benchmark: the reference stdio server `@modelcontextprotocol/server-everything` served
//! over Streamable HTTP two ways, side by side on this machine with the same client load:
//! by supergateway 4.0 (stateful, `--sessionTimeout 5000`), and by mcpd (`stdio = { warm = 2 }`,
//! `session_idle_timeout = "5s"`), a child per session in both.
//!
//! For each: 20 SDK sessions calling `get-sum` back to back for 10 s (calls/s, p50, p99); the
//! time to open one session (median of 8, opened 1.5 s apart); the memory (PSS: shared pages
//! counted once) of the gateway (or mcpd: daemon, guard, bridge) and of the server's processes,
//! idle and with 20 sessions; and how many server processes are left 10 s after 20 clients were
//! SIGKILLed with their streams open.
//! Needs `npm ci --prefix examples/mcp-stdio`; installs supergateway into
//! `target/bench-stdio` (npm) on first run. Run with `cargo bench -p mcpd-cli --bench stdio`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
const SESSIONS: u32 = 20;
const SECONDS: u32 = 10;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mcp-stdio")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pid` and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() && found.len() < 10_000 {
        let p = found[i];
        i += 1;
        for task in std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            found.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    found
}

/// A process's proportional set size: its resident memory, with each page shared among N
/// processes counted 1/N (the binary's text mcpd's daemon and bridge share, the node binary
/// the children share), so that a sum over processes counts each page once.
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:")?.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ")
}

/// (the serving side's own memory, the server children's memory, how many children), in MiB.
fn memory(root: u32) -> (f64, f64, usize) {
    let (mut own, mut children, mut count) = (0, 0, 0);
    for pid in tree(root) {
        let line = cmdline(pid);
        // The server's processes (and the shell supergateway starts each in); not the gateway,
        // whose arguments name the server too.
        if line.contains("server-everything") && !line.contains("supergateway") {
            children += pss_kib(pid);
            count += 1;
        } else {
            own += pss_kib(pid);
        }
    }
    (own as f64 / 1024.0, children as f64 / 1024.0, count)
}

fn children_left(root: u32) -> usize {
    tree(root)
        .into_iter()
        .map(cmdline)
        .filter(|line| {
            line.contains("server-everything")
                && !line.contains("supergateway")
                && !line.starts_with("/bin/sh")
                && !line.starts_with("sh ")
        })
        .count()
}

fn node(args: &[&str]) -> Value {
    let out = Command::new("node").args(args).current_dir(examples()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("node {args:?} printed no summary: {text} {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(line).unwrap()
}

#[derive(Debug)]
struct Figures {
    load: Value,
    open: Value,
    idle: (f64, f64, usize),
    busy: (f64, f64, usize),
    left: usize,
}

/// The same measurements against whatever serves `url`, whose processes descend from `root`.
fn measure(url: &str, root: u32, warm_children: usize) -> Figures {
    // Idle: the gateway, and for mcpd its warm children.
    let deadline = Instant::now() + Duration::from_secs(20);
    while children_left(root) < warm_children && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Settled: the warm children have started up.
    std::thread::sleep(Duration::from_secs(3));
    let idle = memory(root);
    let open = node(&["bench.js", "open", url, "8", "1500"]);
    // Memory with 20 sessions: sampled while the load runs.
    let sessions = SESSIONS.to_string();
    let seconds = SECONDS.to_string();
    let load_args = ["bench.js", "load", url, sessions.as_str(), seconds.as_str()];
    let load = Command::new("node").args(load_args).current_dir(examples()).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(u64::from(SECONDS) / 2));
    let busy = memory(root);
    let out = load.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let load: Value = serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap_or("{}")).unwrap();
    // 20 clients die with their streams open.
    let mut hold = Command::new("node")
        .args(["hold.js", url, "20"])
        .current_dir(examples())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(hold.stdout.take().unwrap()).read_line(&mut line).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(hold.id() as i32, libc::SIGKILL) };
    let _ = hold.wait();
    std::thread::sleep(Duration::from_secs(10));
    let left = children_left(root).saturating_sub(warm_children);
    Figures { load, open, idle, busy, left }
}

fn supergateway() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-stdio");
    let bin = dir.join("node_modules/supergateway/dist/index.js");
    if !bin.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("supergateway@4.0.0")
            .status()
            .unwrap();
        assert!(ok.success(), "npm install supergateway@4.0.0 failed");
    }
    bin
}

fn stop(mut child: Child) {
    for pid in tree(child.id()).into_iter().rev() {
        // SAFETY: kill(2) of processes this benchmark started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let _ = child.wait();
}

fn print(name: &str, f: &Figures) {
    println!(
        "  {name:<13} {:>7} {:>8.1} {:>8.1} {:>9.1} {:>8.1} MiB + {:>6.1} MiB ({} children) {:>8.1} MiB + {:>6.1} MiB ({} children) {:>5}",
        f.load["per_s"].as_u64().unwrap_or(0),
        f.load["p50_ms"].as_f64().unwrap_or(0.0),
        f.load["p99_ms"].as_f64().unwrap_or(0.0),
        f.open["open_p50_ms"].as_f64().unwrap_or(0.0),
        f.idle.0,
        f.idle.1,
        f.idle.2,
        f.busy.0,
        f.busy.1,
        f.busy.2,
        f.left
    );
    if f.load["failed"].as_u64().unwrap_or(0) > 0 {
        println!("  {name}: {} calls failed", f.load["failed"]);
    }
}

fn main() {
    if !examples().join("node_modules/@modelcontextprotocol/server-everything").exists() {
        eprintln!("run `npm ci --prefix examples/mcp-stdio` first");
        std::process::exit(1);
    }
    let server = examples().join("node_modules/.bin/mcp-server-everything");
    let server = server.display().to_string();

    // supergateway 4.0, stateful: a child per session.
    let port = free_port();
    let gateway = Command::new("node")
        .arg(supergateway())
        .args(["--stdio", &server, "--outputTransport", "streamableHttp", "--stateful", "--sessionTimeout", "5000"])
        .args(["--port", &port.to_string(), "--logLevel", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port);
    let sg = measure(&format!("http://127.0.0.1:{port}/mcp"), gateway.id(), 0);
    stop(gateway);

    // mcpd: a child per session from a warm pool of 2.
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = home.path().join("stdio.toml");
    std::fs::write(
        &config,
        format!(
            "[apps.everything]\ncommand = {server:?}\nfront = {{ listen = \"127.0.0.1:{port}\", session_idle_timeout = \"5s\" }}\n\
             stdio = {{ warm = 2, max_sessions = 100 }}\n"
        ),
    )
    .unwrap();
    let mcpd =
        |args: &[&str]| Command::new(MCPD).args(args).env("MCPD_HOME", home.path().join("home")).output().unwrap();
    let started = mcpd(&["start", config.to_str().unwrap()]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let daemon: u32 = std::fs::read_to_string(home.path().join("home/daemon.lock")).unwrap().trim().parse().unwrap();
    let ours = measure(&format!("http://127.0.0.1:{port}/mcp"), daemon, 2);
    mcpd(&["kill"]);

    println!(
        "server-everything over Streamable HTTP, a child per session; {SESSIONS} SDK sessions calling get-sum for {SECONDS} s:"
    );
    println!(
        "                 calls/s  p50 ms   p99 ms  open ms   idle (PSS): gateway + server processes  with {SESSIONS} sessions                        left"
    );
    print("supergateway", &sg);
    print("mcpd", &ours);
    let ratio = ours.load["per_s"].as_f64().unwrap_or(0.0) / sg.load["per_s"].as_f64().unwrap_or(1.0).max(1.0);
    println!(
        "  mcpd vs supergateway: {ratio:.2}x the throughput (target >= 1.5), p99 {:.1} vs {:.1} ms (target: no worse), a session opened in {:.1} ms (target <= 50), mcpd's own part {:.1} MiB with {SESSIONS} sessions (target <= 10), {} children left (target 0)",
        ours.load["p99_ms"].as_f64().unwrap_or(0.0),
        sg.load["p99_ms"].as_f64().unwrap_or(0.0),
        ours.open["open_p50_ms"].as_f64().unwrap_or(0.0),
        ours.busy.0,
        ours.left
    );
}
