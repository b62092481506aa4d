//! Graceful reload under load: no refused request, no cut stream; failed reloads keep the old
//! generation serving.

use crate::common::{alive, wait_for, Home};
use crate::load::{Load, Shape};
use std::net::SocketAddr;
use std::time::Duration;

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The Node example with socket handoff on `addr`, plus `extra` config lines.
fn node_app(home: &Home, addr: SocketAddr, extra: &str) -> std::path::PathBuf {
    let config = format!(
        "[apps.web]\ncommand = \"node\"\nargs = [{:?}]\nlisten = [\"tcp://{addr}\"]\nready = \"ipc\"\nready_timeout = \"10s\"\nkill_signal = \"SIGINT\"\nkill_timeout = \"20s\"\n{extra}",
        examples().join("node/server.js").display()
    );
    home.write("web.toml", &config)
}

const SHAPE: Shape = Shape { rate: 150, request_threads: 3, streams: 6, events: 15, event_ms: 100 };

fn wait_some_traffic(load: &Load, at_least: u64) {
    let start = load.ok();
    wait_for("requests to succeed", Duration::from_secs(10), || {
        if load.ok() >= start + at_least {
            Ok(())
        } else {
            Err(format!("{} ok", load.ok()))
        }
    });
}

#[test]
fn five_reloads_under_load_lose_nothing() {
    let home = Home::new();
    let addr = free_addr();
    let config = node_app(&home, addr, "");
    home.ok(&["start", config.to_str().unwrap()]);
    let load = Load::start(addr, SHAPE);
    wait_some_traffic(&load, 20);
    let mut pids = vec![home.pid("web")];
    for i in 0..5 {
        let out = home.ok(&["reload", "web"]);
        assert!(out.contains("reloaded: pid"), "reload {i}: {out}");
        let pid = home.pid("web");
        assert!(!pids.contains(&pid), "reload {i} gave a new pid");
        assert!(!alive(pids[pids.len() - 1]), "reload {i}: the old generation is gone when reload returns");
        pids.push(pid);
        wait_some_traffic(&load, 10);
    }
    let stats = load.stop();
    assert_eq!((stats.failed, stats.streams_cut), (0, 0), "errors: {:?}", stats.errors);
    assert!(stats.ok > 100 && stats.streams_ok > 5, "too little traffic to mean anything: {stats:?}");
    let row = home.app("web").unwrap();
    assert_eq!(row["restarts"], 5, "{row}");
}

#[test]
fn a_reload_whose_new_generation_never_gets_ready_or_crashes_keeps_the_old_one_serving() {
    let home = Home::new();
    let addr = free_addr();
    let config = node_app(&home, addr, "");
    home.ok(&["start", config.to_str().unwrap()]);
    let old = home.pid("web");
    let load = Load::start(addr, SHAPE);
    wait_some_traffic(&load, 20);

    // A new config whose generation never says ready.
    let never = home.write(
        "never.toml",
        &format!("[apps.web]\ncommand = \"sleep\"\nargs = [\"infinity\"]\nlisten = [\"tcp://{addr}\"]\nready = \"ipc\"\nready_timeout = \"1s\"\n"),
    );
    let err = home.fails(&["reload", "web", "--config", never.to_str().unwrap()]);
    assert!(err.contains("reload failed") && err.contains("not ready within 1s"), "stderr: {err}");
    assert_eq!(home.pid("web"), old, "the old generation still serves");
    wait_some_traffic(&load, 10);

    // A new config whose generation crashes at once.
    let crash = home.write(
        "crash.toml",
        &format!(
            "[apps.web]\ncommand = \"sh\"\nargs = [\"-c\", \"exit 7\"]\nlisten = [\"tcp://{addr}\"]\nready = \"ipc\"\n"
        ),
    );
    let err = home.fails(&["reload", "web", "--config", crash.to_str().unwrap()]);
    assert!(err.contains("ended (exit code 7) before it was ready"), "stderr: {err}");
    assert_eq!(home.pid("web"), old);
    wait_some_traffic(&load, 10);

    let stats = load.stop();
    assert_eq!((stats.failed, stats.streams_cut), (0, 0), "errors: {:?}", stats.errors);
    let detail = home.describe("web");
    assert_eq!(detail["config"]["command"], "node", "a failed reload keeps the old config");
    assert_eq!(detail["info"]["status"], "online");
}

#[test]
fn an_app_binding_its_own_port_fails_to_reload_cleanly() {
    let home = Home::new();
    let port = free_addr().port();
    let server = examples().join("hello/server.py");
    let config = home.write(
        "own.toml",
        &format!(
            "[apps.own]\ncommand = \"python3\"\nargs = [{:?}]\nenv = {{ PORT = \"{port}\" }}\nready = \"notify\"\n",
            server.display()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let old = home.pid("own");
    let err = home.fails(&["reload", "own"]);
    assert!(err.contains("reload failed") && err.contains("before it was ready"), "stderr: {err}");
    assert_eq!(home.pid("own"), old, "the old generation keeps serving");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let load = Load::start(addr, Shape { rate: 50, request_threads: 1, streams: 0, events: 0, event_ms: 0 });
    wait_some_traffic(&load, 5);
    assert_eq!(load.stop().failed, 0);
    let err_log = std::fs::read_to_string(home.path().join("logs/own.err.log")).unwrap_or_default();
    assert!(err_log.contains("Address already in use"), "the new generation could not bind: {err_log}");
}

#[test]
fn a_reload_shows_both_pids_refuses_a_second_reload_and_blocks_no_other_app() {
    let home = Home::new();
    let addr = free_addr();
    let config = node_app(&home, addr, "env = { READY_DELAY_MS = \"1500\" }\n");
    home.ok(&["start", config.to_str().unwrap()]);
    home.ok(&["start", "--name", "other", "--", "sleep", "infinity"]);
    let old = home.pid("web");
    let reload = home
        .command(&["reload", "web"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let row = home
        .wait_app("web", "reloading with both pids", |r| r["status"] == "reloading" && r["reload"]["new_pid"].is_u64());
    assert_eq!(row["reload"]["old_pid"], old, "{row}");
    assert_eq!(row["reload"]["phase"], "starting-new", "{row}");
    let err = home.fails(&["reload", "web"]);
    assert!(err.contains("a reload is already running"), "stderr: {err}");
    let t = std::time::Instant::now();
    home.ok(&["stop", "other"]);
    assert!(t.elapsed() < Duration::from_millis(1000), "stopping another app waited for the reload: {:?}", t.elapsed());
    assert_eq!(home.app("web").unwrap()["status"], "reloading", "the reload was still running meanwhile");
    let out = reload.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(home.pid("web"), old);
}
