//! The scripted blue-green swap of `examples/blue-green` with real nginx in front of two
//! colours under mcpd: three swaps under steady load of SDK 2.x clients (with 3 s calls in
//! flight) fail no call, and a swap to a colour that never gets ready rolls back.

use crate::common::{free_port, signal, wait_for, Home, MCPD};
use crate::front::{stateless_dir, Load};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/blue-green")
}

/// nginx in the foreground, stopped (master and workers) by SIGTERM to its pid.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        signal(self.0.id(), libc::SIGTERM);
        let _ = self.0.wait();
    }
}

pub(crate) fn nginx_installed() -> bool {
    let ok = Command::new("nginx").arg("-v").stderr(Stdio::null()).status().is_ok();
    if !ok {
        eprintln!("nginx is not installed (CI installs it: apt-get install nginx); skipping");
    }
    ok
}

/// The live colour, as the upstream include says.
fn live(upstream: &Path) -> String {
    let text = std::fs::read_to_string(upstream).unwrap();
    text.lines().find_map(|l| l.split('"').nth(1).filter(|_| l.contains("default"))).unwrap_or_default().to_string()
}

#[test]
fn blue_green_swaps_fail_no_call_and_a_colour_that_never_gets_ready_rolls_back() {
    if !nginx_installed() || !stateless_dir().join("node_modules/@modelcontextprotocol/server").exists() {
        return;
    }
    let home = Home::new();
    let (blue, green, public) = (free_port(), free_port(), free_port());
    let ports = |text: &str| text.replace("3101", &blue.to_string()).replace("3102", &green.to_string());
    let config_text = ports(&std::fs::read_to_string(example().join("mcpd.toml")).unwrap())
        .replace("cwd = \"../mcp-node-stateless\"", &format!("cwd = {:?}", stateless_dir()));
    let config = home.write("mcpd.toml", &config_text);
    let upstream =
        home.write("upstream.conf", &ports(&std::fs::read_to_string(example().join("upstream.conf")).unwrap()));
    let site = home.write(
        "site.conf",
        &std::fs::read_to_string(example().join("nginx-site.conf"))
            .unwrap()
            .replace("/etc/nginx/mcpd/upstream.conf", upstream.to_str().unwrap())
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{public}")),
    );
    let scratch = home.file("");
    let nginx_conf = home.write(
        "nginx.conf",
        &format!(
            "daemon off;\nworker_processes 1;\npid {0}/nginx.pid;\nerror_log {0}/nginx-error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {0}/body;\n  proxy_temp_path {0}/proxy;\n  include {1};\n}}\n",
            scratch.display(),
            site.display()
        ),
    );
    home.ok(&["start", config.to_str().unwrap(), "blue"]);
    let _nginx = Nginx(Command::new("nginx").arg("-c").arg(&nginx_conf).stderr(Stdio::null()).spawn().unwrap());
    wait_for("nginx to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", public)).map(drop).map_err(|e| e.to_string())
    });
    let deploy = |config: &Path, expect_hash: Option<&str>| {
        let out = Command::new("bash")
            .arg(example().join("deploy.sh"))
            .env("MCPD", MCPD)
            .env("MCPD_HOME", home.path())
            .env("CONFIG", config)
            .env("UPSTREAM", &upstream)
            .env("NGINX_CMD", format!("nginx -c {}", nginx_conf.display()))
            .env("NGINX_URL", format!("http://127.0.0.1:{public}"))
            .env("READY_TIMEOUT", "10s")
            .envs(expect_hash.map(|h| ("EXPECT_HASH", h)))
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let mut load = Load::start_with(&stateless_dir(), public, &[("SLOW_MS", "3000")]);
    let mut calls = 0;
    for (i, colour) in ["green", "blue", "green"].into_iter().enumerate() {
        calls = load.calls_past(calls, 100);
        let (ok, said) = deploy(&config, None);
        assert!(ok, "deploy {i} failed: {said}");
        // nginx reads NGINX as the sockets of a binary upgrade: the script must not pass one.
        assert!(!said.contains("NGINX environment variable"), "deploy {i}: nginx saw a NGINX variable: {said}");
        assert_eq!(live(&upstream), colour, "deploy {i}: {said}");
        let old = if colour == "green" { "blue" } else { "green" };
        let row = home.app(old).unwrap();
        assert_eq!(row["status"], "stopped", "deploy {i}: the old colour drained and stopped: {row}");
    }
    // A release whose tools are not the expected ones: the probe fails, blue is stopped again.
    calls = load.calls_past(calls, 100);
    let (ok, said) = deploy(&config, Some("0000"));
    assert!(!ok && said.contains("failed its MCP probe") && said.contains("rolling back"), "{said}");
    assert_eq!(live(&upstream), "green", "nginx still points at green");
    assert_eq!(home.app("blue").unwrap()["status"], "stopped", "the rejected colour was stopped");
    // A release whose blue never gets ready: the deploy fails and green keeps serving.
    let broken_text = config_text
        .replace("args = [\"server.js\"]\ncwd", "args = [\"-e\", \"setInterval(() => {}, 1000)\"]\ncwd")
        .replace("ready_timeout = \"30s\"", "ready_timeout = \"3s\"");
    assert_ne!(broken_text, config_text);
    let broken = home.write("broken.toml", &broken_text);
    calls = load.calls_past(calls, 100);
    let (ok, said) = deploy(&broken, None);
    assert!(!ok, "a deploy of a colour that never gets ready must fail: {said}");
    assert!(said.contains("did not become ready") && said.contains("rolling back"), "{said}");
    assert_eq!(live(&upstream), "green", "nginx still points at green");
    assert_eq!(home.app("green").unwrap()["status"], "online");
    load.calls_past(calls, 100);
    let stats = load.finish();
    let nginx_log = std::fs::read_to_string(home.file("nginx-error.log")).unwrap_or_default();
    assert_eq!(stats["failed"].as_u64(), Some(0), "{stats}\nnginx error log:\n{nginx_log}");
    assert!(stats["slow_calls"].as_u64().unwrap() > 0, "3 s calls were in flight: {stats}");
}
