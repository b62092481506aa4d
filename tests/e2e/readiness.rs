//! Each kind of readiness with a real child, and readiness failures.

use crate::common::{free_port, wait_for, Home};
use std::time::Duration;

/// A Python app that sends sd_notify datagrams given as arguments, one per line of a fifo.
const NOTIFY_APP: &str = r#"
import os, socket, sys
def send(msg):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(msg.encode(), os.environ["NOTIFY_SOCKET"])
for line in open("steps.fifo"):
    send(line.strip().replace("\\n", "\n"))
import time
time.sleep(1000)
"#;

fn mkfifo(home: &Home, name: &str) -> std::path::PathBuf {
    let path = home.file(name);
    assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
    path
}

fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn notify_ready_and_status() {
    let home = Home::new();
    home.write("notify.py", NOTIFY_APP);
    let fifo = mkfifo(&home, "steps.fifo");
    let config = home.write("n.toml", "[apps.n]\ncommand = \"python3\"\nargs = [\"notify.py\"]\nready = \"notify\"\n");
    home.ok(&["start", "--no-wait", config.to_str().unwrap()]);
    assert_eq!(home.app("n").unwrap()["status"], "starting", "not online before READY=1");
    std::fs::write(&fifo, "STATUS=warming up\nREADY=1\nSTATUS=serving 3 sessions\n").unwrap();
    let row = home.wait_app("n", "online with the last STATUS=", |r| {
        r["status"] == "online" && r["status_text"] == "serving 3 sessions"
    });
    assert!(row["pid"].is_u64());
}

#[test]
fn notify_from_outside_the_group_is_ignored_and_the_timeout_fails_the_start() {
    let home = Home::new();
    let config = home.write(
        "t.toml",
        "[apps.silent]\ncommand = \"sh\"\nargs = [\"-c\", \"echo $NOTIFY_SOCKET > notify-path.txt; exec sleep infinity\"]\nready = \"notify\"\nready_timeout = \"1500ms\"\n",
    );
    let mut start = home.command(&["start", config.to_str().unwrap()]);
    let child = start.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let path = wait_for("the app to write its NOTIFY_SOCKET", Duration::from_secs(10), || {
        std::fs::read_to_string(home.file("notify-path.txt")).map_err(|e| e.to_string()).and_then(|p| {
            if p.ends_with('\n') {
                Ok(p.trim().to_string())
            } else {
                Err(p)
            }
        })
    });
    // This test process is not in the app's group: its READY=1 must not count.
    let outsider = std::os::unix::net::UnixDatagram::unbound().unwrap();
    outsider.send_to(b"READY=1", &path).expect("send to the notify socket");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "start must fail; stderr: {stderr}");
    assert!(stderr.contains("not ready within 1s 500ms"), "stderr: {stderr}");
    let row = home.app("silent").unwrap();
    assert_eq!(row["status"], "errored", "{row}");
    assert!(row["reason"].as_str().unwrap().contains("not ready within"), "{row}");
}

#[test]
fn notify_via_systemd_notify() {
    if !have("systemd-notify") {
        eprintln!("systemd-notify is not installed; skipping its case");
        return;
    }
    let home = Home::new();
    let config = home.write(
        "s.toml",
        "[apps.sd]\ncommand = \"sh\"\nargs = [\"-c\", \"systemd-notify --ready --status='from systemd-notify' && exec sleep infinity\"]\nready = \"notify\"\nready_timeout = \"10s\"\n",
    );
    let out = home.ok(&["start", config.to_str().unwrap()]);
    assert!(out.contains("sd: online"), "{out}");
    home.wait_app("sd", "the STATUS= from systemd-notify", |r| r["status_text"] == "from systemd-notify");
}

#[test]
fn an_exit_before_ready_fails_the_start_with_its_reason() {
    let home = Home::new();
    let config =
        home.write("e.toml", "[apps.early]\ncommand = \"sh\"\nargs = [\"-c\", \"exit 3\"]\nready = \"notify\"\n");
    let err = home.fails(&["start", config.to_str().unwrap()]);
    assert!(err.contains("exit code 3 before it was ready"), "stderr: {err}");
    assert_eq!(home.app("early").unwrap()["status"], "errored");
}

#[test]
fn ipc_ready_from_a_real_node_process_and_shutdown_message() {
    let home = Home::new();
    let script = "setTimeout(() => process.send('ready'), 200);\
        process.on('message', (m) => { if (m === 'shutdown') { require('fs').writeFileSync('shutdown.txt', 'got ' + m); process.exit(0); } });";
    let config = home.write(
        "i.toml",
        &format!("[apps.node]\ncommand = \"node\"\nargs = [\"-e\", {script:?}]\nready = \"ipc\"\nshutdown_with_message = true\n"),
    );
    let out = home.ok(&["start", config.to_str().unwrap()]);
    assert!(out.contains("node: online"), "{out}");
    home.ok(&["stop", "node"]);
    assert_eq!(std::fs::read_to_string(home.file("shutdown.txt")).unwrap_or_default(), "got shutdown");
    let exit = home.describe("node")["last_exits"][0].clone();
    assert_eq!(exit["code"], 0, "it exited on the message, not a signal: {exit}");
}

#[test]
fn http_and_tcp_probes() {
    let home = Home::new();
    let server = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/server.py");
    for (name, ready) in
        [("web-http", "{ http = \"http://127.0.0.1:PORT/health\" }"), ("web-tcp", "{ tcp = \"127.0.0.1:PORT\" }")]
    {
        let port = free_port();
        // The server starts listening only after a pause, so the probe must wait for it.
        let config = format!(
            "[apps.{name}]\ncommand = \"sh\"\nargs = [\"-c\", \"sleep 0.5; exec python3 {}\"]\nenv = {{ PORT = \"{port}\" }}\nready = {}\n",
            server.display(),
            ready.replace("PORT", &port.to_string())
        );
        let file = home.write(&format!("{name}.toml"), &config);
        let out = home.ok(&["start", file.to_str().unwrap()]);
        assert!(out.contains(&format!("{name}: online")), "{out}");
        let ready_ms: u64 = out
            .split("ready after ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(ready_ms >= 500, "{name} became ready before it listened: {out}");
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("the app listens once online");
    }
}
