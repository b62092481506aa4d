//! One log file being written: opened lazily, rotated between batches of whole lines, and
//! kept working when the disk says no (the error is shown, writing resumes when it can).
//!
//! A sink is written only on blocking threads (`spawn_blocking` from the capture, which waits
//! for each batch before it reads the pipe again): a slow or stuck file stalls its own app
//! and nothing else. What readers need to know (`log_error`) is kept in a [`SinkStatus`]
//! beside it, so they never wait for a write.

use super::rotate;
use mcpd_core::config::{LogConfig, LogFormat};
use mcpd_core::paths::Paths;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A write in progress this long is shown as the app's log error.
const STUCK_AFTER: Duration = Duration::from_secs(1);

/// How long to wait before trying an unwritable file (or a failed rotation) again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often the live path is compared with the open file (deleted or replaced by hand).
const CHECK_PATH_EVERY: Duration = Duration::from_secs(1);

/// A log file and its rotation state.
#[derive(Debug)]
pub(crate) struct Sink {
    pub path: PathBuf,
    file: Option<File>,
    size: u64,
    opened: Instant,
    config: LogConfig,
    /// Why the file cannot be written, while it cannot.
    pub error: Option<String>,
    /// Lines that could not be written since the error began.
    pub lost: u64,
    retry_at: Option<Instant>,
    /// The open file's device and inode, and when the path was last compared with them.
    identity: Option<(u64, u64)>,
    checked_at: Instant,
    /// A rotation failed: why (shown until one succeeds), and not tried again before when.
    rotate_error: Option<String>,
    rotate_retry_at: Option<Instant>,
    /// What readers see of `error` and `lost`.
    pub status: Arc<SinkStatus>,
}

/// Why a sink cannot be written, readable without waiting for a write in progress; and,
/// while it drops lines, until when and how many the capture dropped without formatting.
#[derive(Debug, Default)]
pub(crate) struct SinkStatus {
    text: Mutex<Option<String>>,
    /// Milliseconds since [`epoch`] until which lines are dropped (0: not dropping).
    dropping_until: AtomicU64,
    /// Lines the capture dropped, not yet counted in the sink's `lost`.
    dropped: AtomicU64,
    /// Set by SIGHUP: the file is closed and opened again at its path before the next write
    /// (after logrotate renamed it aside), or at once by [`Sink::honour_reopen`].
    reopen: AtomicBool,
    /// Milliseconds since [`epoch`] (plus one) when the write in progress began; 0 when none
    /// is: a write that does not end tells of a stuck file (a full FIFO, a hung disk).
    writing_since: AtomicU64,
}

/// A fixed instant the statuses' deadlines count from.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX)
}

impl SinkStatus {
    /// Whether lines are being dropped now (unwritable, next try not due): the capture then
    /// only counts them ([`SinkStatus::drop_lines`]), formatting nothing nobody will read.
    pub fn dropping(&self) -> bool {
        since_epoch(Instant::now()) < self.dropping_until.load(Ordering::Relaxed)
    }

    /// Counts lines dropped while [`SinkStatus::dropping`].
    pub fn drop_lines(&self, lines: u64) {
        self.dropped.fetch_add(lines, Ordering::Relaxed);
    }

    /// "cannot write FILE: ERROR (N lines lost so far)", while it cannot.
    pub fn get(&self) -> Option<String> {
        self.text.lock().expect("sink status lock").clone()
    }

    /// Asks the sink to reopen its file at its path (SIGHUP), without waiting for a write in
    /// progress; an unwritable file is tried again at once.
    pub fn request_reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        self.dropping_until.store(0, Ordering::Relaxed);
    }

    /// How long the write in progress has been going on (zero when none is).
    pub fn writing_for(&self) -> Duration {
        let began = self.writing_since.load(Ordering::Relaxed);
        if began == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis((since_epoch(Instant::now()) + 1).saturating_sub(began))
    }

    /// Whether a write has been in progress for `longer` or more.
    pub fn stuck(&self, longer: Duration) -> bool {
        let began = self.writing_since.load(Ordering::Relaxed);
        began != 0 && since_epoch(Instant::now()) + 1 >= began + u64::try_from(longer.as_millis()).unwrap_or(u64::MAX)
    }

    fn set(&self, value: Option<String>) {
        *self.text.lock().expect("sink status lock") = value;
    }
}

impl Sink {
    fn new(path: PathBuf, config: &LogConfig) -> Sink {
        Sink {
            path,
            file: None,
            size: 0,
            opened: Instant::now(),
            config: config.clone(),
            error: None,
            lost: 0,
            retry_at: None,
            identity: None,
            checked_at: Instant::now(),
            rotate_error: None,
            rotate_retry_at: None,
            status: Arc::default(),
        }
    }

