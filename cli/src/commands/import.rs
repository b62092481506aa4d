//! `mcpd import FILE`: a PM2 ecosystem file (`.config.js`, `.cjs`, `.mjs`, `.json`, `.yaml`)
//! as a commented `mcpd.toml`; `mcpd start ecosystem.config.js` runs the same conversion.
//!
//! A JavaScript file is evaluated by the user's own `node` (it may compute values, read
//! `process.env`, `require` things), and its exports are read back as JSON. Every PM2 key is
//! either mapped, or listed under the app with what to do instead; nothing is dropped silently.

use anyhow::{bail, Context};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The ecosystem file: `ecosystem.config.js` (`.cjs`, `.mjs`), `.json`, `.yaml`.
    file: PathBuf,
    /// Lay the apps' `env_NAME` over their `env` in the file written (PM2's `--env NAME`); the
    /// `env_*` tables are kept either way.
    #[arg(long, value_name = "NAME")]
    env: Option<String>,
    /// Where to write the TOML (default: standard output). An existing file is not replaced.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// How long a JavaScript ecosystem file may take to evaluate.
const EVAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The most JSON a JavaScript ecosystem file may evaluate to.
const MAX_EVALUATED: usize = 16 << 20;

/// Runs `import`.
pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let converted = convert_file(&args.file, args.env.as_deref())?;
    for note in &converted.notes {
        eprintln!("note: {note}");
    }
    match &args.output {
        None => print!("{}", converted.toml),
        Some(path) => {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("cannot create {} (an existing file is not replaced)", path.display()))?;
            file.write_all(converted.toml.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} apps); check it with `mcpd check {}`, start it with `mcpd start {}`",
                path.display(),
                converted.apps,
                path.display(),
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `path` names a PM2 ecosystem file rather than an `mcpd.toml`, as PM2 tells them
/// from scripts: `.json`, `.yaml`, `.yml`, and JavaScript named `*.config.js` (`.cjs`, `.mjs`)
/// or `ecosystem*.js`. `app.js` is a script: `mcpd start` must not run it to read it.
pub fn is_ecosystem(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let js = [".js", ".cjs", ".mjs"].iter().find(|ext| name.ends_with(**ext));
    [".json", ".yaml", ".yml"].iter().any(|ext| name.ends_with(ext))
        || js.is_some_and(|ext| name.ends_with(&format!(".config{ext}")) || name.starts_with("ecosystem"))
}

/// Whether `path` looks like a program rather than a config file (`mcpd start app.js`).
pub fn is_script(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !is_ecosystem(path) && interpreter_for(name).is_some()
}

/// The interpreter PM2 runs a script with, by its extension.
const INTERPRETERS: &[(&str, &str)] = &[
    (".js", "node"),
    (".cjs", "node"),
    (".mjs", "node"),
    (".ts", "node"),
    (".py", "python3"),
    (".sh", "bash"),
    (".rb", "ruby"),
    (".php", "php"),
    (".pl", "perl"),
    (".coffee", "coffee"),
];

/// The interpreter for a script named `name`, by its extension.
pub fn interpreter_for(name: &str) -> Option<&'static str> {
    INTERPRETERS.iter().find(|(ext, _)| name.ends_with(ext)).map(|(_, program)| *program)
}

/// An ecosystem file converted.
#[derive(Debug)]
pub struct Converted {
    /// The `mcpd.toml` text, notes included as comments.
    pub toml: String,
    /// What the user should know: keys not carried over, and what to do instead.
    pub notes: Vec<String>,
    /// How many apps it defines.
    pub apps: usize,
}

/// Reads, evaluates (JavaScript) and converts an ecosystem file; the TOML is checked with
/// mcpd's own parser before it is returned.
pub fn convert_file(path: &Path, env: Option<&str>) -> anyhow::Result<Converted> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
    let value = read_ecosystem(&absolute)?;
    let converted = convert(&value, &base, &path.display().to_string(), env).map_err(anyhow::Error::msg)?;
    if let Err(e) = mcpd_core::config::parse(&converted.toml, path, &base) {
        bail!("{e}\nthe conversion of {} is not a valid mcpd.toml (above); please report this", path.display());
    }
    Ok(converted)
}

