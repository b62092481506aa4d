//! Restart policy, memory limit, watchdog and health check settings.

use super::duration_ms;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// When an exited app is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// After any exit (but codes in `stop_exit_codes`).
    Always,
    /// After a non-zero exit code or a signal.
    OnFailure,
    /// Never.
    Never,
}

impl RestartMode {
    /// Parses `always`, `on-failure`, `never`.
    pub fn parse(text: &str) -> Result<RestartMode, String> {
        match text {
            "always" => Ok(RestartMode::Always),
            "on-failure" => Ok(RestartMode::OnFailure),
            "never" => Ok(RestartMode::Never),
            other => Err(format!("unknown restart policy {other:?}; use \"always\", \"on-failure\" or \"never\"")),
        }
    }
}

impl fmt::Display for RestartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartMode::Always => "always",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Never => "never",
        })
    }
}

/// Restart policy: mode, delays, exponential backoff and the crash-loop cutoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartConfig {
    /// When to restart.
    pub restart: RestartMode,
    /// Exit codes that mean "done": never restarted.
    pub stop_exit_codes: Vec<i32>,
    /// First delay of the exponential backoff; `None` uses the fixed `restart_delay`.
    #[serde(with = "duration_ms_opt")]
    pub exp_backoff_restart_delay: Option<Duration>,
    /// Each next backoff delay is the previous one times this.
    pub exp_backoff_factor: f64,
    /// The largest backoff delay.
    #[serde(with = "duration_ms")]
    pub exp_backoff_max: Duration,
    /// Uptime after which the backoff starts over.
    #[serde(with = "duration_ms")]
    pub exp_backoff_reset: Duration,
    /// An exit sooner than this after start is an unstable restart.
    #[serde(with = "duration_ms")]
    pub min_uptime: Duration,
    /// Unstable restarts in a row before the app is `errored`.
    pub max_restarts: u32,
}

impl Default for RestartConfig {
    fn default() -> RestartConfig {
        RestartConfig {
            restart: RestartMode::Always,
            stop_exit_codes: Vec::new(),
            exp_backoff_restart_delay: None,
            exp_backoff_factor: 1.5,
            exp_backoff_max: Duration::from_secs(15),
            exp_backoff_reset: Duration::from_secs(30),
            min_uptime: Duration::from_secs(1),
            max_restarts: 16,
        }
    }
}

/// A liveness probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// GET answers 2xx.
    Http {
        /// `http://host:port/path`.
        url: String,
    },
    /// Connect succeeds.
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// An MCP probe succeeds (handshake and `tools/list`).
    Mcp {
        /// The MCP endpoint.
        url: String,
    },
}

/// `health = { http = URL, interval, timeout, failures }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to probe.
    pub probe: Probe,
    /// Time between probes.
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    /// How long one probe may take.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Failures in a row that cause a restart.
    pub failures: u32,
}

/// What makes mcpd restart a running app: memory, watchdog, health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// RSS of the whole process group, in bytes, above which the app is reloaded/restarted.
    pub max_memory_restart: Option<u64>,
    /// How often memory is sampled.
    #[serde(with = "duration_ms")]
    pub memory_check_interval: Duration,
    /// With `ready = "notify"`: restart if no `WATCHDOG=1` comes for this long.
    #[serde(with = "duration_ms_opt")]
    pub watchdog: Option<Duration>,
    /// A liveness probe.
    pub health: Option<HealthCheck>,
    /// A hard memory limit for each generation's cgroup (`memory.max`, systemd's
    /// `MemoryMax=`): the kernel's OOM killer acts at it.
    #[serde(default)]
    pub memory_max: Option<u64>,
    /// Where the kernel starts reclaiming and throttling a generation (`memory.high`,
    /// `MemoryHigh=`).
    #[serde(default)]
    pub memory_high: Option<u64>,
    /// Most processes and threads a generation may have at once (`pids.max`, `TasksMax=`).
    #[serde(default)]
    pub tasks_max: Option<u64>,
    /// CPU time a generation may use, in percent of one CPU (`cpu.max`, `CPUQuota=`): 50 is
    /// half a CPU, 200 two.
    #[serde(default)]
    pub cpu_quota: Option<u32>,
}

