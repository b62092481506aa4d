//! A home others can write to, a planted symlink, a socket served by another user: mcpd
//! refuses, says how to fix it, and sends nothing.

use crate::common::{signal, wait_for, Home};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_home_writable_by_others_or_owned_by_another_user_is_refused() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = home.fails(&["ping"]);
    assert!(err.contains("writable by other users") && err.contains("chmod go-w"), "{err}");
    assert!(!home.path().join("daemon.lock").exists(), "nothing was started");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(home.path(), Some(65534), Some(65534)).unwrap();
        let err = home.fails(&["ping"]);
        assert!(err.contains("belongs to uid 65534") && err.contains("chown"), "{err}");
        std::os::unix::fs::chown(home.path(), Some(0), Some(0)).unwrap();
    }
    home.ok(&["ping"]);
}

#[test]
fn a_symlink_planted_where_a_log_file_goes_is_not_followed() {
    let home = Home::new();
    home.ok(&["ping"]);
    let victim = home.file("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, home.path().join("logs/talker.out.log")).unwrap();
    home.write("talker.py", "import time\nwhile True:\n    print('hello', flush=True)\n    time.sleep(0.05)\n");
    home.ok(&["start", "--name", "talker", "--", "python3", "talker.py"]);
    let row = home.wait_app("talker", "its log error", |r| r["log_error"].is_string());
    assert!(row["log_error"].as_str().unwrap().contains("talker.out.log"), "{row}");
    // The text views say it too, not only the JSON.
    assert!(home.ok(&["list"]).contains("logs: cannot open"), "list shows the log error");
    assert!(home.ok(&["describe", "talker"]).contains("log_error"), "describe shows the log error");
    home.ok(&["stop", "talker"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "the link's target was not written");
}

/// Binds the socket as root, becomes uid 65534, listens, and records what it receives.
const FAKE_SERVER: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
os.setgid(65534)
os.setuid(65534)
s.listen(16)
open(sys.argv[2] + ".ready", "w").close()
while True:
    c, _ = s.accept()
    data = c.recv(65536)
    with open(sys.argv[2], "ab") as f:
        f.write(data)
    c.close()
"#;

#[test]
fn the_cli_sends_nothing_to_a_socket_another_user_serves() {
    if !is_root() {
        eprintln!("needs root to run a server as another user; skipping");
        return;
    }
    let home = Home::new();
    std::fs::create_dir_all(home.path()).unwrap();
    home.write("fake.py", FAKE_SERVER);
    let heard = home.file("heard.bin");
    std::fs::write(&heard, "").unwrap();
    std::os::unix::fs::chown(&heard, Some(65534), Some(65534)).unwrap();
    let ready_flag = home.file("heard.bin.ready");
    std::os::unix::fs::chown(home.file(""), Some(0), Some(0)).unwrap();
    std::fs::set_permissions(home.file(""), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut fake = std::process::Command::new("python3")
        .arg(home.file("fake.py"))
        .arg(home.path().join("mcpd.sock"))
        .arg(&heard)
        .spawn()
        .unwrap();
    wait_for("the fake server", Duration::from_secs(10), || {
        if ready_flag.exists() {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    let config =
        home.write("secret.toml", "[apps.s]\ncommand = \"sleep\"\nargs = [\"1\"]\nenv = { TOKEN = \"hunter2\" }\n");
    let err = home.fails(&["start", config.to_str().unwrap()]);
    assert!(err.contains("served by uid 65534"), "{err}");
    signal(fake.id(), libc::SIGKILL);
    let _ = fake.wait();
    let got = std::fs::read(&heard).unwrap();
    assert!(got.is_empty(), "the CLI sent {} bytes to another user's socket", got.len());
}
