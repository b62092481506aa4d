//! One daemon per home: an exclusive `flock` on `daemon.lock`, held for the daemon's life.
//!
//! The kernel drops the lock when the holder dies, so a socket file left by a killed daemon
//! is recognisably stale (nobody holds the lock) and is replaced; a live daemon's socket is
//! never touched. `mcpd daemon` takes the lock itself and hands it to the `mcpd-daemon` it
//! execs (the fd survives exec, its number in [`LOCK_FD_ENV`]), so a CLI verb run in the
//! first milliseconds sees the home taken and waits instead of starting a rival.

use crate::paths::Paths;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

/// The fd of a lock handed over across exec.
pub const LOCK_FD_ENV: &str = "MCPD_LOCK_FD";

/// How long taking the lock keeps trying: a CLI only peeks at it (for microseconds), while a
/// daemon holds it for its whole life.
const TRY_FOR: Duration = Duration::from_millis(100);

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
pub struct HomeLock {
    file: File,
}

fn flock_nb(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on an fd this function borrows.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn open(paths: &Paths) -> Result<File, LockError> {
    let path = paths.lock();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|source| LockError::Io { path, source })
}

impl HomeLock {
    /// Takes the home's lock (trying for a moment) and records this pid in it.
    pub fn acquire(paths: &Paths) -> Result<HomeLock, LockError> {
        let path = paths.lock();
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file = open(paths)?;
        let deadline = std::time::Instant::now() + TRY_FOR;
        while !flock_nb(&file).map_err(io)? {
            if std::time::Instant::now() >= deadline {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(LockError::Held { pid: pid.trim().to_string(), home: paths.home().display().to_string() });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(HomeLock { file })
    }

    /// Whether a daemon holds the home's lock now (a daemon that is starting included).
    pub fn is_held(paths: &Paths) -> bool {
        match open(paths) {
            Ok(file) => !flock_nb(&file).unwrap_or(true),
            Err(_) => false,
        }
    }

    /// Lets the lock survive an exec: returns the fd to name in [`LOCK_FD_ENV`].
    pub fn keep_across_exec(&self) -> std::io::Result<RawFd> {
        let fd = self.file.as_raw_fd();
        // SAFETY: fcntl on an fd we own.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }

    /// The lock the process that exec'd this one handed over, if [`LOCK_FD_ENV`] names one:
    /// it must be this home's lock file (same inode, not a symlink) and held by that fd. Must
    /// be called while the process is single-threaded (it removes the variable, so apps do
    /// not inherit it).
    pub fn inherited(paths: &Paths) -> Result<Option<HomeLock>, LockError> {
        let Some(value) = std::env::var_os(LOCK_FD_ENV) else { return Ok(None) };
        // The caller guarantees no other thread reads the environment.
        std::env::remove_var(LOCK_FD_ENV);
        let path = paths.lock();
        let bad = |why: &str| LockError::Io {
            path: path.clone(),
            source: std::io::Error::other(format!("{LOCK_FD_ENV}={}: {why}", value.to_string_lossy())),
        };
        let fd: RawFd =
            value.to_str().and_then(|v| v.parse().ok()).filter(|fd| *fd > 2).ok_or_else(|| bad("not an fd"))?;
        // SAFETY: fcntl(F_GETFD) only asks whether the fd is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(bad("not open"));
        }
        // SAFETY: the fd is open and was handed to this process to own.
        let file = unsafe { File::from_raw_fd(fd) };
        // SAFETY: fcntl on the fd we now own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let ours = file.metadata().map_err(|source| LockError::Io { path: path.clone(), source })?;
        let on_disk =
            std::fs::symlink_metadata(&path).map_err(|source| LockError::Io { path: path.clone(), source })?;
        if !on_disk.file_type().is_file() || (ours.dev(), ours.ino()) != (on_disk.dev(), on_disk.ino()) {
            return Err(bad("not this home's lock file"));
        }
        // Taking it again through the same open file succeeds only if that file holds it.
        if !flock_nb(&file).map_err(|source| LockError::Io { path: path.clone(), source })? {
            return Err(bad("the lock is not held by it"));
        }
        Ok(Some(HomeLock { file }))
    }

    /// The fd (a forked helper closes it, so it does not keep the home locked).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
