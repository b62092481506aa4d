//! Reading one pipe of a generation: split into lines, stamp, append to the sink, and hand
//! to followers. Memory is bounded: one read buffer, one batch, one partial line of at most
//! [`MAX_LINE`]; a child that writes faster than the disk blocks on its full pipe. Each batch
//! is written by this capture's writer thread (`writer.rs`) through a short queue, so a slow or
//! stuck file stalls only this pipe's app, never the runtime.

use super::{hub, AppLogs};
use mcpd_core::config::LogFormat;
use mcpd_core::model::{LogLine, LogStream};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The read buffer starts small (a quiet app costs little) and doubles up to `MAX_READ`
/// while reads keep filling it (a flood is taken in big reads).
const FIRST_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;
/// The pause after each read whose lines are dropped (an unwritable file): at most 64 KiB per
/// pause drained.
const DROPPING_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
/// Lines are queued for the writer in batches of at most about this much.
const MAX_BATCH: usize = 256 * 1024;
/// A longer line is written in pieces, each cut at a character boundary.
pub(super) const MAX_LINE: usize = 64 * 1024;

/// A capture frozen for an update in place.
#[derive(Debug)]
pub(crate) struct Frozen {
    pub pipe: std::os::fd::OwnedFd,
    /// The line it was in the middle of (raw).
    pub partial: Vec<u8>,
    /// Whole lines, formatted, not yet given to the writer, and how many.
    pub formatted: Vec<u8>,
    pub lines: u64,
    /// Everything given to the writer was in the file within [`FREEZE_FLUSH`]; if not, the
    /// file is stuck (a slow or full disk) and the update must not go on, or what the writer
    /// still holds would be lost with its thread.
    pub flushed: bool,
}

/// How long a frozen capture waits for its file to take what it was given.
pub(crate) const FREEZE_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a capture starts: the partial line and formatted lines a previous capture of the
/// same pipe left (an update in place), and the pipe.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    pub partial: Vec<u8>,
    pub formatted: Vec<u8>,
    pub lines: u64,
}

/// Stops a capture for an update in place: once `token` is cancelled, the capture stops
/// reading, waits (bounded) until what its writer holds is in the file, and sends back its
/// pipe, the partial line, and the whole lines not yet written (which the next capture of
/// the pipe writes first).
#[derive(Debug)]
pub(crate) struct Freeze {
    pub token: tokio_util::sync::CancellationToken,
    pub done: tokio::sync::oneshot::Sender<Frozen>,
}

/// Copies `pipe` into the app's logs until end of file (or until frozen), starting with the
/// partial line `partial` (handed over by a previous daemon).
pub(crate) async fn capture(
    pipe: tokio::net::unix::pipe::Receiver,
    stream: LogStream,
    logs: Arc<AppLogs>,
    resume: Resume,
    freeze: Freeze,
) {
    copy(pipe, stream, logs, resume, Some(freeze)).await
}

