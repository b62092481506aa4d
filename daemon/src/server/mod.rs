//! The control socket: accepts connections, checks the peer, greets, and hands each request
//! to [`handler`].

mod handler;

use crate::context::Daemon;
use crate::guard::Guard;
use crate::supervisor::Supervisor;
use crate::{io_error, DaemonError};
use futures_util::{SinkExt, StreamExt};
use mcpd_core::paths::Paths;
use mcpd_core::protocol::frame::{self, codec};
use mcpd_core::protocol::{ErrorKind, Hello, HelloReply, LogsRequest, ProtoError, Request, Response, PROTOCOL_VERSION};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

/// Binds the socket (0600) and serves until `shutdown`; then drains every app and removes
/// the socket. The caller holds the home's lock.
pub async fn serve(
    paths: Paths,
    guard: Guard,
    boot: mcpd_core::config::ConfigFile,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let http = match &boot.daemon.http {
        Some(addr) => Some(crate::front::PublicListener::bind(addr).map_err(|e| DaemonError::Io {
            what: format!("cannot serve [daemon] http on {addr}"),
            source: std::io::Error::other(e),
        })?),
        None => None,
    };
    let socket = paths.socket();
    let listener = UnixListener::bind(&socket).map_err(io_error(format!("cannot listen on {}", socket.display())))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error(format!("cannot set the mode of {}", socket.display())))?;
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "mcpd daemon listening");
    let daemon = Arc::new(Daemon {
        supervisor: Supervisor::new(paths.clone(), guard, &shutdown),
        paths: paths.clone(),
        shutdown: shutdown.clone(),
        started: Instant::now(),
        booted: std::sync::atomic::AtomicBool::new(false),
    });
    // The endpoint outlives `shutdown`: it answers 503 all through the drain.
    let http_stop = CancellationToken::new();
    let _http_owner = http.map(|(owner, listener)| {
        tracing::info!(addr = %boot.daemon.http.as_ref().map(ToString::to_string).unwrap_or_default(), "http endpoint listening");
        tokio::spawn(crate::http::serve(listener, daemon.clone(), http_stop.clone()));
        owner
    });
    tokio::spawn(resurrect_then_ready(daemon.clone(), boot.apps));
    tokio::spawn(crate::systemd::watchdog(shutdown.clone()));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, daemon.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = shutdown.cancelled() => break,
        }
    }
    daemon.supervisor.shutdown().await;
    http_stop.cancel();
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    tracing::info!("every app stopped; daemon exiting");
    Ok(())
}

/// Coalesces a burst of changes into one update.
const WATCH_COALESCE: std::time::Duration = std::time::Duration::from_millis(20);

/// `Watch`: the app list now, then after each change or sample, until the client goes away.
async fn watch(framed: &mut Framed<UnixStream, LengthDelimitedCodec>, daemon: &Daemon) {
    let (mut changes, mut samples) = daemon.supervisor.subscribe();
    loop {
        changes.borrow_and_update();
        samples.borrow_and_update();
        let list = Response::List { apps: daemon.supervisor.list() };
        if framed.send(frame::encode(&list)).await.is_err() {
            return;
        }
        tokio::select! {
            Ok(()) = changes.changed() => {}
            Ok(()) = samples.changed() => {}
            incoming = framed.next() => match incoming {
                Some(Ok(_)) => continue,
                _ => return,
            },
            _ = daemon.shutdown.cancelled() => return,
        }
        tokio::time::sleep(WATCH_COALESCE).await;
    }
}

/// At most this many events go in one frame (an event is a few hundred bytes at most: the
/// longest field is an errored app's reason).
const EVENTS_PER_FRAME: usize = 256;

/// `events`: the rows now, then the events as they happen, until the client goes away. The
/// subscription is taken before the rows are read, so no event between them is missed.
async fn events(
    framed: &mut Framed<UnixStream, LengthDelimitedCodec>,
    request: &mcpd_core::protocol::EventsRequest,
    daemon: &Daemon,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut rx = daemon.supervisor.events();
    let mut apps = daemon.supervisor.list();
    if let Some(name) = &request.app {
        apps.retain(|a| &a.name == name);
        if apps.is_empty() {
            let e = mcpd_core::protocol::ProtoError::new(
                mcpd_core::protocol::ErrorKind::UnknownApp,
                format!("no app named \"{name}\": see `mcpd list`, or start it from a config file"),
            );
            let _ = framed.send(frame::encode(&Response::Error(e))).await;
            return;
        }
    }
    if framed.send(frame::encode(&Response::List { apps })).await.is_err() {
        return;
    }
    loop {
        let mut events = Vec::new();
        let mut skipped = 0;
        tokio::select! {
            received = rx.recv() => {
                let mut next = received;
                loop {
                    match next {
                        Ok(event) => {
                            let sample = matches!(event.kind, mcpd_core::model::EventKind::Sample { .. });
                            if request.app.as_ref().is_none_or(|n| *n == event.app) && (request.samples || !sample) {
                                events.push(event);
                            }
                        }
                        Err(RecvError::Lagged(n)) => skipped += n,
                        Err(RecvError::Closed) => return,
                    }
                    if events.len() >= EVENTS_PER_FRAME {
                        break;
                    }
                    next = match rx.try_recv() {
                        Ok(event) => Ok(event),
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                        Err(_) => break,
                    };
                }
            },
            incoming = framed.next() => match incoming {
                Some(Ok(_)) => continue,
                _ => return,
            },
            _ = daemon.shutdown.cancelled() => return,
        }
        if (!events.is_empty() || skipped > 0)
            && framed.send(frame::encode(&Response::Events { events, skipped })).await.is_err()
        {
            return;
        }
    }
}

