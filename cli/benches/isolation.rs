//! Isolation benchmark: a small HTTP app `web` behind a front, measured alone and while
//! another app disturbs the daemon: `flood` printing as fast as it can into a FIFO read at
//! 200 KB/s (a slow disk or log shipper), the same into a file on a full tmpfs, and an app of
//! 500 processes. Prints the front's p50/p99 over keep-alive requests, `mcpd list` times and
//! failed requests for each. Targets: p99 under disturbance <= 1.5x alone, list <= 5 ms,
//! 0 failed. Run with `cargo build --release && cargo bench -p mcpd-cli --bench isolation`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MCPD: &str = env!("CARGO_BIN_EXE_mcpd");
/// Requests per measurement, and `mcpd list` calls.
const REQUESTS: usize = 3000;
const LISTS: usize = 30;

const WEB_APP: &str = include_str!("../../tests/e2e/fixtures/web_on_fd3.py");

const FLOOD_APP: &str = include_str!("../../tests/e2e/fixtures/flood.py");

const SLOW_READER: &str = r#"
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
total = 0
while True:
    data = os.read(fd, 20000)
    if not data:
        break
    total += len(data)
    with open(sys.argv[2], "w") as f:
        f.write(str(total))
    time.sleep(0.1)
"#;

/// 500 processes in the app's group.
const MANY_APP: &str = "for i in $(seq 500); do sleep 3600 & done; wait";

fn mcpd(home: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(MCPD).args(args).env("MCPD_HOME", home).stdin(Stdio::null()).output().expect("run mcpd");
    assert!(out.status.success(), "mcpd {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Polls `ready` (bounded) until it holds, so a measurement starts once its disturbance is on.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `list --json` row of `name`.
fn row(home: &Path, name: &str) -> serde_json::Value {
    let out = mcpd(home, &["list", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.into_iter().find(|r| r["name"] == name).unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
    list_median_ms: f64,
    list_max_ms: f64,
}

/// Keep-alive requests through the front, then `mcpd list` calls.
fn measure(home: &Path, port: u16) -> Figures {
    let mut times = Vec::with_capacity(REQUESTS);
    let mut failed = 0;
    let mut conn: Option<(std::net::TcpStream, BufReader<std::net::TcpStream>)> = None;
    for _ in 0..REQUESTS {
        let at = Instant::now();
        let ok = (|| -> std::io::Result<()> {
            if conn.is_none() {
                let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                s.set_nodelay(true)?;
                conn = Some((s.try_clone()?, BufReader::new(s)));
            }
            let (w, r) = conn.as_mut().unwrap();
            w.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")?;
            let mut status = String::new();
            r.read_line(&mut status)?;
            let mut length = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line)?;
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            r.read_exact(&mut body)?;
            if status.contains(" 200 ") {
                Ok(())
            } else {
                Err(std::io::Error::other(status))
            }
        })();
        match ok {
            Ok(()) => times.push(at.elapsed()),
            Err(_) => {
                failed += 1;
                conn = None;
            }
        }
    }
    times.sort();
    let pct = |p: f64| times.get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1))).copied();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    let mut lists: Vec<Duration> = (0..LISTS)
        .map(|_| {
            let at = Instant::now();
            mcpd(home, &["list", "--json"]);
            at.elapsed()
        })
        .collect();
    lists.sort();
    Figures {
        p50_ms: ms(pct(0.5)),
        p99_ms: ms(pct(0.99)),
        failed,
        list_median_ms: ms(Some(lists[LISTS / 2])),
        list_max_ms: ms(lists.last().copied()),
    }
}

