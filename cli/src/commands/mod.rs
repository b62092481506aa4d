//! One module per verb (or family of verbs).

pub mod check;
pub mod daemon;
pub mod describe;
pub mod events;
pub mod import;
pub mod list;
pub mod logs;
pub mod probe;
pub mod simple;
pub mod start;
pub mod startup;
pub mod update;
pub mod wait;

use mcpd_core::model::AppName;
use mcpd_core::protocol::frame;
use mcpd_core::protocol::{AppOutcome, Request, Targets};
use std::process::ExitCode;

/// Reads a config file for `start` and `reload --config`: an `mcpd.toml`, or a PM2 ecosystem
/// file converted on the fly (its notes printed; its apps carry no `source`, as `reload`
/// re-reads TOML files only: `reload --config FILE` re-reads an ecosystem file). `env` selects
/// the apps' `env_NAME` sets. `what` ends the error message: "nothing was started".
pub fn load_config(
    path: &std::path::Path,
    env: Option<&str>,
    what: &str,
) -> anyhow::Result<mcpd_core::config::ConfigFile> {
    if import::is_script(path) {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("app");
        let program = import::interpreter_for(&path.to_string_lossy()).unwrap_or("node");
        anyhow::bail!(
            "{} is a program, not a config file: `mcpd start --name {stem} -- {program} {}` runs it (or write an \
             mcpd.toml; `mcpd import` converts a PM2 ecosystem file); {what}",
            path.display(),
            path.display()
        );
    }
    let mut config = if import::is_ecosystem(path) {
        let converted = import::convert_file(path, None)?;
        for note in &converted.notes {
            eprintln!("note: {note}");
        }
        let mut config = mcpd_core::config::parse_checked(&converted.toml, path).map_err(|e| {
            anyhow::anyhow!(
                "{e}\n{} error(s) in {} (lines of its conversion, which `mcpd import {}` prints); {what}",
                e.0.len(),
                path.display(),
                path.display()
            )
        })?;
        for app in &mut config.apps {
            app.source = None;
        }
        config
    } else {
        mcpd_core::config::load_checked(path)
            .map_err(|e| anyhow::anyhow!("{e}\n{} error(s) in {}; {what}", e.0.len(), path.display()))?
    };
    for warning in &config.warnings {
        eprintln!("{warning}");
    }
    if let Some(set) = env {
        mcpd_core::config::AppConfig::select_env(&mut config.apps, set)
            .map_err(|e| anyhow::anyhow!("{e} in {}; {what}", path.display()))?;
    }
    Ok(config)
}

/// Parses `NAME...` or `all`.
pub fn targets(names: &[String]) -> anyhow::Result<Targets> {
    if names.iter().any(|n| n == "all") {
        if names.len() > 1 {
            anyhow::bail!("`all` cannot be combined with app names");
        }
        return Ok(Targets::All);
    }
    let names = names.iter().map(|n| AppName::new(n).map_err(anyhow::Error::msg)).collect::<Result<_, _>>()?;
    Ok(Targets::Names(names))
}

/// Refuses a request too large for one control frame ([`frame::MAX_FRAME_BYTES`]) before it is
/// sent, and before a daemon is started for it: `what` names what was asked (`FILE: its N
/// apps`), `split` says how to ask for less.
pub fn fits(request: &Request, what: &str, items: usize, split: &str) -> anyhow::Result<()> {
    let bytes = frame::encode(request).len();
    if bytes <= frame::MAX_FRAME_BYTES {
        return Ok(());
    }
    const MIB: usize = 1024 * 1024;
    // How many items fit, with a tenth to spare.
    let per_request = (items * frame::MAX_FRAME_BYTES / bytes * 9 / 10).max(1);
    anyhow::bail!(
        "{what} make a request of {:.1} MiB, over the {} MiB one control request may carry; nothing was {}: {split} \
         (about {per_request} apps at a time)",
        bytes as f64 / MIB as f64,
        frame::MAX_FRAME_BYTES / MIB,
        match request {
            Request::Reload(_) => "reloaded",
            _ => "started",
        }
    )
}

/// The exit code when every failure was "busy" (a reload or stop in progress): try again.
pub const EXIT_BUSY: u8 = 3;

/// Prints one line per app; failures go to stderr, with their kind in brackets, and make the
/// exit code non-zero: [`EXIT_BUSY`] if each failure was `busy`, else 1.
pub fn report(outcomes: &[AppOutcome]) -> ExitCode {
    let mut failures = Vec::new();
    for o in outcomes {
        if o.ok {
            println!("{}: {}", o.name, o.message);
        } else {
            failures.push(o.error);
            match o.error {
                Some(kind) => eprintln!("mcpd: {}: {} [{}]", o.name, o.message, kind.as_str()),
                None => eprintln!("mcpd: {}: {}", o.name, o.message),
            }
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else if failures.iter().all(|k| *k == Some(mcpd_core::model::Failure::Busy)) {
        ExitCode::from(EXIT_BUSY)
    } else {
        ExitCode::FAILURE
    }
}
