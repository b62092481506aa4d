//! `mcpd events`: the daemon's lifecycle events, pushed as they happen.

use crate::common::{signal, wait_for, Home};
use crate::wedge::GEN_APP;
use serde_json::Value;
use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn events_json_shows_a_reload_as_its_phases() {
    let home = Home::new();
    home.write("gen.py", GEN_APP);
    let config = home.write(
        "rb.toml",
        "[apps.rb]\ncommand = \"python3\"\nargs = [\"gen.py\"]\nready = \"notify\"\nkill_timeout = \"4s\"\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let old = home.pid("rb");
    home.write("delay.txt", "0.5");

    let mut follower = home
        .command(&["events", "rb", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mcpd events");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
        }
    });
    // The subscription is in place once the daemon has answered it: a first event proves it.
    home.ok(&["restart", "rb"]);
    let mut seen: Vec<Value> = Vec::new();
    let next_event = |seen: &mut Vec<Value>, what: &str, done: &dyn Fn(&Value) -> bool| {
        wait_for(what, Duration::from_secs(15), || loop {
            match rx.try_recv() {
                Ok(event) => {
                    let hit = done(&event);
                    seen.push(event);
                    if hit {
                        return Ok(());
                    }
                }
                Err(_) => return Err(format!("{seen:?}")),
            }
        })
    };
    next_event(&mut seen, "the restart's ready event", &|e| e["event"] == "ready");
    let serving = home.pid("rb");
    assert_ne!(serving, old);
    seen.clear();

    let out = home.ok(&["reload", "rb"]);
    assert!(out.contains("reloaded: pid"), "{out}");
    next_event(&mut seen, "the reload's done event", &|e| e["event"] == "reload" && e["phase"] == "done");
    let kinds: Vec<String> = seen
        .iter()
        .map(|e| match e["event"].as_str() {
            Some("reload") => format!("reload {}", e["phase"].as_str().unwrap_or("?")),
            Some(kind) => kind.to_string(),
            None => format!("{e}"),
        })
        .collect();
    let want = ["spawned", "reload starting-new", "ready", "reload draining-old", "exited", "reload done"];
    assert_eq!(kinds, want, "events: {seen:?}");
    let new = seen[0]["pid"].as_u64().unwrap();
    assert_eq!(seen[0]["next"], true, "{seen:?}");
    assert_eq!(seen[2]["pid"], new, "{seen:?}");
    assert_eq!(seen[4]["pid"], serving, "the old generation exited: {seen:?}");
    assert_eq!(seen[5]["status"], "online", "{seen:?}");
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers grow: {seqs:?}");

    signal(follower.id(), libc::SIGKILL);
    let _ = follower.wait();
}

#[test]
fn events_with_samples_report_memory_each_second() {
    let home = Home::new();
    home.ok(&["start", "--name", "s", "--", "sleep", "infinity"]);
    let pid = home.pid("s");
    let mut follower = home
        .command(&["events", "s", "--json", "--samples", "--rows"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mcpd events");
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
        }
    });
    let mut seen = Vec::new();
    let sample = wait_for("a sample event with memory", Duration::from_secs(10), || loop {
        match rx.try_recv() {
            Ok(e) if e["event"] == "sample" && e["memory_bytes"].as_u64().is_some_and(|m| m > 0) => return Ok(e),
            Ok(e) => seen.push(e),
            Err(_) => return Err(format!("{seen:?}")),
        }
    });
    assert_eq!(sample["pid"], pid, "{sample}");
    assert_eq!(sample["row"]["name"], "s", "the row comes with --rows: {sample}");
    assert_eq!(sample["row"]["status"], "online", "{sample}");
    signal(follower.id(), libc::SIGKILL);
    let _ = follower.wait();
}
