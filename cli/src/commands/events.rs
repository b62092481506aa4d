//! `events`: the daemon's lifecycle events as they happen (one line each, or JSON lines), for
//! scripts and deploy tools.

use crate::connect;
use mcpd_core::model::{AppName, EventKind, LifecycleEvent};
use mcpd_core::protocol::{EventsRequest, Request, Response};
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// One app (every app when left out).
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Also each running app's memory and CPU after every resource sample.
    #[arg(long)]
    samples: bool,
    /// With --json: also the app's whole `list` row after each event.
    #[arg(long, requires = "json")]
    rows: bool,
}

/// One event in words.
pub fn describe(e: &LifecycleEvent) -> String {
    let app = match e.instance {
        Some(i) => format!("{}[{i}]", e.app),
        None => e.app.to_string(),
    };
    let what = match &e.kind {
        EventKind::Spawned { pid, next: false } => format!("spawned pid {pid}"),
        EventKind::Spawned { pid, next: true } => format!("spawned pid {pid} (a reload's new generation)"),
        EventKind::Ready { pid } => format!("ready: pid {pid} serves"),
        EventKind::Exited { pid, how, reason } => format!("pid {pid} exited ({how}; {reason})"),
        EventKind::RestartScheduled { in_ms, reason } => format!("restart in {in_ms} ms ({})", reason.describe()),
        EventKind::Reload { phase, old_pid, new_pid } => {
            format!("reload {phase} (old pid {old_pid}, new pid {new_pid})")
        }
        EventKind::Errored { reason } => format!("errored: {reason}"),
        EventKind::Stopped => "stopped".to_string(),
        EventKind::Removed => "deleted".to_string(),
        EventKind::Sample { pid, memory_bytes, cpu_percent } => format!(
            "pid {pid}: {} memory, {} CPU",
            memory_bytes.map_or("-".to_string(), mcpd_core::config::format_size),
            cpu_percent.map_or("-".to_string(), |c| format!("{c:.1}%"))
        ),
    };
    format!("#{} {app}: {what}", e.seq)
}

/// Runs `events` until the daemon goes away (exit 1 then: the stream ended).
pub async fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let app = args.name.as_deref().map(AppName::new).transpose().map_err(anyhow::Error::msg)?;
    let paths = connect::paths()?;
    let mut client = connect::connect_or_start(&paths).await?;
    match client.call(Request::Events(EventsRequest { app, samples: args.samples })).await? {
        Response::List { .. } => {}
        Response::Error(e) => return Err(e.into()),
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
    let mut stdout = std::io::stdout().lock();
    loop {
        match client.next().await? {
            Some(Response::Events { events, skipped }) => {
                if skipped > 0 {
                    eprintln!("[mcpd: {skipped} events skipped while this reader was slow]");
                }
                for e in events {
                    if args.json {
                        let e = LifecycleEvent { row: if args.rows { e.row } else { None }, ..e };
                        writeln!(stdout, "{}", serde_json::to_string(&e)?)?;
                    } else {
                        writeln!(stdout, "{}", describe(&e))?;
                    }
                }
                stdout.flush()?;
            }
            Some(Response::Error(e)) => return Err(e.into()),
            Some(other) => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
            None => {
                eprintln!("[mcpd: the daemon closed the event stream]");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
}
