//! One daemon per home: an exclusive `flock` on `daemon.lock`, held for the daemon's life.
//!
//! The kernel drops the lock when the holder dies, so a socket file left by a killed daemon
//! is recognisably stale (nobody holds the lock) and is replaced; a live daemon's socket is
//! never touched.

use mcpd_core::paths::Paths;
use nix::fcntl::{Flock, FlockArg};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon holds it.
    #[error("another mcpd daemon (pid {pid}) is already running for {home}; stop it with `mcpd kill` or set MCPD_HOME to use another home")]
    Held {
        /// The holder's pid, as it wrote it.
        pid: String,
        /// The home.
        home: String,
    },
    /// The lock file could not be used.
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub(crate) struct DaemonLock {
    _file: Flock<std::fs::File>,
}

impl DaemonLock {
    /// Takes the home's lock, removes a stale socket file, and records this pid.
    pub fn acquire(paths: &Paths) -> Result<DaemonLock, LockError> {
        let path = paths.lock();
        let io = |source| LockError::Io { path: path.clone(), source };
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(LockError::Held { pid: pid.trim().to_string(), home: paths.home().display().to_string() });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        let socket = paths.socket();
        if socket.exists() {
            tracing::info!(socket = %socket.display(), "removing the stale socket of a daemon that is gone");
            std::fs::remove_file(&socket).map_err(|source| LockError::Io { path: socket.clone(), source })?;
        }
        Ok(DaemonLock { _file: file })
    }
}