/// The ecosystem file's value: JSON and YAML read here, JavaScript evaluated by `node`.
fn read_ecosystem(path: &Path) -> anyhow::Result<Value> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".json") {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()));
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}:{}: not YAML: {e}", path.display(), e.marker().line()))?;
        return Ok(docs.first().map(yaml_to_json).unwrap_or(Value::Null));
    }
    evaluate_js(path)
}

/// PM2 evaluates ecosystem files with Node; so does this, with the user's `node`, in the
/// file's directory. Functions (which PM2 cannot use either) come back as `{"$function": ...}`.
fn evaluate_js(path: &Path) -> anyhow::Result<Value> {
    const READ: &str = r#"
const { pathToFileURL } = require('url');
import(pathToFileURL(process.argv[1]).href).then((m) => {
  const config = m.default !== undefined ? m.default : m;
  const text = JSON.stringify(config, (key, value) => {
    if (typeof value === 'function') return { '$function': String(value).split('\n')[0].slice(0, 60) };
    if (typeof value === 'bigint') return String(value);
    return value;
  });
  process.stdout.write(text === undefined ? 'null' : text);
}).catch((e) => { process.stderr.write(String((e && e.stack) || e)); process.exit(1); });
"#;
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    // In a process group of its own: whatever the file starts is ended with it.
    let mut child = std::process::Command::new("node")
        .arg("-e")
        .arg(READ)
        .arg(path)
        .current_dir(dir)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `node` to read {} (is Node installed and in PATH?)", path.display()))?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // Read at most what is kept (and one byte more, to tell it was too much).
    let reader = |pipe: Option<std::process::ChildStdout>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(MAX_EVALUATED as u64 + 1).read_to_end(&mut out);
            }
            out
        })
    };
    let out_thread = reader(stdout);
    let err_thread = std::thread::spawn(move || {
        let mut err = Vec::new();
        if let Some(p) = stderr {
            let _ = p.take(64 << 10).read_to_end(&mut err);
        }
        err
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx.recv_timeout(EVAL_TIMEOUT);
    // Done or not, nothing it started outlives it (a pipe held open would also keep the
    // readers waiting).
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let status = match status {
        Ok(status) => status.context("cannot wait for node")?,
        Err(_) => bail!("node did not finish evaluating {} within {EVAL_TIMEOUT:?}", path.display()),
    };
    let (stdout, stderr) = (out_thread.join().unwrap_or_default(), err_thread.join().unwrap_or_default());
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        bail!("node could not evaluate {} ({status}):\n{}", path.display(), stderr.trim_end());
    }
    if stdout.len() > MAX_EVALUATED {
        bail!("{} evaluates to more than {} MiB of JSON", path.display(), MAX_EVALUATED >> 20);
    }
    let output = std::process::Output { status, stdout, stderr: Vec::new() };
    serde_json::from_slice(&output.stdout).with_context(|| format!("{} did not evaluate to JSON", path.display()))
}

fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Real(text) => {
            text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
        }
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Real(r) => r.clone(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// PM2 keys mcpd has no use for, with why: shown as notes, not as errors.
const IGNORED: &[(&str, &str)] = &[
    ("vizion", "PM2's versioning metadata; mcpd has none"),
    ("pmx", "PM2's monitoring agent; mcpd's metrics are at [daemon] http /metrics"),
    ("automation", "PM2's monitoring agent; mcpd's metrics are at [daemon] http /metrics"),
    ("trace", "PM2's transaction tracing (Keymetrics)"),
    ("disable_trace", "PM2's transaction tracing (Keymetrics)"),
    ("v8", "PM2's Keymetrics probes"),
    ("event_loop_inspector", "PM2's Keymetrics probes"),
    ("deep_monitoring", "PM2's Keymetrics probes"),
    ("io", "PM2's Keymetrics settings"),
    ("post_update", "run by the Keymetrics dashboard; mcpd has none"),
    ("install_url", "PM2 module installation"),
    ("source_map_support", "PM2 injects source-map-support; run node with --enable-source-maps in args instead"),
    ("disable_source_map_support", "PM2 injects source-map-support; mcpd does not"),
    ("windowsHide", "Windows only"),
    ("force", "mcpd starts an app once by name; `mcpd restart NAME` starts it again"),
    ("username", "informational in PM2; `user` sets who runs the app"),
    ("write", "PM2 internal"),
    ("execute_command", "PM2 internal"),
    ("kill_retry_time", "mcpd sends kill_signal once, then SIGKILL after kill_timeout"),
    ("name_prefix", "write the full name"),
    ("append_env_to_name", "write the full name"),
    ("filter_env", "mcpd passes its own environment to apps; set what they need in `env` or `env_file`"),
];

/// PM2 keys with no mcpd equivalent yet, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("log_file", "mcpd writes stdout and stderr to one file with merge_logs = true (and out_file)"),
    ("log", "mcpd writes stdout and stderr to one file with merge_logs = true (and out_file)"),
    ("disable_logs", "mcpd always keeps logs, rotated (log_max_size, log_retain)"),
    ("log_date_format", "mcpd stamps each line with an RFC 3339 UTC time (or none: log_date_format = \"none\")"),
    ("time", "mcpd stamps each line with an RFC 3339 UTC time by default"),
    ("merge_logs", "instances of an mcpd app already write to the app's one pair of files"),
    ("combine_logs", "instances of an mcpd app already write to the app's one pair of files"),
    ("treekill", "mcpd always stops the app's whole process group (and cgroup)"),
];

