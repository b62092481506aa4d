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
pub mod update;
pub mod wait;

use mcpd_core::model::AppName;
use mcpd_core::protocol::frame;
use mcpd_core::protocol::{AppOutcome, Request, Targets};
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