/// Default memory sampling interval.
pub const DEFAULT_MEMORY_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_memory_restart: None,
            memory_check_interval: DEFAULT_MEMORY_CHECK_INTERVAL,
            watchdog: None,
            health: None,
            memory_max: None,
            memory_high: None,
            tasks_max: None,
            cpu_quota: None,
        }
    }
}

/// The largest size a config may give (1 PiB).
pub const MAX_SIZE: u64 = 1 << 50;

/// Parses a size: `"512M"`, `"1G"`, `"300K"` are binary (KiB, MiB, GiB) as in PM2;
/// `"512MB"`, `"512MiB"`, `"1.5 GB"` are read by `bytesize`; a bare integer is bytes. Finite
/// and at most [`MAX_SIZE`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let invalid = || format!("invalid size {text:?}: write e.g. \"512M\", \"1G\", \"300MB\" or a number of bytes");
    let too_big = || format!("size {text:?} is larger than the limit of 1 PiB");
    let binary = [('K', 1u64 << 10), ('M', 1 << 20), ('G', 1 << 30)];
    for (suffix, unit) in binary {
        if let Some(number) = t.strip_suffix(suffix).or_else(|| t.strip_suffix(suffix.to_ascii_lowercase())) {
            let number = number.trim();
            // Digits and one point only: no "inf", "nan" or exponents.
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                continue;
            }
            if let Ok(n) = number.parse::<f64>() {
                let bytes = n * unit as f64;
                if !bytes.is_finite() || bytes > MAX_SIZE as f64 {
                    return Err(too_big());
                }
                return Ok(bytes as u64);
            }
        }
    }
    // No "inf", "nan" or exponents ("1e99MB"), which float parsing would accept.
    let lower = t.to_ascii_lowercase();
    let exponent = lower.as_bytes().windows(2).any(|w| w[0].is_ascii_digit() && w[1] == b'e');
    if lower.contains("inf") || lower.contains("nan") || exponent {
        return Err(invalid());
    }
    let bytes = t.parse::<bytesize::ByteSize>().map(|b| b.as_u64()).map_err(|_| invalid())?;
    if bytes > MAX_SIZE {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Formats a size as PM2 users write it: `80M`, `99.2M`, `1G`, `512K`, `100B`.
pub fn format_size(bytes: u64) -> String {
    for (suffix, unit) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if bytes >= unit {
            return if bytes % unit == 0 {
                format!("{}{suffix}", bytes / unit)
            } else {
                format!("{:.1}{suffix}", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes}B")
}

/// Serde for `Option<Duration>` as milliseconds.
pub mod duration_ms_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes milliseconds or null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    /// Reads milliseconds (at most 365 days) or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d)?
            .map(crate::config::duration_ms::checked)
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: [(&str, Option<u64>); 15] = [
            ("512M", Some(512 << 20)),
            ("1G", Some(1 << 30)),
            ("150m", Some(150 << 20)),
            ("300K", Some(300 << 10)),
            ("512MB", Some(512_000_000)),
            ("512MiB", Some(512 << 20)),
            ("1024", Some(1024)),
            ("lots", None),
            ("1e99M", None),
            ("infK", None),
            ("NaNG", None),
            ("2048T", None),
            ("1.5G", Some(3 << 29)),
            ("1PiB", Some(1 << 50)),
            ("1e99MB", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text).ok(), want, "{text}");
        }
        let shown = [(80 << 20, "80M"), (104_018_739, "99.2M"), (1 << 30, "1G"), (512 << 10, "512K"), (100, "100B")];
        for (bytes, want) in shown {
            assert_eq!(format_size(bytes), want);
        }
    }
}
