//! Where mcpd keeps its files: one home directory per daemon (`MCPD_HOME`, default `~/.mcpd`).

use std::path::{Path, PathBuf};

/// The environment variable that selects the daemon's home directory.
pub const HOME_ENV: &str = "MCPD_HOME";

/// Set for a daemon that a CLI verb started in the background (its log then goes only to the
/// file, not to stderr).
pub const BACKGROUND_ENV: &str = "MCPD_DAEMON_BACKGROUND";

/// `[daemon] http` for a daemon started without a config that sets it (`mcpd start FILE` passes
/// the file's setting this way when it starts the daemon; units and containers may set it).
pub const HTTP_ENV: &str = "MCPD_HTTP";

/// The files of one mcpd home, so daemon and clients never disagree on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    home: PathBuf,
}

impl Paths {
    /// The home named by `MCPD_HOME`, else `$HOME/.mcpd`.
    pub fn from_env() -> Result<Paths, std::io::Error> {
        if let Some(home) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
            return Ok(Paths::new(PathBuf::from(home)));
        }
        let user_home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "neither MCPD_HOME nor HOME is set: set MCPD_HOME to a directory for mcpd's files",
            )
        })?;
        Ok(Paths::new(PathBuf::from(user_home).join(".mcpd")))
    }

    /// A home at an explicit directory (tests, `--home`).
    pub fn new(home: impl Into<PathBuf>) -> Paths {
        Paths { home: home.into() }
    }

    /// The home directory itself.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The control socket clients connect to.
    pub fn socket(&self) -> PathBuf {
        self.home.join("mcpd.sock")
    }

    /// The lock file held by the one live daemon of this home.
    pub fn lock(&self) -> PathBuf {
        self.home.join("daemon.lock")
    }

    /// Where a daemon started in the background writes its own output.
    pub fn daemon_log(&self) -> PathBuf {
        self.home.join("daemon.log")
    }

    /// The directory of per-app log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.home.join("logs")
    }

    /// The directory where the daemon records the process groups it runs, so a daemon
    /// started after a crash can find and end groups the crashed one left behind.
    pub fn run_dir(&self) -> PathBuf {
        self.home.join("run")
    }

    /// Creates the home (mode 0700) and its subdirectories if missing, then checks that
    /// they are private (see [`Paths::check_private`]).
    pub fn create_dirs(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        for dir in [self.home.clone(), self.logs_dir(), self.run_dir()] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        }
        self.check_private()
    }

    /// The home, `logs/` and `run/` must be real directories (not symlinks), owned by the
    /// user running mcpd, and writable by nobody else: otherwise another local user could
    /// plant a symlink or a socket there that mcpd would use. The error says how to fix it.
    pub fn check_private(&self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid cannot fail and touches no memory.
        let me = unsafe { libc::geteuid() };
        for dir in [self.home.clone(), self.logs_dir(), self.run_dir()] {
            let meta = match std::fs::symlink_metadata(&dir) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let refuse = |why: String| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{}: {why}; mcpd keeps its socket, lock and logs there (nothing was started)",
                        dir.display()
                    ),
                ))
            };
            if !meta.file_type().is_dir() {
                return refuse(
                    "is not a directory (a symlink?): remove it, or set MCPD_HOME to a directory of your own".into(),
                );
            }
            if meta.uid() != me {
                return refuse(format!(
                    "belongs to uid {}, not to uid {me} that runs mcpd: `chown {me} {}`, or set MCPD_HOME to a directory of your own",
                    meta.uid(),
                    dir.display()
                ));
            }
            if meta.mode() & 0o022 != 0 {
                return refuse(format!(
                    "is writable by other users (mode {:o}): `chmod go-w {}`",
                    meta.mode() & 0o7777,
                    dir.display()
                ));
            }
        }
        Ok(())
    }
}
