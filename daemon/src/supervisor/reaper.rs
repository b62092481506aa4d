//! Reaping for a child subreaper: processes orphaned inside an app's group are re-parented
//! to the daemon, and their exits must be collected without touching the leaders that tokio
//! waits for (no `waitpid(-1)`). On each SIGCHLD every group not yet known to be empty is
//! asked for a waitable member (`waitid(P_PGID, ..., WNOWAIT)`), which costs O(groups +
//! zombies), never a walk of `/proc`; orphans that left their group are reaped by the
//! sampler's walk, once a second on a blocking thread. Each SIGCHLD then bumps
//! `Ctx::child_exits`, which a group's drain waits on instead of polling.

use super::Ctx;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Makes this process the reaper of its orphaned descendants.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Ctx {
    /// Reaps the zombie children of the daemon in its apps' groups, leaving alone the
    /// leaders tokio waits for.
    pub(crate) fn reap_orphans(&self) {
        let groups: Vec<u32> = self.groups.lock().expect("groups lock").iter().copied().collect();
        for pgid in groups {
            // Bounded: each pass reaps one process, and a group has finitely many zombies.
            for _ in 0..10_000 {
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
                let pid = match waitid(Id::PGid(Pid::from_raw(pgid as i32)), flags) {
                    Ok(status) => match status.pid() {
                        Some(pid) => pid,
                        None => break,
                    },
                    Err(_) => break,
                };
                // The lock is taken per check, so the spawner never waits long for it.
                if self.leaders.lock().expect("leaders lock").contains(&(pid.as_raw() as u32)) {
                    break;
                }
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            }
        }
    }
}

/// Reaps orphans whenever a child changes state, until shutdown.
pub(crate) async fn run(ctx: std::sync::Arc<Ctx>, shutdown: CancellationToken) {
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGCHLD; orphans are reaped only when groups end");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = sigchld.recv() => {
                ctx.reap_orphans();
                ctx.guard.replace_if_gone();
                ctx.child_exits.send_modify(|n| *n = n.wrapping_add(1));
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