async fn copy<R: AsyncRead + Unpin + IntoFd>(
    mut pipe: R,
    stream: LogStream,
    logs: Arc<AppLogs>,
    resume: Resume,
    mut freeze: Option<Freeze>,
) {
    let sink = match stream {
        LogStream::Out => logs.out.clone(),
        LogStream::Err => logs.err.clone(),
    };
    let mut writer = super::writer::Writer::new(sink.clone());
    let status = logs.statuses[if stream == LogStream::Err && logs.statuses.len() > 1 { 1 } else { 0 }].clone();
    let mut buf = vec![0u8; FIRST_READ];
    let mut pending: Vec<u8> = resume.partial;
    // What a previous capture of this pipe formatted goes to the file first.
    let mut batch: Vec<u8> = resume.formatted;
    let mut stamper =
        Stamper { format: logs.format, app: &logs.app, stream, time: SystemTime::now(), stamp: String::new() };
    // Lines formatted but not yet queued for the writer.
    let mut unsent = resume.lines;
    // Cancelled when the capture is frozen (never for a capture that cannot be).
    let token = freeze.as_ref().map(|f| f.token.clone()).unwrap_or_default();
    loop {
        if freeze.as_ref().is_some_and(|f| f.token.is_cancelled()) {
            // The lines not yet queued are handed over, never waited for: only the queue's
            // flush is (bounded), and dropping that wait loses nothing.
            let flushed = tokio::time::timeout(FREEZE_FLUSH, writer.flush()).await.is_ok();
            let Some(freeze) = freeze.take() else { return };
            if let Ok(fd) = pipe.into_fd() {
                let frozen = Frozen { pipe: fd, partial: pending, formatted: batch, lines: unsent, flushed };
                let _ = freeze.done.send(frozen);
            }
            return;
        }
        let read = if batch.is_empty() {
            tokio::select! {
                read = pipe.read(&mut buf) => read,
                // Cancel-safe: a read not completed took nothing from the pipe.
                _ = token.cancelled() => continue,
            }
        } else {
            // Lines are waiting: read on only if the pipe has more already (fewer, larger
            // batches for a flood), else queue them first (a quiet app's line goes out at once).
            match futures_util::FutureExt::now_or_never(pipe.read(&mut buf)) {
                Some(read) => read,
                None => {
                    // A frozen capture never waits for a slow file: the batch stays its own.
                    let queued = writer.write_unless(std::mem::take(&mut batch), std::mem::take(&mut unsent), &token);
                    if let Err((back, lines)) = queued.await {
                        (batch, unsent) = (back, lines);
                    }
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        stamper.now();
        if n == 0 {
            if !pending.is_empty() {
                stamper.line(&pending, &mut batch);
                unsent += 1;
            }
            writer.write(batch, unsent).await;
            // Every line the app wrote is in the file before the capture (which shutdown
            // waits for) ends.
            writer.flush().await;
            return;
        }
        let filled = n == buf.len();
        if status.dropping() && hub().receiver_count() == 0 {
            // The file cannot take lines now: count them (cheaply) as lost, format nothing.
            let lines = memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            pending.clear();
            batch.clear();
            status.drop_lines(lines + std::mem::take(&mut unsent));
            // Drained slowly: an app logging into a full disk is held back (its pipe fills)
            // rather than spinning a core, and the lines would be lost anyway.
            tokio::time::sleep(DROPPING_PAUSE).await;
            continue;
        }
        let mut data = &buf[..n];
        while let Some(at) = memchr::memchr(b'\n', data) {
            if pending.is_empty() {
                stamper.line(&data[..at], &mut batch);
            } else {
                pending.extend_from_slice(&data[..at]);
                stamper.line(&pending, &mut batch);
                pending.clear();
            }
            unsent += 1;
            data = &data[at + 1..];
        }
        pending.extend_from_slice(data);
        while pending.len() >= MAX_LINE {
            let cut = char_boundary(&pending, MAX_LINE);
            stamper.line(&pending[..cut], &mut batch);
            pending.drain(..cut);
            unsent += 1;
        }
        if !filled || batch.len() >= MAX_BATCH {
            let queued = writer.write_unless(std::mem::take(&mut batch), std::mem::take(&mut unsent), &token);
            if let Err((back, lines)) = queued.await {
                (batch, unsent) = (back, lines);
            }
        }
        if filled && buf.len() < MAX_READ {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

/// A pipe whose fd can be taken back (to hand over).
pub(crate) trait IntoFd {
    fn into_fd(self) -> std::io::Result<std::os::fd::OwnedFd>;
}

impl IntoFd for tokio::net::unix::pipe::Receiver {
    fn into_fd(self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.into_nonblocking_fd()
    }
}

/// The largest `i <= max` that does not fall inside a UTF-8 sequence (or `max` if none is found
/// within 4 bytes, i.e. the data is not UTF-8).
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| i == bytes.len() || (bytes[i] & 0xC0) != 0x80)
        .filter(|&i| i > 0)
        .unwrap_or(max)
}

struct Stamper<'a> {
    format: LogFormat,
    app: &'a str,
    stream: LogStream,
    time: SystemTime,
    stamp: String,
}

impl Stamper<'_> {
    /// One timestamp per read: every line of a read arrived at the same moment.
    fn now(&mut self) {
        self.time = SystemTime::now();
        if self.format != LogFormat::Plain {
            self.stamp = humantime::format_rfc3339_millis(self.time).to_string();
        }
    }

    fn line(&self, line: &[u8], batch: &mut Vec<u8>) {
        match self.format {
            LogFormat::Plain => batch.extend_from_slice(line),
            LogFormat::Rfc3339 => {
                batch.extend_from_slice(self.stamp.as_bytes());
                batch.push(b' ');
                batch.extend_from_slice(line);
            }
            LogFormat::Json => {
                let message = String::from_utf8_lossy(line);
                let record = serde_json::json!({ "time": self.stamp, "app": self.app, "stream": self.stream.as_str(), "message": message });
                let _ = serde_json::to_writer(&mut *batch, &record);
            }
        }
        batch.push(b'\n');
        let hub = hub();
        if hub.receiver_count() > 0 {
            let time_ms = self.time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_millis() as u64);
            let message = String::from_utf8_lossy(line).into_owned();
            let _ = hub.send(Arc::new(LogLine { app: self.app.to_string(), stream: self.stream, time_ms, message }));
        }
    }
}

/// Formats one line as the capture would.
#[cfg(test)]
fn format_line(format: LogFormat, app: &str, stream: LogStream, line: &[u8]) -> Vec<u8> {
    let mut stamper = Stamper { format, app, stream, time: SystemTime::now(), stamp: String::new() };
    stamper.now();
    let mut out = Vec::new();
    stamper.line(line, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_at_character_boundaries() {
        let text = "é".repeat(40); // two bytes each
        let bytes = text.as_bytes();
        for max in 4..bytes.len() {
            let cut = char_boundary(bytes, max);
            assert!(std::str::from_utf8(&bytes[..cut]).is_ok(), "cut at {cut} for max {max}");
            assert!(cut <= max && cut + 1 >= max);
        }
    }

    #[test]
    fn line_formats() {
        let plain = format_line(LogFormat::Plain, "web", LogStream::Out, b"hello");
        assert_eq!(plain, b"hello\n");
        let stamped = String::from_utf8(format_line(LogFormat::Rfc3339, "web", LogStream::Out, b"hello")).unwrap();
        let (stamp, rest) = stamped.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok() && stamp.len() == 24, "{stamped}");
        assert_eq!(rest, "hello\n");
        let json = format_line(LogFormat::Json, "web", LogStream::Err, b"say \"hi\"");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            (v["app"].as_str(), v["stream"].as_str(), v["message"].as_str()),
            (Some("web"), Some("err"), Some("say \"hi\""))
        );
    }
}
