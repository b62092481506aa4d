//! Walks a parsed TOML document key by key, collecting every error with its position.

use super::{parse_duration, read_env_file, AppConfig, ConfigError, ConfigErrors, ConfigFile, ListenAddr, Ready};
use crate::model::AppName;
use crate::signal::Signal;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml_edit::{Document, Item, Table, Value};

/// Keys an `[apps.NAME]` table may hold.
const APP_KEYS: &[&str] = &[
    "command",
    "args",
    "cwd",
    "env",
    "env_file",
    "env_NAME",
    "kill_signal",
    "kill_timeout",
    "restart_delay",
    "ready",
    "ready_timeout",
    "listen",
    "shutdown_with_message",
    "restart",
    "stop_exit_codes",
    "exp_backoff_restart_delay",
    "exp_backoff_factor",
    "exp_backoff_max",
    "exp_backoff_reset",
    "min_uptime",
    "max_restarts",
    "max_memory_restart",
    "memory_check_interval",
    "watchdog",
    "health",
    "rlimits",
    "out_file",
    "err_file",
    "merge_logs",
    "log_date_format",
    "log_type",
    "log_max_size",
    "log_rotate_interval",
    "log_retain",
    "log_compress",
    "user",
    "group",
    "front",
    "stdio",
    "instances",
    "on_tools_change",
    "autostart",
    "cron_restart",
    "pid_file",
    "watch",
    "ignore_watch",
    "watch_delay",
    "namespace",
    "instance_var",
    "increment_var",
];

/// The most processes one app may run side by side.
const MAX_INSTANCES: u32 = 64;

#[path = "parse_logs.rs"]
mod logs;

#[path = "parse_limits.rs"]
mod limits;

/// Reads and validates a config file. Relative paths in it are taken from its directory.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigErrors> {
    load_with(path, false)
}

/// Like [`load`], then asks the system for what each app needs (its `cwd`, program, `user`
/// and `group`; see [`super::checks::system_problems`]): what `start` would fail on is an
/// error; a program not found in PATH, or at a relative path, is a warning, in the returned
/// file's `warnings`. File system and user database look-ups: call it off any async runtime.
pub fn load_checked(path: &Path) -> Result<ConfigFile, ConfigErrors> {
    load_with(path, true)
}

fn load_with(path: &Path, system: bool) -> Result<ConfigFile, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    check_text(&text, path, system)
}

/// Like [`load_checked`], for config text made from `path` (a PM2 ecosystem file converted):
/// relative paths are taken from its directory, messages name it.
pub fn parse_checked(text: &str, path: &Path) -> Result<ConfigFile, ConfigErrors> {
    check_text(text, path, true)
}

fn check_text(text: &str, path: &Path, system: bool) -> Result<ConfigFile, ConfigErrors> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut walker = Walker { text, file: path, errors: Vec::new() };
    let mut warnings = Walker { text, file: path, errors: Vec::new() };
    let mut config = walk(&mut walker, &base, |walker, doc, apps| {
        // The apps that parsed are checked even when others did not: every error at once.
        for app in apps.iter().filter(|_| system) {
            for problem in super::checks::system_problems(app) {
                let span = locate(doc, app.name.as_str(), &problem.field);
                let key = format!("apps.{}.{}", app.name, problem.field.key());
                if problem.warning {
                    warnings.error(span, &key, format!("warning: {}", problem.message));
                } else {
                    walker.error(span, &key, problem.message);
                }
            }
        }
    });
    for app in &mut config.apps {
        app.source = Some(absolute.clone());
    }
    config.warnings = warnings.errors;
    finish(walker, config)
}

/// Validates config text; `file` is used in messages, `base` resolves relative paths.
pub fn parse(text: &str, file: &Path, base: &Path) -> Result<ConfigFile, ConfigErrors> {
    let mut walker = Walker { text, file, errors: Vec::new() };
    let config = walk(&mut walker, base, |_, _, _| {});
    finish(walker, config)
}

fn finish(mut walker: Walker<'_>, config: ConfigFile) -> Result<ConfigFile, ConfigErrors> {
    if walker.errors.is_empty() {
        Ok(config)
    } else {
        walker.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(walker.errors))
    }
}

