//! `mcpd update`: the daemon re-executes its binary in place and the new daemon takes over
//! (see `handover.rs`). The old daemon answers only a failure; the new one answers success on
//! the same connection.

use super::Daemon;
use crate::update::{self as handover, Handover};
use futures_util::SinkExt;
use mcpd_core::protocol::frame;
use mcpd_core::protocol::{ErrorKind, ProtoError, Response};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// A log write in progress this long refuses an update before anything is frozen.
const STUCK_LOGS: std::time::Duration = std::time::Duration::from_secs(1);

fn refused(kind: ErrorKind, message: String) -> Response {
    tracing::warn!("update refused: {message}");
    Response::Error(ProtoError::new(kind, message))
}

/// Checks the new binary, freezes every app, checks the binary again on the real hand-over,
/// and executes it. Returns only if the update did not happen (the apps are adopted again
/// and the daemon serves on); then the answer says why.
pub(crate) async fn update(framed: &Framed<UnixStream, LengthDelimitedCodec>, daemon: &Arc<Daemon>) -> Response {
    let Ok(_one) = daemon.update.running.try_lock() else {
        return refused(ErrorKind::Busy, "an update is already running".into());
    };
    if daemon.shutdown.is_cancelled() {
        return refused(ErrorKind::ShuttingDown, "the daemon is shutting down".into());
    }
    daemon.update.stop_requested.store(false, std::sync::atomic::Ordering::SeqCst);
    if !daemon.booted.load(std::sync::atomic::Ordering::Relaxed) {
        return refused(
            ErrorKind::Busy,
            "the daemon is still starting its saved and boot apps; run `mcpd update` again once they are up".into(),
        );
    }
    if daemon.supervisor.retiring() {
        return refused(
            ErrorKind::Busy,
            "an instance scaled down is still draining its sessions; run `mcpd update` again once it is gone (`mcpd list`)".into(),
        );
    }
    let stuck = daemon.supervisor.stuck_logs(STUCK_LOGS);
    if !stuck.is_empty() {
        return refused(
            ErrorKind::Busy,
            format!(
                "the log files of {} have not finished a write for {STUCK_LOGS:?} or more (a slow or full disk, an unread FIFO?); an update now could lose their lines, so nothing was changed: fix the files, then run it again",
                stuck.join(", ")
            ),
        );
    }
    let exe = daemon.update.exe.clone();
    tracing::info!(exe = %exe.display(), "update: checking the new binary");
    if let Err(e) = check(daemon, handover::sample()).await {
        return refused(ErrorKind::InvalidRequest, format!("the new binary was not run, every app is unchanged: {e}"));
    }
    daemon.update.paused.send_replace(true);
    crate::systemd::reloading();
    let started = std::time::Instant::now();
    let (apps, fronts) = daemon.supervisor.freeze().await;
    let ctx = daemon.supervisor.ctx();
    let h = Handover {
        version: handover::VERSION,
        from: crate::version(),
        started: daemon.started,
        control: daemon.update.control_fd,
        reply: Some(framed.get_ref().as_raw_fd()),
        http: daemon.update.http_fd,
        lock: daemon.update.lock_fd,
        guard: ctx.guard.handover_state(),
        booted: daemon.booted.load(std::sync::atomic::Ordering::Relaxed),
        sample_every_ms: ctx.sample_every_ms.load(std::sync::atomic::Ordering::Relaxed),
        apps_nofile: crate::supervisor::apps_nofile(),
        http_addr: daemon.update.http_addr.clone(),
        apps,
        fronts,
        exe: exe.clone(),
        args: daemon.update.args.clone(),
    };
    let gens: usize = h.apps.iter().map(|a| a.gens.len()).sum();
    tracing::info!(
        apps = h.apps.len(),
        generations = gens,
        frozen_ms = started.elapsed().as_millis() as u64,
        "update: frozen; executing the new binary"
    );
    let problem = go(daemon, &h).await;
    // Still here: this daemon takes its apps back and serves on.
    tracing::error!("update failed, the daemon keeps running: {problem}");
    daemon.supervisor.adopt(h.apps, h.fronts);
    daemon.update.paused.send_replace(false);
    crate::systemd::ready(&crate::systemd::summary(&daemon.supervisor));
    refused(ErrorKind::Internal, format!("{problem}; the old daemon keeps running every app"))
}

