//! The app model clients see: names, statuses and snapshots sent over the control socket.

use crate::config::AppConfig;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An app's name: 1 to 64 of `A-Z a-z 0-9 _ . -`, not starting with `-` or `.`, not `all`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);

impl AppName {
    /// Checks a name, saying what is wrong with it.
    pub fn new(name: &str) -> Result<AppName, String> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if name.is_empty() || name.len() > 64 {
            return Err(format!("app name {name:?} must be 1 to 64 characters long"));
        }
        if let Some(bad) = name.chars().find(|c| !valid_char(*c)) {
            return Err(format!("app name {name:?} contains {bad:?}; use only letters, digits, '_', '.' and '-'"));
        }
        if name.starts_with(['-', '.']) {
            return Err(format!("app name {name:?} must not start with '-' or '.'"));
        }
        if name == "all" {
            return Err("app name \"all\" is reserved (it means every app): choose another".into());
        }
        Ok(AppName(name.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AppName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AppName::new(&value)
    }
}

impl From<AppName> for String {
    fn from(n: AppName) -> String {
        n.0
    }
}

/// Why a generation was replaced by a new one: the label `/metrics` counts restarts by, the
/// `reason` of lifecycle events, and the plain words of exit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// It exited (or was killed) without being asked.
    Crash,
    /// `mcpd restart` (or a start of an app waiting to restart).
    UserRestart,
    /// `mcpd reload`.
    Reload,
    /// Over `max_memory_restart`.
    Memory,
    /// No `WATCHDOG=1` in time.
    Watchdog,
    /// The liveness probe failed.
    Health,
    /// An automatic start never got ready.
    NotReady,
}

impl RestartReason {
    /// Every reason, in label order.
    pub const ALL: [RestartReason; 7] = [
        RestartReason::Crash,
        RestartReason::UserRestart,
        RestartReason::Reload,
        RestartReason::Memory,
        RestartReason::Watchdog,
        RestartReason::Health,
        RestartReason::NotReady,
    ];

    /// The metrics label and event word.
    pub fn label(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::UserRestart => "user_restart",
            RestartReason::Reload => "reload",
            RestartReason::Memory => "memory",
            RestartReason::Watchdog => "watchdog",
            RestartReason::Health => "health",
            RestartReason::NotReady => "not_ready",
        }
    }

    /// The plain words an exit record uses when there is nothing more to say.
    pub fn describe(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::UserRestart => "user restart",
            RestartReason::Reload => "user reload",
            RestartReason::Memory => "memory limit",
            RestartReason::Watchdog => "watchdog",
            RestartReason::Health => "health check",
            RestartReason::NotReady => "not ready",
        }
    }
}

/// Why a request failed for an app: scripts branch on it (`mcpd ... --json`, the `error` of
/// an outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// The app is in the middle of something this request cannot interrupt; try again.
    Busy,
    /// It never got ready (it exited, timed out, or could not be spawned).
    NotReady,
    /// A reload failed; the old generation keeps serving.
    ReloadFailed,
    /// Something else happened first (a stop, a crash, a delete).
    Interrupted,
}

impl Failure {
    /// The word replies and `--json` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Busy => "busy",
            Failure::NotReady => "not-ready",
            Failure::ReloadFailed => "reload-failed",
            Failure::Interrupted => "interrupted",
        }
    }
}

/// What an app is doing, as shown by `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppStatus {
    /// Spawned, not yet ready.
    Starting,
    /// Running and ready.
    Online,
    /// A new generation is replacing the serving one (both may run).
    Reloading,
    /// Sent its stop signal; waiting for the group to exit.
    Stopping,
    /// Not running, by the user's wish.
    Stopped,
    /// Exited; a new generation starts when the restart delay is over.
    WaitingRestart,
    /// Not running and not restarted until the user acts; `reason` says why.
    Errored,
}

impl AppStatus {
    /// The word `list` prints.
    pub fn as_str(&self) -> &'static str {
        match self {
            AppStatus::Starting => "starting",
            AppStatus::Online => "online",
            AppStatus::Reloading => "reloading",
            AppStatus::Stopping => "stopping",
            AppStatus::Stopped => "stopped",
            AppStatus::WaitingRestart => "waiting-restart",
            AppStatus::Errored => "errored",
        }
    }
}

impl fmt::Display for AppStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which output of an app a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// stdout.
    Out,
    /// stderr.
    Err,
}

impl LogStream {
    /// `out` or `err`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LogStream::Out => "out",
            LogStream::Err => "err",
        }
    }
}

/// One captured line, as `mcpd logs` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The app (`mcpd` for the daemon's own log).
    pub app: String,
    /// stdout or stderr.
    pub stream: LogStream,
    /// When mcpd read it, milliseconds since the Unix epoch (None when a file line had no stamp).
    pub time_ms: Option<u64>,
    /// The line without its newline or stamp.
    pub message: String,
}

