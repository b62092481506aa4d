//! `list`: a table, or `--json`.

use crate::{connect, format};
use mcpd_core::model::AppInfo;
use mcpd_core::protocol::{Request, Response};
use std::process::ExitCode;

/// Prints every app.
pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    let apps = match connect::call(Request::List).await? {
        Response::List { apps } => apps,
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string(&apps)?);
    } else if apps.is_empty() {
        println!("no apps; start one with `mcpd start mcpd.toml` or `mcpd start --name NAME -- CMD`");
    } else {
        println!("{}", table(&apps));
    }
    Ok(ExitCode::SUCCESS)
}

fn table(apps: &[AppInfo]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            let note = match (&a.reason, a.next_start_in_ms, &a.reload, &a.status_text) {
                (Some(r), ..) => r.clone(),
                (None, Some(ms), ..) => format!("restart in {}", format::duration_ms(ms)),
                (None, None, Some(r), _) => {
                    format!("{}: old pid {}, new pid {}", r.phase, r.old_pid, r.new_pid)
                }
                (None, None, None, Some(text)) => text.clone(),
                _ => String::new(),
            };
            // A log that cannot be written is said on the row, whatever else is.
            let note = match (&a.log_error, note.is_empty()) {
                (Some(e), true) => format!("logs: {e}"),
                (Some(e), false) => format!("{note}; logs: {e}"),
                (None, _) => note,
            };
            vec![
                a.label(),
                a.status.to_string(),
                a.pid.map_or_else(dash, |p| p.to_string()),
                a.restarts.to_string(),
                a.uptime_ms.map_or_else(dash, format::duration_ms),
                a.memory_bytes.map_or_else(dash, format::bytes),
                a.cpu_percent.map_or_else(dash, |c| format!("{c:.1}%")),
                note,
            ]
        })
        .collect();
    format::table(&["NAME", "STATUS", "PID", "RESTARTS", "UPTIME", "MEMORY", "CPU", ""], &rows)
}
