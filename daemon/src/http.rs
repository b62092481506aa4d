//! The daemon's HTTP endpoint (`[daemon] http = ADDR`, off by default), for load balancers,
//! orchestrators and Prometheus:
//!
//! - `GET /health`: 200 when every app that should run is online and ready; 503 while one is
//!   not, before the apps of a boot are up, and from the moment the daemon drains (SIGTERM).
//!   The JSON body says why.
//! - `GET /health/NAME`: the same for one app (404 for an unknown name).
//! - `GET /apps`: what `mcpd list --json` prints.
//! - `GET /metrics`: Prometheus text format.

use crate::context::Daemon;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use mcpd_core::model::{AppInfo, AppStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Serves `listener` until `stop` (which the daemon cancels only once every app is stopped,
/// so the endpoint answers 503 all through the drain).
pub(crate) async fn serve(listener: crate::front::PublicListener, daemon: Arc<Daemon>, stop: CancellationToken) {
    let mut gate = crate::accept::Gate::new("http endpoint", MAX_CONNECTIONS);
    loop {
        let permit = tokio::select! {
            permit = gate.permit() => permit,
            _ = stop.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = crate::front::accept(&listener) => a,
            _ = stop.cancelled() => return,
        };
        let io = match accepted {
            Ok((io, _)) => io,
            Err(e) => {
                let pause = gate.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        gate.accepted();
        let daemon = daemon.clone();
        tokio::spawn(crate::boxed(async move {
            let service = hyper::service::service_fn(move |req| {
                let daemon = daemon.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &daemon)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service);
            // A client that keeps a connection open without asking is closed after a while.
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(permit);
        }));
    }
}

/// Connections open at once on the endpoint; more wait in the backlog.
const MAX_CONNECTIONS: usize = 256;
/// Time to send a request's headers (slow clients are closed).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest a connection to the endpoint stays open (scrapes take milliseconds).
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

fn answer(req: &Request<hyper::body::Incoming>, daemon: &Daemon) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into());
    }
    let path = req.uri().path();
    match path {
        "/health" => health(daemon, None),
        "/apps" => {
            let apps = daemon.supervisor.list();
            reply(StatusCode::OK, "application/json", serde_json::to_string(&apps).unwrap_or_default())
        }
        "/metrics" => {
            reply(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics(daemon))
        }
        _ => match path.strip_prefix("/health/") {
            Some(name) if !name.is_empty() => health(daemon, Some(name)),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "try /health, /health/NAME, /apps or /metrics\n".into()),
        },
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static(content_type));
    r.headers_mut().insert("cache-control", hyper::header::HeaderValue::from_static("no-store"));
    r
}

/// Whether a row serves: online, or reloading (the old generation serves meanwhile).
fn serving(app: &AppInfo) -> bool {
    matches!(app.status, AppStatus::Online | AppStatus::Reloading)
}

/// Why a row is not healthy, if it is not.
fn problem(app: &AppInfo, asked_for: bool) -> Option<String> {
    match app.status {
        AppStatus::Online | AppStatus::Reloading => None,
        // A stopped app is left out of the daemon's health (the user stopped it), not of its own.
        AppStatus::Stopped if !asked_for => None,
        AppStatus::Errored => Some(format!("errored: {}", app.reason.as_deref().unwrap_or("unknown reason"))),
        status => Some(status.as_str().to_string()),
    }
}

