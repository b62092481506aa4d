//! Log capture settings: where lines go, how they are stamped, when files rotate.

use super::duration_ms_opt;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `2026-11-24T12:00:00.123Z message` (RFC 3339, UTC, milliseconds).
    Rfc3339,
    /// The line as the app wrote it.
    Plain,
    /// `{"time":"...","app":"web","stream":"out","message":"..."}` per line.
    Json,
}

/// Log settings of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// The stdout file (default `$MCPD_HOME/logs/NAME.out.log`).
    pub out_file: Option<PathBuf>,
    /// The stderr file (default `$MCPD_HOME/logs/NAME.err.log`).
    pub err_file: Option<PathBuf>,
    /// Write stdout and stderr to the stdout file.
    pub merge_logs: bool,
    /// Line format, from `log_date_format` and `log_type`.
    pub log_format: LogFormat,
    /// Rotate a file once it reaches this size.
    pub log_max_size: u64,
    /// Also rotate a file this long after it was opened.
    #[serde(with = "duration_ms_opt")]
    pub log_rotate_interval: Option<Duration>,
    /// Rotated files kept per stream.
    pub log_retain: u32,
    /// Gzip rotated files.
    pub log_compress: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            out_file: None,
            err_file: None,
            merge_logs: false,
            log_format: LogFormat::Rfc3339,
            log_max_size: 10 << 20,
            log_rotate_interval: None,
            log_retain: 10,
            log_compress: false,
        }
    }
}

/// Parses `log_rotate_interval`: `"daily"`, `"hourly"`, a duration, or `"none"`.
pub fn parse_rotate_interval(text: &str) -> Result<Option<Duration>, String> {
    match text {
        "none" => Ok(None),
        "daily" => Ok(Some(Duration::from_secs(24 * 3600))),
        "hourly" => Ok(Some(Duration::from_secs(3600))),
        other => match super::parse_duration(other) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(Some(d)),
            Ok(_) => Err("must be at least 1s".into()),
            Err(e) => Err(format!("{e}, or \"daily\", \"hourly\", \"none\"")),
        },
    }
}
