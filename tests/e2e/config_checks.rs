//! What `start` would reject or leave errored, `check` rejects first (each error naming file,
//! line, column and key); a `start` that fails leaves no app behind; `reload --config FILE`
//! of an app FILE does not define changes nothing; a config too large for one control request
//! is refused with its limit.

use crate::common::Home;

/// A config `check` and `start` must both reject, with this `file:line:` and key in the error.
struct Bad {
    what: &'static str,
    toml: String,
    line: usize,
    key: &'static str,
}

fn bad_configs() -> Vec<Bad> {
    let port = crate::common::free_port();
    let sleep = "command = \"sleep\"\nargs = [\"infinity\"]\n";
    vec![
        Bad {
            what: "a NUL byte in an env value",
            toml: format!("[apps.a]\n{sleep}env = {{ A = \"x\\u0000y\" }}\n"),
            line: 4,
            key: "apps.a.env.A",
        },
        Bad {
            what: "a NUL byte in an argument",
            toml: "[apps.a]\ncommand = \"echo\"\nargs = [\"ok\", \"x\\u0000y\"]\n".into(),
            line: 3,
            key: "apps.a.args[1]",
        },
        Bad {
            what: "an env name containing '='",
            toml: format!("[apps.a]\n{sleep}env = {{ \"A=B\" = \"1\" }}\n"),
            line: 4,
            key: "apps.a.env.A=B",
        },
        Bad {
            what: "an empty env name",
            toml: format!("[apps.a]\n{sleep}env = {{ \"\" = \"1\" }}\n"),
            line: 4,
            key: "apps.a.env.",
        },
        Bad {
            what: "a missing cwd",
            toml: format!("[apps.a]\n{sleep}cwd = \"/nonexistent/mcpd-dir\"\n"),
            line: 4,
            key: "apps.a.cwd",
        },
        Bad {
            what: "an unknown user",
            toml: format!("[apps.a]\n{sleep}user = \"no-such-user-here\"\n"),
            line: 4,
            key: "apps.a.user",
        },
        Bad {
            what: "an unknown group",
            toml: format!("[apps.a]\n{sleep}group = \"no-such-group-here\"\n"),
            line: 4,
            key: "apps.a.group",
        },
        Bad {
            what: "a program at an absolute path that does not exist",
            toml: "[apps.a]\ncommand = \"/nonexistent/mcpd-program\"\n".into(),
            line: 2,
            key: "apps.a.command",
        },
        Bad {
            what: "two apps sharing one out_file",
            toml: format!("[apps.a]\n{sleep}out_file = \"shared.log\"\n\n[apps.b]\n{sleep}out_file = \"shared.log\"\n"),
            line: 9,
            key: "apps.b.out_file",
        },
        Bad {
            what: "one app's err_file is another's out_file",
            toml: format!("[apps.a]\n{sleep}out_file = \"shared.log\"\n\n[apps.b]\n{sleep}err_file = \"shared.log\"\n"),
            line: 9,
            key: "apps.b.err_file",
        },
        Bad {
            what: "two apps sharing one listen address",
            toml: format!(
                "[apps.a]\n{sleep}listen = [\"tcp://127.0.0.1:{port}\"]\n\n[apps.b]\n{sleep}listen = [\"tcp://127.0.0.1:{port}\"]\n"
            ),
            line: 9,
            key: "apps.b.listen[0]",
        },
        Bad {
            what: "a front on another app's listen address",
            toml: format!(
                "[apps.a]\n{sleep}listen = [\"tcp://127.0.0.1:{port}\"]\n\n[apps.b]\n{sleep}front = {{ listen = \"127.0.0.1:{port}\" }}\n"
            ),
            line: 9,
            key: "apps.b.front.listen",
        },
    ]
}

