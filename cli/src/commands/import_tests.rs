use super::*;
use serde_json::json;

fn converted(value: Value, env: Option<&str>) -> Converted {
    let out = convert(&value, Path::new("/srv/eco"), "eco.json", env).unwrap_or_else(|e| panic!("{e}"));
    // What `import` writes is always a valid mcpd.toml.
    if let Err(e) = mcpd_core::config::parse(&out.toml, Path::new("mcpd.toml"), Path::new("/srv/eco")) {
        panic!("{e}\n{}", out.toml);
    }
    out
}

#[test]
fn commands_are_made_from_script_interpreter_and_args() {
    let cases: &[(Value, &str)] = &[
        (json!({"script": "server.js"}), "command = \"node\"\nargs = [\"server.js\"]\n"),
        (
            json!({"script": "app.js", "node_args": "--max-old-space-size=512", "args": "--port 3000 'a b'"}),
            "command = \"node\"\nargs = [\"--max-old-space-size=512\", \"app.js\", \"--port\", \"3000\", \"a b\"]\n",
        ),
        (json!({"script": "worker.py", "args": ["-v"]}), "command = \"python3\"\nargs = [\"worker.py\", \"-v\"]\n"),
        (json!({"script": "npm", "args": "start"}), "command = \"npm\"\nargs = [\"start\"]\n"),
        (json!({"script": "./bin/srv", "interpreter": "none"}), "command = \"./bin/srv\"\n"),
        (
            json!({"script": "main.js", "interpreter": "/usr/bin/bun", "interpreter_args": ["--smol"]}),
            "command = \"/usr/bin/bun\"\nargs = [\"--smol\", \"main.js\"]\n",
        ),
    ];
    for (app, want) in cases {
        let out = converted(json!({ "apps": [app] }), None);
        assert!(out.toml.contains(want), "{app}:\n{}", out.toml);
    }
}

#[test]
fn pm2_keys_map_to_mcpd_keys_and_the_rest_is_listed() {
    let app = json!({
        "name": "api",
        "script": "server.js",
        "cwd": "api",
        "wait_ready": true,
        "listen_timeout": 8000,
        "kill_timeout": 3000,
        "shutdown_with_message": true,
        "autorestart": false,
        "max_memory_restart": "300M",
        "min_uptime": "5s",
        "max_restarts": 10,
        "restart_delay": 250,
        "exp_backoff_restart_delay": 100,
        "stop_exit_codes": [0, 3],
        "uid": "www-data",
        "gid": "www-data",
        "error_file": "logs/api.err",
        "out_file": "/dev/null",
        "log_type": "json",
        "autostart": false,
        "port": 3000,
        "env": { "NODE_ENV": "development", "DEBUG": false, "N": 1 },
        "env_production": { "NODE_ENV": "production" },
        "cron_restart": "0 4 * * *",
        "watch": true,
        "vizion": false,
        "colour": "blue",
        "log_file": "combined.log",
    });
    let out = converted(json!({ "apps": [app], "deploy": {} }), None);
    for line in [
        "[apps.api]",
        "cwd = \"/srv/eco/api\"",
        "kill_signal = \"SIGINT\"",
        "kill_timeout = \"3000ms\"",
        "ready = \"ipc\"",
        "ready_timeout = \"8000ms\"",
        "shutdown_with_message = true",
        "restart = \"never\"",
        "max_memory_restart = \"300M\"",
        "min_uptime = \"5s\"",
        "max_restarts = 10",
        "restart_delay = \"250ms\"",
        "exp_backoff_restart_delay = \"100ms\"",
        "stop_exit_codes = [0, 3]",
        "user = \"www-data\"",
        "group = \"www-data\"",
        "err_file = \"/srv/eco/logs/api.err\"",
        "log_type = \"json\"",
        "autostart = false",
        "env = { DEBUG = \"false\", N = \"1\", NODE_ENV = \"development\", PORT = \"3000\" }",
        "env_production = { NODE_ENV = \"production\" }",
        "cron_restart = \"0 4 * * *\"",
        "watch = true",
    ] {
        assert!(out.toml.lines().any(|l| l == line), "missing {line:?} in:\n{}", out.toml);
    }
    let notes = out.notes.join("\n");
    for note in [
        "`deploy` (deployment and other top-level settings) is not carried over",
        "api: out_file = \"/dev/null\": mcpd always keeps logs",
        "api: vizion: ignored (PM2's versioning metadata",
        "api: colour: not a PM2 key mcpd knows; dropped",
        "api: log_file = \"combined.log\": not supported by mcpd; instead, mcpd writes stdout and stderr to one file",
    ] {
        assert!(notes.contains(note), "missing note {note:?} in:\n{notes}");
    }
    assert!(out.toml.contains("# not carried over: colour: not a PM2 key"), "notes are comments in the file too");
}

