//! Process groups: signalling a whole group, and ending what is left of one.

use super::Ctx;
use mcpd_core::signal::Signal;
use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// How long to wait for a SIGKILLed group to disappear before saying so in the log.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often to look whether a group is gone when no child of the daemon exits meanwhile
/// (members that are not its children end without a SIGCHLD to it); bounded by a deadline.
const GROUP_POLL: Duration = Duration::from_millis(100);

/// Sends `signal` to a group; a group already gone is not an error.
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    let sig = nix::sys::signal::Signal::try_from(signal.number()).expect("known signal");
    if let Err(e) = killpg(Pid::from_raw(pgid as i32), sig) {
        if e != Errno::ESRCH {
            tracing::warn!(pgid, %signal, error = %e, "cannot signal process group");
        }
    }
}

/// Whether any process (a zombie included) is left in the group.
pub(crate) fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None) != Err(Errno::ESRCH)
}

/// How the rest of a group ended after its leader exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupEnd {
    /// Nothing was left.
    Empty,
    /// The rest exited before the deadline.
    Drained,
    /// The rest was SIGKILLed at the deadline.
    Killed,
}

/// Ends what is left of a group whose leader exited: sends `first` (if any), waits until
/// `deadline`, then SIGKILLs the group and waits until every member is reaped.
pub(crate) async fn end_group(ctx: &Ctx, pgid: u32, first: Option<Signal>, deadline: Instant) -> GroupEnd {
    ctx.reap_orphans();
    if !group_alive(pgid) {
        return GroupEnd::Empty;
    }
    if let Some(signal) = first {
        signal_group(pgid, signal);
    }
    if wait_group_gone(ctx, pgid, deadline).await {
        return GroupEnd::Drained;
    }
    signal_group(pgid, Signal::KILL);
    if !wait_group_gone(ctx, pgid, Instant::now() + KILL_GRACE).await {
        tracing::error!(pgid, "process group still has members {KILL_GRACE:?} after SIGKILL");
    }
    GroupEnd::Killed
}

/// Waits until no process is left in the group (reaping those that are the daemon's
/// children), woken by each SIGCHLD the daemon gets.
async fn wait_group_gone(ctx: &Ctx, pgid: u32, deadline: Instant) -> bool {
    let mut exits = ctx.child_exits.subscribe();
    loop {
        exits.borrow_and_update();
        ctx.reap_orphans();
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let step = deadline.saturating_duration_since(Instant::now()).min(GROUP_POLL);
        tokio::select! {
            _ = exits.changed() => {}
            _ = tokio::time::sleep(step) => {}
        }
    }
}
