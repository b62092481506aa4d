//! The restart policy end to end: crash loops, memory limit, watchdog, health checks.

use crate::common::{wait_for, Home};
use serde_json::Value;
use std::time::Duration;

fn fixture(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/fixtures").join(name).display().to_string()
}

/// Waits for an exit record whose reason starts with `prefix`; returns it.
fn wait_exit(home: &Home, app: &str, prefix: &str) -> Value {
    wait_for(&format!("{app}: an exit with reason {prefix:?}"), Duration::from_secs(20), || {
        let exits = home.describe(app)["last_exits"].clone();
        exits
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["reason"].as_str().is_some_and(|r| r.starts_with(prefix)))
            .cloned()
            .ok_or_else(|| exits.to_string())
    })
}

#[test]
fn a_crash_loop_ends_in_errored_until_the_user_acts() {
    let home = Home::new();
    let config = home.write(
        "loop.toml",
        "[apps.loopy]\ncommand = \"sh\"\nargs = [\"-c\", \"exit 2\"]\nrestart_delay = \"20ms\"\nmin_uptime = \"1s\"\nmax_restarts = 3\n",
    );
    home.ok(&["start", "--no-wait", config.to_str().unwrap()]);
    let row = home.wait_app("loopy", "errored", |r| r["status"] == "errored");
    let reason = row["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("crash loop: 3 restarts in a row each ended within min_uptime (1s), last: exit code 2"),
        "{reason}"
    );
    assert_eq!(row["restarts"], 3, "{row}");
    let last = home.describe("loopy")["last_exits"].as_array().unwrap().last().cloned().unwrap();
    assert!(last["outcome"].as_str().unwrap().starts_with("errored: crash loop"), "{last}");
    // It stays down: no restart is scheduled.
    assert!(row["next_start_in_ms"].is_null(), "{row}");
    home.ok(&["reset", "loopy"]);
    let row = home.app("loopy").unwrap();
    assert_eq!(
        (row["status"].as_str(), row["restarts"].as_u64()),
        (Some("errored"), Some(0)),
        "reset clears counters only"
    );
    home.ok(&["start", "--no-wait", "loopy"]);
    home.wait_app("loopy", "errored again after a fresh run of 3 restarts", |r| {
        r["status"] == "errored" && r["restarts"] == 3
    });
}

#[test]
fn clean_exits_and_stop_exit_codes_follow_the_policy() {
    let home = Home::new();
    let config = home.write(
        "p.toml",
        "[apps.oneshot]\ncommand = \"sh\"\nargs = [\"-c\", \"sleep 0.2; exit 0\"]\nrestart = \"on-failure\"\n\n\
         [apps.done]\ncommand = \"sh\"\nargs = [\"-c\", \"sleep 0.2; exit 42\"]\nstop_exit_codes = [42]\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    for (app, why) in [
        ("oneshot", "stays stopped: exited cleanly; restart = \"on-failure\""),
        ("done", "stays stopped: exit code 42 is in stop_exit_codes"),
    ] {
        let row = home.wait_app(app, "stopped", |r| r["status"] == "stopped");
        assert_eq!(row["restarts"], 0, "{row}");
        let exit = home.describe(app)["last_exits"][0].clone();
        assert_eq!(exit["outcome"], why, "{exit}");
    }
}

#[test]
fn a_process_group_whose_child_leaks_memory_is_restarted() {
    let home = Home::new();
    let config = home.write(
        "leak.toml",
        &format!(
            "[apps.leaky]\ncommand = \"sh\"\nargs = [\"-c\", \"python3 {}; true\"]\nmax_memory_restart = \"80M\"\nmemory_check_interval = \"500ms\"\n",
            fixture("leak.py")
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let first = home.pid("leaky");
    let exit = wait_exit(&home, "leaky", "memory limit 80M exceeded: RSS ");
    assert_eq!(exit["pid"], first, "{exit}");
    let row = home.wait_app("leaky", "online again", |r| r["status"] == "online" && r["pid"] != first);
    assert_eq!(row["restarts"], 1, "{row}");
    let log = std::fs::read_to_string(home.file("leak.log")).unwrap();
    assert!(log.contains("sigterm"), "the leaking child got the stop signal: {log}");
}

#[test]
fn a_silent_watchdog_replaces_the_generation() {
    let home = Home::new();
    let app = r#"
import os, socket, time
def send(m):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(m.encode(), os.environ["NOTIFY_SOCKET"])
open("watchdog-usec.txt", "w").write(os.environ.get("WATCHDOG_USEC", ""))
send("READY=1")
pings = 5 if not os.path.exists("hung-once") else 10**9
open("hung-once", "w").close()
for _ in range(pings):
    send("WATCHDOG=1")
    time.sleep(0.2)
time.sleep(1000)
"#;
    home.write("wd.py", app);
    let config = home.write(
        "wd.toml",
        "[apps.wd]\ncommand = \"python3\"\nargs = [\"wd.py\"]\nready = \"notify\"\nwatchdog = \"1s\"\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let first = home.pid("wd");
    assert_eq!(std::fs::read_to_string(home.file("watchdog-usec.txt")).unwrap(), "1000000");
    let exit = wait_exit(&home, "wd", "watchdog: no WATCHDOG=1 for 1s");
    assert_eq!(exit["pid"], first, "{exit}");
    let row = home.wait_app("wd", "online with a new pid", |r| r["status"] == "online" && r["pid"] != first);
    assert_eq!(row["restarts"], 1, "{row}");
}

#[test]
fn a_failing_health_probe_restarts_the_app() {
    let home = Home::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        sick = os.path.exists("sick") and open("sick").read().strip() == str(os.getpid())
        self.send_response(500 if sick and self.path == "/health" else 200)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;
    home.write("sick.py", server);
    let config = home.write(
        "h.toml",
        &format!(
            "[apps.h]\ncommand = \"python3\"\nargs = [\"sick.py\"]\nenv = {{ PORT = \"{port}\" }}\nready = {{ tcp = \"127.0.0.1:{port}\" }}\n\
             health = {{ http = \"http://127.0.0.1:{port}/health\", interval = \"200ms\", timeout = \"1s\", failures = 2 }}\n"
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let first = home.pid("h");
    std::fs::write(home.file("sick"), first.to_string()).unwrap();
    let exit = wait_exit(&home, "h", "health check failed 2 times in a row: GET /health answered 500");
    assert_eq!(exit["pid"], first, "{exit}");
    home.wait_app("h", "online with a new pid", |r| r["status"] == "online" && r["pid"] != first);
}
