//! The daemon's own log: `tracing` into a daily-rotated file in `$MCPD_HOME/logs`
//! (`tracing-appender`), to stderr when the daemon runs in the foreground (journald, docker),
//! and to `mcpd logs --daemon --follow`.

use super::hub;
use mcpd_core::model::{LogLine, LogStream};
use mcpd_core::paths::Paths;
use std::io::Write;
use std::sync::Arc;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::MakeWriter;

/// Daily files kept.
const KEEP_DAYS: usize = 7;

/// `MCPD_LOG` = error, warn, info (the default), debug or trace. A plain level keeps the
/// regex engine of a directive filter out of the daemon.
fn level() -> tracing::Level {
    std::env::var("MCPD_LOG").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(tracing::Level::INFO)
}

/// The file the daemon logs to, and its directory: what a reopen (SIGHUP) needs.
struct DaemonLog {
    file: Arc<std::sync::Mutex<RollingFileAppender>>,
    dir: std::path::PathBuf,
}

static DAEMON_LOG: std::sync::OnceLock<DaemonLog> = std::sync::OnceLock::new();

/// Opens (creates) today's file in `dir`, pruning files older than [`KEEP_DAYS`].
fn appender(dir: &std::path::Path) -> std::io::Result<RollingFileAppender> {
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("mcpd-daemon")
        .filename_suffix("log")
        .max_log_files(KEEP_DAYS)
        .build(dir)
        .map_err(std::io::Error::other)
}

/// Installs the daemon's subscriber; `foreground` also writes to stderr. `MCPD_LOG` filters.
pub fn init_daemon_log(paths: &Paths, foreground: bool) -> std::io::Result<()> {
    paths.create_dirs()?;
    let file = Arc::new(std::sync::Mutex::new(appender(&paths.logs_dir())?));
    let _ = DAEMON_LOG.set(DaemonLog { file: file.clone(), dir: paths.logs_dir() });
    let writer = Tee { file, stderr: foreground };
    tracing_subscriber::fmt().with_max_level(level()).with_ansi(false).with_writer(writer).init();
    Ok(())
}

/// Opens the daemon's log file again at its path (SIGHUP, after logrotate renamed it): the
/// next line goes to the new file. File I/O: call it on a blocking thread. Without a daemon
/// log (in-process tests), nothing to do.
pub(crate) fn reopen_daemon_log() -> std::io::Result<()> {
    let Some(log) = DAEMON_LOG.get() else { return Ok(()) };
    let fresh = appender(&log.dir)?;
    *log.file.lock().map_err(|_| std::io::Error::other("the daemon log's lock is poisoned"))? = fresh;
    Ok(())
}

#[derive(Clone)]
struct Tee {
    file: Arc<std::sync::Mutex<RollingFileAppender>>,
    stderr: bool,
}

/// Collects one event, then writes it everywhere on drop.
struct Event {
    tee: Tee,
    buf: Vec<u8>,
}

impl<'a> MakeWriter<'a> for Tee {
    type Writer = Event;
    fn make_writer(&'a self) -> Event {
        Event { tee: self.clone(), buf: Vec::with_capacity(256) }
    }
}

impl Write for Event {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let _ = self.tee.file.lock().map(|mut f| f.write_all(&self.buf));
        if self.tee.stderr {
            let _ = std::io::stderr().write_all(&self.buf);
        }
        if hub().receiver_count() > 0 {
            let text = String::from_utf8_lossy(&self.buf);
            let time_ms =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64);
            let message = text.trim_end().to_string();
            let _ = hub().send(Arc::new(LogLine { app: "mcpd".into(), stream: LogStream::Err, time_ms, message }));
        }
    }
}