#[test]
fn env_merges_a_set_and_cluster_mode_becomes_instances_with_a_note() {
    let eco = json!([
        { "name": "web", "script": "web.js", "exec_mode": "cluster", "instances": 4,
          "env": { "A": "1", "B": "2" }, "env_production": { "B": "prod" } },
        { "name": "one", "script": "one.js", "exec_mode": "cluster_mode", "instances": 1 },
    ]);
    let out = converted(eco.clone(), Some("production"));
    assert!(out.toml.contains("env = { A = \"1\", B = \"prod\" }"), "{}", out.toml);
    assert!(out.toml.contains("env_production = { B = \"prod\" }"), "{}", out.toml);
    assert!(out.toml.contains("instances = 4"), "{}", out.toml);
    let notes = out.notes.join("\n");
    assert!(
        notes.contains("web: instances = 4 (cluster mode): PM2's cluster mode lets them share one port"),
        "{notes}"
    );
    assert!(notes.contains("one: exec_mode cluster with one instance"), "{notes}");
    let err = convert(&eco, Path::new("/"), "eco.json", Some("staging")).unwrap_err();
    assert!(err.contains("--env staging: no app in eco.json has env_staging"), "{err}");
}

#[test]
fn names_are_made_valid_and_bad_files_are_refused_with_a_reason() {
    let out = converted(
        json!({ "apps": [
            { "script": "/srv/queue-worker.js" },
            { "name": "my app", "script": "a.js" },
            { "name": "@scope/app", "script": "b.js" },
            { "name": "all", "script": "c.js", "namespace": "not valid" },
        ] }),
        None,
    );
    for name in ["[apps.queue-worker]", "[apps.my-app]", "[apps.scope-app]", "[apps.app-all]"] {
        assert!(out.toml.contains(name), "{name} in:\n{}", out.toml);
    }
    assert!(out.notes.iter().any(|n| n.contains("namespace = \"not valid\"")), "{:?}", out.notes);
    assert!(out.toml.contains("instance_var = \"NODE_APP_INSTANCE\""), "as PM2 sets it: {}", out.toml);
    assert!(out.notes.iter().any(|n| n.contains("renamed from \"my app\"")), "{:?}", out.notes);
    let cases: &[(Value, &str)] = &[
        (json!({ "apps": [] }), "`apps` is empty"),
        (json!({ "apps": "x" }), "neither a list of apps nor one app"),
        (json!(3), "no apps"),
        (json!({ "apps": [{ "name": "a" }] }), "a: no `script`"),
        (
            json!({ "apps": [{ "name": "a", "script": "a.js" }, { "name": "a", "script": "b.js" }] }),
            "two apps are named \"a\"",
        ),
    ];
    for (value, want) in cases {
        let err = convert(value, Path::new("/"), "eco.json", None).unwrap_err();
        assert!(err.contains(want), "{value}: {err}");
    }
}

#[test]
fn functions_from_javascript_are_named_in_a_note() {
    let out = converted(
        json!({ "apps": [{ "name": "f", "script": "f.js", "env": { "X": { "$function": "() => 1" } } }] }),
        None,
    );
    assert!(out.notes.iter().any(|n| n.contains("a function (() => 1) cannot be carried")), "{:?}", out.notes);
}

#[test]
fn command_lines_split_like_a_shell() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("a  b\tc", &["a", "b", "c"]),
        ("--name 'x y' \"p q\"", &["--name", "x y", "p q"]),
        ("a\\ b c", &["a b", "c"]),
        ("''", &[""]),
        ("'it''s'", &["its"]),
        ("\"a\\\"b\"", &["a\"b"]),
    ];
    for (text, want) in cases {
        assert_eq!(split_words(text), *want, "{text:?}");
    }
}
