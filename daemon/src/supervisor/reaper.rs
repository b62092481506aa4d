//! Reaping for a child subreaper: processes orphaned inside an app's group are re-parented
//! to the daemon, and their exits must be collected without touching the leaders that tokio
//! waits for (no `waitpid(-1)`).

use super::Ctx;
use nix::sys::wait::{waitpid, WaitPidFlag};
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
    /// Reaps every zombie child of the daemon that is not a leader tokio waits for.
    pub(crate) fn reap_orphans(&self) {
        let leaders = self.leaders.lock().expect("leaders lock");
        let me = std::process::id() as i32;
        let Ok(all) = procfs::process::all_processes() else {
            return;
        };
        for process in all.flatten() {
            let Ok(stat) = process.stat() else { continue };
            if stat.ppid != me || stat.state != 'Z' || leaders.contains(&(stat.pid as u32)) {
                continue;
            }
            let _ = waitpid(Pid::from_raw(stat.pid), Some(WaitPidFlag::WNOHANG));
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
            _ = sigchld.recv() => ctx.reap_orphans(),
            _ = shutdown.cancelled() => return,
        }
    }
}
