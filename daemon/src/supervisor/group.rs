//! Process groups: signalling a whole group, and ending what is left of one (and of its
//! cgroup, where the daemon tracks by cgroup).

use super::cgroup::GenCgroup;
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

/// Whether anything of the generation is left: its group, and its cgroup if it has one.
fn alive(pgid: u32, cgroup: Option<&GenCgroup>) -> bool {
    group_alive(pgid) || cgroup.is_some_and(GenCgroup::populated)
}

/// Ends what is left of a generation whose leader exited: sends `first` (if any) to its group
/// and cgroup, waits until `deadline`, then SIGKILLs both and waits until every member is gone.
pub(crate) async fn end_group(
    ctx: &Ctx,
    pgid: u32,
    cgroup: Option<&GenCgroup>,
    first: Option<Signal>,
    deadline: Instant,
) -> GroupEnd {
    ctx.reap_orphans();
    if !alive(pgid, cgroup) {
        return GroupEnd::Empty;
    }
    let signal = |s: Signal| {
        signal_group(pgid, s);
        if let Some(c) = cgroup {
            c.signal(s, pgid);
        }
    };
    if let Some(s) = first {
        signal(s);
    }
    if wait_gone(ctx, pgid, cgroup, deadline).await {
        return GroupEnd::Drained;
    }
    signal(Signal::KILL);
    if !wait_gone(ctx, pgid, cgroup, Instant::now() + KILL_GRACE).await {
        tracing::error!(pgid, "the generation still has processes {KILL_GRACE:?} after SIGKILL");
    }
    GroupEnd::Killed
}

/// Waits until no process is left in the group and cgroup (reaping those that are the
/// daemon's children), woken by each SIGCHLD the daemon gets and each change of the cgroup's
/// `cgroup.events` (its processes need not be the daemon's children).
async fn wait_gone(ctx: &Ctx, pgid: u32, cgroup: Option<&GenCgroup>, deadline: Instant) -> bool {
    let mut exits = ctx.child_exits.subscribe();
    // Made before each look, so a change between the look and the wait wakes the wait.
    let mut watch = cgroup.and_then(GenCgroup::watch);
    loop {
        exits.borrow_and_update();
        ctx.reap_orphans();
        if !alive(pgid, cgroup) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let step = deadline.saturating_duration_since(Instant::now()).min(GROUP_POLL);
        let events = async {
            match &mut watch {
                Some(w) => w.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = exits.changed() => {}
            _ = events => {}
            _ = tokio::time::sleep(step) => {}
        }
        if watch.is_none() {
            watch = cgroup.and_then(GenCgroup::watch);
        }
    }
}
