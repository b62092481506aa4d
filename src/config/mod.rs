//! The `mcpd.toml` config: one `[apps.NAME]` table per app.
//!
//! Parsing walks the TOML document by hand instead of deriving `Deserialize`, so that every
//! error in a file is reported at once, each with its file, line, column and key.

pub mod checks;
mod cron;
mod duration;
mod envfile;
mod error;
mod front;
mod limits;
mod logs;
mod parse;
mod ready;
mod rlimits;
mod stdio;

pub use cron::{check_cron, next_cron_time};
pub use duration::{duration_ms, parse_duration, MAX_DURATION};
pub use envfile::{parse_env_file, read_env_file};
pub use error::{ConfigError, ConfigErrors};
pub use front::{
    FrontConfig, OnToolsChange, DEFAULT_FRONT_HEADER_TIMEOUT, DEFAULT_FRONT_MAX_BODY, DEFAULT_FRONT_MAX_CONNECTIONS,
};
pub use limits::{
    duration_ms_opt, format_size, parse_size, HealthCheck, Limits, Probe, RestartConfig, RestartMode,
    DEFAULT_MEMORY_CHECK_INTERVAL, MAX_SIZE,
};
pub use logs::{parse_rotate_interval, LogConfig, LogFormat};
pub use parse::{load, load_checked, parse, parse_checked};
pub use ready::{parse_http_url, HttpUrl, ListenAddr, Ready};
pub use rlimits::{Resource, Rlimit, RlimitValue, Rlimits};
pub use stdio::{StdioConfig, StdioSessions, DEFAULT_STDIO_MAX_SESSIONS, DEFAULT_STDIO_WARM, MAX_STDIO_WARM};

use crate::model::AppName;
use crate::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What clients are shown instead of an env value: values are secrets.
pub const HIDDEN: &str = "(hidden)";

