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

/// Installs the daemon's subscriber; `foreground` also writes to stderr. `MCPD_LOG` filters.
pub fn init_daemon_log(paths: &Paths, foreground: bool) -> std::io::Result<()> {
    paths.create_dirs()?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("mcpd-daemon")
        .filename_suffix("log")
        .max_log_files(KEEP_DAYS)
        .build(paths.logs_dir())
        .map_err(std::io::Error::other)?;
    let writer = Tee { file: Arc::new(std::sync::Mutex::new(appender)), stderr: foreground };
    tracing_subscriber::fmt().with_max_level(level()).with_ansi(false).with_writer(writer).init();
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
