//! The last lines of log files, parsed back into [`LogLine`]s for `mcpd logs`.

use super::rotate::rotated_files;
use super::AppLogs;
use mcpd_core::config::LogFormat;
use mcpd_core::model::{LogLine, LogStream};
use mcpd_core::paths::Paths;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The last `n` lines of each of the app's files (of `stream` only, if given), oldest first.
pub(crate) fn tail(logs: &AppLogs, n: usize, stream: Option<LogStream>) -> Vec<LogLine> {
    let merged = std::sync::Arc::ptr_eq(&logs.out, &logs.err);
    let mut out = Vec::new();
    for (path, file_stream) in [(&logs.paths[0], LogStream::Out), (&logs.paths[1], LogStream::Err)] {
        if (merged && file_stream == LogStream::Err) || (!merged && stream.is_some_and(|s| s != file_stream)) {
            continue;
        }
        for raw in last_lines(path, n) {
            let line = parse(&raw, logs.format, &logs.app, file_stream);
            if stream.is_none_or(|s| s == line.stream) {
                out.push(line);
            }
        }
    }
    out.sort_by_key(|l| l.time_ms.unwrap_or(0));
    out
}

/// The last `n` lines of the daemon's own log.
pub(crate) fn daemon_tail(paths: &Paths, n: usize) -> Vec<LogLine> {
    let newest: Option<PathBuf> = std::fs::read_dir(paths.logs_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with("mcpd-daemon")))
        .max();
    let Some(path) = newest else { return Vec::new() };
    last_lines(&path, n)
        .iter()
        .map(|raw| {
            let mut line = parse(raw, LogFormat::Rfc3339, "mcpd", LogStream::Err);
            line.message = line.message.trim_start().to_string();
            line
        })
        .collect()
}

fn parse(raw: &str, format: LogFormat, app: &str, stream: LogStream) -> LogLine {
    let plain = || LogLine { app: app.to_string(), stream, time_ms: None, message: raw.to_string() };
    match format {
        LogFormat::Plain => plain(),
        LogFormat::Rfc3339 => match raw.split_once(' ') {
            Some((stamp, message)) => match humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')) {
                Ok(t) => LogLine {
                    app: app.to_string(),
                    stream,
                    time_ms: t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64),
                    message: message.to_string(),
                },
                Err(_) => plain(),
            },
            None => plain(),
        },
        LogFormat::Json => match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v) => LogLine {
                app: app.to_string(),
                stream: if v["stream"] == "err" { LogStream::Err } else { LogStream::Out },
                time_ms: v["time"]
                    .as_str()
                    .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64),
                message: v["message"].as_str().unwrap_or_default().to_string(),
            },
            Err(_) => plain(),
        },
    }
}

/// The last `n` lines of a file (reading backwards, so a large file costs little); when the
/// live file has fewer, the newest uncompressed rotated file fills in.
fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let mut lines = read_last(path, n);
    if lines.len() < n {
        if let Some(previous) = rotated_files(path).into_iter().rev().find(|p| p.extension().is_none_or(|e| e != "gz"))
        {
            let mut older = read_last(&previous, n - lines.len());
            older.append(&mut lines);
            lines = older;
        }
    }
    lines
}

fn read_last(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else { return Vec::new() };
    let Ok(len) = file.metadata().map(|m| m.len()) else { return Vec::new() };
    let mut pos = len;
    let mut buf: Vec<u8> = Vec::new();
    while pos > 0 && memchr::memchr_iter(b'\n', &buf).count() <= n {
        let step = pos.min(64 * 1024);
        pos -= step;
        let mut chunk = vec![0u8; step as usize];
        if file.seek(SeekFrom::Start(pos)).is_err() || file.read_exact(&mut chunk).is_err() {
            break;
        }
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    if pos > 0 && !lines.is_empty() {
        lines.remove(0); // a partial first line
    }
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_of_a_big_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let text: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let got = read_last(&path, 3);
        assert_eq!(got, ["line 49997", "line 49998", "line 49999"]);
        assert_eq!(read_last(&path, 0), Vec::<String>::new());
        std::fs::write(&path, "only\npartial").unwrap();
        assert_eq!(read_last(&path, 5), ["only", "partial"]);
    }

    #[test]
    fn stored_lines_parse_back() {
        let line = parse("2026-11-24T12:00:00.123Z hello world", LogFormat::Rfc3339, "web", LogStream::Out);
        assert_eq!((line.time_ms, line.message.as_str()), (Some(1795521600123), "hello world"));
        let json = parse(
            r#"{"time":"2026-11-24T12:00:00.123Z","app":"web","stream":"err","message":"boom"}"#,
            LogFormat::Json,
            "web",
            LogStream::Out,
        );
        assert_eq!((json.stream, json.message.as_str()), (LogStream::Err, "boom"));
        let odd = parse("no stamp here", LogFormat::Rfc3339, "web", LogStream::Out);
        assert_eq!((odd.time_ms, odd.message.as_str()), (None, "no stamp here"));
    }
}
