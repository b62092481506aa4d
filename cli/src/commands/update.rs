//! `mcpd update`: the daemon re-executes its (newly installed) binary in place, handing every
//! app, socket and session over; a daemon older than this verb is upgraded the old way.

use crate::connect;
use mcpd_core::client::{Client, ClientError};
use mcpd_core::protocol::{ErrorKind, Request, Response};
use std::process::ExitCode;

/// Asks the daemon to update in place and prints what the new daemon says.
pub async fn run() -> anyhow::Result<ExitCode> {
    let paths = connect::paths()?;
    let mut client = match Client::connect(&paths).await {
        Ok(c) => c,
        Err(ClientError::NotRunning { .. }) => {
            println!("no daemon is running: the next mcpd verb starts the installed one");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    let pid = client.daemon_pid;
    match client.call(Request::Update).await {
        Ok(Response::Message { text }) => {
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        // A daemon that does not know the verb cannot read the request.
        Ok(Response::Error(e)) if e.kind == ErrorKind::InvalidRequest && e.message.contains("unknown variant") => {
            old_way(&paths, pid).await
        }
        Ok(Response::Error(e)) => {
            eprintln!("mcpd: the daemon was not updated: {e}");
            Ok(ExitCode::FAILURE)
        }
        Ok(other) => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
        Err(ClientError::Closed) => {
            // The new daemon did not answer on the connection: ask it directly.
            let mut client = connect::connect_or_start(&paths).await?;
            match client.call(Request::Ping).await? {
                Response::Pong(p) if p.pid == pid => {
                    println!("the daemon (pid {pid}) runs mcpd {} now", p.version);
                    Ok(ExitCode::SUCCESS)
                }
                _ => {
                    eprintln!("mcpd: the daemon (pid {pid}) is gone; a new one runs: see `mcpd list`");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Upgrades a daemon older than `mcpd update`: saves the app list, stops every app and the
/// daemon, and starts the installed daemon, which restores the list.
async fn old_way(paths: &mcpd_core::paths::Paths, pid: u32) -> anyhow::Result<ExitCode> {
    eprintln!(
        "mcpd: the running daemon (pid {pid}) predates `mcpd update`, so it cannot hand its apps over; \
         upgrading it the old way: save the app list, stop every app and the daemon, start the new daemon, \
         which starts the saved apps again (sessions held by the apps are lost)"
    );
    let mut client = Client::connect(paths).await?;
    match client.call(Request::Save).await? {
        Response::Message { text } => println!("{text}"),
        Response::Error(e) => anyhow::bail!("cannot save the app list, nothing was stopped: {e}"),
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
    match client.call(Request::Kill).await? {
        Response::Done { outcomes } => {
            super::report(&outcomes);
        }
        Response::Error(e) => anyhow::bail!("cannot stop the daemon: {e}"),
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
    super::simple::wait_gone(pid).await?;
    let mut client = connect::connect_or_start(paths).await?;
    match client.call(Request::Ping).await? {
        Response::Pong(p) => {
            println!("the new daemon (pid {}, mcpd {}) runs; it starts the saved apps", p.pid, p.version);
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}