/// Converts an ecosystem value (`{ apps: [...] }`, an array of apps, or one app).
/// `base` resolves relative paths; `shown` names the file in the output.
pub fn convert(value: &Value, base: &Path, shown: &str, env: Option<&str>) -> Result<Converted, String> {
    let apps: Vec<&Value> = match value {
        Value::Object(o) if o.contains_key("apps") => match &o["apps"] {
            Value::Array(a) => a.iter().collect(),
            one @ Value::Object(_) => vec![one],
            _ => return Err(format!("{shown}: `apps` is neither a list of apps nor one app")),
        },
        Value::Object(o) if o.contains_key("script") => vec![value],
        Value::Array(a) => a.iter().collect(),
        _ => return Err(format!("{shown}: no apps: expected `module.exports = {{ apps: [...] }}`")),
    };
    if apps.is_empty() {
        return Err(format!("{shown}: `apps` is empty"));
    }
    let mut out = format!(
        "# Converted by `mcpd import` from {shown} (PM2).\n\
         # What did not carry over is listed under each app; `mcpd check FILE` validates this file.\n"
    );
    let mut notes = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    let mut found_env = env.is_none();
    if let Some(other) = value.as_object().into_iter().flat_map(|o| o.keys()).find(|k| *k != "apps") {
        notes.push(format!("{shown}: `{other}` (deployment and other top-level settings) is not carried over"));
    }
    for (i, app) in apps.iter().enumerate() {
        let Value::Object(app) = app else { return Err(format!("{shown}: app {} is not an object", i + 1)) };
        let converted = convert_app(app, base, env)?;
        found_env |= converted.has_env;
        if !names.insert(converted.name.clone()) {
            return Err(format!(
                "{shown}: two apps are named {:?}: mcpd names must be unique; rename one",
                converted.name
            ));
        }
        out.push('\n');
        out.push_str(&converted.toml);
        notes.extend(converted.notes.iter().map(|n| format!("{}: {n}", converted.name)));
    }
    if let Some(set) = env.filter(|_| !found_env) {
        return Err(format!("--env {set}: no app in {shown} has env_{set}"));
    }
    Ok(Converted { toml: out, notes, apps: apps.len() })
}

struct App {
    name: String,
    toml: String,
    notes: Vec<String>,
    has_env: bool,
}

