//! The daemon's hold on its home: the lock (taken here, or handed over by `mcpd daemon` across
//! exec; see [`mcpd_core::lock`]), and the stale socket of a daemon that is gone.

use mcpd_core::lock::HomeLock;
pub use mcpd_core::lock::LockError;
use mcpd_core::paths::Paths;

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub(crate) struct DaemonLock {
    _lock: HomeLock,
}

impl DaemonLock {
    /// The lock the previous daemon held (an update in place): its socket is live, not stale.
    pub fn adopt(lock: HomeLock) -> DaemonLock {
        DaemonLock { _lock: lock }
    }

    /// The lock's fd (handed over by an update in place).
    pub fn fd(&self) -> std::os::fd::RawFd {
        self._lock.fd()
    }

    /// Takes the home's lock (or adopts `inherited`), and removes a stale socket file.
    pub fn acquire(paths: &Paths, inherited: Option<HomeLock>) -> Result<DaemonLock, LockError> {
        let lock = match inherited {
            Some(lock) => lock,
            None => HomeLock::acquire(paths)?,
        };
        let socket = paths.socket();
        if socket.exists() {
            tracing::info!(socket = %socket.display(), "removing the stale socket of a daemon that is gone");
            std::fs::remove_file(&socket).map_err(|source| LockError::Io { path: socket.clone(), source })?;
        }
        Ok(DaemonLock { _lock: lock })
    }
}
