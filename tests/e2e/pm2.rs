//! What PM2 users rely on: a Node app's IPC channel without `ready = "ipc"`, ...

use crate::common::*;

/// A PM2 app, unchanged: it calls `process.send` freely (small messages and a 1 MiB one) and
/// drains on `process.on('message')` 'shutdown'; it never sends 'ready'.
const PM2_APP: &str = r#"
const fs = require('fs');
let sent = 0;
const done = () => { if (++sent === 51) fs.writeFileSync('sent.txt', String(process.pid)); };
process.send({ type: 'process:msg', data: 'x'.repeat(1 << 20) }, done);
let n = 0;
const timer = setInterval(() => { if (n++ < 50) process.send({ type: 'process:msg', data: { n } }, done); }, 5);
process.on('message', (m) => {
  if (m !== 'shutdown') return;
  clearInterval(timer);
  setTimeout(() => { fs.writeFileSync('shutdown.txt', 'drained after ' + sent + ' messages'); process.exit(0); }, 100);
});
"#;

#[test]
fn an_unchanged_node_app_gets_an_ipc_channel_and_drains_on_the_shutdown_message() {
    let home = Home::new();
    home.write("app.js", PM2_APP);
    let config = home.write(
        "pm2.toml",
        "[apps.node]\ncommand = \"node\"\nargs = [\"app.js\"]\nshutdown_with_message = true\nkill_timeout = \"10s\"\n",
    );
    let out = home.ok(&["start", config.to_str().unwrap()]);
    assert!(out.contains("node: online"), "{out}");
    let pid = home.read_pid_file("sent.txt");
    assert_eq!(pid, home.pid("node"), "the app that sent 51 messages is the one running");
    home.ok(&["stop", "node"]);
    let said = std::fs::read_to_string(home.file("shutdown.txt")).unwrap_or_default();
    assert_eq!(said, "drained after 51 messages", "the app drained on the message");
    let exit = home.describe("node")["last_exits"][0].clone();
    assert_eq!(exit["code"], 0, "it exited on the message, not a signal: {exit}");
    assert!(!alive(pid));
    // A non-Node program has no channel: asking for the message is refused, naming the key.
    let python = home.write("py.toml", "[apps.py]\ncommand = \"python3\"\nshutdown_with_message = true\n");
    let err = home.fails(&["start", python.to_str().unwrap()]);
    assert!(err.contains("py.toml:3:1: apps.py.shutdown_with_message") && err.contains("Node"), "{err}");
}

/// Counts SIGUSR2 in `WHO.usr2`; the leader starts a child that does the same.
const SIGNALLED: &str = r#"
import os, signal, sys, time
who = sys.argv[1] if len(sys.argv) > 1 else 'leader'
def on(sig, frame):
    with open(who + '.usr2', 'a') as f:
        f.write('x')
signal.signal(signal.SIGUSR2, on)
if who == 'leader' and os.fork() == 0:
    os.execvp(sys.executable, [sys.executable, sys.argv[0], 'child'])
with open(who + '.pid', 'w') as f:
    f.write(str(os.getpid()))
while True:
    time.sleep(1)
"#;

