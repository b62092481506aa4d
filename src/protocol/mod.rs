//! The control protocol between `mcpd` clients and the daemon.
//!
//! A connection carries length-prefixed JSON frames (see [`frame`]). The client speaks first
//! with a [`Hello`] naming its protocol version; the daemon answers with a [`HelloReply`].
//! Then each [`Request`] gets exactly one [`Response`].

mod error;
pub mod frame;

pub use error::{ErrorKind, ProtoError};

use crate::config::AppConfig;
use crate::model::{AppDetail, AppInfo, AppName, LogLine, LogStream};
use serde::{Deserialize, Serialize};

/// Bumped whenever a message changes shape; client and daemon must agree.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The client's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The client's package version, for messages.
    pub client_version: String,
}

impl Hello {
    /// The hello of this build.
    pub fn current() -> Hello {
        Hello { protocol: PROTOCOL_VERSION, client_version: env!("CARGO_PKG_VERSION").to_string() }
    }
}

/// The daemon's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HelloReply {
    /// The versions match; requests may follow.
    Welcome {
        /// The daemon's protocol version.
        protocol: u32,
        /// The daemon's package version.
        daemon_version: String,
        /// The daemon's pid.
        pid: u32,
    },
    /// The connection is refused (version mismatch); it is closed after this frame.
    Refused(ProtoError),
}

/// `events`: one app's events, or every app's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsRequest {
    /// One app, or every app.
    pub app: Option<AppName>,
    /// Also a `sample` event per running app after each resource sample (1 s by default).
    #[serde(default)]
    pub samples: bool,
}

/// `logs`: the last lines, then (with `follow`) new lines as they are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsRequest {
    /// One app, or every app.
    pub app: Option<AppName>,
    /// How many past lines per stream.
    pub lines: usize,
    /// Keep streaming new lines until the client disconnects.
    pub follow: bool,
    /// Only this stream (None: both).
    pub stream: Option<LogStream>,
    /// The daemon's own log instead of the apps'.
    pub daemon: bool,
}

/// Which apps a verb acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    /// Every app the daemon knows.
    All,
    /// These apps; an unknown name fails the whole request before anything changes.
    Names(Vec<AppName>),
}

/// `start`: define apps from a config (replacing stopped definitions) and/or start known apps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRequest {
    /// Apps to define (or redefine, when not running) and start.
    pub apps: Vec<AppConfig>,
    /// Already defined apps to start.
    pub names: Vec<AppName>,
    /// Answer once each app is ready (or failed); otherwise as soon as it is spawned.
    pub wait: bool,
}

/// `reload`: start a new generation of each app, wait until it is ready, then drain the old.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadRequest {
    /// The apps.
    pub targets: Targets,
    /// New configs (from `--config FILE`); with `all`, apps not in it re-read the file they
    /// came from.
    pub apps: Vec<AppConfig>,
    /// The file `apps` were read from (`--config FILE`): then every app named in `targets`
    /// must be among `apps`, or nothing is reloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<std::path::PathBuf>,
    /// Behind a front: answer only once the old generation is gone (its sessions drained).
    #[serde(default)]
    pub wait_drain: bool,
    /// `--env NAME`: the `env_<name>` set the new generations run with (without it, each app
    /// keeps the set it had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// `signal`: a signal for apps' processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    /// The apps.
    pub targets: Targets,
    /// The signal.
    pub signal: crate::signal::Signal,
    /// Only each generation's leader (the process mcpd started), not its whole group.
    #[serde(default)]
    pub leader_only: bool,
}

/// `scale`: how many instances an app runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// The app.
    pub name: AppName,
    /// The number of instances it runs from now on.
    pub instances: u32,
}

/// `env`: the environment an app's running process was started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRequest {
    /// The app.
    pub name: AppName,
    /// Send the values too (without it, only the names).
    #[serde(default)]
    pub values: bool,
}

/// `stop`, `restart`, `delete`: the apps to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRequest {
    /// The apps.
    pub targets: Targets,
}

/// `describe`: one app's full detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeRequest {
    /// The app.
    pub name: AppName,
}

