//! `start FILE [NAME...]`, `start NAME...`, `start --name NAME -- CMD ARGS...`.

use crate::connect;
use anyhow::{bail, Context};
use mcpd_core::config::AppConfig;
use mcpd_core::model::AppName;
use mcpd_core::protocol::{Request, Response, StartRequest};
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// A config file (then optionally which of its apps), or names of known apps.
    #[arg(value_name = "FILE|NAME")]
    targets: Vec<String>,
    /// Name of an app started from a command line given after `--`.
    #[arg(long)]
    name: Option<String>,
    /// Return as soon as each app is spawned, without waiting for readiness.
    #[arg(long, conflicts_with = "wait")]
    no_wait: bool,
    /// Wait until each app is ready (the default), failing if it is not.
    #[arg(long)]
    wait: bool,
    /// Run the file's apps with their `env_NAME` table laid over `env` (PM2's `--env`).
    #[arg(long, value_name = "NAME")]
    env: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Runs `start`.
pub async fn run(args: StartArgs) -> anyhow::Result<ExitCode> {
    let wait = !args.no_wait;
    let (mut request, http) = request(args)?;
    if let Some(addr) = &http {
        connect::start_daemon_with_http(addr.to_string());
    }
    request.wait = wait;
    if wait {
        let names: Vec<String> = request
            .apps
            .iter()
            .map(|a| a.name.to_string())
            .chain(request.names.iter().map(|n| n.to_string()))
            .collect();
        let shown = match names.len() {
            0..=10 => names.join(", "),
            n => format!("{n} apps ({}, ...)", names[..3].join(", ")),
        };
        eprintln!("starting {shown} and waiting until ready...");
    }
    let response = connect::call(Request::Start(request)).await?;
    if let Some(mcpd_core::config::ListenAddr::Tcp(addr)) = &http {
        if std::net::TcpStream::connect_timeout(addr, std::time::Duration::from_secs(1)).is_err() {
            eprintln!(
                "note: nothing listens on [daemon] http = \"{addr}\": [daemon] settings apply when the daemon starts, \
                 and the running one was started without it (`mcpd kill`, then start again; `mcpd save` first keeps the apps)"
            );
        }
    }
    match response {
        Response::Done { outcomes } => Ok(super::report(&outcomes)),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// What to ask the daemon, and the `[daemon] http` of the config file, if one sets it.
fn request(args: StartArgs) -> anyhow::Result<(StartRequest, Option<mcpd_core::config::ListenAddr>)> {
    if let Some(name) = args.name {
        let name = AppName::new(&name).map_err(anyhow::Error::msg)?;
        let Some((program, rest)) = args.command.split_first() else {
            bail!("--name needs a command after `--`, e.g. mcpd start --name web -- node server.js");
        };
        if !args.targets.is_empty() {
            bail!("give either a config file or --name NAME -- CMD, not both");
        }
        if args.env.is_some() {
            bail!(
                "--env selects a config file's env_NAME tables: start from a file, or set variables with `env` in one"
            );
        }
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let app = AppConfig::new(name, program.clone(), rest.to_vec(), cwd);
        return Ok((StartRequest { apps: vec![app], names: Vec::new(), wait: true }, None));
    }
    if !args.command.is_empty() {
        bail!("a command after `--` needs --name NAME");
    }
    let Some(first) = args.targets.first() else {
        bail!("nothing to start: give a config file, app names, or --name NAME -- CMD");
    };
    let path = Path::new(first);
    if path.is_file() || first.ends_with(".toml") {
        let config = super::load_config(path, args.env.as_deref(), "nothing was started")?;
        let wanted = &args.targets[1..];
        let mut apps = Vec::new();
        for name in wanted {
            if !config.apps.iter().any(|a| a.name.as_str() == name) {
                bail!("{} defines no app named {name:?}", path.display());
            }
        }
        for app in config.apps {
            if wanted.is_empty() || wanted.iter().any(|w| w == app.name.as_str()) {
                apps.push(app);
            }
        }
        let request = StartRequest { apps, names: Vec::new(), wait: true };
        let count = request.apps.len();
        super::fits(
            &Request::Start(request.clone()),
            &format!("{}: its {count} apps", path.display()),
            count,
            "split the file, or start its apps in parts with `mcpd start FILE NAME...`",
        )?;
        return Ok((request, config.daemon.http));
    }
    if let Some(set) = &args.env {
        bail!("--env {set} applies to a config file's apps: `mcpd start FILE --env {set}`, or `mcpd reload NAME --env {set}` for a running app");
    }
    let names = args.targets.iter().map(|n| AppName::new(n).map_err(anyhow::Error::msg)).collect::<Result<_, _>>()?;
    Ok((StartRequest { apps: Vec::new(), names, wait: true }, None))
}