/// One app; the lines it writes go in the order a reader expects (command first).
fn convert_app(app: &Map<String, Value>, base: &Path, env: Option<&str>) -> Result<App, String> {
    let get = |keys: &[&'static str]| keys.iter().find_map(|k| app.get(*k).map(|v| (*k, v)));
    let Some((_, script)) = get(&["script", "exec"]) else {
        let name = app.get("name").and_then(Value::as_str).unwrap_or("an app");
        return Err(format!("{name}: no `script`: PM2 needs one too"));
    };
    let script = scalar(script).ok_or("`script` must be a string")?;
    let name = match app.get("name").and_then(Value::as_str) {
        Some(name) => name.to_string(),
        None => {
            let file = script.rsplit('/').next().unwrap_or(&script);
            file.split('.').next().unwrap_or(file).to_string()
        }
    };
    let mut notes = Vec::new();
    let valid = mcpd_core::model::AppName::new(&name).is_ok();
    let toml_name = match valid {
        true => name.clone(),
        false => {
            let mapped: String =
                name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
            let trimmed = mapped.trim_start_matches(['-', '_']).chars().take(60).collect::<String>();
            let fixed = match mcpd_core::model::AppName::new(&trimmed) {
                Ok(_) => trimmed,
                Err(_) => format!("app-{trimmed}").chars().take(64).collect(),
            };
            notes.push(format!("renamed from {name:?}: mcpd names are letters, digits, `-` and `_`"));
            fixed
        }
    };
    let mut lines: Vec<String> = Vec::new();
    let mut done: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    let mut mark = |keys: &[&'static str]| done.extend(keys.iter().copied());

    // The command: PM2 runs `script` with an interpreter chosen by its extension.
    let interpreter = get(&["interpreter", "exec_interpreter"]).and_then(|(_, v)| scalar(v));
    let interpreter_args = get(&["node_args", "interpreter_args", "interpreterArgs"]).map(|(_, v)| words(v));
    let script_args = app.get("args").map(words).unwrap_or_default();
    let program = match interpreter.as_deref() {
        Some("none") => None,
        Some(i) => Some(i.to_string()),
        None => match interpreter_for(&script) {
            Some(program) => Some(program.to_string()),
            // PM2 runs a file with no known extension (`bin/www`) with node; a name it does
            // not find as a file (`npm`) is a program from PATH.
            None => {
                let cwd = app
                    .get("cwd")
                    .and_then(scalar)
                    .map_or_else(|| base.to_path_buf(), |c| PathBuf::from(absolute(base, &c)));
                cwd.join(&script).is_file().then(|| "node".to_string())
            }
        },
    };
    if script.ends_with(".ts") && interpreter.is_none() {
        notes.push("a TypeScript script: it runs with `node` (22.6+ strips types); set `command` to tsx or bun if it needs them".into());
    }
    let (command, args) = match program {
        Some(program) => {
            let mut args = interpreter_args.clone().unwrap_or_default();
            args.push(script.clone());
            args.extend(script_args);
            (program, args)
        }
        None => {
            if interpreter_args.as_ref().is_some_and(|a| !a.is_empty()) {
                notes.push(
                    "node_args/interpreter_args with interpreter \"none\" have no interpreter to go to: dropped".into(),
                );
            }
            (script.clone(), script_args)
        }
    };
    mark(&[
        "script",
        "exec",
        "interpreter",
        "exec_interpreter",
        "node_args",
        "interpreter_args",
        "interpreterArgs",
        "args",
        "name",
    ]);
    lines.push(format!("command = {}", string(&command)));
    if !args.is_empty() {
        lines.push(format!("args = [{}]", args.iter().map(|a| string(a)).collect::<Vec<_>>().join(", ")));
    }
    if let Some((_, cwd)) = get(&["cwd"]) {
        let cwd = scalar(cwd).ok_or("`cwd` must be a string")?;
        lines.push(format!("cwd = {}", string(&absolute(base, &cwd))));
    }
    mark(&["cwd"]);

    // PM2 stops an app with SIGINT, then SIGKILL after kill_timeout (1600 ms by default).
    lines.push("# PM2 stops apps with SIGINT (mcpd's default is SIGTERM).".into());
    lines.push("kill_signal = \"SIGINT\"".into());
    if let Some(ms) = app.get("kill_timeout").and_then(Value::as_u64) {
        lines.push(format!("kill_timeout = \"{ms}ms\""));
    }
    mark(&["kill_timeout"]);
    if app.get("wait_ready").and_then(Value::as_bool) == Some(true) {
        lines.push("# PM2's wait_ready: the app says process.send('ready').".into());
        lines.push("ready = \"ipc\"".into());
    }
    if let Some(ms) = app.get("listen_timeout").and_then(Value::as_u64) {
        lines.push(format!("ready_timeout = \"{ms}ms\""));
    }
    if app.get("shutdown_with_message").and_then(Value::as_bool) == Some(true) {
        if mcpd_core::config::is_node_command(&command) || app.get("wait_ready").and_then(Value::as_bool) == Some(true)
        {
            lines.push("shutdown_with_message = true".into());
        } else {
            notes.push("shutdown_with_message: mcpd gives an IPC channel to Node commands only (or with ready = \"ipc\"): dropped".into());
        }
    }
    mark(&["wait_ready", "listen_timeout", "shutdown_with_message"]);
    if app.get("autorestart").and_then(Value::as_bool) == Some(false) {
        lines.push("restart = \"never\"".into());
    }
    if let Some(ms) = app.get("restart_delay").and_then(Value::as_u64) {
        lines.push(format!("restart_delay = \"{ms}ms\""));
    }
    if let Some(ms) = app.get("exp_backoff_restart_delay").and_then(Value::as_u64) {
        lines.push(format!("exp_backoff_restart_delay = \"{ms}ms\""));
    }
    if let Some(n) = app.get("max_restarts").and_then(Value::as_u64) {
        lines.push(format!("max_restarts = {n}"));
    }
    if let Some(uptime) = app.get("min_uptime") {
        match (uptime.as_u64(), uptime.as_str()) {
            (Some(ms), _) => lines.push(format!("min_uptime = \"{ms}ms\"")),
            (None, Some(text)) => lines.push(format!("min_uptime = {}", string(text))),
            _ => notes.push(format!("min_uptime {uptime}: not a duration, dropped")),
        }
    }
    if let Some(limit) = app.get("max_memory_restart") {
        match scalar(limit).filter(|l| mcpd_core::config::parse_size(l).is_ok()) {
            Some(limit) => lines.push(format!("max_memory_restart = {}", string(&limit))),
            None => notes.push(format!("max_memory_restart {limit}: not a size like \"300M\", dropped")),
        }
    }
    if let Some(codes) = app.get("stop_exit_codes") {
        let codes: Vec<String> = match codes {
            Value::Array(a) => a.iter().filter_map(Value::as_i64).map(|c| c.to_string()).collect(),
            other => other.as_i64().map(|c| c.to_string()).into_iter().collect(),
        };
        lines.push(format!("stop_exit_codes = [{}]", codes.join(", ")));
    }
    match app.get("watch") {
        Some(Value::Bool(true)) => lines.push("watch = true".into()),
        Some(Value::String(path)) => lines.push(format!("watch = [{}]", string(path))),
        Some(Value::Array(paths)) => {
            let paths: Vec<String> = paths.iter().filter_map(scalar).map(|p| string(&p)).collect();
            lines.push(format!("watch = [{}]", paths.join(", ")));
        }
        _ => {}
    }
    if let Some(ignore) = app.get("ignore_watch") {
        let patterns: Vec<String> = match ignore {
            Value::Array(items) => items.iter().filter_map(scalar).collect(),
            other => scalar(other).into_iter().collect(),
        };
        let (globs, regexes): (Vec<String>, Vec<String>) =
            patterns.into_iter().partition(|p| glob::Pattern::new(&p.replace("\\.", ".")).is_ok());
        if !regexes.is_empty() {
            notes.push(format!(
                "ignore_watch {regexes:?}: mcpd takes glob patterns (\"*.log\", \"data/*\"), not regular expressions"
            ));
        }
        // None left: mcpd's default (node_modules, .git) stays.
        if !globs.is_empty() {
            lines.push(format!("ignore_watch = [{}]", globs.iter().map(|g| string(g)).collect::<Vec<_>>().join(", ")));
        }
    }
    if let Some(ms) = app.get("watch_delay").and_then(Value::as_u64) {
        lines.push(format!("watch_delay = \"{ms}ms\""));
    }
    if app.contains_key("watch_options") {
        notes.push("watch_options: chokidar's options have no mcpd equivalent (mcpd uses inotify); dropped".into());
    }
    for key in ["namespace", "instance_var", "increment_var"] {
        let Some(text) = app.get(key).and_then(scalar) else { continue };
        let base = app.get("env").and_then(|e| e.get(&text)).or_else(|| app.get("port").filter(|_| text == "PORT"));
        if key == "increment_var" && base.and_then(scalar).is_none_or(|v| v.trim().parse::<i64>().is_err()) {
            notes.push(format!("increment_var = {text:?}: mcpd increments a number set in `env`; set {text} there"));
            continue;
        }
        if key == "namespace" && mcpd_core::model::AppName::new(&text).is_err() {
            notes.push(format!(
                "namespace = {text:?}: a namespace is named as an app is (letters, digits, `-`, `_`); dropped"
            ));
            continue;
        }
        lines.push(format!("{key} = {}", string(&text)));
    }
    // PM2 gives every Node process its instance number in NODE_APP_INSTANCE (the `config`
    // package reads it).
    if !app.contains_key("instance_var") && mcpd_core::config::is_node_command(&command) {
        lines.push("instance_var = \"NODE_APP_INSTANCE\"".into());
    }
    if let Some(pattern) = get(&["cron_restart", "cron"]).and_then(|(_, v)| scalar(v)) {
        match mcpd_core::config::check_cron(&pattern) {
            Ok(()) => lines.push(format!("cron_restart = {}", string(&pattern))),
            Err(e) => notes.push(format!("cron_restart: {e}; dropped")),
        }
    }
    if app.get("autostart").and_then(Value::as_bool) == Some(false) {
        lines.push("autostart = false".into());
    }
    mark(&[
        "autorestart",
        "restart_delay",
        "exp_backoff_restart_delay",
        "max_restarts",
        "min_uptime",
        "max_memory_restart",
        "stop_exit_codes",
        "autostart",
        "cron_restart",
        "cron",
        "namespace",
        "instance_var",
        "increment_var",
        "watch",
        "ignore_watch",
        "watch_delay",
        "watch_options",
        "pid_file",
        "pid",
    ]);

    // Instances: PM2's cluster mode shares one port between them through Node's cluster
    // module; mcpd runs separate processes, which need its front (or SO_REUSEPORT) to share.
    let cluster = app.get("exec_mode").and_then(Value::as_str).is_some_and(|m| m.starts_with("cluster"));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let instances = match app.get("instances") {
        None => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(0), _) | (_, Some("max")) => Some(cpus),
            (Some(n), _) if n < 0 => Some((cpus + n).max(1)),
            (Some(n), _) => Some(n),
            (None, Some(text)) => text.parse().ok(),
            _ => None,
        },
    };
    if let Some(n) = instances.filter(|n| *n > 1) {
        lines.push(format!("instances = {}", n.min(64)));
        notes.push(format!(
            "instances = {n}{}: PM2's cluster mode lets them share one port; under mcpd give the app \
             front = {{ listen = \"127.0.0.1:PORT\" }} and have each instance serve on fd 3 (or its own port)",
            if cluster { " (cluster mode)" } else { "" }
        ));
    } else if cluster {
        notes.push("exec_mode cluster with one instance: runs as one process under mcpd".into());
    }
    mark(&["exec_mode", "instances"]);
    if let Some(pid_file) = get(&["pid_file", "pid"]).and_then(|(_, v)| scalar(v)) {
        match instances.is_some_and(|n| n > 1) {
            true => notes
                .push("pid_file: one file cannot hold several instances' pids; `mcpd list --json` gives each".into()),
            false => lines.push(format!("pid_file = {}", string(&absolute(base, &pid_file)))),
        }
    }

    if let Some(user) = get(&["uid", "user"]).and_then(|(_, v)| scalar(v)) {
        lines.push(format!("user = {}", string(&user)));
    }
    if let Some(group) = get(&["gid"]).and_then(|(_, v)| scalar(v)) {
        lines.push(format!("group = {}", string(&group)));
    }
    mark(&["uid", "user", "gid"]);

    if let Some(out) = get(&["out_file", "out", "output", "out_log"]).and_then(|(_, v)| scalar(v)) {
        log_path(&mut lines, &mut notes, "out_file", &out, base);
    }
    if let Some(err) = get(&["error_file", "error", "err", "err_file", "err_log"]).and_then(|(_, v)| scalar(v)) {
        log_path(&mut lines, &mut notes, "err_file", &err, base);
    }
    if app.get("log_type").and_then(Value::as_str) == Some("json") {
        lines.push("log_type = \"json\"".into());
    }
    mark(&["out_file", "out", "output", "out_log", "error_file", "error", "err", "err_file", "err_log", "log_type"]);

    // Environment: `env`, PM2's `port` shortcut, and the `env_NAME` sets.
    let mut vars = env_table(app.get("env"), "env", &mut notes);
    if let Some(port) = app.get("port").and_then(scalar) {
        vars.push(("PORT".into(), port));
    }
    mark(&["env", "port"]);
    let mut has_env = false;
    let mut sets = Vec::new();
    for (key, value) in app.iter().filter(|(k, _)| k.starts_with("env_") && k.len() > 4) {
        let set = &key[4..];
        let table = env_table(Some(value), key, &mut notes);
        if Some(set) == env {
            has_env = true;
            for (k, v) in &table {
                vars.retain(|(old, _)| old != k);
                vars.push((k.clone(), v.clone()));
            }
        }
        sets.push((set.to_string(), table));
    }
    if !vars.is_empty() {
        lines.push(format!("env = {}", inline_table(&vars)));
    }
    for (set, table) in &sets {
        let valid = set != "file" && set.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            lines.push(format!("env_{set} = {}", inline_table(table)));
        } else {
            notes.push(format!(
                "env_{set}: mcpd env set names are letters, digits, `_` and `-` (and not `file`): dropped"
            ));
        }
    }

    // Everything else: known to PM2 but not to mcpd, or unknown to both.
    let mut unsupported = Vec::new();
    for (key, value) in app {
        if done.contains(key.as_str()) || key.starts_with("env_") {
            continue;
        }
        if let Some((_, why)) = IGNORED.iter().find(|(k, _)| k == key) {
            unsupported.push(format!("{key}: ignored ({why})"));
        } else if let Some((_, instead)) = UNSUPPORTED.iter().find(|(k, _)| k == key) {
            unsupported.push(format!("{key} = {}: not supported by mcpd; instead, {instead}", short(value)));
        } else {
            unsupported.push(format!("{key}: not a PM2 key mcpd knows; dropped"));
        }
    }
    for value in app.values() {
        if let Some(f) = function_in(value) {
            notes.push(format!("a function ({f}) cannot be carried into TOML; write the value it returns"));
        }
    }
    notes.extend(unsupported);
    let mut toml = format!("[apps.{}]\n", key(&toml_name));
    for line in &lines {
        toml.push_str(line);
        toml.push('\n');
    }
    for note in &notes {
        let _ = writeln!(toml, "# not carried over: {note}");
    }
    Ok(App { name: toml_name, toml, notes, has_env })
}

