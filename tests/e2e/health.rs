//! The daemon's HTTP endpoint (`[daemon] http`): /health for load balancers (503 while an app
//! is errored and while the daemon drains), /apps, and /metrics in Prometheus text format.

use crate::common::{free_port, http, signal, wait_for, Home};
use std::time::Duration;

/// GET http://127.0.0.1:PORT/PATH; returns (status, body).
pub(crate) fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let (status, text) = http(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

#[test]
fn health_is_503_while_an_app_is_errored_and_while_the_daemon_drains() {
    let home = Home::new();
    let port = free_port();
    let config = home.write(
        "health.toml",
        &format!(
            "[daemon]\nhttp = \"127.0.0.1:{port}\"\n\n\
             [apps.steady]\ncommand = \"sleep\"\nargs = [\"infinity\"]\n\n\
             [apps.broken]\ncommand = \"false\"\nrestart_delay = \"50ms\"\nmax_restarts = 1\n\n\
             [apps.stubborn]\ncommand = \"sh\"\nargs = [\"-c\", \"trap '' TERM; while :; do sleep 0.1; done\"]\nkill_timeout = \"4s\"\n"
        ),
    );
    home.run(&["start", "--no-wait", config.to_str().unwrap()]);
    let body = wait_for("/health to report the errored app", Duration::from_secs(15), || match get(port, "/health") {
        Ok((503, body)) if body.contains("broken: errored") => Ok(body),
        other => Err(format!("{other:?}")),
    });
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert_eq!(get(port, "/health/steady").unwrap().0, 200, "one app's health is its own");
    assert_eq!(get(port, "/health/broken").unwrap().0, 503);
    assert_eq!(get(port, "/health/nothing").unwrap().0, 404);
    let (status, apps) = get(port, "/apps").unwrap();
    let apps: serde_json::Value = serde_json::from_str(&apps).unwrap();
    assert_eq!((status, apps.as_array().map(Vec::len)), (200, Some(3)), "/apps is the list: {apps}");
    // Deleting the errored app makes the daemon healthy again.
    home.ok(&["delete", "broken"]);
    let (status, body) = get(port, "/health").unwrap();
    assert_eq!(status, 200, "{body}");
    // SIGTERM: the daemon drains (stubborn ignores SIGTERM for its 4 s kill_timeout) and /health
    // says so all the while.
    let daemon = home.daemon_pid().expect("daemon pid");
    signal(daemon, libc::SIGTERM);
    let body = wait_for("/health to say draining", Duration::from_secs(4), || match get(port, "/health") {
        Ok((503, body)) if body.contains("\"draining\"") => Ok(body),
        other => Err(format!("{other:?}")),
    });
    assert!(body.contains("SIGTERM"), "{body}");
    wait_for("the daemon to exit after the drain", Duration::from_secs(15), || {
        if crate::common::alive(daemon) {
            Err("still running".to_string())
        } else {
            Ok(())
        }
    });
}

/// The value of the first sample named `name` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text ({e}): {text}"));
    scrape.samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(
        |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        },
    )
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_a_crash() {
    let home = Home::new();
    let port = free_port();
    let config = home.write(
        "metrics.toml",
        &format!(
            "[daemon]\nhttp = \"127.0.0.1:{port}\"\n\n[apps.worker]\ncommand = \"sleep\"\nargs = [\"infinity\"]\nrestart_delay = \"50ms\"\n"
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let (status, text) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    let app = [("app", "worker")];
    assert_eq!(sample(&text, "mcpd_app_ready", &app), Some(1.0), "{text}");
    assert_eq!(sample(&text, "mcpd_app_status", &[("app", "worker"), ("status", "online")]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "mcpd_daemon_draining", &[]), Some(0.0), "{text}");
    assert_eq!(sample(&text, "mcpd_app_restarts_total", &[("app", "worker"), ("reason", "crash")]), None, "{text}");
    let pid = home.pid("worker");
    signal(pid, libc::SIGKILL);
    let text = wait_for("the crash to be counted", Duration::from_secs(15), || {
        let (_, text) = get(port, "/metrics")?;
        match sample(&text, "mcpd_app_restarts_total", &[("app", "worker"), ("reason", "crash")]) {
            Some(1.0) => Ok(text),
            other => Err(format!("restarts {other:?}")),
        }
    });
    assert_eq!(sample(&text, "mcpd_app_ready", &app), Some(1.0), "back online: {text}");
    wait_for("memory to be sampled", Duration::from_secs(5), || {
        let (_, text) = get(port, "/metrics")?;
        match sample(&text, "mcpd_app_memory_bytes", &app) {
            Some(bytes) if bytes > 0.0 => Ok(()),
            other => Err(format!("memory {other:?}")),
        }
    });
}