#[test]
fn signal_reaches_the_whole_group_or_with_leader_the_leader_only() {
    let home = Home::new();
    let script = home.write("sig.py", SIGNALLED);
    let config =
        home.write("s.toml", &format!("[apps.sig]\ncommand = \"python3\"\nargs = [{:?}]\n", script.to_str().unwrap()));
    home.ok(&["start", config.to_str().unwrap()]);
    let (leader, child) = (home.read_pid_file("leader.pid"), home.read_pid_file("child.pid"));
    assert_eq!(leader, home.pid("sig"));
    let count = |who: &str| std::fs::read_to_string(home.file(&format!("{who}.usr2"))).unwrap_or_default().len();
    let wait_counts = |want: (usize, usize)| {
        wait_for(&format!("SIGUSR2 counts (leader, child) = {want:?}"), std::time::Duration::from_secs(10), || {
            let seen = (count("leader"), count("child"));
            if seen == want {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        })
    };
    let out = home.ok(&["signal", "SIGUSR2", "sig"]);
    assert!(out.contains(&format!("SIGUSR2 sent to every process of pid {leader}'s group")), "{out}");
    wait_counts((1, 1));
    let out = home.ok(&["signal", "usr2", "sig", "--leader"]);
    assert!(out.contains(&format!("SIGUSR2 sent to pid {leader}")), "{out}");
    wait_counts((2, 1));
    // PM2's spelling works too; the child got the group's signals only.
    home.ok(&["sendSignal", "USR2", "all"]);
    wait_counts((3, 2));
    assert!(alive(child) && alive(leader));
    let err = home.fails(&["signal", "SIGBOGUS", "sig"]);
    assert!(err.contains("unknown signal \"SIGBOGUS\"") && err.contains("SIGUSR2"), "{err}");
    let err = home.fails(&["signal", "USR2", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    home.ok(&["stop", "sig"]);
    let err = home.fails(&["signal", "USR2", "sig"]);
    assert!(err.contains("sig: not running: no process to signal"), "{err}");
}

#[test]
fn env_sets_are_chosen_with_env_on_start_and_swapped_on_reload() {
    let home = Home::new();
    let config = home.write(
        "e.toml",
        "[apps.web]\ncommand = \"sleep\"\nargs = [\"1000\"]\nenv = { MODE = \"dev\", KEEP = \"yes\" }\n\
         env_production = { MODE = \"prod\", TOKEN = \"s3cret\" }\n\
         [apps.other]\ncommand = \"sleep\"\nargs = [\"1000\"]\nenv = { MODE = \"alone\" }\nenv_alt = { MODE = \"alt\" }\n",
    );
    let env_of = |name: &str| {
        let out = home.ok(&["env", name, "--show"]);
        out.lines()
            .filter(|l| ["MODE=", "KEEP=", "TOKEN="].iter().any(|k| l.starts_with(k)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // A set no app has is refused, naming those there are, and nothing starts.
    let err = home.fails(&["start", config.to_str().unwrap(), "--env", "staging"]);
    assert!(err.contains("no app has an env_staging table; the sets there are: alt, production"), "{err}");
    assert!(home.list().is_empty(), "nothing was started");
    home.ok(&["start", config.to_str().unwrap(), "--env", "alt"]);
    assert_eq!(env_of("web"), "KEEP=yes MODE=dev");
    let names = home.ok(&["env", "web"]);
    assert!(names.lines().any(|l| l == "MODE") && !names.contains("dev"), "names only without --show: {names}");
    let before = home.pid("web");
    home.ok(&["reload", "all", "--env", "production"]);
    assert_ne!(home.pid("web"), before, "a new generation");
    assert_eq!(env_of("web"), "KEEP=yes MODE=prod TOKEN=s3cret");
    assert_eq!(env_of("other"), "MODE=alt", "an app without the set keeps the set it runs with");
    // A later reload keeps the set; describe hides its values.
    home.ok(&["reload", "web"]);
    assert_eq!(env_of("web"), "KEEP=yes MODE=prod TOKEN=s3cret");
    let shown = home.describe("web").to_string();
    assert!(!shown.contains("s3cret") && shown.contains("production"), "{shown}");
    let err = home.fails(&["reload", "web", "--env", "staging"]);
    assert!(err.contains("env_staging") && err.contains("nothing was reloaded"), "{err}");
    assert_eq!(env_of("web"), "KEEP=yes MODE=prod TOKEN=s3cret");
}

#[test]
fn an_app_with_autostart_false_is_defined_by_start_file_and_started_by_name() {
    let home = Home::new();
    let config = home.write(
        "a.toml",
        "[apps.on]\ncommand = \"sleep\"\nargs = [\"1000\"]\n[apps.later]\ncommand = \"sleep\"\nargs = [\"1000\"]\nautostart = false\n",
    );
    let out = home.ok(&["start", config.to_str().unwrap()]);
    assert!(out.contains("on: online") && out.contains("later: defined, not started (autostart = false)"), "{out}");
    assert_eq!(home.app("later").expect("defined")["status"], "stopped");
    let out = home.ok(&["start", config.to_str().unwrap()]);
    assert!(out.contains("later: already defined; autostart = false"), "{out}");
    assert_eq!(home.app("later").unwrap()["status"], "stopped");
    let out = home.ok(&["start", "later"]);
    assert!(out.contains("later: online"), "{out}");
    assert!(alive(home.pid("later")));
    // Saved while running, it comes back running after the daemon's restart.
    home.ok(&["save"]);
    home.ok(&["kill"]);
    home.ok(&["resurrect"]);
    home.wait_app("later", "online again after resurrect", |r| r["status"] == "online");
}

/// A Node web server as PM2 users write them: `process.send('ready')` once listening, and a
/// drain on SIGINT (PM2's stop signal).
const WEB_JS: &str = r#"
const server = require('http').createServer((req, res) => res.end(process.env.GREETING || 'none'));
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.send('ready'));
process.on('SIGINT', () => server.close(() => process.exit(0)));
"#;

/// An ecosystem file as PM2 users write them: computed values, a function, `env_*` sets, a
/// deploy section, a cluster-mode app.
const ECOSYSTEM_JS: &str = r#"
const base = 'hel';
module.exports = {
  apps: [
    {
      name: 'js-web',
      script: 'web.js',
      wait_ready: true,
      listen_timeout: 5000,
      kill_timeout: 3000,
      env: { PORT: PORT_HERE, GREETING: base + 'lo' },
      env_production: { GREETING: 'prod' },
      filter_env: () => true,
    },
    { name: 'ticker', script: 'tick.js', exec_mode: 'cluster', instances: 2, env_production: { T: 'p' } },
  ],
  deploy: { production: { user: 'node', host: 'example.invalid' } },
};
"#;

#[test]
fn import_converts_javascript_json_and_yaml_and_start_runs_an_ecosystem_file_directly() {
    let home = Home::new();
    let port = free_port();
    home.write("web.js", WEB_JS);
    home.write("tick.js", "setInterval(() => {}, 1000);\n");
    let eco = home.write("ecosystem.config.js", &ECOSYSTEM_JS.replace("PORT_HERE", &port.to_string()));
    let toml = home.file("mcpd.toml");
    let out = home.run(&["import", eco.to_str().unwrap(), "-o", toml.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for note in [
        "ecosystem.config.js: `deploy` (deployment and other top-level settings) is not carried over",
        "note: js-web: a function (() => true) cannot be carried into TOML",
        "note: ticker: instances = 2 (cluster mode)",
        "wrote",
    ] {
        assert!(stderr.contains(note), "missing {note:?} in:\n{stderr}");
    }
    let written = std::fs::read_to_string(&toml).unwrap();
    for line in [
        "[apps.js-web]",
        "command = \"node\"",
        "ready = \"ipc\"",
        "kill_signal = \"SIGINT\"",
        &format!("env = {{ GREETING = \"hello\", PORT = \"{port}\" }}"),
        "env_production = { GREETING = \"prod\" }",
        "instances = 2",
    ] {
        assert!(written.lines().any(|l| l == line), "missing {line:?} in:\n{written}");
    }
    // The file written is never replaced.
    let err = home.fails(&["import", eco.to_str().unwrap(), "-o", toml.to_str().unwrap()]);
    assert!(err.contains("an existing file is not replaced"), "{err}");
    assert_eq!(std::fs::read_to_string(&toml).unwrap(), written);

    // A script is not taken for an ecosystem file: `start` does not run it to read it.
    let err = home.fails(&["start", home.file("web.js").to_str().unwrap()]);
    assert!(err.contains("web.js is a program, not a config file: `mcpd start --name web -- node"), "{err}");
    // The converted file runs.
    let out = home.ok(&["start", toml.to_str().unwrap()]);
    assert!(out.contains("js-web: online") && out.contains("ticker: instance 1: online"), "{out}");
    let body = |port| http(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").map(|(_, text)| text);
    assert!(body(port).unwrap().ends_with("hello"), "{:?}", body(port));
    home.ok(&["delete", "all"]);

    // `start` takes the ecosystem file itself, with PM2's --env; `reload --config` re-reads it.
    let out = home.ok(&["start", eco.to_str().unwrap(), "--env", "production"]);
    assert!(out.contains("js-web: online"), "{out}");
    assert!(body(port).unwrap().ends_with("prod"), "{:?}", body(port));
    // (A plain Node server that binds its port itself cannot overlap with its next
    // generation: the ticker is reloaded.)
    let before = home.pid("ticker");
    home.ok(&["reload", "ticker", "--config", eco.to_str().unwrap()]);
    assert_ne!(home.pid("ticker"), before);
    let env = home.ok(&["env", "ticker", "--show"]);
    assert!(env.lines().any(|l| l == "T=p"), "the set is kept: {env}");
    home.ok(&["stop", "js-web"]);
    let exit = home.describe("js-web")["last_exits"][0].clone();
    assert_eq!(exit["code"], 0, "SIGINT drained it, as under PM2: {exit}");
    home.ok(&["delete", "all"]);

    // JSON and YAML, with an unknown key and a Python app.
    home.write("worker.py", "import time\nwhile True:\n    time.sleep(1)\n");
    let json = home.write(
        "eco.json",
        r#"{"apps": [{"name": "py-json", "script": "worker.py", "colour": "blue", "max_memory_restart": "200M"}]}"#,
    );
    let yaml = home.write(
        "eco.yaml",
        "apps:\n  - name: py-yaml\n    script: worker.py\n    autorestart: false\n    env:\n      MODE: yaml\n",
    );
    let out = home.run(&["import", json.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("command = \"python3\"") && stdout.contains("max_memory_restart = \"200M\""), "{stdout}");
    assert!(stderr.contains("py-json: colour: not a PM2 key mcpd knows; dropped"), "{stderr}");
    let out = home.ok(&["start", json.to_str().unwrap()]);
    assert!(out.contains("py-json: online"), "{out}");
    let out = home.ok(&["start", yaml.to_str().unwrap()]);
    assert!(out.contains("py-yaml: online"), "{out}");
    assert_eq!(home.ok(&["env", "py-yaml", "--show"]).lines().find(|l| l.starts_with("MODE=")), Some("MODE=yaml"));
    assert_eq!(home.describe("py-yaml")["config"]["restart"], "never", "{}", home.describe("py-yaml"));
}

#[test]
fn cron_restart_reloads_a_ready_app_under_load_with_no_failed_request() {
    use crate::load::{Load, Shape};
    let home = Home::new();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node/server.js");
    // Every 2 s (croner's six fields, seconds first, as PM2 takes them); the sleeper has no
    // readiness, so it is restarted instead.
    let config = home.write(
        "cron.toml",
        &format!(
            "[apps.web]\ncommand = \"node\"\nargs = [{:?}]\nlisten = [\"tcp://{addr}\"]\nready = \"ipc\"\n\
             kill_signal = \"SIGINT\"\nkill_timeout = \"20s\"\ncron_restart = \"*/2 * * * * *\"\n\
             [apps.sleeper]\ncommand = \"sleep\"\nargs = [\"1000\"]\ncron_restart = \"*/2 * * * * *\"\n",
            server.display()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let load = Load::start(addr, Shape { rate: 100, request_threads: 2, streams: 4, events: 10, event_ms: 100 });
    let detail = home.describe("web");
    let next = detail["cron_next_unix_ms"].as_u64().unwrap_or_else(|| panic!("no next due time: {detail}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(next > now.saturating_sub(1000) && next <= now + 2_500, "next due in 2 s at most: {next} vs {now}");
    let text = home.ok(&["describe", "web"]);
    assert!(text.contains("cron_restart   \"*/2 * * * * *\", next at"), "{text}");
    let mut seen = vec![home.pid("web")];
    let mut sleepers = vec![home.pid("sleeper")];
    wait_for("three cron reloads of web and two restarts of sleeper", std::time::Duration::from_secs(40), || {
        for (name, pids) in [("web", &mut seen), ("sleeper", &mut sleepers)] {
            if let Some(pid) = home.app(name).and_then(|r| r["pid"].as_u64()).map(|p| p as u32) {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        if seen.len() >= 4 && sleepers.len() >= 3 {
            Ok(())
        } else {
            Err(format!("web pids {seen:?}, sleeper pids {sleepers:?}"))
        }
    });
    let stats = load.stop();
    assert_eq!((stats.failed, stats.streams_cut), (0, 0), "errors: {:?}", stats.errors);
    assert!(stats.ok > 50, "too little traffic to mean anything: {stats:?}");
    let events = home.describe("web")["info"]["restarts_by_reason"].clone();
    assert!(events.to_string().contains("reload"), "the web app was reloaded, not restarted: {events}");
}

#[test]
fn namespaces_select_apps_and_instances_get_instance_var_and_increment_var() {
    let home = Home::new();
    let config = home.write(
        "ns.toml",
        "[apps.a1]\ncommand = \"sleep\"\nargs = [\"1000\"]\nnamespace = \"batch\"\n\
         [apps.a2]\ncommand = \"sleep\"\nargs = [\"1000\"]\nnamespace = \"batch\"\n\
         [apps.web]\ncommand = \"sh\"\nargs = [\"-c\", \"echo \\\"$PORT $NODE_APP_INSTANCE\\\" > inst.$MCPD_INSTANCE; exec sleep 1000\"]\n\
         instances = 2\ninstance_var = \"NODE_APP_INSTANCE\"\nincrement_var = \"PORT\"\nenv = { PORT = \"3000\" }\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    for (file, want) in [("inst.0", "3000 0"), ("inst.1", "3001 1")] {
        let path = home.file(file);
        let seen = wait_for(&format!("{file} written"), std::time::Duration::from_secs(10), || {
            std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| match t.trim().is_empty() {
                true => Err("empty".into()),
                false => Ok(t),
            })
        });
        assert_eq!(seen.trim(), want, "{file}");
    }
    // A namespace acts on its apps only; a name that is neither app nor namespace changes nothing.
    let out = home.ok(&["stop", "batch"]);
    assert!(out.contains("a1: stopped") && out.contains("a2: stopped") && !out.contains("web"), "{out}");
    assert_eq!(home.app("web").unwrap()["status"], "online");
    let err = home.fails(&["start", "batch", "nothing"]);
    assert!(err.contains("no app or namespace named \"nothing\""), "{err}");
    assert_eq!(home.app("a1").unwrap()["status"], "stopped", "a refused request starts nothing");
    let out = home.ok(&["start", "batch"]);
    assert!(out.contains("a1: online") && out.contains("a2: online"), "{out}");
    let out = home.ok(&["reload", "batch", "--config", config.to_str().unwrap()]);
    assert!(out.contains("a1: reloaded") && out.contains("a2: reloaded") && !out.contains("web"), "{out}");
    let bad = home.write("bad.toml", "[apps.x]\ncommand = \"sleep\"\nincrement_var = \"PORT\"\n");
    let err = home.fails(&["start", bad.to_str().unwrap()]);
    assert!(err.contains("bad.toml:3:1: apps.x.increment_var: each instance gets PORT plus its number"), "{err}");
}

#[test]
fn watch_restarts_on_a_touched_file_and_ignores_ignore_watch() {
    let home = Home::new();
    std::fs::create_dir_all(home.file("src/deep")).unwrap();
    std::fs::create_dir_all(home.file("ignored")).unwrap();
    home.write("src/deep/app.txt", "v1");
    // The app's cwd is the scratch directory, which also holds the daemon's home (its logs):
    // those must never count as changes.
    let config = home.write(
        "w.toml",
        "[apps.dev]\ncommand = \"sleep\"\nargs = [\"1000\"]\nwatch = true\nignore_watch = [\"ignored\", \"*.tmp\"]\nwatch_delay = \"300ms\"\npid_file = \"dev.pid\"\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let first = home.pid("dev");
    // A change, then ignored ones within the delay: the restart names the change.
    std::fs::write(home.file("src/deep/app.txt"), "v2").unwrap();
    std::fs::write(home.file("ignored/x"), "x").unwrap();
    std::fs::write(home.file("scratch.tmp"), "x").unwrap();
    let second = wait_for("a restart after the change", std::time::Duration::from_secs(10), || {
        match home.app("dev").and_then(|r| r["pid"].as_u64()).map(|p| p as u32) {
            Some(pid) if pid != first => Ok(pid),
            other => Err(format!("pid {other:?}")),
        }
    });
    let log = home.ok(&["logs", "--daemon", "--lines", "200"]);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("watch: a file changed")).collect();
    assert_eq!(lines.len(), 1, "one restart for one burst of changes: {lines:?}");
    assert!(lines[0].contains("src/deep/app.txt"), "the ignored files were not the change: {lines:?}");
    // A directory made after the start is watched too.
    std::fs::create_dir_all(home.file("src/new")).unwrap();
    wait_for("the new directory's restart", std::time::Duration::from_secs(10), || {
        match home.app("dev").and_then(|r| r["pid"].as_u64()).map(|p| p as u32) {
            Some(pid) if pid != second && pid != first => Ok(()),
            other => Err(format!("pid {other:?}")),
        }
    });
    let third = home.pid("dev");
    std::fs::write(home.file("src/new/later.js"), "x").unwrap();
    wait_for("a restart for a file in the new directory", std::time::Duration::from_secs(10), || {
        match home.app("dev").and_then(|r| r["pid"].as_u64()).map(|p| p as u32) {
            Some(pid) if pid != third => Ok(()),
            other => Err(format!("pid {other:?}")),
        }
    });
    let restarts = home.app("dev").unwrap()["restarts"].as_u64().unwrap();
    assert_eq!(restarts, 3, "no restart from the daemon's own log lines, nor from the app's pid file");
}

#[test]
fn pid_file_holds_the_serving_pid_replaces_a_planted_symlink_and_goes_with_the_app() {
    let home = Home::new();
    let target = home.write("precious", "do not touch\n");
    let pid_file = home.file("app.pid");
    std::os::unix::fs::symlink(&target, &pid_file).unwrap();
    let config = home.write("p.toml", "[apps.p]\ncommand = \"sleep\"\nargs = [\"1000\"]\npid_file = \"app.pid\"\n");
    home.ok(&["start", config.to_str().unwrap()]);
    let read = |want: Option<u32>| {
        wait_for(&format!("the pid file to hold {want:?}"), std::time::Duration::from_secs(10), || {
            let seen = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<u32>().ok());
            if seen == want {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        })
    };
    read(Some(home.pid("p")));
    assert!(!std::fs::symlink_metadata(&pid_file).unwrap().file_type().is_symlink(), "the symlink was replaced");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "do not touch\n", "not followed");
    home.ok(&["restart", "p"]);
    read(Some(home.pid("p")));
    home.ok(&["stop", "p"]);
    wait_for("the pid file to go", std::time::Duration::from_secs(10), || match pid_file.exists() {
        false => Ok(()),
        true => Err(std::fs::read_to_string(&pid_file).unwrap_or_default()),
    });
    let many = home.write("m.toml", "[apps.m]\ncommand = \"sleep\"\ninstances = 2\npid_file = \"m.pid\"\n");
    let err = home.fails(&["start", many.to_str().unwrap()]);
    assert!(err.contains("apps.m.pid_file: one pid file cannot hold several instances' pids"), "{err}");
}

#[test]
fn scale_one_three_one_under_a_front_with_live_sdk_sessions_loses_none() {
    use crate::front::{instance_pids, mcp_node, sessions_held, Load};
    if !crate::mcp::node_ready() {
        return;
    }
    let home = Home::new();
    let port = free_port();
    let config = home.write(
        "scale.toml",
        &format!(
            "[apps.mcp]\ncommand = \"node\"\nargs = [\"server.js\"]\ncwd = {:?}\n\
             front = {{ listen = \"127.0.0.1:{port}\", session_idle_timeout = \"2s\", drain_deadline = \"2m\" }}\n\
             ready = {{ mcp = \"http://127.0.0.1:{port}/mcp\" }}\nkill_timeout = \"10s\"\n",
            mcp_node()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let first = instance_pids(&home, "mcp");
    let mut early = Load::start(&mcp_node(), port);
    let mut early_calls = early.calls_past(0, 50);
    let out = home.ok(&["scale", "mcp", "3"]);
    assert_eq!(out.matches("online").count(), 2, "two new instances, ready when scale returns: {out}");
    let three = instance_pids(&home, "mcp");
    assert_eq!(three.len(), 3, "{three:?}");
    assert_eq!(three[0], first[0], "instance 0 was not touched");
    // New sessions go to the instances with the fewest: the new ones.
    let mut late = Load::start(&mcp_node(), port);
    let mut late_calls = late.calls_past(0, 50);
    let held = sessions_held(&home, "mcp");
    let on_new: u64 = held.iter().filter(|(pid, _)| three[1..].contains(pid)).map(|(_, n)| n).sum();
    assert_eq!(on_new, 20, "the 20 later sessions went to the two new instances: {held:?}");
    // Scaled back to one: the two new instances take no new session but keep their 20 until
    // the clients end them.
    let out = home.ok(&["scale", "mcp", "1"]);
    assert_eq!(out.matches("stops once its 10 session(s) end").count(), 2, "{out}");
    assert_eq!(instance_pids(&home, "mcp"), vec![first[0]], "one instance left in the list");
    late_calls = late.calls_past(late_calls, 100);
    early_calls = early.calls_past(early_calls, 100);
    // New sessions go to instance 0 only; the retired ones keep exactly their 20.
    let extra = Load::start(&mcp_node(), port);
    let held = sessions_held(&home, "mcp");
    let on = |pids: &[u32]| held.iter().filter(|(pid, _)| pids.contains(pid)).map(|(_, n)| *n).sum::<u64>();
    assert_eq!((on(&first), on(&three[1..])), (40, 20), "{held:?}");
    let stats = extra.finish();
    assert_eq!((stats["failed"].as_u64(), stats["lost"].as_u64()), (Some(0), Some(0)), "{stats}");
    let err = home.fails(&["scale", "mcp", "2"]);
    assert!(err.contains("still draining their sessions"), "{err}");
    let stats = late.finish();
    assert_eq!((stats["failed"].as_u64(), stats["lost"].as_u64()), (Some(0), Some(0)), "{stats} after {late_calls}");
    // Their sessions ended: the two retired instances stop.
    for pid in &three[1..] {
        let pid = *pid;
        wait_for(&format!("retired pid {pid} to exit"), std::time::Duration::from_secs(20), || match alive(pid) {
            false => Ok(()),
            true => Err("alive".into()),
        });
    }
    early.calls_past(early_calls, 50);
    let stats = early.finish();
    assert_eq!((stats["failed"].as_u64(), stats["lost"].as_u64()), (Some(0), Some(0)), "{stats}");
    let out = home.ok(&["scale", "mcp", "2"]);
    assert!(out.contains("instance 1: online"), "scaling up again once they are gone: {out}");
}
