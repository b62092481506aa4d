//! start / list / describe / stop / delete, restarts after a crash, config errors.

use crate::common::{alive, wait_for, Home};
use std::time::Duration;

const TWO_APPS: &str = r#"
[apps.alpha]
command = "sleep"
args = ["1000"]
kill_timeout = "2s"

[apps.beta]
command = "sh"
args = ["-c", "echo \"$GREETING $FROM_FILE\" > env.txt; exec sleep infinity"]
env = { GREETING = "hello" }
env_file = "beta.env"
"#;

#[test]
fn start_list_describe_stop_delete() {
    let home = Home::new();
    home.write("beta.env", "# comment\nFROM_FILE=from-env-file\n");
    let config = home.write("mcpd.toml", TWO_APPS);
    let out = home.ok(&["start", config.to_str().unwrap()]);
    assert!(out.contains("alpha: online (pid"), "start said: {out}");

    let list = home.list();
    let names: Vec<&str> = list.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    for row in &list {
        assert_eq!(row["status"], "online", "{row}");
        for field in ["pid", "restarts", "uptime_ms"] {
            assert!(row[field].is_u64(), "{field} missing in {row}");
        }
        assert!(row.get("memory_bytes").is_some(), "memory_bytes missing in {row}");
    }
    let alpha = home.pid("alpha");
    assert!(alive(alpha), "alpha's pid {alpha} is not a live process");
    home.wait_app("alpha", "a memory sample", |r| r["memory_bytes"].as_u64().is_some_and(|m| m > 0));

    let env = wait_for("beta to write env.txt", Duration::from_secs(10), || {
        std::fs::read_to_string(home.file("env.txt")).map_err(|e| e.to_string()).and_then(|t| {
            if t.ends_with('\n') {
                Ok(t)
            } else {
                Err(t)
            }
        })
    });
    assert_eq!(env.trim(), "hello from-env-file", "env and env_file reach the app");

    let detail = home.describe("alpha");
    assert_eq!(detail["config"]["command"], "sleep");
    assert_eq!(detail["config"]["kill_timeout"], 2000);
    assert_eq!(detail["info"]["status"], "online");
    let human = home.ok(&["describe", "beta"]);
    assert!(human.contains("GREETING") && !human.contains("hello"), "describe shows env keys, never values:\n{human}");

    let again = home.ok(&["start", config.to_str().unwrap(), "alpha"]);
    assert!(again.contains("already online"), "second start said: {again}");
    assert_eq!(home.pid("alpha"), alpha, "starting an online app changes nothing");

    home.ok(&["stop", "alpha"]);
    let row = home.app("alpha").unwrap();
    assert_eq!(row["status"], "stopped", "{row}");
    assert!(row["pid"].is_null(), "{row}");
    assert!(!alive(alpha), "alpha's process {alpha} survived stop");
    let exits = home.describe("alpha")["last_exits"].clone();
    assert_eq!(exits[0]["reason"], "user stop", "{exits}");
    assert_eq!(exits[0]["signal"], 15, "{exits}");

    home.ok(&["start", "alpha"]);
    assert_ne!(home.pid("alpha"), alpha, "a new generation has a new pid");

    home.ok(&["delete", "alpha", "beta"]);
    assert!(home.list().is_empty(), "deleted apps are gone from list");
}

#[test]
fn start_a_command_without_a_file_and_restart_it() {
    let home = Home::new();
    let out = home.ok(&["start", "--name", "adhoc", "--", "sleep", "infinity"]);
    assert!(out.contains("adhoc: online"), "{out}");
    let first = home.pid("adhoc");
    home.ok(&["restart", "adhoc"]);
    let row = home.app("adhoc").unwrap();
    assert_eq!(row["restarts"], 1, "{row}");
    assert_ne!(home.pid("adhoc"), first);
    assert!(!alive(first), "the old generation {first} is gone after restart");
}

