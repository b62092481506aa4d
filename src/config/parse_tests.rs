use super::*;
use crate::config::{Probe, RestartConfig, RestartMode};

fn errors(text: &str) -> Vec<(usize, String)> {
    match parse(text, Path::new("mcpd.toml"), Path::new("/srv")) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.into_iter().map(|e| (e.line, e.key)).collect(),
    }
}

#[test]
fn a_full_app_loads_with_defaults_and_resolved_paths() {
    let text = r#"
[apps.web]
command = "node"
args = ["server.js", "--port", "3000"]
cwd = "web"
env = { PORT = 3000, DEBUG = true, NAME = "x" }
kill_signal = "INT"
kill_timeout = "30s"
ready = { http = "http://127.0.0.1:3000/health" }
ready_timeout = "3s"
listen = ["tcp://127.0.0.1:3000", "unix:run/web.sock"]

[apps.api]
command = "./api"
restart_delay = 250
"#;
    let cfg = parse(text, Path::new("mcpd.toml"), Path::new("/srv")).unwrap();
    let names: Vec<_> = cfg.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["web", "api"], "apps keep file order");
    let web = &cfg.apps[0];
    assert_eq!(web.cwd, Path::new("/srv/web"));
    assert_eq!(web.env.get("PORT").map(String::as_str), Some("3000"));
    assert_eq!(web.env.get("DEBUG").map(String::as_str), Some("true"));
    assert_eq!(web.kill_signal, Signal::parse("SIGINT").unwrap());
    assert_eq!(web.kill_timeout, Duration::from_secs(30));
    let api = &cfg.apps[1];
    assert_eq!(api.cwd, Path::new("/srv"));
    assert_eq!(api.kill_timeout, super::super::DEFAULT_KILL_TIMEOUT);
    assert_eq!(api.restart_delay, Duration::from_millis(250));
    assert_eq!(api.ready, Ready::None);
    assert_eq!(web.ready, Ready::Http { url: "http://127.0.0.1:3000/health".into() });
    assert_eq!(web.ready_timeout, Duration::from_secs(3));
    assert_eq!(
        web.listen,
        [ListenAddr::Tcp("127.0.0.1:3000".parse().unwrap()), ListenAddr::Unix("/srv/run/web.sock".into())]
    );
}