/// Walks the whole file, collecting every error in `walker`; the apps that parsed are checked
/// for values no process can be given and for what two apps would share, then handed to
/// `more` (with the document, to locate what it finds).
fn walk<'t>(
    walker: &mut Walker<'t>,
    base: &Path,
    more: impl FnOnce(&mut Walker<'t>, &Document<&'t str>, &[AppConfig]),
) -> ConfigFile {
    let file = walker.file;
    let text = walker.text;
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            walker.error(span, "", e.message().trim().to_string());
            return ConfigFile {
                path: file.to_path_buf(),
                apps: Vec::new(),
                daemon: Default::default(),
                warnings: Vec::new(),
            };
        }
    };
    let mut apps = Vec::new();
    let mut daemon = super::DaemonSettings::default();
    for (key, item) in doc.as_table().iter() {
        match key {
            "apps" => {}
            "daemon" => daemon = walker.daemon(item, base),
            _ => {
                let span = key_span(doc.as_table(), key);
                walker.error(
                    span,
                    key,
                    "unknown top-level key; the file holds [apps.NAME] tables and an optional [daemon] table".into(),
                );
            }
        }
    }
    match doc.as_table().get("apps") {
        None => walker.error(0..0, "apps", "no apps defined: add an [apps.NAME] table".into()),
        Some(item) => match item.as_table_like() {
            None => walker.error(span_of(item), "apps", "must be a table of apps".into()),
            Some(table) => {
                for (name, app_item) in table.iter() {
                    let span = table.key(name).and_then(|k| k.span()).unwrap_or(0..0);
                    if let Some(app) = walker.app(name, app_item, span, base) {
                        apps.push(app);
                    }
                }
                if table.is_empty() {
                    walker.error(span_of(item), "apps", "no apps defined: add an [apps.NAME] table".into());
                }
            }
        },
    }
    // Values no process can be given, and what two apps would fight over.
    for app in &apps {
        for problem in super::checks::value_problems(app) {
            let span = locate(&doc, app.name.as_str(), &problem.field);
            walker.error(span, &format!("apps.{}.{}", app.name, problem.field.key()), problem.message);
        }
    }
    let refs: Vec<&AppConfig> = apps.iter().collect();
    for conflict in super::checks::conflicts(&refs) {
        let (mine, theirs) = (&apps[conflict.app], &apps[conflict.other]);
        let other_span = locate(&doc, theirs.name.as_str(), &conflict.other_field);
        let other_line = text[..other_span.start.min(text.len())].matches('\n').count() + 1;
        let other = format!("apps.{}.{} (line {other_line})", theirs.name, conflict.other_field.key());
        let span = locate(&doc, mine.name.as_str(), &conflict.field);
        walker.error(span, &format!("apps.{}.{}", mine.name, conflict.field.key()), conflict.message(&other));
    }
    more(walker, &doc, &apps);
    ConfigFile { path: file.to_path_buf(), apps, daemon, warnings: Vec::new() }
}

/// Where `field` of app `app` is written: its value (an env name: its key), else the app's
/// `[apps.NAME]` header when the setting is not written (a default).
fn locate<S>(doc: &Document<S>, app: &str, field: &super::checks::Field) -> Range<usize> {
    use super::checks::Field;
    let Some(apps) = doc.as_table().get("apps").and_then(Item::as_table_like) else { return 0..0 };
    let header = apps.key(app).and_then(|k| k.span()).unwrap_or(0..0);
    let Some(table) = apps.get(app).and_then(Item::as_table_like) else { return header };
    let value = |key: &str| table.get(key).and_then(Item::span);
    let element = |key: &str, i: usize| table.get(key)?.as_array()?.get(i)?.span();
    let found = match field {
        Field::Command => value("command"),
        Field::Arg(i) => element("args", *i),
        Field::Cwd => value("cwd"),
        Field::User => value("user"),
        Field::Group => value("group"),
        Field::OutFile => value("out_file"),
        Field::ErrFile => value("err_file"),
        Field::Listen(i) => element("listen", *i),
        Field::EnvName(set, name) => table.get(set).and_then(Item::as_table_like).and_then(|t| t.key(name)?.span()),
        Field::EnvValue(set, name) => table.get(set).and_then(Item::as_table_like).and_then(|t| t.get(name)?.span()),
        Field::FrontListen => table.get("front").and_then(Item::as_table_like).and_then(|t| t.get("listen")?.span()),
        Field::Rlimit(resource) => {
            table.get("rlimits").and_then(Item::as_table_like).and_then(|t| t.get(resource.name())?.span())
        }
        Field::Key(key) => value(key),
    };
    found.unwrap_or(header)
}

