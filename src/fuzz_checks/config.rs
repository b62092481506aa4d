//! Checks of `mcpd.toml`, its values and dotenv files.

use crate::config::{
    format_size, parse_duration, parse_env_file, parse_http_url, parse_rotate_interval, parse_size, AppConfig,
    ListenAddr, Resource, RestartMode, Rlimit, MAX_DURATION, MAX_SIZE,
};
use crate::model::AppName;
use crate::signal::Signal;
use std::path::Path;
use std::time::Duration;

/// `mcpd.toml` text: parsing is deterministic; every error has a position in the text; every
/// app that parses crosses JSON (to the daemon, into `dump.json`) unchanged, with absolute
/// paths, durations and sizes within the limits, and no value no process can be given.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if names_env_file(text) {
        // `env_file` is read while parsing: a fuzzer must not make it read /dev/zero.
        return;
    }
    let (file, base) = (Path::new("mcpd.toml"), Path::new("/srv/app"));
    let parsed = crate::config::parse(text, file, base);
    assert_eq!(parsed, crate::config::parse(text, file, base), "parsing is not deterministic");
    match parsed {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "failed without an error");
            let lines = text.split('\n').count();
            for e in &errors.0 {
                assert!(e.line >= 1 && e.line <= lines && e.column >= 1, "error outside the text: {e:?}");
                assert!(!e.message.is_empty(), "an error without a message: {e:?}");
            }
        }
        Ok(config) => {
            assert!(!config.apps.is_empty(), "a config without apps parsed");
            for app in &config.apps {
                app_invariants(app);
                let json = serde_json::to_vec(app).expect("an app config serializes");
                let back: AppConfig = serde_json::from_slice(&json).expect("an app config deserializes");
                assert_eq!(&back, app, "an app config changed across JSON");
            }
        }
    }
}

/// Whether the text is a document naming `env_file` in an app (unescaped keys included).
fn names_env_file(text: &str) -> bool {
    let Ok(doc) = toml_edit::Document::parse(text) else { return false };
    let Some(apps) = doc.as_table().get("apps").and_then(toml_edit::Item::as_table_like) else { return false };
    let named = apps.iter().any(|(_, app)| app.as_table_like().is_some_and(|t| t.contains_key("env_file")));
    named
}

fn app_invariants(app: &AppConfig) {
    assert!(app.cwd.is_absolute(), "relative cwd {:?}", app.cwd);
    assert!(crate::config::checks::value_problems(app).is_empty(), "a value no process can be given parsed");
    assert!(!app.command.trim().is_empty(), "an empty command parsed");
    let r = &app.restarts;
    let mut durations = vec![
        app.kill_timeout,
        app.restart_delay,
        app.ready_timeout,
        r.exp_backoff_max,
        r.exp_backoff_reset,
        r.min_uptime,
        app.limits.memory_check_interval,
    ];
    durations.extend(r.exp_backoff_restart_delay);
    durations.extend(app.limits.watchdog);
    durations.extend(app.logs.log_rotate_interval);
    if let Some(h) = &app.limits.health {
        durations.extend([h.interval, h.timeout]);
    }
    if let Some(f) = &app.front {
        durations.extend([f.session_idle_timeout, f.drain_deadline, f.header_timeout]);
    }
    for d in durations {
        assert!(d <= MAX_DURATION, "a duration over the limit parsed: {d:?}");
    }
    let limits = &app.limits;
    let mut sizes = vec![app.logs.log_max_size];
    sizes.extend([limits.max_memory_restart, limits.memory_max, limits.memory_high].into_iter().flatten());
    sizes.extend(app.front.as_ref().map(|f| f.max_body));
    for s in sizes {
        assert!(s <= MAX_SIZE, "a size over the limit parsed: {s}");
    }
    assert!((1.0..=10.0).contains(&r.exp_backoff_factor), "backoff factor {}", r.exp_backoff_factor);
}

/// One config value (a duration, size, signal, name, resource limit, address, URL): what
/// parses is within its limits and parses again, from the way mcpd writes it, to the same.
pub fn config_values(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = parse_duration(text) {
        assert!(d <= MAX_DURATION, "{text:?} parsed over the limit");
        let ms = d.as_millis();
        assert_eq!(Duration::from_millis(ms as u64), d, "{text:?} parsed to a fraction of a millisecond");
        assert_eq!(parse_duration(&ms.to_string()), Ok(d), "{text:?} as milliseconds");
    }
    if let Ok(Some(d)) = parse_rotate_interval(text) {
        assert!(d >= Duration::from_secs(1) && d <= MAX_DURATION, "{text:?}: rotation every {d:?}");
    }
    if let Ok(n) = parse_size(text) {
        assert!(n <= MAX_SIZE, "{text:?} parsed over the limit");
        assert_eq!(parse_size(&n.to_string()), Ok(n), "{text:?} as bytes");
        let shown = format_size(n);
        if !shown.contains('.') {
            assert_eq!(parse_size(&shown), Ok(n), "{text:?} shown as {shown:?}");
        }
    }
    if let Some(signal) = Signal::parse(text) {
        assert_eq!(Signal::parse(signal.name()), Some(signal), "{text:?}");
        assert_eq!(json_round_trip(&signal), signal);
    }
    if let Ok(name) = AppName::new(text) {
        assert_eq!(name.as_str(), text);
        assert_eq!(json_round_trip(&name), name);
    }
    if let Ok(resource) = Resource::parse(text) {
        assert_eq!(Resource::parse(resource.name()), Ok(resource), "{text:?}");
    }
    if let Ok(limit) = Rlimit::parse(text) {
        assert_eq!(Rlimit::parse(&format!("{}:{}", limit.soft, limit.hard)), Ok(limit), "{text:?}");
        assert_eq!(json_round_trip(&limit), limit);
    }
    if let Ok(mode) = RestartMode::parse(text) {
        assert_eq!(RestartMode::parse(&mode.to_string()), Ok(mode), "{text:?}");
    }
    if let Ok(addr) = ListenAddr::parse(text, Path::new("/srv/app")) {
        assert_eq!(ListenAddr::parse(&addr.to_string(), Path::new("/")), Ok(addr.clone()), "{text:?}");
        assert_eq!(json_round_trip(&addr), addr);
    }
    if let Ok(url) = parse_http_url(text) {
        let again = format!("http://{}{}", url.authority, url.path);
        assert_eq!(parse_http_url(&again), Ok(url), "{text:?} written as {again:?}");
    }
}

fn json_round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    serde_json::from_str(&serde_json::to_string(value).expect("serializes")).expect("deserializes")
}

/// A dotenv file: parsing is deterministic, errors name a line of the text, and the variables
/// written back (quoted) parse to the same variables.
pub fn dotenv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let vars = match parse_env_file(text) {
        Ok(vars) => vars,
        Err((line, message)) => {
            assert!(line >= 1 && line <= text.lines().count(), "error on line {line}: {message}");
            return;
        }
    };
    let mut written = String::new();
    for (key, value) in &vars {
        if !value.contains('\n') {
            written.push_str(&format!("{key}='{value}'\n"));
        } else if !value.contains('\\') {
            written.push_str(&format!("export {key}=\"{}\"\n", value.replace('\n', "\\n").replace('"', "\\\"")));
        } else {
            // No way to write a backslash before an `n` with a newline elsewhere: no escape
            // for a backslash exists in the format.
            continue;
        }
    }
    let back = parse_env_file(&written).expect("written variables parse");
    for (key, value) in &back {
        assert_eq!(vars.get(key), Some(value), "{key} changed across write and parse: {written:?}");
    }
}