#[test]
fn every_error_is_reported_with_line_and_key() {
    let cases: &[(&str, &[(usize, &str)])] = &[
        ("[apps.a]\ncommand = \"x\"\nkill_timeout = \"5x\"\n", &[(3, "apps.a.kill_timeout")]),
        ("[apps.a]\ncommand = \"x\"\ncolour = 1\n", &[(3, "apps.a.colour")]),
        ("[apps.a]\ncommand = 3\n", &[(2, "apps.a.command")]),
        ("[apps.a]\nargs = [\"x\"]\n", &[(1, "apps.a")]),
        ("[apps.a]\ncommand = \"\"\n", &[(2, "apps.a.command")]),
        ("[apps.a]\ncommand = \"x\"\nargs = [\"ok\", 2]\n", &[(3, "apps.a.args[1]")]),
        ("[apps.a]\ncommand = \"x\"\nkill_signal = \"SIGNOPE\"\n", &[(3, "apps.a.kill_signal")]),
        ("[apps.a]\ncommand = \"x\"\nkill_signal = \"SIGSTOP\"\n", &[(3, "apps.a.kill_signal")]),
        ("[apps.a]\ncommand = \"x\"\nkill_timeout = -5\n", &[(3, "apps.a.kill_timeout")]),
        ("[apps.a]\ncommand = \"x\"\nenv = { A = [1] }\n", &[(3, "apps.a.env.A")]),
        ("[apps.\"bad name\"]\ncommand = \"x\"\n", &[(1, "apps.bad name")]),
        ("[apps.all]\ncommand = \"x\"\n", &[(1, "apps.all")]),
        ("name = \"x\"\n[apps.a]\ncommand = \"x\"\n", &[(1, "name")]),
        ("", &[(1, "apps")]),
        (
            "[apps.a]\ncommand = \"x\"\nkill_timeout = \"5x\"\nrestart_delay = true\nbogus = 1\n",
            &[(3, "apps.a.kill_timeout"), (4, "apps.a.restart_delay"), (5, "apps.a.bogus")],
        ),
        ("[apps.a]\ncommand = \"x\"\nenv_file = \"/nonexistent/.env\"\n", &[(3, "apps.a.env_file")]),
        ("[apps.a\ncommand = \"x\"\n", &[(1, "")]),
        ("[apps.a]\ncommand = \"x\"\nready = \"maybe\"\n", &[(3, "apps.a.ready")]),
        ("[apps.a]\ncommand = \"x\"\nready = { http = \"https://x:1/\" }\n", &[(3, "apps.a.ready.http")]),
        ("[apps.a]\ncommand = \"x\"\nready = { udp = \"x:1\" }\n", &[(3, "apps.a.ready.udp")]),
        (
            "[apps.a]\ncommand = \"x\"\nlisten = [\"tcp://localhost:1\", \"unix:/a\", \"unix:/a\"]\n",
            &[(3, "apps.a.listen[0]"), (3, "apps.a.listen[2]")],
        ),
        ("[apps.a]\ncommand = \"x\"\nshutdown_with_message = true\n", &[(3, "apps.a.shutdown_with_message")]),
        ("[apps.a]\ncommand = \"x\"\nrestart = \"sometimes\"\n", &[(3, "apps.a.restart")]),
        ("[apps.a]\ncommand = \"x\"\non_tools_change = \"refuse\"\n", &[(3, "apps.a.on_tools_change")]),
        ("[apps.a]\ncommand = \"x\"\non_tools_change = \"maybe\"\n", &[(3, "apps.a.on_tools_change")]),
        (
            "[apps.a]\ncommand = \"x\"\nfront = { listen = \"127.0.0.1:1\" }\nlisten = [\"tcp://127.0.0.1:2\"]\n",
            &[(3, "apps.a.front")],
        ),
        ("[apps.a]\ncommand = \"x\"\ninstances = 0\n", &[(3, "apps.a.instances")]),
        ("[apps.a]\ncommand = \"x\"\nargs = [\"ok\", \"a\\u0000b\"]\n", &[(3, "apps.a.args[1]")]),
        (
            "[apps.a]\ncommand = \"x\"\nenv = { \"A=B\" = 1, \"\" = 2, C = \"\\u0000\" }\n",
            &[(3, "apps.a.env.A=B"), (3, "apps.a.env."), (3, "apps.a.env.C")],
        ),
        (
            "[apps.a]\ncommand = \"x\"\nout_file = \"x.log\"\n[apps.b]\ncommand = \"x\"\nout_file = \"x.log\"\n",
            &[(6, "apps.b.out_file")],
        ),
        (
            "[apps.a]\ncommand = \"x\"\nlisten = [\"unix:/s\"]\n[apps.b]\ncommand = \"x\"\nlisten = [\"unix:/s\"]\n",
            &[(6, "apps.b.listen[0]")],
        ),
        ("[apps.a]\ncommand = \"x\"\ninstances = 2\nlisten = [\"tcp://127.0.0.1:2\"]\n", &[(3, "apps.a.instances")]),
        ("[apps.a]\ncommand = \"x\"\ninstances = \"2\"\n", &[(3, "apps.a.instances")]),
        ("[apps.a]\ncommand = \"x\"\nfront = { port = 1 }\n", &[(3, "apps.a.front"), (3, "apps.a.front.port")]),
        (
            "[apps.a]\ncommand = \"x\"\nfront = { listen = \"127.0.0.1:1\", max_connections = 0, header_timeout = \"10ms\" }\n",
            &[(3, "apps.a.front.max_connections"), (3, "apps.a.front.header_timeout")],
        ),
        (
            "[apps.a]\ncommand = \"x\"\nfront = { listen = \"127.0.0.1:1\", max_body = \"lots\", max_connections = \"9\" }\n",
            &[(3, "apps.a.front.max_body"), (3, "apps.a.front.max_connections")],
        ),
        ("[apps.a]\ncommand = \"x\"\nfront = { listen = \"127.0.0.1:1\", max_body = 0 }\n", &[(3, "apps.a.front.max_body")]),
        ("[apps.a]\ncommand = \"x\"\nstop_exit_codes = [0, 300]\n", &[(3, "apps.a.stop_exit_codes[1]")]),
        ("[apps.a]\ncommand = \"x\"\nexp_backoff_factor = 0.5\n", &[(3, "apps.a.exp_backoff_factor")]),
        ("[apps.a]\ncommand = \"x\"\nmax_restarts = -1\n", &[(3, "apps.a.max_restarts")]),
        ("[apps.a]\ncommand = \"x\"\nmax_memory_restart = \"lots\"\n", &[(3, "apps.a.max_memory_restart")]),
        ("[apps.a]\ncommand = \"x\"\nwatchdog = \"30s\"\n", &[(3, "apps.a.watchdog")]),
        ("[apps.a]\ncommand = \"x\"\nhealth = { interval = \"1s\" }\n", &[(3, "apps.a.health")]),
        (
            "[apps.a]\ncommand = \"x\"\nhealth = { tcp = \"x:1\", failures = 0, colour = 1 }\n",
            &[(3, "apps.a.health.failures"), (3, "apps.a.health.colour")],
        ),
    ];
    for (text, want) in cases {
        let got = errors(text);
        let want: Vec<(usize, String)> = want.iter().map(|(l, k)| (*l, k.to_string())).collect();
        assert_eq!(got, want, "config:\n{text}");
    }
}

