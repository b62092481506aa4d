//! What each signal to the daemon means (the README's "Signals" table):
//!
//! - TERM, INT, QUIT: drain every app (each with its own kill signal and drain time), then exit.
//! - HUP: reopen the log files, the daemon's own and every app's (after logrotate renamed them).
//! - USR1, USR2: ignored, with a log line.
//! - PIPE: ignored (set by the Rust runtime before `main`; a write to a closed pipe fails).
//!
//! The handlers are installed before the daemon serves anything, so no signal that arrives
//! early gets its default action (which would end the daemon and, through the guard, every
//! app). Handled signals are reset to their defaults in the apps by `execve`; nothing here
//! sets a signal to "ignore", which the apps would inherit.

use crate::context::Daemon;
use std::sync::Arc;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The installed handlers, waiting for [`Signals::serve`].
#[derive(Debug)]
pub(crate) struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    Drain(&'static str),
    Reopen,
    Ignore(&'static str),
}

/// The signals that have a meaning: blocked across the exec of an update in place (see
/// [`block_across_exec`]), so one sent meanwhile waits for the new daemon's handlers instead of
/// taking its default action (ending the daemon, and through the guard every app).
const MEANINGFUL: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

fn mask(how: libc::c_int) {
    // SAFETY: sigset operations on a set on our stack; pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in MEANINGFUL {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Blocks the meaningful signals on this thread before the exec of an update in place (the
/// mask survives `execve`); if the exec fails, [`unblock`] undoes it.
pub(crate) fn block_across_exec() {
    mask(libc::SIG_BLOCK);
}

/// Unblocks them: after the handlers are installed (a signal that came meanwhile is handled
/// now), or after a failed exec.
pub(crate) fn unblock() {
    mask(libc::SIG_UNBLOCK);
}

impl Signals {
    /// Installs every handler; called on the runtime before the daemon serves.
    pub fn install() -> std::io::Result<Signals> {
        let signals = Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        };
        // Blocked by the daemon that executed this one (an update in place): handled from now.
        unblock();
        Ok(signals)
    }

    async fn next(&mut self) -> Meaning {
        tokio::select! {
            _ = self.term.recv() => Meaning::Drain("SIGTERM"),
            _ = self.int.recv() => Meaning::Drain("SIGINT"),
            _ = self.quit.recv() => Meaning::Drain("SIGQUIT"),
            _ = self.hup.recv() => Meaning::Reopen,
            _ = self.usr1.recv() => Meaning::Ignore("SIGUSR1"),
            _ = self.usr2.recv() => Meaning::Ignore("SIGUSR2"),
        }
    }

    /// Acts on each signal as it comes, for as long as the daemon runs.
    pub async fn serve(mut self, daemon: Arc<Daemon>) {
        loop {
            match self.next().await {
                Meaning::Drain(name) if daemon.shutdown.is_cancelled() => {
                    tracing::info!("{name}: already draining every app");
                }
                Meaning::Drain(name) => {
                    // An update in place under way is told first: it gives up before its exec
                    // and takes its apps back, so the drain finds them all.
                    daemon.update.stop_requested.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _no_update = daemon.update.running.lock().await;
                    tracing::info!("{name}: draining every app, then exiting");
                    crate::systemd::stopping();
                    daemon.shutdown.cancel();
                }
                Meaning::Reopen => {
                    let failed = daemon.supervisor.reopen_logs().await;
                    match failed {
                        None => tracing::info!("SIGHUP: reopened the daemon's and every app's log files"),
                        Some(e) => tracing::error!(
                            "SIGHUP: reopened every app's log files, but not the daemon's: {e}; \
                             it keeps writing to the file it had open"
                        ),
                    }
                }
                Meaning::Ignore(name) => {
                    tracing::info!("{name}: ignored (mcpd gives it no meaning; see \"Signals\" in the README)");
                }
            }
        }
    }
}