/// Default drain time between the stop signal and SIGKILL.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default pause before a crashed app is started again.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_millis(100);
/// Default pause of `watch` between the last change and the restart.
pub const DEFAULT_WATCH_DELAY: Duration = Duration::from_secs(1);
/// Default time a new generation has to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything mcpd needs to run one app. Paths are absolute once loaded.
///
/// `remote = "Self"`: the derives make inherent `serialize`/`deserialize` functions, and the
/// trait impls below call them (see [`AppConfig`]'s `Deserialize` impl for why).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct AppConfig {
    /// The app's name, unique in one daemon.
    pub name: AppName,
    /// The program: a path (relative ones are taken from `cwd`) or a name looked up in PATH.
    pub command: String,
    /// Arguments passed to the program.
    #[serde(default)]
    pub args: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Variables set for the app on top of the daemon's environment and `env_file`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// PM2's `env_<name>` tables: variables laid over `env` when the set is selected with
    /// `mcpd start FILE --env NAME` (or `reload --env NAME`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_sets: BTreeMap<String, BTreeMap<String, String>>,
    /// The `env_<name>` set in use, if the app has it; later reloads keep it until another
    /// `--env` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_selected: Option<String>,
    /// A dotenv file read at every start, before `env`.
    #[serde(default)]
    pub env_file: Option<PathBuf>,
    /// The signal that asks the app to drain and exit.
    #[serde(default = "defaults::kill_signal")]
    pub kill_signal: Signal,
    /// How long the app may drain after `kill_signal` before its group is SIGKILLed.
    #[serde(with = "duration_ms", default = "defaults::kill_timeout")]
    pub kill_timeout: Duration,
    /// Pause before a crashed app is started again.
    #[serde(with = "duration_ms", default = "defaults::restart_delay")]
    pub restart_delay: Duration,
    /// How a new generation says it is ready.
    #[serde(default)]
    pub ready: Ready,
    /// How long a new generation has to become ready.
    #[serde(with = "duration_ms", default = "defaults::ready_timeout")]
    pub ready_timeout: Duration,
    /// Sockets bound by mcpd and handed to every generation (fds 3, 4, ...).
    #[serde(default)]
    pub listen: Vec<ListenAddr>,
    /// With `ready = "ipc"`: ask the app to stop with a `'shutdown'` message, not a signal.
    #[serde(default)]
    pub shutdown_with_message: bool,
    /// mcpd's HTTP front: a public socket routing MCP sessions to their generation; each
    /// generation then gets a private socket of its own (as fd 3, like `listen`).
    #[serde(default)]
    pub front: Option<FrontConfig>,
    /// The app is an MCP server that speaks only stdio: the front serves it over HTTP, with a
    /// child per session (or one shared); needs `front`.
    #[serde(default)]
    pub stdio: Option<StdioConfig>,
    /// PM2's `pid_file`: a file holding the pid of the serving generation (removed while
    /// none serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    /// PM2's `namespace`: verbs given this name act on every app that has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// PM2's `instance_var`: a variable set to the instance's number (0, 1, ...), besides
    /// `MCPD_INSTANCE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_var: Option<String>,
    /// PM2's `increment_var`: a variable of `env` holding a number, which each instance gets
    /// plus its number (`PORT = "3000"`: 3000, 3001, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment_var: Option<String>,
    /// PM2's `watch`: directories and files (relative to `cwd`) whose changes restart the
    /// app (reload it, with readiness); empty: no watching. For development.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<PathBuf>,
    /// What `watch` ignores: glob patterns matched against each part of a changed path's
    /// name under the watched directory (`node_modules`, `*.log`), or against the whole of it
    /// when they hold a `/` (`data/*.db`).
    #[serde(default = "defaults::ignore_watch")]
    pub ignore_watch: Vec<String>,
    /// How long changes must pause before the app is restarted.
    #[serde(with = "duration_ms", default = "defaults::watch_delay")]
    pub watch_delay: Duration,
    /// PM2's `cron_restart`: a cron pattern at which the running app is reloaded (with
    /// readiness) or restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_restart: Option<String>,
    /// Whether `mcpd start FILE` (and `mcpd daemon --start FILE`) starts the app; with
    /// `false` it is only defined, and `mcpd start NAME` starts it (PM2's `autostart`).
    #[serde(default = "defaults::autostart", skip_serializing_if = "defaults::is_true")]
    pub autostart: bool,
    /// How many processes run side by side (each its own generation; behind a front each
    /// has its own private socket and new sessions go to the one with the fewest).
    #[serde(default = "defaults::instances")]
    pub instances: u32,
    /// Compare the tools of the new and old generation before a reload stops the old one
    /// (needs a front and an MCP URL in `ready` or `health`).
    #[serde(default)]
    pub on_tools_change: OnToolsChange,
    /// Run as this user (name or uid); needs the daemon to run as root.
    #[serde(default)]
    pub user: Option<String>,
    /// Run with this group (name or gid; default: the user's group).
    #[serde(default)]
    pub group: Option<String>,
    /// Restart policy, backoff and crash-loop cutoff.
    #[serde(flatten)]
    pub restarts: RestartConfig,
    /// Memory limit, watchdog, health check.
    #[serde(flatten)]
    pub limits: Limits,
    /// Resource limits set with setrlimit before exec (systemd's `LimitNOFILE=`, ...); the
    /// resources not named keep the daemon's.
    #[serde(default)]
    pub rlimits: Rlimits,
    /// Log files, format and rotation.
    #[serde(flatten)]
    pub logs: LogConfig,
    /// The config file the app came from, re-read by `reload`.
    #[serde(default)]
    pub source: Option<PathBuf>,
}

impl Serialize for AppConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        AppConfig::serialize(self, serializer)
    }
}