#[test]
fn restart_policy_and_limits() {
    let text = r#"
[apps.w]
command = "x"
ready = "notify"
restart = "on-failure"
stop_exit_codes = [0, 3]
exp_backoff_restart_delay = "100ms"
exp_backoff_factor = 2
exp_backoff_max = "5s"
min_uptime = "2s"
max_restarts = 4
max_memory_restart = "512M"
memory_check_interval = "250ms"
watchdog = "30s"
health = { http = "http://127.0.0.1:3000/health", interval = "5s", failures = 2 }

[apps.d]
command = "x"
"#;
    let cfg = parse(text, Path::new("mcpd.toml"), Path::new("/srv")).unwrap();
    let (w, d) = (&cfg.apps[0], &cfg.apps[1]);
    assert_eq!(w.restarts.restart, RestartMode::OnFailure);
    assert_eq!(w.restarts.stop_exit_codes, [0, 3]);
    assert_eq!(w.restarts.exp_backoff_restart_delay, Some(Duration::from_millis(100)));
    assert_eq!(w.restarts.exp_backoff_factor, 2.0);
    assert_eq!(w.restarts.exp_backoff_max, Duration::from_secs(5));
    assert_eq!((w.restarts.min_uptime, w.restarts.max_restarts), (Duration::from_secs(2), 4));
    assert_eq!(w.limits.max_memory_restart, Some(512 << 20));
    assert_eq!(w.limits.memory_check_interval, Duration::from_millis(250));
    assert_eq!(w.limits.watchdog, Some(Duration::from_secs(30)));
    let health = w.limits.health.as_ref().unwrap();
    assert_eq!(health.probe, Probe::Http { url: "http://127.0.0.1:3000/health".into() });
    assert_eq!((health.interval, health.timeout, health.failures), (Duration::from_secs(5), Duration::from_secs(2), 2));
    assert_eq!(d.restarts, RestartConfig::default(), "defaults: always, 1.5x backoff off, 1s min uptime, 16 restarts");
    assert_eq!(d.limits.memory_check_interval, Duration::from_secs(1));
    assert_eq!(d.limits.max_memory_restart, None);
}

