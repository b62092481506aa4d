//! The daemon under a service manager (systemd `Type=notify`): `READY=1` once the socket is up
//! and the saved apps are resurrected and ready, `STATUS=` kept current, `WATCHDOG=1` at half of
//! `WATCHDOG_USEC`, `STOPPING=1` when it starts draining. Without `NOTIFY_SOCKET`, nothing is sent.

use crate::supervisor::Supervisor;
use mcpd_core::model::AppStatus;
use sd_notify::NotifyState;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// `READY=1` with the first status.
pub(crate) fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` (with the `MONOTONIC_USEC=` systemd wants beside it): the daemon re-executes
/// itself (`mcpd update`); the new daemon sends `READY=1` once it took the apps over. The pid
/// is the same, so `MAINPID` does not change.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now, NotifyState::Status("updating in place")]),
        Err(_) => notify(&[NotifyState::Reloading, NotifyState::Status("updating in place")]),
    }
}

/// `STOPPING=1`.
pub(crate) fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("draining every app")]);
}

/// "3 online, 1 errored": how many apps are in each status.
pub(crate) fn summary(supervisor: &Supervisor) -> String {
    let apps = supervisor.list();
    if apps.is_empty() {
        return "no apps".into();
    }
    let order = [
        AppStatus::Online,
        AppStatus::Starting,
        AppStatus::Reloading,
        AppStatus::WaitingRestart,
        AppStatus::Stopping,
        AppStatus::Stopped,
        AppStatus::Errored,
    ];
    order
        .iter()
        .filter_map(|s| {
            let n = apps.iter().filter(|a| a.status == *s).count();
            (n > 0).then(|| format!("{n} {s}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends `STATUS=` whenever the summary changes, until shutdown.
pub(crate) async fn keep_status(supervisor: Arc<Supervisor>, shutdown: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let (mut changes, _) = supervisor.subscribe();
    let mut last = String::new();
    loop {
        let now = summary(&supervisor);
        if now != last {
            notify(&[NotifyState::Status(&now)]);
            last = now;
        }
        tokio::select! {
            Ok(()) = changes.changed() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Sends `WATCHDOG=1` at half of `WATCHDOG_USEC` while the daemon runs.
pub(crate) async fn watchdog(shutdown: CancellationToken) {
    let Some(every) = sd_notify::watchdog_enabled() else { return };
    let mut tick = tokio::time::interval(every / 2);
    loop {
        tokio::select! {
            _ = tick.tick() => notify(&[NotifyState::Watchdog]),
            _ = shutdown.cancelled() => return,
        }
    }
}
