//! The control socket: accepts connections, checks the peer, greets, and hands each request
//! to [`handler`].

mod handler;
mod update;

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

/// Binds the socket (0600) and serves until `shutdown` (cancelled by the `kill` verb, or by
/// `signals`); then drains every app and removes the socket. The caller holds the home's lock.
pub(crate) async fn serve(
    paths: Paths,
    guard: Guard,
    tracking: crate::supervisor::cgroup::Tracking,
    boot: mcpd_core::config::ConfigFile,
    shutdown: CancellationToken,
    signals: crate::signals::Signals,
    mut start: crate::Start,
) -> Result<(), DaemonError> {
    let orphans = std::mem::take(&mut start.orphans);
    let mut handover = start.handover.take();
    // An update in place keeps the endpoint the previous daemon served, whatever the boot
    // file says now (a mistake made in it since must not cost the endpoint).
    let handed_http = handover.as_mut().and_then(|h| Some((h.http_addr.clone()?, h.http.take()?)));
    let http_addr = match &handed_http {
        Some((addr, _)) => Some(addr.clone()),
        None => boot.daemon.http.clone(),
    };
    let http = match (&http_addr, handed_http) {
        (Some(addr), Some((_, fd))) => Some(
            crate::listen::Listeners::adopt(std::slice::from_ref(addr), &[fd])
                .and_then(|l| crate::front::PublicListener::over(addr, l))
                .map_err(|e| DaemonError::Io {
                    what: format!("cannot take over [daemon] http on {addr}"),
                    source: std::io::Error::other(e),
                })?,
        ),
        (Some(addr), None) => Some(crate::front::PublicListener::bind(addr).map_err(|e| DaemonError::Io {
            what: format!("cannot serve [daemon] http on {addr}"),
            source: std::io::Error::other(e),
        })?),
        (None, _) => None,
    };
    let socket = paths.socket();
    let listener = match &handover {
        Some(h) => {
            let fd = crate::handover::take(h.control).map_err(io_error("cannot take over the control socket"))?;
            let std_listener = std::os::unix::net::UnixListener::from(fd);
            std_listener.set_nonblocking(true).map_err(io_error("cannot take over the control socket"))?;
            UnixListener::from_std(std_listener).map_err(io_error("cannot take over the control socket"))?
        }
        None => {
            let listener =
                UnixListener::bind(&socket).map_err(io_error(format!("cannot listen on {}", socket.display())))?;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
                .map_err(io_error(format!("cannot set the mode of {}", socket.display())))?;
            listener
        }
    };
    tracing::info!(socket = %socket.display(), pid = std::process::id(), version = %crate::version(), "mcpd daemon listening");
    let (paused, mut pause) = tokio::sync::watch::channel(false);
    let daemon = Arc::new(Daemon {
        supervisor: Supervisor::new(paths.clone(), guard, tracking, orphans, &shutdown),
        paths: paths.clone(),
        shutdown: shutdown.clone(),
        started: handover.as_ref().map_or_else(Instant::now, |h| h.started),
        booted: std::sync::atomic::AtomicBool::new(false),
        update: crate::context::UpdateCtx {
            exe: start.exe,
            args: start.args,
            control_fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
            http_fd: http.as_ref().and_then(|(owner, _)| owner.fds().first().copied()),
            http_addr: http_addr.clone(),
            lock_fd: start.lock_fd,
            paused,
            running: tokio::sync::Mutex::new(()),
            stop_requested: std::sync::atomic::AtomicBool::new(false),
        },
    });
    let boot_apps = match handover {
        Some(h) => {
            update::resume(&daemon, h).await;
            None
        }
        None => Some(boot.apps),
    };
    // The endpoint outlives `shutdown`: it answers 503 all through the drain.
    let http_stop = CancellationToken::new();
    let _http_owner = http.map(|(owner, listener)| {
        tracing::info!(addr = %http_addr.as_ref().map(ToString::to_string).unwrap_or_default(), "http endpoint listening");
        tokio::spawn(crate::boxed(crate::http::serve(listener, daemon.clone(), http_stop.clone())));
        owner
    });
    tokio::spawn(crate::boxed(signals.serve(daemon.clone())));
    match boot_apps {
        Some(apps) => drop(tokio::spawn(crate::boxed(resurrect_then_ready(daemon.clone(), apps)))),
        None => drop(tokio::spawn(crate::boxed(crate::systemd::keep_status(
            daemon.supervisor.clone(),
            daemon.shutdown.clone(),
        )))),
    }
    tokio::spawn(crate::boxed(crate::systemd::watchdog(shutdown.clone())));
    tokio::spawn(crate::boxed(crate::supervisor::cron::run(daemon.supervisor.clone(), shutdown.clone())));
    tokio::spawn(crate::boxed(crate::supervisor::watch::run(daemon.supervisor.clone(), shutdown.clone())));
    let mut gate = crate::accept::Gate::new("control socket", MAX_CONNECTIONS);
    loop {
        // While the daemon is being updated in place, clients wait in the backlog for the
        // next daemon (or for this one, if the update does not go through).
        tokio::select! {
            _ = pause.wait_for(|p| !*p) => {}
            _ = shutdown.cancelled() => break,
        }
        let permit = tokio::select! {
            permit = gate.permit() => permit,
            _ = shutdown.cancelled() => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    gate.accepted();
                    let daemon = daemon.clone();
                    tokio::spawn(crate::boxed(async move {
                        connection(stream, daemon).await;
                        drop(permit);
                    }));
                }
                Err(e) => {
                    let pause = gate.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
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

/// Control connections open at once; more wait in the socket's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A client must say hello, and send each next request, within this long.
const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
                                events.push((*event).clone());
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

/// A follow frame carries at most this many lines...
const FOLLOW_LINES: usize = 1024;
/// ...and stops growing once its lines take this many bytes as JSON (see [`json_size`]). It
/// always holds at least one line, and the line that reaches the cap stays in it, so a frame
/// is at most this plus one line. A line is at most 64 KiB as read (`MAX_LINE` in
/// `logs/capture.rs`), at most 6 × that as JSON (a control byte becomes `\u00XX`, an invalid
/// byte U+FFFD's 3 bytes), so a frame stays under 1.5 MiB, well below the 4 MiB
/// `frame::MAX_FRAME_BYTES` that either side accepts, whatever the lines hold; and a flood of
/// long lines still goes out 16 lines of 64 KiB to a frame, few enough frames to be cheap.
const FOLLOW_BYTES: usize = 1024 * 1024;

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
    // Lines skipped just after the lines of the last frame: they open the next one.
    let mut owed = 0;
    loop {
        let mut batch = FollowBatch { skipped: std::mem::take(&mut owed), ..FollowBatch::default() };
        if batch.skipped == 0 {
            tokio::select! {
                received = rx.recv() => match received {
                    Ok(line) => batch.add(request, &line),
                    Err(RecvError::Lagged(n)) => batch.skipped = n,
                    Err(RecvError::Closed) => return,
                },
                incoming = framed.next() => match incoming {
                    Some(Ok(_)) => continue,
                    _ => return,
                },
                _ = daemon.shutdown.cancelled() => return,
            }
        }
        // Take what is already queued too, so a flood goes out in few frames.
        owed = batch.fill(&mut rx, request);
        if batch.lines.is_empty() && batch.skipped == 0 {
            continue;
        }
        let frame = frame::encode(&Response::Logs { lines: batch.lines, skipped: batch.skipped });
        // A stopped client blocks the send; the daemon's shutdown does not wait for it.
        tokio::select! {
            sent = framed.send(frame) => if sent.is_err() {
                return;
            },
            _ = daemon.shutdown.cancelled() => return,
        }
    }
}

/// One frame of a follow stream: `skipped` lines missed, then `lines`.
#[derive(Debug, Default)]
struct FollowBatch {
    lines: Vec<mcpd_core::model::LogLine>,
    skipped: u64,
    /// The lines' size as JSON.
    bytes: usize,
}

impl FollowBatch {
    fn add(&mut self, request: &LogsRequest, line: &mcpd_core::model::LogLine) {
        if Supervisor::log_matches(request, line) {
            self.bytes += json_size(line);
            self.lines.push(line.clone());
        }
    }

    fn full(&self) -> bool {
        self.lines.len() >= FOLLOW_LINES || self.bytes >= FOLLOW_BYTES
    }

    /// Adds the lines already queued, until the batch is full, the queue is empty, or a gap
    /// (the follower fell behind) comes after some lines: the gap's size is returned, to open
    /// the next frame, so the client reports it where it happened.
    fn fill(
        &mut self,
        rx: &mut tokio::sync::broadcast::Receiver<Arc<mcpd_core::model::LogLine>>,
        request: &LogsRequest,
    ) -> u64 {
        use tokio::sync::broadcast::error::TryRecvError;
        while !self.full() {
            match rx.try_recv() {
                Ok(line) => self.add(request, &line),
                Err(TryRecvError::Lagged(n)) if self.lines.is_empty() => self.skipped += n,
                Err(TryRecvError::Lagged(n)) => return n,
                // Empty, or Closed: the next `recv` says so.
                Err(_) => break,
            }
        }
        0
    }
}

/// An upper bound of a line's size in a frame: its message as escaped JSON, plus the other
/// fields and the punctuation.
fn json_size(line: &mcpd_core::model::LogLine) -> usize {
    let escaped: usize = line
        .message
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum();
    // {"app":"","stream":"out","time_ms":18446744073709551615,"message":""} is 70 bytes.
    escaped + line.app.len() + 80
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
    let hello: Hello = match tokio::time::timeout(CLIENT_TIMEOUT, framed.next()).await {
        Ok(Some(Ok(bytes))) => match frame::decode(&bytes) {
            Ok(hello) => hello,
            Err(e) => {
                let refusal = ProtoError::new(ErrorKind::InvalidRequest, format!("expected a hello: {e}"));
                let _ = framed.send(frame::encode(&HelloReply::Refused(refusal))).await;
                return tracing::debug!(error = %e, "closing a connection that did not say hello");
            }
        },
        Ok(Some(Err(e))) => return tracing::debug!(error = %e, "closing a connection with a bad frame"),
        Ok(None) => return,
        Err(_) => return tracing::debug!("closing a connection that said nothing"),
    };
    if hello.protocol != PROTOCOL_VERSION {
        let refusal = ProtoError::new(
            ErrorKind::VersionMismatch,
            format!(
                "this daemon speaks protocol {PROTOCOL_VERSION} (mcpd {}), the client {} (mcpd {}): run `mcpd kill` with the old mcpd, then use one version",
                crate::version(),
                hello.protocol,
                hello.client_version
            ),
        );
        let _ = framed.send(frame::encode(&HelloReply::Refused(refusal))).await;
        return;
    }
    let welcome =
        HelloReply::Welcome { protocol: PROTOCOL_VERSION, daemon_version: crate::version(), pid: std::process::id() };
    if framed.send(frame::encode(&welcome)).await.is_err() {
        return;
    }
    while let Ok(Some(next)) = tokio::time::timeout(CLIENT_TIMEOUT, framed.next()).await {
        let request: Request =
            match next.map_err(|e| e.to_string()).and_then(|b| frame::decode(&b).map_err(|e| e.to_string())) {
                Ok(request) => request,
                Err(e) => {
                    let error = ProtoError::new(ErrorKind::InvalidRequest, format!("a request mcpd cannot read: {e}"));
                    let _ = framed.send(frame::encode(&Response::Error(error))).await;
                    return tracing::debug!(error = %e, "closing a connection that sent a bad request");
                }
            };
        if let Request::Watch = request {
            return watch(&mut framed, &daemon).await;
        }
        if let Request::Update = request {
            let response = update::update(&framed, &daemon).await;
            let _ = framed.send(frame::encode(&response)).await;
            return;
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
        let paused = *daemon.update.paused.borrow();
        let response = if paused {
            // A connection opened before the update: the apps are frozen (a kill too: it
            // would find no app to stop).
            crate::supervisor::updating()
        } else {
            handler::handle(request, &daemon).await
        };
        let kill = kill && !paused;
        let sent = framed.send(frame::encode(&response)).await;
        if kill {
            daemon.shutdown.cancel();
        }
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod follow_tests {
    use super::*;
    use mcpd_core::model::{LogLine, LogStream};
    use tokio::sync::broadcast;

    fn line(message: &str) -> Arc<LogLine> {
        Arc::new(LogLine {
            app: "web".into(),
            stream: LogStream::Out,
            time_ms: Some(u64::MAX),
            message: message.into(),
        })
    }

    fn every_app() -> LogsRequest {
        LogsRequest { app: None, lines: 0, follow: true, stream: None, daemon: false }
    }

    #[test]
    fn json_size_bounds_the_encoded_line() {
        let nasty = ["", "plain", "say \"hi\" \\ there", "\u{1}\u{1f}\u{7f}\t\r\n\u{8}\u{c}", "é€😀"];
        for message in nasty.iter().map(|m| m.to_string()).chain([
            "\u{0}".repeat(64 * 1024),
            "x".repeat(64 * 1024),
            "\"".repeat(64 * 1024),
        ]) {
            let l = line(&message);
            let encoded = serde_json::to_vec(&*l).unwrap().len();
            assert!(
                json_size(&l) >= encoded,
                "{} < {encoded} for {:?}",
                json_size(&l),
                &message[..message.len().min(20)]
            );
            assert!(json_size(&l) <= encoded + 100, "close to the real size");
        }
    }

    #[test]
    fn long_lines_are_batched_by_bytes_and_every_frame_fits() {
        let (tx, mut rx) = broadcast::channel(4096);
        let worst = "\u{0}".repeat(64 * 1024);
        for i in 0..100 {
            tx.send(line(&if i % 2 == 0 { "x".repeat(64 * 1024) } else { worst.clone() })).unwrap();
        }
        let mut taken = 0;
        while taken < 100 {
            let mut batch = FollowBatch::default();
            assert_eq!(batch.fill(&mut rx, &every_app()), 0);
            assert!(!batch.lines.is_empty() && batch.skipped == 0);
            taken += batch.lines.len();
            let frame = frame::encode(&Response::Logs { lines: batch.lines, skipped: 0 });
            assert!(frame.len() <= FOLLOW_BYTES + 64 * 1024 * 6 + 100, "{} bytes", frame.len());
            assert!(frame.len() < frame::MAX_FRAME_BYTES / 2);
        }
        assert_eq!(taken, 100);
        // Short lines are capped by count.
        for _ in 0..2000 {
            tx.send(line("short")).unwrap();
        }
        let mut batch = FollowBatch::default();
        batch.fill(&mut rx, &every_app());
        assert_eq!(batch.lines.len(), FOLLOW_LINES);
    }

    #[test]
    fn a_gap_opens_the_frame_that_follows_it() {
        let (tx, mut rx) = broadcast::channel(4);
        for i in 0..10 {
            tx.send(line(&format!("{i}"))).unwrap();
        }
        // Nothing taken yet: the gap opens this frame.
        let mut batch = FollowBatch::default();
        assert_eq!(batch.fill(&mut rx, &every_app()), 0);
        assert_eq!(batch.skipped, 6);
        assert_eq!(batch.lines.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["6", "7", "8", "9"]);
        // A line taken, then a gap: the frame ends, and the gap is owed to the next one.
        let mut batch = FollowBatch::default();
        batch.add(&every_app(), &line("before"));
        for i in 10..20 {
            tx.send(line(&format!("{i}"))).unwrap();
        }
        assert_eq!(batch.fill(&mut rx, &every_app()), 6);
        assert_eq!(batch.lines.len(), 1);
        // Lines of other apps count for nothing.
        let mut batch = FollowBatch::default();
        let only_api = LogsRequest { app: Some(mcpd_core::model::AppName::new("api").unwrap()), ..every_app() };
        batch.fill(&mut rx, &only_api);
        assert!(batch.lines.is_empty() && batch.bytes == 0);
    }
}
