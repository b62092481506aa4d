//! `wait`: block until apps are ready (or stopped), for scripts, instead of sleeping.

use crate::connect;
use anyhow::bail;
use mcpd_core::model::{AppInfo, AppStatus};
use mcpd_core::protocol::{Request, Response};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The apps (every instance of each).
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
    /// Wait until each is online and ready (the default).
    #[arg(long, conflicts_with = "stopped")]
    ready: bool,
    /// Wait until each is stopped (or errored) instead.
    #[arg(long)]
    stopped: bool,
    /// Give up after this long (exit 1).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// How often the app list is read while waiting.
const POLL: Duration = Duration::from_millis(100);

/// What one row says about the goal: reached, not yet, or never (errored).
fn verdict(row: &AppInfo, stopped: bool) -> Result<bool, String> {
    match (row.status, stopped) {
        (AppStatus::Online | AppStatus::Reloading, false) => Ok(true),
        (AppStatus::Errored, false) => {
            Err(format!("{} is errored: {}", row.label(), row.reason.as_deref().unwrap_or("unknown reason")))
        }
        (AppStatus::Stopped | AppStatus::Errored, true) => Ok(true),
        _ => Ok(false),
    }
}

/// Runs `wait`.
pub async fn run(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let goal = if args.stopped { "stopped" } else { "ready" };
    let deadline = Instant::now() + args.timeout;
    loop {
        let Response::List { apps } = connect::call(Request::List).await? else {
            bail!("unexpected answer from the daemon");
        };
        let mut pending = Vec::new();
        for name in &args.names {
            let rows: Vec<&AppInfo> = apps.iter().filter(|a| a.name.as_str() == name).collect();
            if rows.is_empty() {
                bail!("no app named \"{name}\": see `mcpd list`, or start it from a config file");
            }
            for row in rows {
                match verdict(row, args.stopped) {
                    Ok(true) => {}
                    Ok(false) => pending.push(format!("{} is {}", row.label(), row.status.as_str())),
                    Err(why) => {
                        eprintln!("mcpd: {why}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
        }
        if pending.is_empty() {
            println!("{}: {goal}", args.names.join(", "));
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= deadline {
            eprintln!("mcpd: not {goal} after {}: {}", humantime::format_duration(args.timeout), pending.join(", "));
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}
