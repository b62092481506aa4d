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
pub(crate) async fn drain(mut old: Generation, config: Arc<AppConfig>, ctx: Arc<Ctx>, reason: String) -> Drained {
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
    record.outcome = Some("replaced by a ready new generation".into());
    Drained { record, took: started.elapsed(), killed: killed || end == GroupEnd::Killed }
}