/// Checks the frozen hand-over and executes the new binary; returns why it did not.
async fn go(daemon: &Arc<Daemon>, h: &Handover) -> String {
    use std::sync::atomic::Ordering;
    let stalled = h.stalled();
    if !stalled.is_empty() {
        return format!(
            "the log files of {} did not take their last lines within {:?} (a slow or full disk?), and an update would lose them",
            stalled.join(", "),
            crate::logs::capture::FREEZE_FLUSH
        );
    }
    let json = match serde_json::to_vec(h) {
        Ok(json) => json,
        Err(e) => return format!("cannot write the hand-over: {e}"),
    };
    if let Err(e) = check(daemon, json.clone()).await {
        return e;
    }
    let memfd = match handover::to_memfd(&json) {
        Ok(memfd) => memfd,
        Err(e) => return format!("cannot write the hand-over: {e}"),
    };
    // From here to the exec, a signal with a meaning waits for the new daemon's handlers.
    crate::signals::block_across_exec();
    // A drain asked for meanwhile (SIGTERM) wins: the update gives way.
    let problem = if daemon.update.stop_requested.load(Ordering::SeqCst) {
        "the daemon was asked to stop during the update, which gave way".to_string()
    } else {
        let e = handover::exec(h, &memfd);
        format!("cannot execute {}: {e}", h.exe.display())
    };
    crate::signals::unblock();
    problem
}

/// Runs `exe --check-handover` on `json`, off the runtime.
async fn check(daemon: &Arc<Daemon>, json: Vec<u8>) -> Result<String, String> {
    let exe = daemon.update.exe.clone();
    let supervisor = daemon.supervisor.clone();
    crate::supervisor::blocking(move || handover::check_binary(&exe, json, &supervisor.ctx().leaders))
        .await
        .unwrap_or_else(|| Err("the check's thread failed".into()))
}

/// The new daemon's side: takes over the apps and fronts, tells the guard and the service
/// manager, and answers the client that asked for the update.
pub(crate) async fn resume(daemon: &Arc<Daemon>, h: Handover) {
    let ctx = daemon.supervisor.ctx();
    ctx.sample_every_ms.store(h.sample_every_ms.max(1), std::sync::atomic::Ordering::Relaxed);
    let apps = h.apps.len();
    let gens: usize = h.apps.iter().map(|a| a.gens.len()).sum();
    let sessions: usize = h.fronts.iter().map(|f| f.sessions.len()).sum();
    let connections: usize = h.fronts.iter().map(|f| f.connections.len()).sum();
    daemon.supervisor.adopt(h.apps, h.fronts);
    daemon.booted.store(true, std::sync::atomic::Ordering::Relaxed);
    let text = format!(
        "updated in place: mcpd {} → {} (pid {}); took over {apps} app instance(s), {gens} generation(s), {sessions} session(s), {connections} client connection(s)",
        h.from,
        crate::version(),
        std::process::id()
    );
    tracing::info!("{text}");
    crate::systemd::ready(&crate::systemd::summary(&daemon.supervisor));
    if let Some(fd) = h.reply {
        let stream = crate::handover::take(fd)
            .map(std::os::unix::net::UnixStream::from)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UnixStream::from_std);
        if let Ok(stream) = stream {
            let mut framed = Framed::new(stream, mcpd_core::protocol::frame::codec());
            tokio::spawn(crate::boxed(async move {
                let answer = frame::encode(&Response::Message { text });
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), framed.send(answer)).await;
            }));
        }
    }
}
