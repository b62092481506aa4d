//! The deployment recipes in packaging/: nginx accepts the site (with certificates made here),
//! the Fly and Kubernetes files parse, and their timeouts and ports agree with the example
//! mcpd configs they are written for.

use crate::common::Home;
use crate::deploy::nginx_installed;
use mcpd_core::config::{ConfigFile, ListenAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use yaml_rust2::{Yaml, YamlLoader};

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn load(path: &Path) -> ConfigFile {
    mcpd_core::config::load(path).unwrap_or_else(|e| panic!("{e}"))
}

/// The example app of a config: its drain (kill_timeout) and its front's port.
fn app(config: &ConfigFile) -> (Duration, u16) {
    let app = config.apps.first().expect("an app");
    let port = match app.front.as_ref().map(|f| &f.listen) {
        Some(ListenAddr::Tcp(addr)) => addr.port(),
        other => panic!("{}: the app needs a TCP front, found {other:?}", config.path.display()),
    };
    (app.kill_timeout, port)
}

fn daemon_port(config: &ConfigFile) -> u16 {
    match &config.daemon.http {
        Some(ListenAddr::Tcp(addr)) => addr.port(),
        other => panic!("{}: [daemon] http must be a TCP address, found {other:?}", config.path.display()),
    }
}

/// `nginx -t` on a site file in a wrapper of its own, with self-signed certificates.
fn nginx_t(home: &Home, site: &str) -> std::process::Output {
    let (cert, key) = (home.file("fullchain.pem"), home.file("privkey.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (CI installs it)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let site = site
        .replace("/etc/ssl/mcp/fullchain.pem", cert.to_str().unwrap())
        .replace("/etc/ssl/mcp/privkey.pem", key.to_str().unwrap());
    let site = home.write("site.conf", &site);
    let scratch = home.file("");
    let wrapper = home.write(
        "nginx.conf",
        &format!(
            "pid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{}}\nhttp {{\n  client_body_temp_path {0}/body;\n  proxy_temp_path {0}/proxy;\n  include {1};\n}}\n",
            scratch.display(),
            site.display()
        ),
    );
    Command::new("nginx").arg("-t").arg("-c").arg(&wrapper).output().unwrap()
}

/// Seconds in an nginx time like `3600s`, `60m` or `1h`.
fn nginx_seconds(value: &str) -> u64 {
    let (n, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("not an nginx time: {value}"));
    n * match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        other => panic!("unit {other} in {value}"),
    }
}

/// The values of a directive in an nginx file (first word after the name, `;` dropped).
fn directives<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
        .map(|rest| rest.trim().trim_end_matches(';').trim())
        .collect()
}

#[test]
fn nginx_accepts_the_packaged_site_and_it_matches_the_vps_config() {
    let text = std::fs::read_to_string(packaging().join("nginx/mcp.conf")).unwrap();
    let config = load(&packaging().join("mcpd.toml"));
    let (_, front_port) = app(&config);
    assert!(directives(&text, "proxy_buffering").contains(&"off"), "SSE must not be buffered");
    let read = directives(&text, "proxy_read_timeout");
    assert!(!read.is_empty() && read.iter().all(|v| nginx_seconds(v) >= 3600), "proxy_read_timeout {read:?}");
    assert!(directives(&text, "proxy_http_version").contains(&"1.1"));
    let upstream = format!("127.0.0.1:{front_port}");
    assert!(
        directives(&text, "server").iter().any(|v| v.starts_with(&upstream)),
        "the upstream is the front of packaging/mcpd.toml ({upstream})"
    );
    let health = format!("127.0.0.1:{}", daemon_port(&config));
    assert!(text.contains(&health), "/health goes to the daemon's endpoint {health}");
    if !nginx_installed() {
        return;
    }
    let home = Home::new();
    let out = nginx_t(&home, &text);
    assert!(out.status.success(), "nginx -t: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn nginx_accepts_the_blue_green_site() {
    if !nginx_installed() {
        return;
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/blue-green");
    let home = Home::new();
    let upstream = home.write("upstream.conf", &std::fs::read_to_string(example.join("upstream.conf")).unwrap());
    let site = std::fs::read_to_string(example.join("nginx-site.conf"))
        .unwrap()
        .replace("/etc/nginx/mcpd/upstream.conf", upstream.to_str().unwrap());
    let out = nginx_t(&home, &site);
    assert!(out.status.success(), "nginx -t: {}", String::from_utf8_lossy(&out.stderr));
}

/// A fly.toml duration: seconds as a number, or a string like "45s".
fn fly_seconds(item: &toml_edit::Item) -> u64 {
    match (item.as_integer(), item.as_str()) {
        (Some(n), _) => n as u64,
        (_, Some(s)) => humantime::parse_duration(s).unwrap().as_secs(),
        _ => panic!("not a duration: {item:?}"),
    }
}

#[test]
fn fly_toml_parses_and_outlasts_the_drain() {
    let config = load(&packaging().join("container/mcpd.toml"));
    let (drain, front_port) = app(&config);
    let text = std::fs::read_to_string(packaging().join("fly/fly.toml")).unwrap();
    let fly: toml_edit::DocumentMut = text.parse().unwrap_or_else(|e| panic!("fly.toml: {e}"));
    assert!(fly_seconds(&fly["kill_timeout"]) > drain.as_secs(), "Fly's kill_timeout must exceed the drain");
    let service = &fly["http_service"];
    assert_eq!(service["internal_port"].as_integer(), Some(i64::from(front_port)), "Fly sends traffic to the front");
    let idle = service["http_options"]["idle_timeout"].as_integer().expect("http_service.http_options.idle_timeout");
    assert!(idle >= 3600, "Fly's idle timeout ({idle} s) would close quiet MCP streams");
    let checks = fly["checks"].as_table_like().expect("[checks]");
    let health = daemon_port(&config);
    assert!(
        checks.iter().any(|(_, c)| c.get("path").and_then(|p| p.as_str()) == Some("/health")
            && c.get("port").and_then(|p| p.as_integer()) == Some(i64::from(health))),
        "a check asks the daemon's /health on {health}"
    );
}

#[test]
fn kubernetes_yaml_parses_and_its_grace_period_outlasts_the_drain() {
    let config = load(&packaging().join("container/mcpd.toml"));
    let (drain, front_port) = app(&config);
    let health = daemon_port(&config);
    let text = std::fs::read_to_string(packaging().join("kubernetes/mcpd.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("mcpd.yaml: {e}"));
    let kind = |k: &str| docs.iter().find(|d| d["kind"].as_str() == Some(k)).unwrap_or_else(|| panic!("no {k}"));
    let deployment = kind("Deployment");
    let spec = &deployment["spec"];
    let strategy = &spec["strategy"]["rollingUpdate"];
    assert_eq!((strategy["maxUnavailable"].as_i64(), strategy["maxSurge"].as_i64()), (Some(0), Some(1)));
    let pod = &spec["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_i64().expect("terminationGracePeriodSeconds");
    assert!(grace as u64 > drain.as_secs(), "grace period {grace} s must exceed the drain ({drain:?})");
    let container = &pod["containers"][0];
    let ports: Vec<i64> =
        container["ports"].as_vec().unwrap().iter().filter_map(|p| p["containerPort"].as_i64()).collect();
    assert!(ports.contains(&i64::from(front_port)) && ports.contains(&i64::from(health)), "{ports:?}");
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/health"), "{probe}");
        let port_ok = get["port"].as_i64() == Some(i64::from(health)) || matches!(get["port"], Yaml::String(_));
        assert!(port_ok, "{probe} asks the daemon's endpoint");
    }
    assert!(!container["lifecycle"]["preStop"].is_badvalue(), "a preStop pause");
    // The ConfigMap carries the same mcpd.toml as packaging/container/mcpd.toml.
    let map = kind("ConfigMap");
    let embedded = map["data"]["mcpd.toml"].as_str().expect("data: mcpd.toml");
    let parsed = mcpd_core::config::parse(embedded, Path::new("configmap"), Path::new("/"))
        .unwrap_or_else(|e| panic!("the ConfigMap's mcpd.toml: {e}"));
    assert_eq!((app(&parsed), daemon_port(&parsed)), ((drain, front_port), health), "the ConfigMap matches");
}
