//! `stop`, `restart`, `delete`, `ping`, `kill`.

use crate::connect;
use mcpd_core::client::{Client, ClientError};
use mcpd_core::protocol::{Request, Response, TargetRequest};
use std::process::ExitCode;

/// A verb over app names.
#[derive(Debug, Clone, Copy)]
pub enum Act {
    Stop,
    Restart,
    Delete,
    Reset,
}

/// Runs `stop`/`restart`/`delete` on the named apps.
pub async fn act(act: Act, names: &[String]) -> anyhow::Result<ExitCode> {
    let request = TargetRequest { targets: super::targets(names)? };
    let request = match act {
        Act::Stop => Request::Stop(request),
        Act::Restart => Request::Restart(request),
        Act::Delete => Request::Delete(request),
        Act::Reset => Request::Reset(request),
    };
    match connect::call(request).await? {
        Response::Done { outcomes } => Ok(super::report(&outcomes)),
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// `reload`: new generations, ready before the old ones drain; `--config FILE` gives new
/// configs, and must define every app named (with `all`, apps FILE does not define re-read
/// their own file).
pub async fn reload(
    names: &[String],
    config: Option<&std::path::Path>,
    wait_drain: bool,
    env: Option<String>,
) -> anyhow::Result<ExitCode> {
    let targets = super::targets(names)?;
    let apps = match config {
        Some(path) => {
            let file = super::load_config(path, env.as_deref(), "nothing was reloaded")?;
            if let mcpd_core::protocol::Targets::Names(names) = &targets {
                let defined = |n: &&mcpd_core::model::AppName| {
                    file.apps.iter().any(|a| &a.name == *n || a.namespace.as_deref() == Some(n.as_str()))
                };
                if let Some(missing) = names.iter().find(|n| !defined(n)) {
                    let defined: Vec<&str> = file.apps.iter().map(|a| a.name.as_str()).collect();
                    anyhow::bail!(
                        "{} does not define app \"{missing}\" (it defines {}); nothing was reloaded: \
                         add [apps.{missing}] to it, or name the file that defines it",
                        path.display(),
                        defined.join(", ")
                    );
                }
            }
            file.apps
        }
        None => Vec::new(),
    };
    let config_file = config.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let request = Request::Reload(mcpd_core::protocol::ReloadRequest { targets, apps, config_file, wait_drain, env });
    if let (Request::Reload(r), Some(path)) = (&request, config) {
        let what = format!("{}: its {} apps", path.display(), r.apps.len());
        super::fits(&request, &what, r.apps.len(), "reload from a smaller file")?;
    }
    match connect::call(request).await? {
        Response::Done { outcomes } => Ok(super::report(&outcomes)),
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// `signal`: a signal for apps' processes.
pub async fn signal(signal: &str, names: &[String], leader_only: bool) -> anyhow::Result<ExitCode> {
    let Some(signal) = mcpd_core::signal::Signal::parse(signal) else {
        anyhow::bail!("unknown signal {signal:?}; use one of {}", mcpd_core::signal::Signal::known_names());
    };
    let targets = super::targets(names)?;
    let request = Request::Signal(mcpd_core::protocol::SignalRequest { targets, signal, leader_only });
    match connect::call(request).await? {
        Response::Done { outcomes } => Ok(super::report(&outcomes)),
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// `scale`: how many instances an app runs.
pub async fn scale(name: &str, instances: u32) -> anyhow::Result<ExitCode> {
    let name = mcpd_core::model::AppName::new(name).map_err(anyhow::Error::msg)?;
    match connect::call(Request::Scale(mcpd_core::protocol::ScaleRequest { name, instances })).await? {
        Response::Done { outcomes } => Ok(super::report(&outcomes)),
        Response::Message { text } => {
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// `env`: the environment of an app's running process, sorted by name.
pub async fn env(name: &str, values: bool) -> anyhow::Result<ExitCode> {
    let name = mcpd_core::model::AppName::new(name).map_err(anyhow::Error::msg)?;
    match connect::call(Request::Env(mcpd_core::protocol::EnvRequest { name, values })).await? {
        Response::Env { pid, mut vars } => {
            vars.sort();
            eprintln!("the environment pid {pid} was started with:");
            for (name, value) in vars {
                match value {
                    Some(value) => println!("{name}={value}"),
                    None => println!("{name}"),
                }
            }
            if !values {
                eprintln!("(names only: `--show` prints the values)");
            }
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// `flush`: empties log files.
pub async fn flush(names: &[String]) -> anyhow::Result<ExitCode> {
    let all = vec!["all".to_string()];
    let targets = super::targets(if names.is_empty() { &all } else { names })?;
    match connect::call(Request::Flush(TargetRequest { targets })).await? {
        Response::Done { outcomes } => Ok(super::report(&outcomes)),
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// `save`, `resurrect`: a request answered by a message or per-app outcomes.
pub async fn message(request: Request) -> anyhow::Result<ExitCode> {
    match connect::call(request).await? {
        Response::Message { text } => {
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Response::Done { outcomes } => Ok(super::report(&outcomes)),
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// `ping`: starts the daemon if needed and prints its pid.
pub async fn ping() -> anyhow::Result<ExitCode> {
    match connect::call(Request::Ping).await? {
        Response::Pong(p) => {
            let version = if p.version.is_empty() { String::new() } else { format!(" (mcpd {})", p.version) };
            println!(
                "pong: daemon pid {}{version}, up {}, {} apps",
                p.pid,
                crate::format::duration_ms(p.uptime_ms),
                p.apps
            );
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// `--version`: this mcpd's version, and the running daemon's (never starts one).
pub async fn version() -> anyhow::Result<ExitCode> {
    println!("mcpd {}", env!("CARGO_PKG_VERSION"));
    let paths = connect::paths()?;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let mut client = Client::connect(&paths).await.ok()?;
        client.call(Request::Ping).await.ok()
    })
    .await;
    match answer {
        Ok(Some(Response::Pong(p))) => {
            let version =
                if p.version.is_empty() { "of a version older than `mcpd update`" } else { p.version.as_str() };
            println!("daemon {version} (pid {})", p.pid);
        }
        _ => println!("daemon: not running"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `kill`: stops every app, then the daemon; waits until the daemon has exited.
pub async fn kill() -> anyhow::Result<ExitCode> {
    let paths = connect::paths()?;
    let mut client = match Client::connect(&paths).await {
        Ok(c) => c,
        Err(ClientError::NotRunning { .. }) => {
            println!("no daemon is running");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    let code = match client.call(Request::Kill).await? {
        Response::Done { outcomes } => super::report(&outcomes),
        Response::Error(e) => return Err(e.into()),
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    };
    wait_gone(client.daemon_pid).await?;
    println!("daemon stopped");
    Ok(code)
}

pub async fn wait_gone(pid: u32) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    while nix::sys::signal::kill(pid, None).is_ok() && !is_zombie(pid.as_raw()) {
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("the daemon (pid {pid}) did not exit within 30s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(())
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}