/// One row of `mcpd list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppInfo {
    /// The app's name.
    pub name: AppName,
    /// With `instances` > 1: which instance this row is (each has its own row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    /// Its status.
    pub status: AppStatus,
    /// The pid of the running generation's leader (also its process group id).
    pub pid: Option<u32>,
    /// How many times a new generation replaced an old one (crashes and user restarts).
    pub restarts: u32,
    /// Milliseconds since the running generation started.
    pub uptime_ms: Option<u64>,
    /// RSS summed over the whole process group, sampled about once a second.
    pub memory_bytes: Option<u64>,
    /// CPU use of the whole process group over the last sample, in percent of one core.
    pub cpu_percent: Option<f32>,
    /// Why the app is errored or what it last reported.
    pub reason: Option<String>,
    /// Milliseconds until the next start, while `waiting-restart`.
    pub next_start_in_ms: Option<u64>,
    /// The last `STATUS=` the app sent over the notify socket.
    pub status_text: Option<String>,
    /// While reloading: the generations involved.
    pub reload: Option<ReloadInfo>,
    /// Why the app's logs cannot be written, while they cannot.
    #[serde(default)]
    pub log_error: Option<String>,
    /// Behind a front: the MCP sessions each generation holds.
    #[serde(default)]
    pub sessions: Vec<GenerationSessions>,
    /// `restarts` by why the new generation was started: crash, user_restart, reload, memory,
    /// watchdog, health, other.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub restarts_by_reason: std::collections::BTreeMap<RestartReason, u32>,
}

impl AppInfo {
    /// The name a row shows: `web`, or `web[1]` for instance 1 of several.
    pub fn label(&self) -> String {
        match self.instance {
            Some(i) => format!("{}[{i}]", self.name),
            None => self.name.to_string(),
        }
    }
}

/// How many MCP sessions one generation holds behind the front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationSessions {
    /// The generation's pid.
    pub pid: u32,
    /// Its sessions.
    pub sessions: usize,
}

/// The two generations of a reload, while they overlap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadInfo {
    /// The generation being replaced (serving until the new one is ready, then draining).
    pub old_pid: u32,
    /// The new generation.
    pub new_pid: u32,
    /// `starting-new` or `draining-old`.
    pub phase: String,
}

/// How one generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Wall-clock time of the exit, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The leader's pid.
    pub pid: u32,
    /// Its exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Why it ended: `crash`, `user stop`, `user restart`, `user reload`, `memory limit ...`,
    /// `watchdog ...`, `health ...`, `deleted`, `not ready ...`.
    pub reason: String,
    /// What mcpd did next: `restarted after 150 ms`, `stays stopped: ...`, `errored: ...`.
    #[serde(default)]
    pub outcome: Option<String>,
}

impl ExitRecord {
    /// "exit code 3" or "signal 9 (SIGKILL)".
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => "unknown exit".to_string(),
        }
    }
}

/// What `mcpd describe` shows: the row, the config and the last exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppDetail {
    /// The same row `list` shows.
    pub info: AppInfo,
    /// The config the app runs with.
    pub config: AppConfig,
    /// The last exits, newest last (at most 10).
    pub last_exits: Vec<ExitRecord>,
    /// With `instances` > 1: the rows of the other instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_instances: Vec<AppInfo>,
    /// How the daemon tracks the app's processes: `cgroup PATH (controllers: ...)` or
    /// `process group (why not cgroups)`.
    #[serde(default)]
    pub tracking: Option<String>,
    /// When `cron_restart` next reloads the app (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_next_unix_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        let cases = [
            ("web", true),
            ("api-v2.prod_1", true),
            ("", false),
            ("all", false),
            ("-x", false),
            (".hidden", false),
            ("a b", false),
            ("a/b", false),
            (&"x".repeat(65), false),
        ];
        for (name, ok) in cases {
            assert_eq!(AppName::new(name).is_ok(), ok, "name {name:?}");
        }
    }
}

/// One thing that happened to an app, as `mcpd events` and `Request::Events` subscribers see
/// it. `seq` grows by one per event of the daemon (a gap means the subscriber fell behind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// The daemon-wide sequence number.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The app.
    pub app: AppName,
    /// Which instance (with `instances` > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    /// The app's status after the event.
    pub status: AppStatus,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The app's row after the event (none once it is deleted): a monitor keeps its table
    /// current from these alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<Box<AppInfo>>,
}

/// What happened, in a [`LifecycleEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// A generation was spawned (`next`: a reload's new generation beside the serving one).
    Spawned { pid: u32, next: bool },
    /// A generation got ready and serves.
    Ready { pid: u32 },
    /// A generation's whole group is gone.
    Exited { pid: u32, how: String, reason: String },
    /// A new generation starts in `in_ms`.
    RestartScheduled { in_ms: u64, reason: RestartReason },
    /// A reload moved to `phase`: "starting-new", "draining-old", "done" or "failed".
    Reload { phase: String, old_pid: u32, new_pid: u32 },
    /// The app is errored until the user acts.
    Errored { reason: String },
    /// The app is stopped, with no generation left.
    Stopped,
    /// The app was deleted.
    Removed,
    /// A resource sample of the serving generation (only for subscribers that ask for them).
    Sample {
        pid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_bytes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_percent: Option<f32>,
    },
}