/// One request; one variant per verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon alive?
    Ping,
    /// Start apps.
    Start(StartRequest),
    /// Stop apps gracefully.
    Stop(TargetRequest),
    /// Stop then start apps.
    Restart(TargetRequest),
    /// Replace apps' generations without downtime.
    Reload(ReloadRequest),
    /// Clear apps' restart counters (the crash-loop count, the backoff, `restarts`).
    Reset(TargetRequest),
    /// Past and (with `follow`) live log lines.
    Logs(LogsRequest),
    /// Empty apps' log files.
    Flush(TargetRequest),
    /// Every app's row now, then again after each change and each 1 s sample, until the
    /// client disconnects (`mcpd monit`).
    Watch,
    /// Every app's row now, then lifecycle events as they happen, until the client
    /// disconnects (`mcpd events`, `mcpd wait`).
    Events(EventsRequest),
    /// Write the app list to `$MCPD_HOME/dump.json`.
    Save,
    /// Define the saved apps and start those that were running.
    Resurrect,
    /// Stop apps and forget them.
    Delete(TargetRequest),
    /// Every app's row.
    List,
    /// One app's detail.
    Describe(DescribeRequest),
    /// Stop every app, then the daemon.
    Kill,
    /// Send a signal to apps' processes (`mcpd signal`).
    Signal(SignalRequest),
    /// The environment of an app's running process (`mcpd env`).
    Env(EnvRequest),
    /// Change how many instances an app runs (`mcpd scale`).
    Scale(ScaleRequest),
    /// Re-execute the daemon's binary in place (same pid), handing over every app, socket and
    /// session (`mcpd update`). Answered by the new daemon on the same connection; an error
    /// means the old daemon kept running.
    Update,
}

impl From<StartRequest> for Request {
    fn from(r: StartRequest) -> Request {
        Request::Start(r)
    }
}

impl From<DescribeRequest> for Request {
    fn from(r: DescribeRequest) -> Request {
        Request::Describe(r)
    }
}

/// The daemon's answer to `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The daemon's pid.
    pub pid: u32,
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
    /// How many apps it knows.
    pub apps: usize,
    /// The daemon's version (empty from a daemon older than this field).
    #[serde(default)]
    pub version: String,
}

/// What happened to one app under a verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppOutcome {
    /// The app.
    pub name: AppName,
    /// Whether the verb succeeded for it.
    pub ok: bool,
    /// One line for the user: "started (pid 123)", "already online, unchanged", the error.
    pub message: String,
    /// When it failed, what kind of failure (for scripts to branch on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::model::Failure>,
    /// The app's row after the verb, unless it was deleted.
    pub info: Option<AppInfo>,
}

/// One response; an error is always [`Response::Error`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Answer to `ping`.
    Pong(Pong),
    /// Per-app outcomes of `start`, `stop`, `restart`, `delete`, `kill`.
    Done {
        /// One per app acted on.
        outcomes: Vec<AppOutcome>,
    },
    /// Answer to `list`.
    List {
        /// One row per app, sorted by name.
        apps: Vec<AppInfo>,
    },
    /// Answer to `describe`.
    Describe(Box<AppDetail>),
    /// Log lines; a following client gets one of these per batch until it disconnects.
    Logs {
        /// The lines, oldest first.
        lines: Vec<LogLine>,
        /// Lines a slow follower missed (they are in the files).
        skipped: u64,
    },
    /// Lifecycle events, oldest first; a subscriber gets one of these per batch.
    Events {
        /// The events.
        events: Vec<crate::model::LifecycleEvent>,
        /// Events a slow subscriber missed.
        skipped: u64,
    },
    /// The request failed as a whole; nothing was changed.
    Error(ProtoError),
    /// A plain confirmation (`save`).
    Message {
        /// For the user.
        text: String,
    },
    /// Answer to `env`.
    Env {
        /// The process whose environment this is.
        pid: u32,
        /// Its variables in the order it holds them: name, and the value if asked for.
        vars: Vec<(String, Option<String>)>,
    },
}
