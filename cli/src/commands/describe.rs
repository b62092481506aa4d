//! `describe NAME`: config, state and last exits.

use crate::{connect, format};
use mcpd_core::model::{AppDetail, AppName};
use mcpd_core::protocol::{DescribeRequest, Response};
use std::process::ExitCode;

/// Prints one app.
pub async fn run(name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let name = AppName::new(name).map_err(anyhow::Error::msg)?;
    let detail = match connect::call(DescribeRequest { name }.into()).await? {
        Response::Describe(d) => d,
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        print!("{}", text(&detail));
    }
    Ok(ExitCode::SUCCESS)
}

fn text(d: &AppDetail) -> String {
    let (i, c) = (&d.info, &d.config);
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14} {v}\n"));
    line("name", i.label());
    line("status", i.status.to_string());
    if let Some(r) = &i.reason {
        line("reason", r.clone());
    }
    if let Some(e) = &i.log_error {
        line("log_error", e.clone());
    }
    line("pid", opt(i.pid.map(|p| p.to_string())));
    if let Some(r) = &i.reload {
        line("reload", format!("{}: old pid {}, new pid {}", r.phase, r.old_pid, r.new_pid));
    }
    if let Some(t) = &i.status_text {
        line("app status", t.clone());
    }
    if !i.sessions.is_empty() {
        let per: Vec<String> = i.sessions.iter().map(|g| format!("pid {}: {}", g.pid, g.sessions)).collect();
        line("sessions", per.join(", "));
    }
    for other in &d.other_instances {
        let pid = opt(other.pid.map(|p| p.to_string()));
        line("instance", format!("{}: {}, pid {pid}, {} restarts", other.label(), other.status, other.restarts));
    }
    line("uptime", opt(i.uptime_ms.map(format::duration_ms)));
    line("restarts", i.restarts.to_string());
    line("memory", opt(i.memory_bytes.map(format::bytes)));
    line("cpu", opt(i.cpu_percent.map(|c| format!("{c:.1}%"))));
    line("command", c.command.clone());
    line("args", format!("{:?}", c.args));
    line("cwd", c.cwd.display().to_string());
    line("env", c.env.keys().cloned().collect::<Vec<_>>().join(", "));
    if !c.env_sets.is_empty() {
        let sets: Vec<String> = c
            .env_sets
            .keys()
            .map(|s| if c.env_selected.as_ref() == Some(s) { format!("{s} (in use)") } else { s.clone() })
            .collect();
        line("env sets", sets.join(", "));
    }
    line("env_file", opt(c.env_file.as_ref().map(|p| p.display().to_string())));
    if let Some(pattern) = &c.cron_restart {
        let next = d.cron_next_unix_ms.map(|ms| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
        });
        line("cron_restart", format!("{pattern:?}, next at {} (UTC)", opt(next)));
    }
    line("kill_signal", c.kill_signal.to_string());
    line("kill_timeout", format::duration_ms(c.kill_timeout.as_millis() as u64));
    line("restart_delay", format::duration_ms(c.restart_delay.as_millis() as u64));
    if let Some(t) = &d.tracking {
        line("tracking", t.clone());
    }
    if !c.rlimits.is_empty() {
        line("rlimits", c.rlimits.iter().map(|(r, l)| format!("{r}={l}")).collect::<Vec<_>>().join(", "));
    }
    out.push_str("last exits:\n");
    if d.last_exits.is_empty() {
        out.push_str("  none\n");
    }
    for e in &d.last_exits {
        let at =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at_unix_ms));
        out.push_str(&format!("  {at}  pid {}  {}  ({})\n", e.pid, e.describe(), e.reason));
    }
    out
}
