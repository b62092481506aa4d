//! What the control socket's handlers and the HTTP endpoint share.

use crate::supervisor::Supervisor;
use mcpd_core::paths::Paths;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// What request handlers share.
#[derive(Debug)]
pub(crate) struct Daemon {
    pub supervisor: Arc<Supervisor>,
    pub paths: Paths,
    pub shutdown: CancellationToken,
    pub started: Instant,
    /// Set once the saved and boot apps were started (ready or not).
    pub booted: std::sync::atomic::AtomicBool,
}
