//! The keys of log capture and rotation.

use super::{type_name, Walker};
use crate::config::{parse_rotate_interval, parse_size, AppConfig, LogFormat};
use std::ops::Range;
use std::path::Path;
use toml_edit::Item;

impl Walker<'_> {
    /// Parses `key` into `cfg` if it is a log key; false if it is not.
    pub(super) fn log_key(
        &mut self,
        key: &str,
        value: &Item,
        kpath: &str,
        span: Range<usize>,
        base: &Path,
        cfg: &mut AppConfig,
    ) -> bool {
        let logs = &mut cfg.logs;
        match key {
            "out_file" => logs.out_file = self.path(value, kpath, span, base),
            "err_file" => logs.err_file = self.path(value, kpath, span, base),
            "merge_logs" => match value.as_bool() {
                Some(b) => logs.merge_logs = b,
                None => self.error(span, kpath, format!("expected true or false, found {}", type_name(value))),
            },
            "log_date_format" => match value.as_str() {
                Some("rfc3339") => {
                    if logs.log_format == LogFormat::Plain {
                        logs.log_format = LogFormat::Rfc3339;
                    }
                }
                Some("none") => {
                    if logs.log_format == LogFormat::Rfc3339 {
                        logs.log_format = LogFormat::Plain;
                    }
                }
                _ => self.error(
                    span,
                    kpath,
                    "expected \"rfc3339\" (the default: UTC with milliseconds) or \"none\"".into(),
                ),
            },
            "log_type" => match value.as_str() {
                Some("json") => logs.log_format = LogFormat::Json,
                Some("text") => {
                    if logs.log_format == LogFormat::Json {
                        logs.log_format = LogFormat::Rfc3339;
                    }
                }
                _ => self.error(span, kpath, "expected \"text\" (the default) or \"json\"".into()),
            },
            "log_max_size" => {
                let size = match (value.as_integer(), value.as_str()) {
                    (Some(n), _) => u64::try_from(n)
                        .map_err(|_| "a size must not be negative".to_string())
                        .and_then(|n| parse_size(&n.to_string())),
                    (None, Some(text)) => parse_size(text),
                    _ => Err(format!("expected a size like \"10M\", found {}", type_name(value))),
                };
                match size {
                    Ok(n) if n >= 1024 => logs.log_max_size = n,
                    Ok(_) => self.error(span, kpath, "must be at least 1K".into()),
                    Err(e) => self.error(span, kpath, e),
                }
            }
            "log_rotate_interval" => match value.as_str().map(parse_rotate_interval) {
                Some(Ok(interval)) => logs.log_rotate_interval = interval,
                Some(Err(e)) => self.error(span, kpath, e),
                None => self.error(
                    span,
                    kpath,
                    "expected \"daily\", \"hourly\", a duration like \"6h\", or \"none\"".into(),
                ),
            },
            "log_retain" => match value.as_integer().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => logs.log_retain = n,
                None => self.error(span, kpath, "expected a whole number of files to keep".into()),
            },
            "log_compress" => match value.as_bool() {
                Some(b) => logs.log_compress = b,
                None => self.error(span, kpath, format!("expected true or false, found {}", type_name(value))),
            },
            _ => return false,
        }
        true
    }
}