    fn publish(&mut self) {
        self.lost += self.status.dropped.swap(0, Ordering::Relaxed);
        let text = match &self.error {
            Some(e) => Some(format!("{e} ({} lines lost so far)", self.lost)),
            None => self.rotate_error.clone(),
        };
        self.status.set(text);
        let until = match (&self.error, self.retry_at) {
            (Some(_), Some(at)) => since_epoch(at),
            _ => 0,
        };
        self.status.dropping_until.store(until, Ordering::Relaxed);
    }

    fn open(&mut self) -> std::io::Result<()> {
        // A missing directory is an error shown as log_error, never created here.
        // Non-blocking open: a FIFO without a reader fails at once (ENXIO) instead of hanging
        // the writer; writes then block again, so a slow reader slows only this app.
        // Never through a symlink: a link planted where a log file goes would make mcpd
        // (maybe root) append app output to another file.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&self.path)?;
        // SAFETY: fcntl on the fd of the file just opened.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
        let meta = file.metadata()?;
        self.size = meta.len();
        self.identity = Some((meta.dev(), meta.ino()));
        self.checked_at = Instant::now();
        self.opened = Instant::now();
        self.file = Some(file);
        Ok(())
    }

    fn fail(&mut self, what: &str, e: std::io::Error, lines: u64) {
        if self.error.is_none() {
            tracing::error!(file = %self.path.display(), error = %e, "cannot {what} a log file; the app keeps running, lines are counted as lost until it works again");
        }
        self.error = Some(format!("cannot {what} {}: {e}", self.path.display()));
        self.file = None;
        self.lost += lines;
        self.retry_at = Some(Instant::now() + RETRY_AFTER);
        self.publish();
    }

    /// Reopens the file now if a reopen was asked for (SIGHUP): a file that was open is
    /// opened again at its path at once, so it exists again for logrotate; one never opened
    /// waits for the first line as before.
    pub fn honour_reopen(&mut self) {
        if self.status.reopen.swap(false, Ordering::AcqRel) {
            self.reopen(true);
        }
    }

    fn reopen(&mut self, now: bool) {
        let was_open = self.file.take().is_some();
        self.retry_at = None;
        if now && was_open {
            if let Err(e) = self.open() {
                self.fail("open", e, 0);
            }
        }
    }

    /// Appends a batch of whole lines, rotating first if it is due.
    pub fn write(&mut self, batch: &[u8], lines: u64) {
        if batch.is_empty() {
            return;
        }
        self.status.writing_since.store(since_epoch(Instant::now()) + 1, Ordering::Relaxed);
        self.write_batch(batch, lines);
        self.status.writing_since.store(0, Ordering::Relaxed);
    }

    fn write_batch(&mut self, batch: &[u8], lines: u64) {
        if self.status.reopen.swap(false, Ordering::AcqRel) {
            self.reopen(false);
        }
        if self.file.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                self.lost += lines;
                self.publish();
                return;
            }
            if let Err(e) = self.open() {
                return self.fail("open", e, lines);
            }
        }
        if self.checked_at.elapsed() >= CHECK_PATH_EVERY {
            self.reopen_if_replaced();
        }
        let too_big = self.size > 0 && self.size + batch.len() as u64 > self.config.log_max_size;
        let too_old = self.config.log_rotate_interval.is_some_and(|every| self.opened.elapsed() >= every);
        let may_rotate = self.rotate_retry_at.is_none_or(|at| Instant::now() >= at);
        if (too_big || too_old) && self.size > 0 && may_rotate {
            self.rotate();
        }
        let Some(file) = self.file.as_mut() else {
            self.lost += lines;
            self.publish();
            return;
        };
        let mut written = 0;
        let failed = loop {
            if written == batch.len() {
                break None;
            }
            match file.write(&batch[written..]) {
                Ok(0) => break Some(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        match failed {
            None => {
                self.size += batch.len() as u64;
                if self.error.take().is_some() {
                    tracing::warn!(file = %self.path.display(), lost = self.lost, "log file writable again");
                    self.lost = 0;
                    self.publish();
                }
            }
            Some(e) => {
                // Whole lines or none (a full disk): keep the lines that fit, cut off a torn
                // one; the rest of the batch counts as lost.
                let whole = batch[..written].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let kept = memchr::memchr_iter(b'\n', &batch[..whole]).count() as u64;
                if whole < written {
                    let _ = file.set_len(self.size + whole as u64);
                }
                self.size += whole as u64;
                self.fail("write", e, lines.saturating_sub(kept))
            }
        }
    }

    /// The live path deleted or replaced by hand (not by our rotation): open it afresh, so
    /// lines do not go on into a deleted inode.
    fn reopen_if_replaced(&mut self) {
        self.checked_at = Instant::now();
        let on_disk = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        if self.file.is_some() && on_disk != self.identity {
            tracing::warn!(file = %self.path.display(), "the log file was deleted or replaced; opening it again");
            self.file = None;
            if let Err(e) = self.open() {
                self.fail("open", e, 0);
            }
        }
    }

    /// Renames the live file aside and opens a fresh one (never copy-then-truncate). The open
    /// file is kept until the rename has worked: where it fails (a read-only directory, a
    /// busy path) lines go on into it, and nothing is lost for want of a new file.
    fn rotate(&mut self) {
        match rotate::rotate(&self.path, &self.config) {
            Ok(()) => {
                self.file = None;
                if self.rotate_error.take().is_some() {
                    tracing::warn!(file = %self.path.display(), "log file rotated again");
                }
                self.rotate_retry_at = None;
                if let Err(e) = self.open() {
                    self.fail("open", e, 0);
                }
                self.publish();
            }
            Err(e) => {
                // Said once, shown as log_error until a rotation works, tried again after a
                // while (not every batch).
                if self.rotate_error.is_none() {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot rotate a log file; writing on");
                }
                self.rotate_retry_at = Some(Instant::now() + RETRY_AFTER);
                self.rotate_error =
                    Some(format!("cannot rotate {}: {e}; it grows past log_max_size", self.path.display()));
                self.publish();
            }
        }
    }

    /// Empties the live file and removes the rotated ones.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.path.exists() {
            OpenOptions::new().write(true).open(&self.path)?.set_len(0)?;
        }
        self.size = 0;
        rotate::remove_rotated(&self.path)
    }
}