fn health(daemon: &Daemon, name: Option<&str>) -> Response<Full<Bytes>> {
    let apps: Vec<AppInfo> =
        daemon.supervisor.list().into_iter().filter(|a| name.is_none_or(|n| a.name.as_str() == n)).collect();
    if let (Some(name), true) = (name, apps.is_empty()) {
        let body = json!({ "status": "unknown", "reason": format!("no app named {name:?}") });
        return reply(StatusCode::NOT_FOUND, "application/json", body.to_string());
    }
    let mut rows = Vec::with_capacity(apps.len());
    let mut failing = Vec::new();
    for a in &apps {
        let problem = problem(a, name.is_some());
        if let Some(p) = &problem {
            failing.push(format!("{}: {p}", a.label()));
        }
        rows.push(json!({
            "name": a.name,
            "instance": a.instance,
            "status": a.status.as_str(),
            "ready": serving(a),
            "problem": problem,
        }));
    }
    let (status, reason) = if daemon.shutdown.is_cancelled() {
        ("draining", Some("the daemon is stopping (SIGTERM): every app is draining".to_string()))
    } else if name.is_none() && !daemon.booted.load(Ordering::Relaxed) {
        ("starting", Some("the daemon is starting its apps".to_string()))
    } else if !failing.is_empty() {
        ("unhealthy", Some(failing.join("; ")))
    } else {
        ("ok", None)
    };
    let code = if status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": status,
        "reason": reason,
        "process_tracking": daemon.supervisor.tracking(),
        "apps": rows,
    });
    reply(code, "application/json", body.to_string())
}

type Labels = Vec<(&'static str, String)>;

fn labels(app: &AppInfo) -> Labels {
    let mut l = vec![("app", app.name.to_string())];
    if let Some(i) = app.instance {
        l.push(("instance", i.to_string()));
    }
    l
}

/// The metrics, in the OpenMetrics text format Prometheus reads.
fn metrics(daemon: &Daemon) -> String {
    let mut registry = Registry::with_prefix("mcpd");
    let status = Family::<Labels, Gauge>::default();
    let ready = Family::<Labels, Gauge>::default();
    let restarts = Family::<Labels, Counter>::default();
    let uptime = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let memory = Family::<Labels, Gauge>::default();
    let cpu = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let sessions = Family::<Labels, Gauge>::default();
    let draining = Gauge::<i64>::default();
    const STATUSES: [AppStatus; 7] = [
        AppStatus::Starting,
        AppStatus::Online,
        AppStatus::Reloading,
        AppStatus::Stopping,
        AppStatus::Stopped,
        AppStatus::WaitingRestart,
        AppStatus::Errored,
    ];
    for app in daemon.supervisor.list() {
        let base = labels(&app);
        for s in STATUSES {
            let mut l = base.clone();
            l.push(("status", s.as_str().to_string()));
            status.get_or_create(&l).set(i64::from(app.status == s));
        }
        ready.get_or_create(&base).set(i64::from(serving(&app)));
        for (reason, n) in &app.restarts_by_reason {
            let mut l = base.clone();
            l.push(("reason", reason.label().to_string()));
            restarts.get_or_create(&l).inc_by(u64::from(*n));
        }
        if let Some(ms) = app.uptime_ms {
            uptime.get_or_create(&base).set(ms as f64 / 1000.0);
        }
        if let Some(bytes) = app.memory_bytes {
            memory.get_or_create(&base).set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(c) = app.cpu_percent {
            cpu.get_or_create(&base).set(f64::from(c));
        }
        // Every instance's row lists the front's generations: count them once, on instance 0.
        if app.instance.unwrap_or(0) == 0 {
            for g in &app.sessions {
                let l = vec![("app", app.name.to_string()), ("pid", g.pid.to_string())];
                sessions.get_or_create(&l).set(i64::try_from(g.sessions).unwrap_or(i64::MAX));
            }
        }
    }
    draining.set(i64::from(daemon.shutdown.is_cancelled()));
    registry.register("app_status", "1 for the status the app (instance) is in", status);
    registry.register(
        "app_ready",
        "1 while the app serves (online, or reloading with the old generation serving)",
        ready,
    );
    registry.register("app_restarts", "New generations started in place of an old one, by reason", restarts);
    registry.register("app_uptime_seconds", "Seconds since the serving generation started", uptime);
    registry.register("app_memory_bytes", "RSS of the app's whole process group", memory);
    registry.register("app_cpu_percent", "CPU use of the app's process group, in percent of one core", cpu);
    registry.register("front_sessions", "MCP sessions each generation holds behind the app's front", sessions);
    registry.register("daemon_draining", "1 once the daemon was told to stop and drains its apps", draining);
    let mut text = String::new();
    if let Err(e) = encode(&mut text, &registry) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    text
}