fn span_of(item: &Item) -> Range<usize> {
    item.span().unwrap_or(0..0)
}

fn key_span(table: &Table, key: &str) -> Range<usize> {
    table.key(key).and_then(|k| k.span()).unwrap_or(0..0)
}

struct Walker<'a> {
    text: &'a str,
    file: &'a Path,
    errors: Vec<ConfigError>,
}

impl Walker<'_> {
    pub(super) fn error(&mut self, span: Range<usize>, key: &str, message: String) {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.errors.push(ConfigError { file: self.file.to_path_buf(), line, column, key: key.to_string(), message });
    }

    fn app(&mut self, name: &str, item: &Item, name_span: Range<usize>, base: &Path) -> Option<AppConfig> {
        let path = format!("apps.{name}");
        let app_name = AppName::new(name).map_err(|e| self.error(name_span.clone(), &path, e)).ok();
        let Some(table) = item.as_table_like() else {
            self.error(span_of(item), &path, "must be a table, e.g. [apps.web] with command = \"...\"".into());
            return None;
        };
        let mut command = None;
        let mut cfg = AppConfig::new(AppName::new("x").ok()?, String::new(), Vec::new(), base.to_path_buf());
        for (key, value) in table.iter() {
            let kpath = format!("{path}.{key}");
            let span = value.span().or_else(|| table.key(key).and_then(|k| k.span())).unwrap_or(0..0);
            match key {
                "command" => command = self.string(value, &kpath, span).filter(|c| self.non_empty(c, &kpath, value)),
                "args" => cfg.args = self.strings(value, &kpath, span).unwrap_or_default(),
                "cwd" => cfg.cwd = self.path(value, &kpath, span, base).unwrap_or(cfg.cwd),
                "env" => cfg.env = self.env(value, &kpath, span),
                "env_file" => cfg.env_file = self.env_file(value, &kpath, span, base),
                "kill_signal" => {
                    if let Some(s) = self.string(value, &kpath, span.clone()) {
                        match Signal::parse(&s) {
                            Some(sig) if sig.asks_to_stop() => cfg.kill_signal = sig,
                            _ => self.error(
                                span,
                                &kpath,
                                format!(
                                    "{s:?} is not a signal that asks a program to stop; use one of {}",
                                    Signal::stop_names()
                                ),
                            ),
                        }
                    }
                }
                "kill_timeout" => cfg.kill_timeout = self.duration(value, &kpath, span).unwrap_or(cfg.kill_timeout),
                "restart_delay" => cfg.restart_delay = self.duration(value, &kpath, span).unwrap_or(cfg.restart_delay),
                "ready" => cfg.ready = self.ready(value, &kpath, span).unwrap_or(cfg.ready),
                "ready_timeout" => cfg.ready_timeout = self.duration(value, &kpath, span).unwrap_or(cfg.ready_timeout),
                "listen" => cfg.listen = self.listen(value, &kpath, span, base),
                "front" => cfg.front = self.front(value, &kpath, span, base),
                "stdio" => cfg.stdio = self.stdio(value, &kpath, span),
                "instances" => match value.as_integer() {
                    Some(n) if (1..=i64::from(MAX_INSTANCES)).contains(&n) => cfg.instances = n as u32,
                    _ => self.error(
                        span,
                        &kpath,
                        match value.as_integer() {
                            Some(n) => format!("expected a number of processes from 1 to {MAX_INSTANCES}, found {n}"),
                            None => format!(
                                "expected a number of processes from 1 to {MAX_INSTANCES}, found {}",
                                type_name(value)
                            ),
                        },
                    ),
                },
                "on_tools_change" => match value.as_str() {
                    Some("allow") => cfg.on_tools_change = super::OnToolsChange::Allow,
                    Some("warn") => cfg.on_tools_change = super::OnToolsChange::Warn,
                    Some("refuse") => cfg.on_tools_change = super::OnToolsChange::Refuse,
                    _ => self.error(span, &kpath, "expected \"allow\", \"warn\" or \"refuse\"".into()),
                },
                "user" => cfg.user = self.string(value, &kpath, span).filter(|u| self.non_empty(u, &kpath, value)),
                "group" => cfg.group = self.string(value, &kpath, span).filter(|g| self.non_empty(g, &kpath, value)),
                "namespace" | "instance_var" | "increment_var" => {
                    let text = self.string(value, &kpath, span.clone());
                    let valid = |t: &String| match key {
                        "namespace" => {
                            AppName::new(t).map(drop).map_err(|e| format!("{e} (a namespace is named as an app is)"))
                        }
                        _ if !t.is_empty() && !t.contains('=') && !t.contains('\0') => Ok(()),
                        _ => Err("expected the name of an environment variable".to_string()),
                    };
                    match text.map(|t| valid(&t).map(|()| t)) {
                        Some(Ok(t)) if key == "namespace" => cfg.namespace = Some(t),
                        Some(Ok(t)) if key == "instance_var" => cfg.instance_var = Some(t),
                        Some(Ok(t)) => cfg.increment_var = Some(t),
                        Some(Err(e)) => self.error(span, &kpath, e),
                        None => {}
                    }
                }
                "pid_file" => cfg.pid_file = self.path(value, &kpath, span, base),
                "watch" => match (value.as_bool(), value.as_array()) {
                    (Some(true), _) => cfg.watch = vec![PathBuf::from(".")],
                    (Some(false), _) => cfg.watch.clear(),
                    (_, Some(paths)) => {
                        cfg.watch.clear();
                        for (i, path) in paths.iter().enumerate() {
                            match path.as_str().filter(|p| !p.is_empty() && !p.contains('\0')) {
                                Some(p) => cfg.watch.push(PathBuf::from(p)),
                                None => self.error(
                                    span.clone(),
                                    &format!("{kpath}[{i}]"),
                                    "expected a path (relative to cwd)".into(),
                                ),
                            }
                        }
                    }
                    _ => self.error(
                        span,
                        &kpath,
                        "expected true (the app's cwd) or a list of paths relative to cwd".into(),
                    ),
                },
                "ignore_watch" => match value.as_array() {
                    Some(patterns) => {
                        cfg.ignore_watch.clear();
                        for (i, pattern) in patterns.iter().enumerate() {
                            match pattern.as_str().map(|p| (p, glob::Pattern::new(&p.replace("\\.", ".")))) {
                                Some((p, Ok(_))) => cfg.ignore_watch.push(p.to_string()),
                                Some((_, Err(e))) => self.error(
                                    span.clone(),
                                    &format!("{kpath}[{i}]"),
                                    format!("not a glob pattern: {e}"),
                                ),
                                None => self.error(
                                    span.clone(),
                                    &format!("{kpath}[{i}]"),
                                    "expected a glob pattern like \"*.log\"".into(),
                                ),
                            }
                        }
                    }
                    None => self.error(
                        span,
                        &kpath,
                        "expected a list of glob patterns: [\"node_modules\", \"*.log\"]".into(),
                    ),
                },
                "watch_delay" => cfg.watch_delay = self.duration(value, &kpath, span).unwrap_or(cfg.watch_delay),
                "cron_restart" => {
                    if let Some(pattern) = self.string(value, &kpath, span.clone()) {
                        match super::check_cron(&pattern) {
                            Ok(()) => cfg.cron_restart = Some(pattern),
                            Err(e) => self.error(span, &kpath, e),
                        }
                    }
                }
                "autostart" => match value.as_bool() {
                    Some(b) => cfg.autostart = b,
                    None => self.error(span, &kpath, format!("expected true or false, found {}", type_name(value))),
                },
                "shutdown_with_message" => match value.as_bool() {
                    Some(b) => cfg.shutdown_with_message = b,
                    None => self.error(span, &kpath, format!("expected true or false, found {}", type_name(value))),
                },
                _ if key.starts_with("env_") => {
                    let set = &key["env_".len()..];
                    if set.is_empty() || !set.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        self.error(span, &kpath, "an env set is named env_NAME, NAME of letters, digits, `_` and `-` (selected with --env NAME)".into());
                    } else {
                        let vars = self.env(value, &kpath, span);
                        cfg.env_sets.insert(set.to_string(), vars);
                    }
                }
                _ if self.log_key(key, value, &kpath, span.clone(), base, &mut cfg) => {}
                _ if self.limit_key(key, value, &kpath, span.clone(), &mut cfg) => {}
                _ => {
                    let kspan = table.key(key).and_then(|k| k.span()).unwrap_or(span);
                    self.error(kspan, &kpath, format!("unknown key; known keys are {}", APP_KEYS.join(", ")));
                }
            }
        }
        // The checks below may look at the program (a Node one has an IPC channel).
        cfg.command = command.clone().unwrap_or_default();
        if cfg.shutdown_with_message && cfg.stdio.is_none() && !cfg.ipc_channel() {
            let span = table.key("shutdown_with_message").and_then(|k| k.span()).unwrap_or(name_span.clone());
            self.error(
                span,
                &format!("{path}.shutdown_with_message"),
                "the message goes over a Node IPC channel, which only a Node command (`node`, a `.js` script) gets by itself: run it with `command = \"node\"`, or set ready = \"ipc\" if this program reads NODE_CHANNEL_FD".into(),
            );
        }
        if let Some(var) = &cfg.increment_var {
            if cfg.env.get(var).is_none_or(|v| v.trim().parse::<i64>().is_err()) {
                let span = table.key("increment_var").and_then(|k| k.span()).unwrap_or(name_span.clone());
                self.error(
                    span,
                    &format!("{path}.increment_var"),
                    format!("each instance gets {var} plus its number: set {var} to a number in `env`, e.g. env = {{ {var} = \"3000\" }}"),
                );
            }
        }
        if cfg.limits.watchdog.is_some() && cfg.ready != Ready::Notify {
            let span = table.key("watchdog").and_then(|k| k.span()).unwrap_or(name_span.clone());
            self.error(
                span,
                &format!("{path}.watchdog"),
                "needs ready = \"notify\" (WATCHDOG=1 comes over the notify socket)".into(),
            );
        }
        if cfg.on_tools_change != super::OnToolsChange::Allow && (cfg.front.is_none() || cfg.mcp_url().is_none()) {
            let span = table.key("on_tools_change").and_then(|k| k.span()).unwrap_or(name_span.clone());
            self.error(span, &format!("{path}.on_tools_change"), "needs a front and ready = { mcp = URL } (or an mcp health check), so each generation's tools can be probed on its own".into());
        }
        if cfg.front.is_some() && !cfg.listen.is_empty() {
            let span = table.key("front").and_then(|k| k.span()).unwrap_or(name_span.clone());
            self.error(
                span,
                &format!("{path}.front"),
                "a front gives each generation its own socket: remove `listen` (the app takes fd 3 the same way)"
                    .into(),
            );
        }
        if cfg.stdio.is_some() {
            let span = table.key("stdio").and_then(|k| k.span()).unwrap_or(name_span.clone());
            if cfg.front.is_none() {
                self.error(
                    span.clone(),
                    &format!("{path}.stdio"),
                    "a stdio server is served over HTTP by mcpd's front: add front = { listen = \"127.0.0.1:PORT\" }"
                        .into(),
                );
            }
            if table.contains_key("ready") {
                let span = table.key("ready").and_then(|k| k.span()).unwrap_or(span.clone());
                self.error(
                    span,
                    &format!("{path}.ready"),
                    "a stdio app is ready once a child of it answers initialize and tools/list: remove `ready`".into(),
                );
            }
            if cfg.shutdown_with_message {
                let span = table.key("shutdown_with_message").and_then(|k| k.span()).unwrap_or(span);
                self.error(
                    span,
                    &format!("{path}.shutdown_with_message"),
                    "a stdio server is asked to stop by closing its stdin, then kill_signal: remove it".into(),
                );
            }
            // mcpd's bridge says READY=1 on the notify socket.
            cfg.ready = Ready::Notify;
        }
        if cfg.instances > 1 && cfg.pid_file.is_some() {
            let span = table.key("pid_file").and_then(|k| k.span()).unwrap_or(name_span.clone());
            self.error(
                span,
                &format!("{path}.pid_file"),
                "one pid file cannot hold several instances' pids: remove it (`mcpd list --json` gives each instance's pid)".into(),
            );
        }
        if cfg.instances > 1 && !cfg.listen.is_empty() {
            let span = table.key("instances").and_then(|k| k.span()).unwrap_or(name_span.clone());
            self.error(
                span,
                &format!("{path}.instances"),
                "several instances cannot share `listen` sockets: use `front = { listen = ... }` instead (each instance gets a private socket behind it)".into(),
            );
        }
        if command.is_none() && !table.contains_key("command") {
            self.error(name_span, &path, "missing `command`: the program to run".into());
        }
        cfg.name = app_name?;
        cfg.command = command?;
        Some(cfg)
    }

    /// `[daemon]`: settings of the daemon itself, read when it starts.
    fn daemon(&mut self, item: &Item, base: &Path) -> super::DaemonSettings {
        let mut settings = super::DaemonSettings::default();
        let Some(table) = item.as_table_like() else {
            self.error(span_of(item), "daemon", "must be a table, e.g. [daemon] with http = \"127.0.0.1:9615\"".into());
            return settings;
        };
        for (key, value) in table.iter() {
            let kpath = format!("daemon.{key}");
            let span = value.span().or_else(|| table.key(key).and_then(|k| k.span())).unwrap_or(0..0);
            match key {
                "http" => match value.as_str().map(|s| ListenAddr::parse_public(s, base)) {
                    Some(Ok(addr)) => settings.http = Some(addr),
                    Some(Err(e)) => self.error(span, &kpath, e),
                    None => self.error(
                        span,
                        &kpath,
                        format!("expected an address like \"127.0.0.1:9615\", found {}", type_name(value)),
                    ),
                },
                _ => {
                    let kspan = table.key(key).and_then(|k| k.span()).unwrap_or(span);
                    self.error(kspan, &kpath, "unknown key; the [daemon] table knows http".into());
                }
            }
        }
        settings
    }

    fn non_empty(&mut self, text: &str, key: &str, item: &Item) -> bool {
        if text.trim().is_empty() {
            self.error(span_of(item), key, "must not be empty".into());
            return false;
        }
        true
    }

    pub(super) fn string(&mut self, item: &Item, key: &str, span: Range<usize>) -> Option<String> {
        match item.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.error(span, key, format!("expected a string, found {}", type_name(item)));
                None
            }
        }
    }

    fn strings(&mut self, item: &Item, key: &str, span: Range<usize>) -> Option<Vec<String>> {
        let Some(array) = item.as_array() else {
            self.error(span, key, format!("expected an array of strings, found {}", type_name(item)));
            return None;
        };
        let mut out = Vec::new();
        for (i, v) in array.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(s.to_string()),
                None => self.error(
                    v.span().unwrap_or(span.clone()),
                    &format!("{key}[{i}]"),
                    format!("expected a string, found {}", v.type_name()),
                ),
            }
        }
        Some(out)
    }

    pub(super) fn path(&mut self, item: &Item, key: &str, span: Range<usize>, base: &Path) -> Option<PathBuf> {
        let s = self.string(item, key, span)?;
        let p = PathBuf::from(s);
        Some(if p.is_absolute() { p } else { base.join(p) })
    }

    fn env(&mut self, item: &Item, key: &str, span: Range<usize>) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        let Some(table) = item.as_table_like() else {
            self.error(span, key, format!("expected a table of NAME = \"value\", found {}", type_name(item)));
            return out;
        };
        for (name, value) in table.iter() {
            let vspan = value.span().unwrap_or(span.clone());
            let text = match value.as_value() {
                Some(Value::String(s)) => Some(s.value().to_string()),
                Some(Value::Integer(i)) => Some(i.value().to_string()),
                Some(Value::Float(f)) => Some(f.value().to_string()),
                Some(Value::Boolean(b)) => Some(b.value().to_string()),
                _ => None,
            };
            match text {
                Some(t) => {
                    out.insert(name.to_string(), t);
                }
                None => self.error(
                    vspan,
                    &format!("{key}.{name}"),
                    format!("expected a string, number or boolean, found {}", type_name(value)),
                ),
            }
        }
        out
    }

    fn env_file(&mut self, item: &Item, key: &str, span: Range<usize>, base: &Path) -> Option<PathBuf> {
        let path = self.path(item, key, span.clone(), base)?;
        if let Err(e) = read_env_file(&path) {
            self.error(span, key, e);
        }
        Some(path)
    }

    fn ready(&mut self, item: &Item, key: &str, span: Range<usize>) -> Option<Ready> {
        if let Some(word) = item.as_str() {
            return Ready::parse_word(word).map_err(|e| self.error(span, key, e)).ok();
        }
        let Some(table) = item.as_table_like() else {
            self.error(
                span,
                key,
                format!(
                    "expected \"none\", \"notify\", \"ipc\", {{ http = URL }} or {{ tcp = ADDR }}, found {}",
                    type_name(item)
                ),
            );
            return None;
        };
        let entries: Vec<(&str, &Item)> = table.iter().collect();
        let [(kind, value)] = entries[..] else {
            self.error(span, key, "give exactly one of http = URL or tcp = ADDR".into());
            return None;
        };
        let vspan = value.span().unwrap_or(span.clone());
        let text = self.string(value, &format!("{key}.{kind}"), vspan.clone())?;
        let parsed = match kind {
            "http" => Ready::http(&text),
            "tcp" => Ready::tcp(&text),
            "mcp" => Ready::mcp(&text),
            other => Err(format!("unknown probe {other:?}; use http = URL, tcp = ADDR or mcp = URL")),
        };
        parsed.map_err(|e| self.error(vspan, &format!("{key}.{kind}"), e)).ok()
    }

    fn listen(&mut self, item: &Item, key: &str, span: Range<usize>, base: &Path) -> Vec<ListenAddr> {
        let Some(array) = item.as_array() else {
            self.error(
                span,
                key,
                format!("expected an array like [\"tcp://127.0.0.1:3000\"], found {}", type_name(item)),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in array.iter().enumerate() {
            let vspan = v.span().unwrap_or(span.clone());
            let ikey = format!("{key}[{i}]");
            match v.as_str().map(|s| ListenAddr::parse(s, base)) {
                Some(Ok(addr)) if out.contains(&addr) => self.error(vspan, &ikey, format!("{addr} is listed twice")),
                Some(Ok(addr)) => out.push(addr),
                Some(Err(e)) => self.error(vspan, &ikey, e),
                None => self.error(vspan, &ikey, format!("expected a string, found {}", v.type_name())),
            }
        }
        out
    }

    pub(super) fn duration(&mut self, item: &Item, key: &str, span: Range<usize>) -> Option<Duration> {
        let parsed = match item.as_value() {
            // Milliseconds, held to the same limit as text.
            Some(Value::Integer(i)) => u64::try_from(*i.value())
                .map_err(|_| "a duration must not be negative".to_string())
                .and_then(|ms| parse_duration(&ms.to_string())),
            Some(Value::String(s)) => parse_duration(s.value()),
            _ => Err(format!("expected a duration like \"10s\" or milliseconds, found {}", type_name(item))),
        };
        parsed.map_err(|e| self.error(span, key, e)).ok()
    }
}

pub(super) fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => v.type_name(),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
