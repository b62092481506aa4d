//! Env values are secrets: never shown by `describe`, `list` or the HTTP endpoint, stored in
//! `dump.json` with mode 0600, and still handed to the app (also after a resurrect).

use crate::common::{free_port, wait_for, Home};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn secret_app(home: &Home, extra: &str) -> std::path::PathBuf {
    home.write(
        "secret.toml",
        &format!(
            "{extra}[apps.vault]\ncommand = \"sh\"\nargs = [\"-c\", \"echo secret=$SECRET; exec sleep infinity\"]\n\
             env = {{ SECRET = \"hunter2\", PORT = 8080 }}\n"
        ),
    )
}

/// Waits until the app's stdout holds `count` lines saying it got the secret.
fn wait_secret_lines(home: &Home, count: usize) {
    wait_for("the app to print its secret", Duration::from_secs(10), || {
        let out = home.ok(&["logs", "vault", "--out", "--lines", "100"]);
        if out.matches("secret=hunter2").count() >= count {
            Ok(())
        } else {
            Err(out)
        }
    });
}

#[test]
fn describe_list_and_http_never_show_env_values() {
    let home = Home::new();
    let port = free_port();
    let config = secret_app(&home, &format!("[daemon]\nhttp = \"127.0.0.1:{port}\"\n\n"));
    home.ok(&["start", config.to_str().unwrap()]);
    wait_secret_lines(&home, 1);
    let json = home.ok(&["describe", "vault", "--json"]);
    assert!(!json.contains("hunter2"), "describe --json shows an env value: {json}");
    let detail: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(detail["config"]["env"]["SECRET"], "(hidden)", "names stay, values do not: {json}");
    assert_eq!(detail["config"]["env"]["PORT"], "(hidden)", "{json}");
    let text = home.ok(&["describe", "vault"]);
    assert!(text.contains("SECRET") && !text.contains("hunter2"), "{text}");
    let list = home.ok(&["list", "--json"]);
    assert!(!list.contains("hunter2"), "{list}");
    let (status, apps) =
        crate::common::http(port, "GET /apps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(status, 200, "{apps}");
    assert!(apps.contains("vault") && !apps.contains("hunter2"), "{apps}");
}

#[test]
fn dump_json_is_private_and_keeps_env_values_for_resurrect() {
    let home = Home::new();
    let config = secret_app(&home, "");
    home.ok(&["start", config.to_str().unwrap()]);
    wait_secret_lines(&home, 1);
    // A stale temporary file from an interrupted save, readable by everyone.
    let tmp = home.path().join("dump.json.tmp");
    std::fs::write(&tmp, "{}").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    home.ok(&["save"]);
    let dump = home.path().join("dump.json");
    let mode = std::fs::metadata(&dump).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "dump.json holds env values: only its owner may read it (mode {mode:o})");
    assert!(std::fs::read_to_string(&dump).unwrap().contains("hunter2"), "the real value is saved");
    // Back after the daemon restarts, with the real value.
    home.ok(&["kill"]);
    home.wait_app("vault", "online again from dump.json", |r| r["status"] == "online");
    wait_secret_lines(&home, 2);
    home.ok(&["save"]);
    let mode = std::fs::metadata(&dump).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "saved again: still 0600 (mode {mode:o})");
}
