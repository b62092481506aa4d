//! The daemon's own log: `tracing` into a daily file in `$MCPD_HOME/logs`
//! (`mcpd-daemon.YYYY-MM-DD.log`, UTC dates, the last [`KEEP_DAYS`] kept), to stderr when the daemon runs in the foreground (journald, docker),
//! and to `mcpd logs --daemon --follow`.

use super::hub;
use mcpd_core::model::{LogLine, LogStream};
use mcpd_core::paths::Paths;
use std::io::Write;
use std::sync::Arc;
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
    file: Arc<std::sync::Mutex<DailyFile>>,
    dir: std::path::PathBuf,
}

static DAEMON_LOG: std::sync::OnceLock<DaemonLog> = std::sync::OnceLock::new();

const PREFIX: &str = "mcpd-daemon.";
const SUFFIX: &str = ".log";

/// Today's file in `dir`, opened again when the UTC date changes. (A few lines rather than
/// `tracing-appender`, whose date formatting brought 130 KB of code into a daemon whose RSS
/// is mostly its own code: see the control benchmark.)
struct DailyFile {
    dir: std::path::PathBuf,
    day: i64,
    file: std::fs::File,
}

/// Days since 1970-01-01, UTC.
fn today() -> i64 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (the proleptic Gregorian calendar; Howard
/// Hinnant's `civil_from_days`).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

impl DailyFile {
    /// Opens (creates) today's file in `dir` and removes all but the newest [`KEEP_DAYS`].
    fn open(dir: &std::path::Path) -> std::io::Result<DailyFile> {
        let day = today();
        let file = Self::open_day(dir, day)?;
        prune(dir);
        Ok(DailyFile { dir: dir.to_path_buf(), day, file })
    }

    fn open_day(dir: &std::path::Path, day: i64) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(format!("{PREFIX}{}{SUFFIX}", date(day))))
    }
}

impl Write for DailyFile {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let day = today();
        if day != self.day {
            // Keep writing to yesterday's file if today's cannot be opened.
            if let Ok(file) = Self::open_day(&self.dir, day) {
                self.file = file;
                self.day = day;
                prune(&self.dir);
            }
        }
        self.file.write(data)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Removes the daemon's daily files older than the newest [`KEEP_DAYS`] (their names sort
/// by date).
fn prune(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut days: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.strip_prefix(PREFIX).and_then(|r| r.strip_suffix(SUFFIX)).is_some_and(is_date))
        .collect();
    days.sort();
    let excess = days.len().saturating_sub(KEEP_DAYS);
    for name in &days[..excess] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// `YYYY-MM-DD`: what [`date`] writes.
fn is_date(s: &str) -> bool {
    s.len() == 10 && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() })
}

/// Installs the daemon's subscriber; `foreground` also writes to stderr. `MCPD_LOG` filters.
pub fn init_daemon_log(paths: &Paths, foreground: bool) -> std::io::Result<()> {
    paths.create_dirs()?;
    let file = Arc::new(std::sync::Mutex::new(DailyFile::open(&paths.logs_dir())?));
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
    let fresh = DailyFile::open(&log.dir)?;
    *log.file.lock().map_err(|_| std::io::Error::other("the daemon log's lock is poisoned"))? = fresh;
    Ok(())
}

#[derive(Clone)]
struct Tee {
    file: Arc<std::sync::Mutex<DailyFile>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_days() {
        for (days, want) in [
            (0, "1970-01-01"),
            (59, "1970-03-01"),
            (10_956, "1999-12-31"),
            (10_957, "2000-01-01"),
            (11_016, "2000-02-29"),
            (11_017, "2000-03-01"),
            (19_782, "2024-02-29"),
            (20_787, "2026-11-30"),
            (-1, "1969-12-31"),
        ] {
            assert_eq!(date(days), want, "day {days}");
            assert!(is_date(&date(days)));
        }
        assert!(!is_date("2026-11-3x") && !is_date("2026-11-300") && !is_date("2026_11_30"));
    }

    #[test]
    fn keeps_the_newest_days_only() {
        let dir = tempfile::tempdir().unwrap();
        for day in 0..10 {
            std::fs::write(dir.path().join(format!("{PREFIX}{}{SUFFIX}", date(20_000 + day))), "x").unwrap();
        }
        std::fs::write(dir.path().join("mcpd-daemon.notes.log"), "kept").unwrap();
        std::fs::write(dir.path().join("web.out.log"), "kept").unwrap();
        prune(dir.path());
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut want: Vec<String> = (3..10).map(|d| format!("{PREFIX}{}{SUFFIX}", date(20_000 + d))).collect();
        want.push("mcpd-daemon.notes.log".into());
        want.push("web.out.log".into());
        want.sort();
        assert_eq!(left, want);
    }
}
