//! The end of a generation: collecting its exit and ending the rest of its group. (When a
//! generation is asked to stop, and when it is SIGKILLed, is the state machine's to say.)

use super::group::{end_group, GroupEnd};
use super::Ctx;
use mcpd_core::model::ExitRecord;
use mcpd_core::signal::Signal;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// After a leader's exit: unregisters it, ends the rest of its group (`first` signal, then
/// SIGKILL at `deadline`), and describes the exit.
pub(crate) async fn finish(
    ctx: &Ctx,
    pid: u32,
    cgroup: Option<std::sync::Arc<super::cgroup::GenCgroup>>,
    status: std::io::Result<ExitStatus>,
    first: Option<Signal>,
    deadline: Instant,
    reason: &str,
) -> (ExitRecord, GroupEnd) {
    ctx.leaders.lock().expect("leaders lock").remove(&pid);
    let end = end_group(ctx, pid, cgroup.as_deref(), first, deadline).await;
    ctx.groups.lock().expect("groups lock").remove(&pid);
    ctx.cgroups.lock().expect("cgroups lock").remove(&pid);
    if let Some(c) = &cgroup {
        c.dirs().for_each(|d| ctx.guard.forget_cgroup(d));
    }
    ctx.guard.forget(pid);
    // The kernel's OOM killer ended it (memory_max): that, rather than "crash", is why.
    let sigkilled = status.as_ref().is_ok_and(|s| s.signal() == Some(libc::SIGKILL));
    let oom = sigkilled && cgroup.as_ref().is_some_and(|c| c.oom_killed());
    let reason = if oom && reason == mcpd_core::model::RestartReason::Crash.describe() { "oom-kill" } else { reason };
    let (code, signal) = match &status {
        Ok(s) => (s.code(), s.signal()),
        Err(_) => (None, None),
    };
    let record = ExitRecord {
        at_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map(ms).unwrap_or(0),
        pid,
        code,
        signal,
        reason: reason.to_string(),
        outcome: None,
    };
    (record, end)
}