fn log_path(lines: &mut Vec<String>, notes: &mut Vec<String>, key: &str, path: &str, base: &Path) {
    if path == "/dev/null" || path == "NULL" {
        notes.push(format!("{key} = {path:?}: mcpd always keeps logs (rotated: log_max_size, log_retain)"));
    } else {
        lines.push(format!("{key} = {}", string(&absolute(base, path))));
    }
}

/// `env`-like tables: string values kept, numbers and booleans written as text.
fn env_table(value: Option<&Value>, key: &str, notes: &mut Vec<String>) -> Vec<(String, String)> {
    match value {
        Some(Value::Object(vars)) => vars
            .iter()
            .filter_map(|(k, v)| match scalar(v) {
                Some(text) => Some((k.clone(), text)),
                None => {
                    notes.push(format!("{key}.{k}: not a string, number or boolean ({}), dropped", short(v)));
                    None
                }
            })
            .collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            notes.push(format!("{key}: not an object ({}), dropped", short(other)));
            Vec::new()
        }
    }
}

/// A string, number or boolean as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `args`: an array, or a string split as a shell would (quotes, backslashes).
fn words(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(scalar).collect(),
        Value::String(s) => split_words(s),
        other => scalar(other).into_iter().collect(),
    }
}

/// Splits a command line into words: whitespace separates, `'...'` and `"..."` quote, `\`
/// escapes the next character (outside single quotes).
pub fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.get_or_insert_with(String::new).push(c),
            (_, '\\') => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_with(String::new).push(next);
                }
            }
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

fn absolute(base: &Path, path: &str) -> String {
    match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map_or_else(|| path.to_string(), |h| Path::new(&h).join(rest).display().to_string()),
        None => base.join(path).display().to_string(),
    }
}

/// A TOML basic string: JSON's escapes are all valid TOML escapes.
fn string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// A TOML key, quoted unless bare.
fn key(text: &str) -> String {
    let bare = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        text.to_string()
    } else {
        string(text)
    }
}

fn inline_table(vars: &[(String, String)]) -> String {
    if vars.is_empty() {
        return "{}".into();
    }
    let items: Vec<String> = vars.iter().map(|(k, v)| format!("{} = {}", key(k), string(v))).collect();
    format!("{{ {} }}", items.join(", "))
}

/// A value shown in a note, cut short.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

/// The first function (as evaluated from JavaScript) inside a value.
fn function_in(value: &Value) -> Option<String> {
    match value {
        Value::Object(o) => match o.get("$function").and_then(Value::as_str) {
            Some(f) if o.len() == 1 => Some(f.to_string()),
            _ => o.values().find_map(function_in),
        },
        Value::Array(a) => a.iter().find_map(function_in),
        _ => None,
    }
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