/// Through a [`serde_json::Value`]: the derived deserializer (large, with its `flatten`ed
/// parts) is then compiled once, for `Value` in this crate, instead of once per input it is
/// read from (a control request's buffered fields, `dump.json`) and per crate that reads it,
/// which keeps the resident daemon smaller.
impl<'de> Deserialize<'de> for AppConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<AppConfig, D::Error> {
        app_from_value(serde_json::Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// Not generic, so compiled here only, whichever crate deserializes an [`AppConfig`].
fn app_from_value(value: serde_json::Value) -> Result<AppConfig, serde_json::Error> {
    AppConfig::deserialize(value)
}

/// PM2 users write `\\.git` (a regular expression's escaped dot) where a glob means `.git`.
fn unescape_pm2(pattern: &str) -> String {
    pattern.replace("\\.", ".")
}

/// Whether `command` runs Node directly: its file name is `node` or `nodejs` (with a version
/// after it or not: `node20`, `node-22`), or names a JavaScript file (run by its shebang).
pub fn is_node_command(command: &str) -> bool {
    let file = command.rsplit('/').next().unwrap_or(command);
    let versioned = |prefix: &str| {
        file.strip_prefix(prefix).is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-'))
    };
    versioned("nodejs") || versioned("node") || [".js", ".cjs", ".mjs"].iter().any(|ext| file.ends_with(ext))
}

/// Defaults for fields that saved files from earlier versions may lack.
mod defaults {
    use super::*;
    pub fn kill_signal() -> Signal {
        Signal::TERM
    }
    pub fn kill_timeout() -> Duration {
        DEFAULT_KILL_TIMEOUT
    }
    pub fn restart_delay() -> Duration {
        DEFAULT_RESTART_DELAY
    }
    pub fn ready_timeout() -> Duration {
        DEFAULT_READY_TIMEOUT
    }
    pub fn instances() -> u32 {
        1
    }
    pub fn autostart() -> bool {
        true
    }
    pub fn is_true(value: &bool) -> bool {
        *value
    }
    pub fn ignore_watch() -> Vec<String> {
        vec!["node_modules".into(), ".git".into()]
    }
    pub fn watch_delay() -> Duration {
        super::DEFAULT_WATCH_DELAY
    }
}

impl AppConfig {
    /// The MCP endpoint named by `ready` or `health`, if any.
    pub fn mcp_url(&self) -> Option<&str> {
        match (&self.ready, self.limits.health.as_ref().map(|h| &h.probe)) {
            (Ready::Mcp { url }, _) | (_, Some(Probe::Mcp { url })) => Some(url),
            _ => None,
        }
    }

    /// The variables the config gives the app (after its `env_file`): `env`, with the
    /// selected `env_<name>` set laid over it.
    pub fn configured_env(&self) -> impl Iterator<Item = (&String, &String)> {
        let set = self.env_selected.as_ref().and_then(|name| self.env_sets.get(name));
        self.env.iter().chain(set.into_iter().flatten())
    }

    /// Selects the `env_<name>` set for the apps of a file that have it (`--env NAME`); the
    /// others keep the set they had (none: `env` alone), as under PM2. Fails, naming the sets
    /// there are, when no app has it (a typo would otherwise pass unseen).
    pub fn select_env<'a>(apps: impl IntoIterator<Item = &'a mut AppConfig>, name: &str) -> Result<(), String> {
        let mut found = false;
        let mut known = std::collections::BTreeSet::new();
        for app in apps {
            known.extend(app.env_sets.keys().cloned());
            if app.env_sets.contains_key(name) {
                found = true;
                app.env_selected = Some(name.to_string());
            }
        }
        match found {
            true => Ok(()),
            false if known.is_empty() => {
                Err(format!("--env {name}: no app has an env_{name} table (none has any env_NAME table)"))
            }
            false => Err(format!(
                "--env {name}: no app has an env_{name} table; the sets there are: {}",
                known.into_iter().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The variables instance `instance` gets on top of its config: `MCPD_INSTANCE`, the
    /// `instance_var`, and the `increment_var` plus the instance's number.
    pub fn instance_env(&self, instance: u32) -> Vec<(String, String)> {
        let mut vars = vec![("MCPD_INSTANCE".to_string(), instance.to_string())];
        if let Some(var) = &self.instance_var {
            vars.push((var.clone(), instance.to_string()));
        }
        if let Some(var) = &self.increment_var {
            let base = self.configured_env().filter(|(k, _)| *k == var).last().map(|(_, v)| v.trim().parse::<i64>());
            if let Some(Ok(n)) = base {
                vars.push((var.clone(), n.saturating_add(i64::from(instance)).to_string()));
            }
        }
        vars
    }

    /// Whether `watch` ignores `path`, a changed path under the watched `root`.
    pub fn watch_ignores(&self, root: &std::path::Path, path: &std::path::Path) -> bool {
        let relative = path.strip_prefix(root).unwrap_or(path);
        let options = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
        self.ignore_watch.iter().filter_map(|p| glob::Pattern::new(&unescape_pm2(p)).ok().map(|g| (p, g))).any(
            |(p, glob)| match p.contains('/') {
                true => glob.matches_path_with(relative, options),
                false => relative.components().any(|c| glob.matches(&c.as_os_str().to_string_lossy())),
            },
        )
    }

    /// Whether the app gets a Node IPC channel (`NODE_CHANNEL_FD`): with `ready = "ipc"`, and,
    /// as under PM2, whenever the command is Node itself (`node`, `nodejs`, `node20`, a `.js`
    /// script run by its shebang), so `process.send` works and `shutdown_with_message` can
    /// reach an app that only listens for `process.on('message')`. Other commands get none (a
    /// Python or Go program has no use for the fd), nor does a stdio server (the channel would
    /// reach mcpd's bridge, not the server).
    pub fn ipc_channel(&self) -> bool {
        self.stdio.is_none() && (self.ready == Ready::Ipc || is_node_command(&self.command))
    }

    /// The config as clients are shown it (`describe`): every env value replaced by
    /// [`HIDDEN`], names kept. The daemon keeps the real values (it hands them to the app, and
    /// `mcpd save` stores them in `dump.json`, mode 0600).
    pub fn with_env_hidden(&self) -> AppConfig {
        let mut shown = self.clone();
        for value in shown.env.values_mut().chain(shown.env_sets.values_mut().flat_map(|set| set.values_mut())) {
            *value = HIDDEN.to_string();
        }
        shown
    }

    /// An app with every option at its default, as `mcpd start --name N -- CMD` makes.
    pub fn new(name: AppName, command: String, args: Vec<String>, cwd: PathBuf) -> AppConfig {
        AppConfig {
            name,
            command,
            args,
            cwd,
            env: BTreeMap::new(),
            env_sets: BTreeMap::new(),
            env_selected: None,
            env_file: None,
            kill_signal: Signal::TERM,
            kill_timeout: DEFAULT_KILL_TIMEOUT,
            restart_delay: DEFAULT_RESTART_DELAY,
            ready: Ready::None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            listen: Vec::new(),
            shutdown_with_message: false,
            front: None,
            stdio: None,
            instances: 1,
            autostart: true,
            cron_restart: None,
            watch: Vec::new(),
            ignore_watch: defaults::ignore_watch(),
            watch_delay: DEFAULT_WATCH_DELAY,
            pid_file: None,
            namespace: None,
            instance_var: None,
            increment_var: None,
            on_tools_change: OnToolsChange::Allow,
            user: None,
            group: None,
            restarts: RestartConfig::default(),
            limits: Limits::default(),
            rlimits: Rlimits::new(),
            logs: LogConfig::default(),
            source: None,
        }
    }
}

/// Shows env keys but never their values, so secrets stay out of logs.
impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field(
                "env_sets",
                &self.env_sets.iter().map(|(n, s)| (n, s.keys().collect::<Vec<_>>())).collect::<Vec<_>>(),
            )
            .field("env_selected", &self.env_selected)
            .field("env_file", &self.env_file)
            .field("kill_signal", &self.kill_signal)
            .field("kill_timeout", &self.kill_timeout)
            .field("restart_delay", &self.restart_delay)
            .field("ready", &self.ready)
            .field("ready_timeout", &self.ready_timeout)
            .field("listen", &self.listen)
            .field("shutdown_with_message", &self.shutdown_with_message)
            .field("front", &self.front)
            .field("stdio", &self.stdio)
            .field("autostart", &self.autostart)
            .field("cron_restart", &self.cron_restart)
            .field("watch", &self.watch)
            .field("ignore_watch", &self.ignore_watch)
            .field("watch_delay", &self.watch_delay)
            .field("pid_file", &self.pid_file)
            .field("namespace", &self.namespace)
            .field("instance_var", &self.instance_var)
            .field("increment_var", &self.increment_var)
            .field("user", &self.user)
            .field("group", &self.group)
            .field("restarts", &self.restarts)
            .field("limits", &self.limits)
            .field("rlimits", &self.rlimits)
            .field("logs", &self.logs)
            .field("source", &self.source)
            .finish()
    }
}

/// A loaded config file: its apps in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    /// The file it was read from.
    pub path: PathBuf,
    /// The apps it defines, in the order written.
    pub apps: Vec<AppConfig>,
    /// Its `[daemon]` table: settings the daemon reads when it starts.
    pub daemon: DaemonSettings,
    /// What may fail where the daemon runs (a program not found in PATH here), from
    /// [`load_checked`]: `FILE:LINE:COLUMN: KEY: warning: ...`.
    pub warnings: Vec<ConfigError>,
}

/// `[daemon]`: settings of the daemon itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Where the daemon serves `/health`, `/health/NAME`, `/apps` and `/metrics` (off if unset).
    pub http: Option<ListenAddr>,
}