/// The log files of one app: stdout and stderr (the same sink when merged).
#[derive(Debug)]
pub(crate) struct AppLogs {
    pub app: String,
    /// The settings these sinks were made with.
    pub config: LogConfig,
    pub format: LogFormat,
    pub out: Arc<Mutex<Sink>>,
    pub err: Arc<Mutex<Sink>>,
    /// The sinks' statuses (stdout first; one when merged).
    pub statuses: Vec<Arc<SinkStatus>>,
    /// The files' paths (stdout, stderr), read without waiting for a write.
    pub paths: [PathBuf; 2],
}

impl AppLogs {
    /// The sinks of `app` with `config`.
    pub fn new(app: &str, config: &LogConfig, paths: &Paths) -> AppLogs {
        let default = |stream: &str| paths.logs_dir().join(format!("{app}.{stream}.log"));
        let out_path = config.out_file.clone().unwrap_or_else(|| default("out"));
        let err_path = if config.merge_logs {
            out_path.clone()
        } else {
            config.err_file.clone().unwrap_or_else(|| default("err"))
        };
        let out_sink = Sink::new(out_path.clone(), config);
        let mut statuses = vec![out_sink.status.clone()];
        let out = Arc::new(Mutex::new(out_sink));
        let err = if config.merge_logs {
            out.clone()
        } else {
            let err_sink = Sink::new(err_path.clone(), config);
            statuses.push(err_sink.status.clone());
            Arc::new(Mutex::new(err_sink))
        };
        let paths = [out_path, err_path];
        AppLogs { app: app.to_string(), config: config.clone(), format: config.log_format, out, err, statuses, paths }
    }

    /// The files, stdout first (one when merged).
    pub fn sinks(&self) -> Vec<Arc<Mutex<Sink>>> {
        if Arc::ptr_eq(&self.out, &self.err) {
            vec![self.out.clone()]
        } else {
            vec![self.out.clone(), self.err.clone()]
        }
    }

    /// Whether a write to one of the files has been going on for `longer` (never waits).
    pub fn stuck(&self, longer: Duration) -> bool {
        self.statuses.iter().any(|s| s.stuck(longer))
    }

    /// Why the logs cannot be written, if they cannot, or that a write does not end (never
    /// waits for a write).
    pub fn error(&self) -> Option<String> {
        self.statuses.iter().find_map(|s| s.get()).or_else(|| {
            let (status, path) = self.statuses.iter().zip(&self.paths).find(|(s, _)| s.stuck(STUCK_AFTER))?;
            let secs = status.writing_for().as_secs();
            Some(format!(
                "a write to {} has not finished for {secs} s (a slow or full disk, or a FIFO nobody reads?)",
                path.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopen_moves_the_next_line_to_a_fresh_file_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("app.out.log");
        let aside = dir.path().join("app.out.log.1");
        let mut sink = Sink::new(live.clone(), &LogConfig::default());
        sink.write(b"one\n", 1);
        std::fs::rename(&live, &aside).unwrap();
        sink.write(b"two\n", 1);
        sink.status.request_reopen();
        sink.write(b"three\n", 1);
        assert_eq!(std::fs::read_to_string(&aside).unwrap(), "one\ntwo\n", "before the reopen: the renamed file");
        assert_eq!(std::fs::read_to_string(&live).unwrap(), "three\n", "after it: a fresh file at the path");

        // Reopened at once, without waiting for a line: the path exists again.
        std::fs::rename(&live, &aside).unwrap();
        sink.status.request_reopen();
        sink.honour_reopen();
        assert_eq!(std::fs::read_to_string(&live).unwrap(), "");
        // A sink never opened is not created by a reopen.
        let mut quiet = Sink::new(dir.path().join("quiet.log"), &LogConfig::default());
        quiet.status.request_reopen();
        quiet.honour_reopen();
        assert!(!dir.path().join("quiet.log").exists());
    }
}
