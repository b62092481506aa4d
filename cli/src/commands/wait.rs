//! `wait`: block until apps are ready (or stopped), for scripts, instead of sleeping.

use crate::connect;
use anyhow::bail;
use mcpd_core::model::{AppInfo, AppName, AppStatus, EventKind};
use mcpd_core::protocol::{EventsRequest, Request, Response};
use std::collections::BTreeMap;
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

/// What one row says about the goal: reached, not yet, or never (errored).
fn verdict(status: AppStatus, reason: Option<&str>, label: &str, stopped: bool) -> Result<bool, String> {
    match (status, stopped) {
        (AppStatus::Online | AppStatus::Reloading, false) => Ok(true),
        (AppStatus::Errored, false) => Err(format!("{label} is errored: {}", reason.unwrap_or("unknown reason"))),
        (AppStatus::Stopped | AppStatus::Errored, true) => Ok(true),
        _ => Ok(false),
    }
}

/// Each watched instance: its label, status and errored reason.
type Watched = BTreeMap<(AppName, Option<u32>), (String, AppStatus, Option<String>)>;

/// Runs `wait`: the rows once, then the daemon's events (no polling).
pub async fn run(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let goal = if args.stopped { "stopped" } else { "ready" };
    let deadline = Instant::now() + args.timeout;
    let mut client = connect::connect_or_start(&connect::paths()?).await?;
    let Response::List { apps } = client.call(Request::Events(EventsRequest { app: None, samples: false })).await?
    else {
        bail!("unexpected answer from the daemon");
    };
    let mut watched = Watched::new();
    for name in &args.names {
        let rows: Vec<&AppInfo> = apps.iter().filter(|a| a.name.as_str() == name).collect();
        if rows.is_empty() {
            bail!("no app named \"{name}\": see `mcpd list`, or start it from a config file");
        }
        for row in rows {
            watched.insert((row.name.clone(), row.instance), (row.label(), row.status, row.reason.clone()));
        }
    }
    loop {
        let mut pending = Vec::new();
        for (label, status, reason) in watched.values() {
            match verdict(*status, reason.as_deref(), label, args.stopped) {
                Ok(true) => {}
                Ok(false) => pending.push(format!("{label} is {}", status.as_str())),
                Err(why) => {
                    eprintln!("mcpd: {why}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        if pending.is_empty() {
            println!("{}: {goal}", args.names.join(", "));
            return Ok(ExitCode::SUCCESS);
        }
        let next = match tokio::time::timeout_at(deadline.into(), client.next()).await {
            Ok(next) => next?,
            Err(_) => {
                eprintln!(
                    "mcpd: not {goal} after {}: {}",
                    humantime::format_duration(args.timeout),
                    pending.join(", ")
                );
                return Ok(ExitCode::FAILURE);
            }
        };
        match next {
            Some(Response::Events { events, .. }) => {
                for e in events {
                    if let Some(entry) = watched.get_mut(&(e.app.clone(), e.instance)) {
                        entry.1 = e.status;
                        if let EventKind::Errored { reason } = e.kind {
                            entry.2 = Some(reason);
                        }
                    }
                }
            }
            Some(Response::Error(e)) => return Err(e.into()),
            Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
            None => bail!("the daemon closed the event stream (it is shutting down?)"),
        }
    }
}