#[test]
fn check_rejects_what_start_would_reject_and_start_leaves_nothing() {
    let mut missed = Vec::new();
    for (i, bad) in bad_configs().into_iter().enumerate() {
        let home = Home::new();
        let name = format!("bad{i}.toml");
        let file = home.write(&name, &bad.toml);
        let want = format!("{name}:{}:", bad.line);
        let check = home.run(&["check", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
        let located = stderr.lines().any(|l| l.contains(&want) && l.contains(&format!(": {}: ", bad.key)));
        if check.status.success() || !located {
            missed.push(format!("{}: `check` said ({}): {stderr}", bad.what, check.status));
            continue;
        }
        let start = home.run(&["start", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&start.stderr).into_owned();
        if start.status.success() || !stderr.contains(&want) {
            missed.push(format!("{}: `start` said ({}): {stderr}", bad.what, start.status));
            continue;
        }
        let list = home.list();
        if !list.is_empty() {
            missed.push(format!("{}: `start` left apps behind: {list:?}", bad.what));
        }
    }
    assert!(
        missed.is_empty(),
        "{} of the cases were not rejected as they should be:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

#[test]
fn a_program_not_in_path_is_a_warning_at_check_and_start_leaves_nothing() {
    let home = Home::new();
    let file = home.write("p.toml", "[apps.a]\ncommand = \"no-such-program-mcpd\"\n");
    let check = home.run(&["check", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "only a warning: the daemon's PATH may differ: {stderr}");
    assert!(
        stderr.contains("p.toml:2:11: apps.a.command: warning:") && stderr.contains("not found in PATH"),
        "{stderr}"
    );
    let err = home.fails(&["start", file.to_str().unwrap()]);
    assert!(err.contains("no-such-program-mcpd") && err.contains("nothing was started"), "{err}");
    assert!(home.list().is_empty(), "no errored app left behind: {:?}", home.list());
    // The same from a command line: the daemon checks before it defines anything.
    let err = home.fails(&["start", "--name", "broken", "--", "/nonexistent/program"]);
    assert!(err.contains("broken") && err.contains("/nonexistent/program"), "{err}");
    assert!(home.list().is_empty(), "no errored app left behind: {:?}", home.list());
}

#[test]
fn start_refuses_a_listen_address_another_defined_app_has() {
    let home = Home::new();
    let port = crate::common::free_port();
    let app = |name: &str| {
        format!("[apps.{name}]\ncommand = \"sleep\"\nargs = [\"infinity\"]\nlisten = [\"tcp://127.0.0.1:{port}\"]\n")
    };
    let first = home.write("first.toml", &app("first"));
    let second = home.write("second.toml", &app("second"));
    home.ok(&["start", first.to_str().unwrap()]);
    let err = home.fails(&["start", second.to_str().unwrap()]);
    assert!(err.contains("second") && err.contains("first") && err.contains(&port.to_string()), "{err}");
    let names: Vec<_> = home.list().iter().map(|r| r["name"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(names, ["first"], "second was not defined");
}

#[test]
fn reload_with_a_file_that_does_not_define_the_app_fails_and_changes_nothing() {
    let home = Home::new();
    let first = home.write("web.toml", "[apps.web]\ncommand = \"sleep\"\nargs = [\"infinity\"]\n");
    let other = home.write("other.toml", "[apps.api]\ncommand = \"sleep\"\nargs = [\"1000\"]\n");
    home.ok(&["start", first.to_str().unwrap()]);
    let pid = home.pid("web");
    let err = home.fails(&["reload", "web", "--config", other.to_str().unwrap()]);
    assert!(err.contains("other.toml") && err.contains("\"web\"") && err.contains("nothing was reloaded"), "{err}");
    assert_eq!(home.pid("web"), pid, "web was not reloaded");
    let detail = home.describe("web");
    assert_eq!(detail["info"]["restarts"], 0, "{detail}");
    assert!(detail["config"]["source"].as_str().unwrap().ends_with("web.toml"), "{detail}");
    assert_eq!(home.list().len(), 1, "api was not defined");
}

#[test]
fn ten_thousand_apps_are_refused_with_the_request_size_limit() {
    let home = Home::new();
    let mut toml = String::new();
    for i in 0..10_000 {
        toml.push_str(&format!("[apps.app{i}]\ncommand = \"sleep\"\nargs = [\"infinity\"]\n"));
    }
    let file = home.write("many.toml", &toml);
    let err = home.fails(&["start", file.to_str().unwrap()]);
    assert!(
        err.contains("10000 apps") && err.contains("4 MiB") && err.contains("nothing was started"),
        "a limit, and what to do: {err}"
    );
    assert!(!home.path().join("mcpd.sock").exists(), "refused before any daemon was started");
}