fn print(label: &str, f: &Figures, alone: Option<&Figures>) {
    let ratio = alone.map_or(String::new(), |a| format!("   p99 {:.2}x alone", f.p99_ms / a.p99_ms));
    println!(
        "{label:<34} front p50 {:6.3} ms  p99 {:6.3} ms  failed {}   mcpd list median {:5.2} ms  max {:5.2} ms{ratio}",
        f.p50_ms, f.p99_ms, f.failed, f.list_median_ms, f.list_max_ms
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill(2) touches no memory of ours.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn start_flood(home: &Path, dir: &Path, name: &str, out_file: &Path) {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[apps.{name}]\ncommand = \"python3\"\nargs = [{:?}]\nout_file = {:?}\n",
            dir.join("flood.py").display(),
            out_file.display()
        ),
    )
    .unwrap();
    mcpd(home, &["start", config.to_str().unwrap()]);
}

/// A tmpfs of 1 MiB, filled; None when it cannot be mounted (not root, no mount).
fn full_tmpfs(dir: &Path) -> Option<PathBuf> {
    let mnt = dir.join("full");
    std::fs::create_dir_all(&mnt).ok()?;
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&mnt).status().ok()?.success();
    if !ok {
        return None;
    }
    let _ = std::fs::write(mnt.join("filler"), vec![0u8; 2 << 20]);
    Some(mnt)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::write(dir.path().join("web.py"), WEB_APP).unwrap();
    std::fs::write(dir.path().join("flood.py"), FLOOD_APP).unwrap();
    std::fs::write(dir.path().join("reader.py"), SLOW_READER).unwrap();
    let port = free_port();
    let web = dir.path().join("web.toml");
    std::fs::write(
        &web,
        format!(
            "[apps.web]\ncommand = \"python3\"\nargs = [{:?}]\nfront = {{ listen = \"127.0.0.1:{port}\" }}\n",
            dir.path().join("web.py").display()
        ),
    )
    .unwrap();
    mcpd(&home, &["start", web.to_str().unwrap()]);
    measure(&home, port); // warm-up
    println!("isolation: {REQUESTS} keep-alive requests through the front, {LISTS} `mcpd list` calls each");
    let alone = measure(&home, port);
    print("alone", &alone, None);

    // A flood into a FIFO read at 200 KB/s.
    let fifo = dir.path().join("slow.fifo");
    mkfifo(&fifo);
    let got = dir.path().join("read.txt");
    let reader = Killed(
        Command::new("python3")
            .arg(dir.path().join("reader.py"))
            .arg(&fifo)
            .arg(&got)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    start_flood(&home, dir.path(), "flood", &fifo);
    // The pipe and the FIFO are full once the slow reader has been fed for a while.
    wait_until("the slow reader to get 500 KB", || {
        std::fs::read_to_string(&got).ok().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0) > 500_000
    });
    let slow = measure(&home, port);
    print("flood into a 200 KB/s FIFO", &slow, Some(&alone));
    mcpd(&home, &["delete", "flood"]);
    drop(reader);

    // A flood into a file on a full tmpfs.
    match full_tmpfs(dir.path()) {
        Some(mnt) => {
            start_flood(&home, dir.path(), "fullflood", &mnt.join("flood.log"));
            wait_until("the full disk to show as a log error", || row(&home, "fullflood")["log_error"].is_string());
            let full = measure(&home, port);
            print("flood into a file on a full tmpfs", &full, Some(&alone));
            mcpd(&home, &["delete", "fullflood"]);
            let _ = Command::new("umount").arg(&mnt).status();
        }
        None => println!("flood into a file on a full tmpfs: skipped (cannot mount a tmpfs here)"),
    }

    // An app of 500 processes.
    let many = dir.path().join("many.toml");
    std::fs::write(&many, format!("[apps.many]\ncommand = \"sh\"\nargs = [\"-c\", {MANY_APP:?}]\n")).unwrap();
    mcpd(&home, &["start", many.to_str().unwrap()]);
    let leader = row(&home, "many")["pid"].as_u64().unwrap_or(0) as i32;
    wait_until("500 processes in the app's group", || {
        let members = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(2)) == Some(&leader.to_string())
            })
            .count();
        members > 500
    });
    let crowd = measure(&home, port);
    print("an app of 500 processes", &crowd, Some(&alone));
    mcpd(&home, &["kill"]);
}
