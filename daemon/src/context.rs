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
    /// What `mcpd update` needs.
    pub update: UpdateCtx,
}

/// What an update in place hands over besides the apps, and its gates.
#[derive(Debug)]
pub(crate) struct UpdateCtx {
    /// The binary to execute (this daemon's path when it started) and its arguments.
    pub exe: std::path::PathBuf,
    pub args: Vec<String>,
    /// The listening control socket, `[daemon] http`, and the home's lock.
    pub control_fd: std::os::fd::RawFd,
    pub http_fd: Option<std::os::fd::RawFd>,
    pub http_addr: Option<mcpd_core::config::ListenAddr>,
    pub lock_fd: std::os::fd::RawFd,
    /// Set while the daemon is frozen: the control socket accepts nothing.
    pub paused: tokio::sync::watch::Sender<bool>,
    /// One update at a time; a drain (SIGTERM, `mcpd kill`) waits for it to end.
    pub running: tokio::sync::Mutex<()>,
    /// A drain was asked for during an update: it gives up before its exec.
    pub stop_requested: std::sync::atomic::AtomicBool,
}
