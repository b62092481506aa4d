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

/// Prints one line per app; failures go to stderr and make the exit code non-zero.
pub fn report(outcomes: &[AppOutcome]) -> ExitCode {
    let mut failed = false;
    for o in outcomes {
        if o.ok {
            println!("{}: {}", o.name, o.message);
        } else {
            failed = true;
            eprintln!("mcpd: {}: {}", o.name, o.message);
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
