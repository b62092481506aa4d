//! The end of a generation: collecting its exit, ending the rest of its group, and draining
//! an old generation after a reload.

use super::group::{end_group, GroupEnd};
use super::process::Generation;
use super::Ctx;
use mcpd_core::config::AppConfig;
use mcpd_core::model::ExitRecord;
use mcpd_core::signal::Signal;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a draining generation's sessions are looked at (bounded by the drain deadline).
const SESSION_POLL: Duration = Duration::from_millis(100);

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// After a leader's exit: unregisters it, ends the rest of its group (`first` signal, then
/// SIGKILL at `deadline`), and describes the exit.
pub(crate) async fn finish(
    ctx: &Ctx,
    pid: u32,
    status: std::io::Result<ExitStatus>,
    first: Option<Signal>,
    deadline: Instant,
    reason: &str,
) -> (ExitRecord, GroupEnd) {
    ctx.leaders.lock().expect("leaders lock").remove(&pid);
    let end = end_group(ctx, pid, first, deadline).await;
    ctx.guard.forget(pid);
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

/// How an old generation's drain ended.
#[derive(Debug)]
pub(crate) struct Drained {
    /// Its exit.
    pub record: ExitRecord,
    /// From the stop request to the whole group gone.
    pub took: Duration,
    /// Whether it had to be SIGKILLed.
    pub killed: bool,
}

/// Asks `old` to stop, waits up to `kill_timeout` for its leader, then SIGKILLs whatever of
/// its group is left.
pub(crate) async fn drain(
    mut old: Generation,
    config: Arc<AppConfig>,
    ctx: Arc<Ctx>,
    reason: String,
    front: Option<Arc<crate::front::Front>>,
) -> Drained {
    // Behind a front, the old generation first keeps serving its sessions until each is idle
    // (or deleted), or the drain deadline comes; only then is it asked to stop.
    if let (Some(front), Some(fc)) = (&front, &config.front) {
        let deadline = Instant::now() + fc.drain_deadline;
        while front.busy(old.pid, fc.session_idle_timeout) && Instant::now() < deadline {
            tokio::time::sleep(SESSION_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
    let started = Instant::now();
    let deadline = started + config.kill_timeout;
    old.request_stop(&config);
    let mut killed = false;
    let status = match tokio::time::timeout_at(deadline.into(), old.wait()).await {
        Ok(status) => status,
        Err(_) => {
            killed = true;
            old.signal(Signal::KILL);
            old.wait().await
        }
    };
    let (mut record, end) = finish(&ctx, old.pid, status, None, deadline, &reason).await;
    if let Some(front) = &front {
        front.remove(old.pid);
    }
    record.outcome = Some("replaced by a ready new generation".into());
    Drained { record, took: started.elapsed(), killed: killed || end == GroupEnd::Killed }
}