/// `logs --follow`: the last lines, then new ones in batches, until the client goes away.
async fn follow(framed: &mut Framed<UnixStream, LengthDelimitedCodec>, request: &LogsRequest, daemon: &Daemon) {
    use tokio::sync::broadcast::error::RecvError;
    let mut rx = crate::logs::hub().subscribe();
    let first = match daemon.supervisor.log_tail(request).await {
        Ok(lines) => Response::Logs { lines, skipped: 0 },
        Err(e) => Response::Error(e),
    };
    let failed = matches!(first, Response::Error(_));
    if framed.send(frame::encode(&first)).await.is_err() || failed {
        return;
    }
    loop {
        let mut lines = Vec::new();
        let mut skipped = 0;
        tokio::select! {
            received = rx.recv() => match received {
                Ok(line) => {
                    let mut next = Ok(line);
                    // Take what is already queued too, so a flood goes out in few frames.
                    while let Ok(line) = next {
                        if Supervisor::log_matches(request, &line) {
                            lines.push((*line).clone());
                        }
                        if lines.len() >= 1024 {
                            break;
                        }
                        next = rx.try_recv();
                    }
                }
                Err(RecvError::Lagged(n)) => skipped = n,
                Err(RecvError::Closed) => return,
            },
            incoming = framed.next() => match incoming {
                Some(Ok(_)) => continue,
                _ => return,
            },
            _ = daemon.shutdown.cancelled() => return,
        }
        if (!lines.is_empty() || skipped > 0)
            && framed.send(frame::encode(&Response::Logs { lines, skipped })).await.is_err()
        {
            return;
        }
    }
}

/// Starts the saved apps and waits until they are ready (or failed), then tells the service
/// manager the daemon is ready and keeps its status current.
async fn resurrect_then_ready(daemon: Arc<Daemon>, boot: Vec<mcpd_core::config::AppConfig>) {
    match daemon.supervisor.resurrect().await {
        Ok(Some(outcomes)) => {
            for o in outcomes.iter().filter(|o| !o.ok) {
                tracing::warn!(app = %o.name, reason = %o.message, "a saved app did not come back");
            }
            tracing::info!(apps = outcomes.len(), "resurrected the saved apps");
        }
        Ok(None) => {}
        Err(e) => tracing::error!("{e}"),
    }
    if !boot.is_empty() {
        let request = mcpd_core::protocol::StartRequest { apps: boot, names: Vec::new(), wait: true };
        if let mcpd_core::protocol::Response::Done { outcomes } = daemon.supervisor.start(request).await {
            for o in &outcomes {
                tracing::info!(app = %o.name, ok = o.ok, "{}", o.message);
            }
        }
    }
    daemon.booted.store(true, std::sync::atomic::Ordering::Relaxed);
    crate::systemd::ready(&crate::systemd::summary(&daemon.supervisor));
    crate::systemd::keep_status(daemon.supervisor.clone(), daemon.shutdown.clone()).await;
}

fn peer_allowed(stream: &UnixStream) -> Result<(), String> {
    let cred = stream.peer_cred().map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(format!("uid {} is neither root nor the daemon's uid {me}", cred.uid()))
    }
}

/// One client connection: hello, then request/response until either side closes. Anything
/// malformed closes this connection only.
async fn connection(stream: UnixStream, daemon: Arc<Daemon>) {
    if let Err(reason) = peer_allowed(&stream) {
        tracing::warn!(%reason, "refused a control connection");
        return;
    }
    let mut framed = Framed::new(stream, codec());
    let hello: Hello = match framed.next().await {
        Some(Ok(bytes)) => match frame::decode(&bytes) {
            Ok(hello) => hello,
            Err(e) => return tracing::warn!(error = %e, "closing a connection that did not say hello"),
        },
        Some(Err(e)) => return tracing::warn!(error = %e, "closing a connection with a bad frame"),
        None => return,
    };
    if hello.protocol != PROTOCOL_VERSION {
        let refusal = ProtoError::new(
            ErrorKind::VersionMismatch,
            format!(
                "this daemon speaks protocol {PROTOCOL_VERSION} (mcpd {}), the client {} (mcpd {}): run `mcpd kill` with the old mcpd, then use one version",
                env!("CARGO_PKG_VERSION"),
                hello.protocol,
                hello.client_version
            ),
        );
        let _ = framed.send(frame::encode(&HelloReply::Refused(refusal))).await;
        return;
    }
    let welcome = HelloReply::Welcome {
        protocol: PROTOCOL_VERSION,
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
    };
    if framed.send(frame::encode(&welcome)).await.is_err() {
        return;
    }
    while let Some(next) = framed.next().await {
        let request: Request =
            match next.map_err(|e| e.to_string()).and_then(|b| frame::decode(&b).map_err(|e| e.to_string())) {
                Ok(request) => request,
                Err(e) => return tracing::warn!(error = %e, "closing a connection that sent a bad request"),
            };
        if let Request::Watch = request {
            return watch(&mut framed, &daemon).await;
        }
        if let Request::Events(events_request) = &request {
            return events(&mut framed, events_request, &daemon).await;
        }
        if let Request::Logs(logs) = &request {
            if logs.follow {
                return follow(&mut framed, logs, &daemon).await;
            }
        }
        let kill = matches!(request, Request::Kill);
        let response = handler::handle(request, &daemon).await;
        let sent = framed.send(frame::encode(&response)).await;
        if kill {
            daemon.shutdown.cancel();
        }
        if sent.is_err() {
            return;
        }
    }
}
