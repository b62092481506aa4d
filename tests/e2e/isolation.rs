//! One slow app never slows another: an app whose log file is a slow FIFO (or a FIFO nobody
//! reads) leaves the front of another app and the control socket as fast as before.

use crate::common::{free_port, http, signal, wait_for, Home};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Answers every HTTP request on the socket mcpd hands over (fd 3) at once.
pub(crate) const WEB_APP: &str = include_str!("fixtures/web_on_fd3.py");

/// Prints 100-byte lines as fast as it can.
pub(crate) const FLOOD_APP: &str = include_str!("fixtures/flood.py");

/// Reads a FIFO at about 200 KB/s, counting what it got in a file.
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

pub(crate) fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// Starts `web` behind a front and `flood` logging to `out_file`; returns the front's port.
fn two_apps(home: &Home, out_file: &std::path::Path) -> u16 {
    home.write("web.py", WEB_APP);
    home.write("flood.py", FLOOD_APP);
    let port = free_port();
    let config = home.write(
        "apps.toml",
        &format!(
            "[apps.web]\ncommand = \"python3\"\nargs = [\"web.py\"]\nfront = {{ listen = \"127.0.0.1:{port}\" }}\n\n\
             [apps.flood]\ncommand = \"python3\"\nargs = [\"flood.py\"]\nout_file = {:?}\n",
            out_file.display()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    port
}

/// The slowest of `n` requests through the front and of `n` `mcpd list` calls.
fn slowest(home: &Home, port: u16, n: usize) -> (Duration, Duration) {
    let (mut front, mut list) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let at = Instant::now();
        let (status, _) = http(port, "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").expect("front answers");
        assert_eq!(status, 200);
        front = front.max(at.elapsed());
        let at = Instant::now();
        home.ok(&["list", "--json"]);
        list = list.max(at.elapsed());
    }
    (front, list)
}

struct Reader(Child);

impl Drop for Reader {
    fn drop(&mut self) {
        signal(self.0.id(), libc::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn an_app_logging_to_a_slow_fifo_does_not_slow_the_front_of_another() {
    let home = Home::new();
    let fifo = home.file("slow.fifo");
    mkfifo(&fifo);
    let got = home.file("read.txt");
    home.write("reader.py", SLOW_READER);
    let reader = Reader(
        Command::new("python3")
            .arg(home.file("reader.py"))
            .arg(&fifo)
            .arg(&got)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the slow reader"),
    );
    let port = two_apps(&home, &fifo);
    // The flood has filled the pipe and the FIFO: the reader keeps getting data, slowly.
    let read = |_: ()| std::fs::read_to_string(&got).ok().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    wait_for("the slow reader to get 500 KB", Duration::from_secs(20), || {
        let n = read(());
        if n > 500_000 {
            Ok(())
        } else {
            Err(format!("{n} bytes"))
        }
    });
    let (front, list) = slowest(&home, port, 30);
    eprintln!("under a flood into a slow FIFO: slowest front request {front:?}, slowest mcpd list {list:?}");
    assert!(front < Duration::from_millis(500), "a request through the front took {front:?}");
    assert!(list < Duration::from_millis(500), "mcpd list took {list:?}");
    home.ok(&["stop", "flood"]);
    drop(reader);
}

#[test]
fn a_fifo_log_file_nobody_reads_does_not_stop_the_daemon() {
    let home = Home::new();
    let fifo = home.file("unread.fifo");
    mkfifo(&fifo);
    let port = two_apps(&home, &fifo);
    let row = home.wait_app("flood", "its log error", |r| r["log_error"].is_string());
    let error = row["log_error"].as_str().unwrap().to_string();
    assert!(error.contains("unread.fifo"), "{error}");
    let (front, list) = slowest(&home, port, 10);
    assert!(front < Duration::from_millis(500) && list < Duration::from_millis(500), "front {front:?}, list {list:?}");
    let started = Instant::now();
    home.ok(&["stop", "flood", "web"]);
    assert!(started.elapsed() < Duration::from_secs(10), "stop took {:?}", started.elapsed());
}
