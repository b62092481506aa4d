//! Log capture: the daemon reads each generation's stdout and stderr through pipes, stamps
//! each line, and appends it to the app's files, rotating them by size and time without
//! losing or splitting a line. Followers (`mcpd logs --follow`) get the same lines live.

pub(crate) mod capture;
mod daemon_log;
mod rotate;
mod sink;
mod tail;
mod writer;

pub use daemon_log::init_daemon_log;
pub(crate) use daemon_log::reopen_daemon_log;
pub(crate) use sink::AppLogs;
pub(crate) use tail::{daemon_tail, tail};

use mcpd_core::model::LogLine;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// How many lines a follower may fall behind before it is told it skipped some (at most
/// 64 MiB held for a stopped follower, lines being at most 64 KiB).
const HUB_CAPACITY: usize = 1024;

/// Every captured line (and the daemon's own log lines) for followers.
pub(crate) fn hub() -> &'static broadcast::Sender<Arc<LogLine>> {
    static HUB: OnceLock<broadcast::Sender<Arc<LogLine>>> = OnceLock::new();
    HUB.get_or_init(|| broadcast::channel(HUB_CAPACITY).0)
}
