//! The thread the MCP fronts run on: a runtime of its own that does nothing else, so no work
//! of the daemon's main runtime (app tasks, the control socket, capture of a flooding app) can
//! delay a request through a front, and the other way round. Started with the first front;
//! a daemon without fronts has no such thread.

use std::sync::OnceLock;
use tokio::runtime::Handle;

/// The fronts' runtime, started on first use.
pub(crate) fn handle() -> std::io::Result<Handle> {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("mcpd-front".into())
        // Lives as long as the daemon: its tasks end with each front's stop token.
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}
