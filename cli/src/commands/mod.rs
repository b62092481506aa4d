//! One module per verb (or family of verbs).

pub mod check;
pub mod daemon;
pub mod describe;
pub mod events;
pub mod list;
pub mod logs;
pub mod probe;
pub mod simple;
pub mod start;
pub mod startup;
pub mod wait;

use mcpd_core::model::AppName;
use mcpd_core::protocol::{AppOutcome, Targets};
use std::process::ExitCode;

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