#[test]
fn error_messages_name_file_line_column_and_key() {
    let err = parse("[apps.a]\ncommand = \"x\"\nkill_timeout = \"5x\"\n", Path::new("conf/mcpd.toml"), Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("conf/mcpd.toml:3:16: apps.a.kill_timeout: invalid duration \"5x\""), "message was: {err}");
}

#[test]
fn front_bounds_have_defaults_and_can_be_set() {
    let text = r#"
[apps.a]
command = "x"
front = { listen = "127.0.0.1:3000", session_idle_timeout = "5s", max_connections = 64, header_timeout = "2s", max_body = "1M" }

[apps.b]
command = "x"
front = { listen = "127.0.0.1:3001" }
"#;
    let cfg = parse(text, Path::new("mcpd.toml"), Path::new("/srv")).unwrap();
    let (a, b) = (cfg.apps[0].front.as_ref().unwrap(), cfg.apps[1].front.as_ref().unwrap());
    assert_eq!(a.session_idle_timeout, Duration::from_secs(5));
    assert_eq!((a.max_connections, a.header_timeout, a.max_body), (64, Duration::from_secs(2), 1 << 20));
    assert_eq!(
        (b.max_connections, b.header_timeout, b.max_body),
        (1024, Duration::from_secs(10), 4 << 20),
        "defaults: 1024 connections, 10 s for headers, 4 MiB bodies"
    );
    // A dump.json written before these keys existed loads with the defaults.
    let mut old = serde_json::to_value(b).unwrap();
    for key in ["max_connections", "header_timeout", "max_body"] {
        old.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(&serde_json::from_value::<crate::config::FrontConfig>(old).unwrap(), b);
}

#[test]
fn rlimits_take_a_value_or_soft_hard_and_every_error_says_where_and_what_to_do() {
    use crate::config::{Resource, Rlimit, RlimitValue::*, Rlimits};
    let app = |rlimits: &str| format!("[apps.web]\ncommand = \"x\"\nrlimits = {rlimits}\n");
    let good: &[(&str, Rlimits)] = &[
        (
            "{ nofile = 65536, core = 0 }",
            Rlimits::from([
                (Resource::Nofile, Rlimit::both(Limited(65536))),
                (Resource::Core, Rlimit::both(Limited(0))),
            ]),
        ),
        (
            "{ nofile = \"1024:524288\", stack = \"8388608:infinity\", cpu = \"infinity\", memlock = \"65536\" }",
            Rlimits::from([
                (Resource::Nofile, Rlimit { soft: Limited(1024), hard: Limited(524288) }),
                (Resource::Stack, Rlimit { soft: Limited(8388608), hard: Infinity }),
                (Resource::Cpu, Rlimit::both(Infinity)),
                (Resource::Memlock, Rlimit::both(Limited(65536))),
            ]),
        ),
        ("{ nproc = 512, as = \"infinity\", fsize = 0 }", {
            let mut l = Rlimits::new();
            l.insert(Resource::Nproc, Rlimit::both(Limited(512)));
            l.insert(Resource::As, Rlimit::both(Infinity));
            l.insert(Resource::Fsize, Rlimit::both(Limited(0)));
            l
        }),
        ("{}", Rlimits::new()),
    ];
    for (rlimits, want) in good {
        let cfg = parse(&app(rlimits), Path::new("mcpd.toml"), Path::new("/srv"))
            .unwrap_or_else(|e| panic!("rlimits = {rlimits}: {e}"));
        assert_eq!(&cfg.apps[0].rlimits, want, "rlimits = {rlimits}");
    }
    let table = "[apps.web]\ncommand = \"x\"\n\n[apps.web.rlimits]\nnofile = \"1024:4096\"\ncore = 0\n";
    let cfg = parse(table, Path::new("mcpd.toml"), Path::new("/srv")).unwrap();
    assert_eq!(cfg.apps[0].rlimits.len(), 2, "a [apps.NAME.rlimits] table works too");
    assert!(parse("[apps.web]\ncommand = \"x\"\n", Path::new("m"), Path::new("/")).unwrap().apps[0].rlimits.is_empty());

    // (rlimits, the key in error, what the message must say)
    let bad: &[(&str, &str, &str)] = &[
        ("{ nofiles = 1 }", "apps.web.rlimits.nofiles", "unknown resource \"nofiles\"; use one of cpu, fsize"),
        ("{ NOFILE = 1 }", "apps.web.rlimits.NOFILE", "systemd's Limit*= names in lower case"),
        ("{ nofile = -1 }", "apps.web.rlimits.nofile", "-1 is negative: write a whole number of at least 0"),
        ("{ core = 1.5 }", "apps.web.rlimits.core", "expected a whole number, \"infinity\" or \"SOFT:HARD\""),
        ("{ core = true }", "apps.web.rlimits.core", "found boolean"),
        ("{ core = \"unlimited\" }", "apps.web.rlimits.core", "\"unlimited\" is not a limit"),
        ("{ core = \"-5\" }", "apps.web.rlimits.core", "\"-5\" is not a limit"),
        ("{ nofile = \"1024:\" }", "apps.web.rlimits.nofile", "\"\" is not a limit"),
        ("{ nofile = \"1:2:3\" }", "apps.web.rlimits.nofile", "\"2:3\" is not a limit"),
        (
            "{ nofile = \"4096:1024\" }",
            "apps.web.rlimits.nofile",
            "the soft limit 4096 is above the hard limit 1024: write \"SOFT:HARD\" with SOFT at most HARD, e.g. \"1024:4096\"",
        ),
        ("{ stack = \"infinity:8388608\" }", "apps.web.rlimits.stack", "soft limit infinity is above the hard limit"),
        ("65536", "apps.web.rlimits", "expected a table like { nofile = 65536, core = 0 }, found integer"),
    ];
    for (rlimits, key, says) in bad {
        let err = parse(&app(rlimits), Path::new("conf/mcpd.toml"), Path::new("/")).unwrap_err();
        assert_eq!(err.0.len(), 1, "rlimits = {rlimits}: {err}");
        let text = err.to_string();
        let at = format!("conf/mcpd.toml:3:{}: {key}: ", err.0[0].column);
        assert!(text.starts_with(&at) && text.contains(says), "rlimits = {rlimits}: want {at}...{says}\ngot: {text}");
    }
    // Every error at once, each on its own line and key.
    let text = "[apps.web]\ncommand = \"x\"\n[apps.web.rlimits]\nnofile = \"9:1\"\ncolour = 1\ncore = -1\n";
    assert_eq!(
        errors(text),
        [
            (4, "apps.web.rlimits.nofile".to_string()),
            (5, "apps.web.rlimits.colour".to_string()),
            (6, "apps.web.rlimits.core".to_string())
        ]
    );
}

#[test]
fn numbers_are_held_to_the_limits_of_text() {
    // Found by fuzzing: milliseconds and bytes given as TOML integers skipped the limits that
    // `"366days"` and `"2P"` are held to (a deadline past them overflows `Instant`).
    let text = "[apps.a]\ncommand = \"x\"\nkill_timeout = 31536000001\nmemory_max = 1125899906842625\n\
                log_max_size = 1125899906842625\nfront = { listen = \"127.0.0.1:1\", max_body = 1125899906842625 }\n";
    let keys: Vec<String> = errors(text).into_iter().map(|(_, key)| key).collect();
    let want = ["apps.a.kill_timeout", "apps.a.memory_max", "apps.a.log_max_size", "apps.a.front.max_body"];
    assert_eq!(keys, want);
    let at_limit = "[apps.a]\ncommand = \"x\"\nkill_timeout = 31536000000\nmemory_max = 1125899906842624\n";
    assert_eq!(errors(at_limit), []);
}

#[test]
fn a_stdio_app_needs_a_front_and_takes_its_readiness_from_mcpd() {
    let text = r#"
[apps.a]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-memory"]
front = { listen = "127.0.0.1:3000" }
stdio = {}

[apps.b]
command = "x"
front = { listen = "127.0.0.1:3001" }
stdio = { sessions = "shared", warm = 0, max_sessions = 5 }
"#;
    let cfg = parse(text, Path::new("mcpd.toml"), Path::new("/srv")).unwrap();
    let (a, b) = (&cfg.apps[0], &cfg.apps[1]);
    assert_eq!(a.stdio, Some(crate::config::StdioConfig::default()));
    assert_eq!(a.ready, Ready::Notify, "the bridge says READY=1 once a child answered");
    let b_stdio = b.stdio.unwrap();
    assert_eq!((b_stdio.sessions.as_str(), b_stdio.warm, b_stdio.max_sessions), ("shared", 0, 5));
    // A dump.json written before `stdio` existed loads without it.
    let mut old = serde_json::to_value(&cfg.apps[0]).unwrap();
    old.as_object_mut().unwrap().remove("stdio");
    assert_eq!(serde_json::from_value::<AppConfig>(old).unwrap().stdio, None);
    let cases: &[(&str, &[(usize, &str)])] = &[
        ("[apps.a]\ncommand = \"x\"\nstdio = {}\n", &[(3, "apps.a.stdio")]),
        (
            "[apps.a]\ncommand = \"x\"\nfront = { listen = \"127.0.0.1:1\" }\nstdio = {}\nready = \"notify\"\n",
            &[(5, "apps.a.ready")],
        ),
        (
            "[apps.a]\ncommand = \"x\"\nfront = { listen = \"127.0.0.1:1\" }\nstdio = { sessions = \"pooled\", warm = 100, max_sessions = 0, size = 1 }\n",
            &[
                (4, "apps.a.stdio.sessions"),
                (4, "apps.a.stdio.warm"),
                (4, "apps.a.stdio.max_sessions"),
                (4, "apps.a.stdio.size"),
            ],
        ),
    ];
    for (text, want) in cases {
        let got = errors(text);
        let want: Vec<(usize, String)> = want.iter().map(|(l, k)| (*l, k.to_string())).collect();
        assert_eq!(got, want, "{text}");
    }
}

#[test]
fn a_node_command_has_an_ipc_channel_so_shutdown_with_message_needs_no_ready_ipc() {
    for (command, node) in [
        ("node", true),
        ("/usr/local/bin/node", true),
        ("nodejs", true),
        ("node20", true),
        ("node-22.1", true),
        ("./server.js", true),
        ("app.mjs", true),
        ("index.cjs", true),
        ("nodemon", false),
        ("npm", false),
        ("python3", false),
        ("node.sh", false),
        ("/opt/node/bin/deno", false),
    ] {
        assert_eq!(super::super::is_node_command(command), node, "{command}");
    }
    let text = "[apps.a]\ncommand = \"node\"\nargs = [\"app.js\"]\nshutdown_with_message = true\n";
    let app = &parse(text, Path::new("t.toml"), Path::new("/")).expect("a Node app may ask for the message").apps[0];
    assert!(app.ipc_channel() && app.ready == Ready::None, "{app:?}");
    let python = "[apps.a]\ncommand = \"python3\"\n";
    assert!(!parse(python, Path::new("t.toml"), Path::new("/")).unwrap().apps[0].ipc_channel());
    let stdio = "[apps.a]\ncommand = \"node\"\nstdio = {}\nfront = { listen = \"127.0.0.1:1\" }\n";
    assert!(
        !parse(stdio, Path::new("t.toml"), Path::new("/")).unwrap().apps[0].ipc_channel(),
        "the bridge is not Node"
    );
}