#[test]
fn a_crashed_app_is_restarted_with_a_new_pid() {
    let home = Home::new();
    let config = home.write(
        "crash.toml",
        "[apps.crashy]\ncommand = \"sh\"\nargs = [\"-c\", \"read x < fifo; exit 3\"]\nrestart_delay = \"300ms\"\n",
    );
    nix_mkfifo(&home.file("fifo"));
    home.ok(&["start", config.to_str().unwrap()]);
    let first = home.pid("crashy");
    // Let the app exit when the test says so: writing a line to the fifo.
    std::fs::write(home.file("fifo"), "go\n").unwrap();
    let seen_waiting = home.wait_app("crashy", "waiting-restart or a new pid", |r| {
        r["status"] == "waiting-restart" || r["pid"].as_u64().is_some_and(|p| p as u32 != first)
    });
    let row = home.wait_app("crashy", "online again with a new pid", |r| {
        r["status"] == "online" && r["pid"].as_u64().is_some_and(|p| p as u32 != first)
    });
    assert_eq!(row["restarts"], 1, "{row} (earlier: {seen_waiting})");
    let exits = home.describe("crashy")["last_exits"].clone();
    assert_eq!(exits[0]["code"], 3, "{exits}");
    assert_eq!(exits[0]["reason"], "crash", "{exits}");
    // Unblock the new generation's read so its process is not left waiting on the fifo.
    home.ok(&["stop", "crashy"]);
}

fn nix_mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo failed");
}

#[test]
fn a_bad_config_names_line_and_key_and_starts_nothing() {
    let home = Home::new();
    let config = home.write(
        "bad.toml",
        "[apps.good]\ncommand = \"sleep\"\nargs = [\"infinity\"]\n\n[apps.bad]\ncommand = \"sleep\"\nkill_timeout = \"5 parsecs\"\ncolour = \"blue\"\n",
    );
    let err = home.fails(&["start", config.to_str().unwrap()]);
    assert!(err.contains("bad.toml:7:16: apps.bad.kill_timeout: invalid duration"), "stderr: {err}");
    assert!(err.contains("bad.toml:8:1: apps.bad.colour: unknown key"), "every error is reported: {err}");
    let check = home.fails(&["check", config.to_str().unwrap()]);
    assert!(check.contains("2 error(s)"), "check: {check}");
    assert!(home.list().is_empty(), "nothing may start from a bad config");
    let ok = home.write("ok.toml", "[apps.x]\ncommand = \"true\"\n");
    assert!(home.ok(&["check", ok.to_str().unwrap()]).contains("1 app(s) OK: x"));
}

#[test]
fn unknown_apps_fail_with_one_line_and_change_nothing() {
    let home = Home::new();
    home.ok(&["start", "--name", "real", "--", "sleep", "infinity"]);
    let pid = home.pid("real");
    let err = home.fails(&["stop", "real", "ghost"]);
    assert!(err.contains("no app or namespace named \"ghost\""), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(home.app("real").unwrap()["status"], "online", "a failed request stops nothing");
    assert_eq!(home.pid("real"), pid);
    let err = home.fails(&["start", "--name", "broken", "--", "/nonexistent/program"]);
    assert!(err.contains("broken") && err.contains("/nonexistent/program"), "spawn failure is reported: {err}");
    assert!(home.app("broken").is_none(), "a start that cannot spawn defines nothing");
}

#[test]
fn a_stopped_app_no_longer_holds_its_listen_sockets() {
    let home = Home::new();
    let port = crate::common::free_port();
    let config = home.write(
        "listen.toml",
        &format!("[apps.quiet]\ncommand = \"sleep\"\nargs = [\"infinity\"]\nlisten = [\"tcp://127.0.0.1:{port}\"]\n"),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "mcpd holds the socket while the app runs");
    home.ok(&["stop", "quiet"]);
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(refused.is_err(), "a stopped app's port refuses connections instead of queueing them");
    home.ok(&["start", "quiet"]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "a start binds it again");
}
