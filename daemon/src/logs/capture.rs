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

/// Copies `pipe` into the app's logs until end of file.
pub(crate) async fn capture<R: AsyncRead + Unpin>(mut pipe: R, stream: LogStream, logs: Arc<AppLogs>) {
    let sink = match stream {
        LogStream::Out => logs.out.clone(),
        LogStream::Err => logs.err.clone(),
    };
    let mut writer = super::writer::Writer::new(sink.clone());
    let status = logs.statuses[if stream == LogStream::Err && logs.statuses.len() > 1 { 1 } else { 0 }].clone();
    let mut buf = vec![0u8; FIRST_READ];
    let mut pending: Vec<u8> = Vec::new();
    let mut batch: Vec<u8> = Vec::new();
    let mut stamper =
        Stamper { format: logs.format, app: &logs.app, stream, time: SystemTime::now(), stamp: String::new() };
    // Lines formatted but not yet queued for the writer.
    let mut unsent = 0u64;
    loop {
        let read = if batch.is_empty() {
            pipe.read(&mut buf).await
        } else {
            // Lines are waiting: read on only if the pipe has more already (fewer, larger
            // batches for a flood), else queue them first (a quiet app's line goes out at once).
            match futures_util::FutureExt::now_or_never(pipe.read(&mut buf)) {
                Some(read) => read,
                None => {
                    writer.write(std::mem::take(&mut batch), std::mem::take(&mut unsent)).await;
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
            writer.write(std::mem::take(&mut batch), std::mem::take(&mut unsent)).await;
        }
        if filled && buf.len() < MAX_READ {
            buf.resize(buf.len() * 2, 0);
        }
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
