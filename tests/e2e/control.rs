//! The control socket: one daemon per home, permissions, garbage and version mismatches.

use crate::common::{wait_for, Home, MCPD};
use mcpd_core::client::{Client, ClientError};
use mcpd_core::paths::Paths;
use mcpd_core::protocol::{frame, Hello, HelloReply, Request, Response};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[test]
fn a_second_daemon_is_refused_and_the_first_keeps_serving() {
    let home = Home::new();
    home.ok(&["ping"]);
    let first = home.daemon_pid().unwrap();
    let out = home.command(&["daemon"]).output().expect("run second daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second daemon must not run");
    assert!(stderr.contains(&format!("another mcpd daemon (pid {first}) is already running")), "stderr: {stderr}");
    assert!(home.ok(&["ping"]).contains(&format!("daemon pid {first}")));
}

#[test]
fn the_socket_is_private_to_its_user() {
    let home = Home::new();
    home.ok(&["ping"]);
    let mode = std::fs::metadata(home.path().join("mcpd.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
}

fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Sends bytes on a fresh connection and returns what the daemon sent back before closing.
fn send_raw(home: &Home, bytes: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(home.path().join("mcpd.sock")).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(bytes).expect("write");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("the daemon closes a bad connection instead of hanging");
    reply
}

#[test]
fn garbage_closes_only_that_connection() {
    let home = Home::new();
    home.ok(&["start", "--name", "keep", "--", "sleep", "infinity"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let paths = Paths::new(home.path());
    let mut good = rt.block_on(Client::connect(&paths)).expect("a good client connects");

    let mut hello_then = raw_frame(&frame::encode(&Hello::current()));
    hello_then.extend(raw_frame(b"{not json"));
    let oversized = ((frame::MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("http garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("random bytes", vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]),
        ("oversized frame header", oversized.to_vec()),
        ("json that is not a hello", raw_frame(br#"{"verb":"list"}"#)),
        ("garbage after a good hello", hello_then),
    ];
    for (name, bytes) in cases {
        let reply = send_raw(&home, &bytes);
        // A frame that is not a hello is refused with a reason; after a good hello the daemon
        // welcomes, then answers the garbage with an error; bytes that are no frame just close.
        if name.contains("after a good hello") {
            let len = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
            let welcome: HelloReply = frame::decode(&reply[4..4 + len]).expect("a welcome frame");
            assert!(matches!(welcome, HelloReply::Welcome { .. }), "{name}: {welcome:?}");
            assert!(String::from_utf8_lossy(&reply).contains("invalid_request"), "{name}: {reply:?}");
        } else if name.contains("not a hello") {
            let refusal: HelloReply = frame::decode(&reply[4..]).expect("a refusal frame");
            assert!(matches!(refusal, HelloReply::Refused(_)), "{name}: {refusal:?}");
        } else {
            assert!(reply.is_empty(), "{name}: daemon answered {reply:?}");
        }
        let response = rt.block_on(good.call(Request::List)).expect("the good client is still served");
        assert!(matches!(response, Response::List { ref apps } if apps.len() == 1), "{name}: {response:?}");
    }
    assert!(home.ok(&["ping"]).contains("pong"));
}

#[test]
fn a_client_of_another_protocol_version_is_told_what_to_do() {
    let home = Home::new();
    home.ok(&["ping"]);
    let hello = br#"{"protocol":999,"client_version":"9.9.9"}"#;
    let reply = send_raw(&home, &raw_frame(hello));
    let refusal: HelloReply = frame::decode(&reply[4..]).expect("a refusal frame");
    match refusal {
        HelloReply::Refused(e) => assert!(e.message.contains("mcpd kill"), "{}", e.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn verbs_without_a_daemon_start_one_and_kill_without_one_is_harmless() {
    let home = Home::new();
    let out = home.ok(&["kill"]);
    assert!(out.contains("no daemon is running"), "{out}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = rt.block_on(Client::connect(&Paths::new(home.path()))).unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err}");
    assert!(home.list().is_empty());
    let pid = home.daemon_pid().expect("list started a daemon");
    let sibling = std::path::Path::new(MCPD).with_file_name("mcpd-daemon");
    if sibling.is_file() {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(exe.ends_with("mcpd-daemon"), "`mcpd daemon` execs the daemon binary beside it: {}", exe.display());
    }
    wait_for("the daemon to be alive", Duration::from_secs(5), || {
        if crate::common::alive(pid) {
            Ok(())
        } else {
            Err("not alive".into())
        }
    });
}

/// `mcpd daemon` takes the home's lock before anything else (before exec'ing mcpd-daemon),
/// and a verb that finds the home locked waits for that daemon. A verb run in the first
/// milliseconds of a foreground daemon used to start a rival in the background, which often
/// won the lock: the foreground daemon (the one systemd or a container runs) then exited.
#[test]
fn a_verb_right_after_a_foreground_daemon_starts_uses_that_daemon() {
    for round in 0..10 {
        let home = Home::new();
        let mut daemon = home
            .command(&["daemon"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn mcpd daemon");
        let out = home.run(&["ping"]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let exited = daemon.try_wait().unwrap();
        assert!(exited.is_none(), "round {round}: the foreground daemon exited ({exited:?}); ping said: {text}");
        assert!(out.status.success(), "round {round}: ping failed: {text}");
        assert!(text.contains(&format!("pid {}", daemon.id())), "round {round}: ping reached another daemon: {text}");
        home.ok(&["kill"]);
        wait_for("the foreground daemon to exit", Duration::from_secs(10), || {
            daemon.try_wait().map_err(|e| e.to_string())?.map(drop).ok_or_else(|| "running".to_string())
        });
    }
}

/// A start request whose durations are past what a config may give (365 days), sent as JSON
/// by a client other than the CLI (which checks them when it parses a file), is refused and
/// defines nothing, as the same value in a file is: before, the daemon defined and started
/// the app with a `kill_timeout` of u64::MAX milliseconds (584 million years).
#[test]
fn a_start_request_with_durations_past_the_limit_is_refused_and_the_daemon_survives() {
    let home = Home::new();
    home.ok(&["ping"]);
    let daemon = home.daemon_pid().unwrap();
    let file = home.write("ok.toml", "[apps.huge]\ncommand = \"sleep\"\nargs = [\"infinity\"]\n");
    let config = mcpd_core::config::load_checked(&file).expect("a valid config").apps.remove(0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let paths = Paths::new(home.path());
    for key in ["kill_timeout", "restart_delay", "ready_timeout", "watchdog", "log_rotate_interval"] {
        let request = Request::Start(mcpd_core::protocol::StartRequest {
            apps: vec![config.clone()],
            names: vec![],
            wait: false,
        });
        let mut json = serde_json::to_value(&request).unwrap();
        let app = json.pointer_mut("/apps/0").unwrap_or_else(|| panic!("the app in the request"));
        let slot = find_key(app, key).unwrap_or_else(|| panic!("{key} in the app"));
        *slot = serde_json::json!(u64::MAX);
        let mut bytes = raw_frame(&frame::encode(&Hello::current()));
        bytes.extend(raw_frame(json.to_string().as_bytes()));
        let reply = String::from_utf8_lossy(&send_raw(&home, &bytes)).into_owned();
        assert!(reply.contains("longer than the limit of 365 days"), "{key}: {reply}");
        let mut client = rt.block_on(Client::connect(&paths)).expect("the daemon still serves");
        let listed = rt.block_on(client.call(Request::List)).unwrap();
        assert!(
            matches!(listed, Response::List { ref apps } if apps.is_empty()),
            "{key}: nothing was defined: {listed:?}"
        );
    }
    assert!(home.ok(&["ping"]).contains(&format!("daemon pid {daemon}")), "the same daemon serves");
}

/// The value of `key` anywhere in `v` (the app's JSON nests limits and logs).
fn find_key<'a>(v: &'a mut serde_json::Value, key: &str) -> Option<&'a mut serde_json::Value> {
    match v {
        serde_json::Value::Object(map) => {
            if map.contains_key(key) {
                return map.get_mut(key);
            }
            map.values_mut().find_map(|child| find_key(child, key))
        }
        _ => None,
    }
}
