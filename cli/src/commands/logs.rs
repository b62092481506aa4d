//! `logs`: the last lines, then (`--follow`) new lines as the daemon writes them.

use crate::connect;
use mcpd_core::model::{AppName, LogLine, LogStream};
use mcpd_core::protocol::{LogsRequest, Request, Response};
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// One app, or `all` (the default).
    #[arg(value_name = "NAME|all")]
    name: Option<String>,
    /// How many past lines per file.
    #[arg(long, short = 'n', default_value_t = 15)]
    lines: usize,
    /// Keep printing new lines until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only stderr.
    #[arg(long, conflicts_with = "out")]
    err: bool,
    /// Only stdout.
    #[arg(long)]
    out: bool,
    /// One JSON object per line: time, app, stream, message.
    #[arg(long)]
    json: bool,
    /// Prefix each line with its time.
    #[arg(long)]
    timestamp: bool,
    /// The daemon's own log instead.
    #[arg(long, conflicts_with_all = ["name", "err", "out"])]
    daemon: bool,
}

/// Runs `logs`.
pub async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let app = match args.name.as_deref() {
        None | Some("all") => None,
        Some(name) => Some(AppName::new(name).map_err(anyhow::Error::msg)?),
    };
    let stream = if args.err {
        Some(LogStream::Err)
    } else if args.out {
        Some(LogStream::Out)
    } else {
        None
    };
    let request = LogsRequest { app, lines: args.lines, follow: args.follow, stream, daemon: args.daemon };
    let paths = connect::paths()?;
    let mut client = connect::connect_or_start(&paths).await?;
    let mut response = client.call(Request::Logs(request.clone())).await?;
    let mut stdout = std::io::stdout().lock();
    loop {
        match response {
            Response::Logs { lines, skipped } => {
                if skipped > 0 {
                    eprintln!(
                        "[mcpd: this terminal fell behind; skipped up to {skipped} lines (they are in {}); still following]",
                        paths.logs_dir().display()
                    );
                }
                let printed = lines.iter().try_for_each(|line| print_line(&mut stdout, line, &args));
                if let Err(e) = printed.and_then(|()| stdout.flush()) {
                    // The reader went away (`mcpd logs -f | head`): a normal end.
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(ExitCode::SUCCESS);
                    }
                    return Err(e.into());
                }
            }
            Response::Error(e) => return Err(e.into()),
            other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        // A follower ends by Ctrl-C (or when its output is closed); the stream ending is the
        // daemon going away (stopped, killed, or gone wrong), which a script must see.
        response = match client.next().await {
            Ok(Some(next)) => next,
            Ok(None) => match resume(&paths, client.daemon_pid, &request).await {
                Some((again, first)) => {
                    eprintln!(
                        "[mcpd: the daemon was updated in place; still following (lines written during the update are in {})]",
                        paths.logs_dir().display()
                    );
                    client = again;
                    first
                }
                None => anyhow::bail!("the daemon closed the log stream (stopped or killed); no longer following"),
            },
            Err(e) => return Err(anyhow::Error::new(e).context("the log stream broke; no longer following")),
        };
    }
}

/// After the stream ended: if the same daemon (same pid) answers again within a few seconds,
/// it was updated in place (`mcpd update`): follow on from it (new lines only).
async fn resume(
    paths: &mcpd_core::paths::Paths,
    pid: u32,
    request: &LogsRequest,
) -> Option<(mcpd_core::client::Client, Response)> {
    // While a daemon updates, its socket keeps listening: the connection waits in the backlog
    // and the new daemon greets it. A daemon that is gone refuses it at once.
    let connect = mcpd_core::client::Client::connect(paths);
    let mut client = tokio::time::timeout(std::time::Duration::from_secs(15), connect).await.ok()?.ok()?;
    if client.daemon_pid != pid {
        return None;
    }
    let again = LogsRequest { lines: 0, ..request.clone() };
    let first = client.call(Request::Logs(again)).await.ok()?;
    Some((client, first))
}

fn print_line(out: &mut impl Write, line: &LogLine, args: &LogsArgs) -> std::io::Result<()> {
    let time = || {
        line.time_ms.map(|ms| {
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
        })
    };
    if args.json {
        let record = serde_json::json!({ "time": time(), "app": line.app, "stream": line.stream.as_str(), "message": line.message });
        return writeln!(out, "{record}");
    }
    if args.timestamp {
        write!(out, "{} ", time().unwrap_or_else(|| "-".into()))?;
    }
    match line.stream {
        LogStream::Out => writeln!(out, "{} | {}", line.app, line.message),
        LogStream::Err => writeln!(out, "{} err | {}", line.app, line.message),
    }
}
