//! `mcpd`: the one binary. `mcpd daemon` runs the supervisor; every other verb is a client of
//! the daemon's control socket (starting the daemon in the background when none runs).

mod commands;
mod connect;
mod format;
mod tui;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A process supervisor for MCP servers and other long-lived network servers.
#[derive(Debug, Parser)]
#[command(
    name = "mcpd",
    about,
    long_about = None,
    disable_version_flag = true,
    arg_required_else_help = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Print this mcpd's version, and the running daemon's.
    #[arg(short = 'V', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Verb>,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Run the daemon in the foreground (other verbs start it in the background).
    Daemon {
        /// Also start the apps of this config once the saved ones are back (containers).
        #[arg(long, value_name = "FILE")]
        start: Option<PathBuf>,
    },
    /// Start apps from a config file, known apps by name, or a command with --name.
    Start(commands::start::StartArgs),
    /// Stop apps gracefully (their kill_signal, then SIGKILL after kill_timeout).
    Stop(Targets),
    /// Stop apps, then start a new generation of each.
    Restart(Targets),
    /// Start a new generation of each app, wait until it is ready, then drain the old one.
    Reload {
        /// App names, or `all`.
        #[arg(required = true, value_name = "NAME|all")]
        names: Vec<String>,
        /// Take the apps' new config from this file (default: the file each came from).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Behind a front: return only once the old generation is gone (its sessions drained).
        #[arg(long)]
        wait_drain: bool,
        /// Run the new generations with the apps' `env_NAME` table laid over `env` (PM2's
        /// `--env`); without it each app keeps the set it runs with.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
    },
    /// Stop apps and forget them.
    Delete(Targets),
    /// Clear apps' restart counters (crash-loop count, backoff, restarts); an errored app stays down.
    Reset(Targets),
    /// Send a signal to apps: to every process of each generation's group (and cgroup), or
    /// with --leader to the process mcpd started only.
    #[command(alias = "sendSignal")]
    Signal {
        /// The signal: SIGUSR2, USR2, usr2.
        signal: String,
        /// App names, or `all`.
        #[arg(required = true, value_name = "NAME|all")]
        names: Vec<String>,
        /// Only the leader (the process mcpd started), not the processes it started.
        #[arg(long)]
        leader: bool,
    },
    /// Change how many instances an app runs: new ones take sessions once ready; removed ones
    /// (the last) take no new session and stop once theirs have ended.
    Scale {
        /// The app.
        name: String,
        /// The number of instances (1 to 64).
        instances: u32,
    },
    /// Print the environment of an app's running process: names, and values with --show.
    Env {
        /// The app.
        name: String,
        /// Print values too (they may be secrets).
        #[arg(long)]
        show: bool,
    },
    /// Show every app.
    #[command(alias = "ls")]
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one app's config, state and last exits.
    Describe {
        /// The app.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the last log lines, and with --follow new ones as they come.
    Logs(commands::logs::LogsArgs),
    /// Empty apps' log files (live and rotated).
    Flush {
        /// App names, or `all` (the default).
        #[arg(value_name = "NAME|all")]
        names: Vec<String>,
    },
    /// Wait until apps are ready (or, with --stopped, stopped); exit 1 on timeout or if one errors.
    Wait(commands::wait::WaitArgs),
    /// Print lifecycle events as they happen: spawned, ready, exited, restart scheduled,
    /// reload phases, errored, stopped, deleted.
    Events(commands::events::EventsArgs),
    /// Check that the daemon answers (starting it if needed).
    Ping,
    /// Stop every app, then the daemon.
    Kill,
    /// Run the installed daemon binary in place of the running daemon (same pid), handing over
    /// every app, socket and session: no app restarts.
    Update,
    /// Write the app list to $MCPD_HOME/dump.json; the daemon restores it when it starts.
    Save,
    /// Define the saved apps and start those that were running.
    Resurrect,
    /// Print (or install and enable) a service unit that runs the daemon at boot.
    Startup {
        /// The init system.
        #[arg(value_enum)]
        system: InitSystem,
        /// A user unit (`systemctl --user`) instead of a system one.
        #[arg(long)]
        user: bool,
        /// Write the unit, reload systemd, and enable and start it.
        #[arg(long)]
        install: bool,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Probe an MCP endpoint (an app's, or a URL): revision, server, tools and their hash.
    Probe(commands::probe::ProbeArgs),
    /// A terminal UI to watch and control every app.
    #[command(alias = "tui")]
    Monit,
    /// Convert a PM2 ecosystem file (.config.js, .cjs, .mjs, .json, .yaml) into an mcpd.toml,
    /// listing what does not carry over (`mcpd start ecosystem.config.js` converts on the fly).
    Import(commands::import::ImportArgs),
    /// Validate a config file without touching the daemon.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// Init systems `startup` knows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum InitSystem {
    Systemd,
}

/// App names, or `all`.
#[derive(Debug, clap::Args)]
struct Targets {
    /// App names, or `all`.
    #[arg(required = true, value_name = "NAME|all")]
    names: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(Verb::Daemon { start }) => return commands::daemon::run(start.as_deref()),
        Some(command) => Some(command),
        None => None,
    };
    // No signal driver: no verb uses tokio's signals, and it costs a socketpair and its
    // registration on every run.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                match command {
                    Some(command) => dispatch(command).await,
                    None => commands::simple::version().await,
                }
            })
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcpd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(verb: Verb) -> anyhow::Result<ExitCode> {
    use commands::{simple, start};
    match verb {
        Verb::Daemon { .. } => unreachable!("handled in main"),
        Verb::Start(args) => start::run(args).await,
        Verb::Stop(t) => simple::act(simple::Act::Stop, &t.names).await,
        Verb::Restart(t) => simple::act(simple::Act::Restart, &t.names).await,
        Verb::Delete(t) => simple::act(simple::Act::Delete, &t.names).await,
        Verb::Reset(t) => simple::act(simple::Act::Reset, &t.names).await,
        Verb::Reload { names, config, wait_drain, env } => {
            simple::reload(&names, config.as_deref(), wait_drain, env).await
        }
        Verb::List { json } => commands::list::run(json).await,
        Verb::Signal { signal, names, leader } => simple::signal(&signal, &names, leader).await,
        Verb::Env { name, show } => simple::env(&name, show).await,
        Verb::Scale { name, instances } => simple::scale(&name, instances).await,
        Verb::Describe { name, json } => commands::describe::run(&name, json).await,
        Verb::Ping => simple::ping().await,
        Verb::Wait(args) => commands::wait::run(args).await,
        Verb::Events(args) => commands::events::run(args).await,
        Verb::Monit => tui::run().await,
        Verb::Probe(args) => commands::probe::run(args).await,
        Verb::Save => simple::message(mcpd_core::protocol::Request::Save).await,
        Verb::Resurrect => simple::message(mcpd_core::protocol::Request::Resurrect).await,
        Verb::Startup { system: InitSystem::Systemd, user, install } => commands::startup::run(user, install).await,
        Verb::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "mcpd",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Verb::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Verb::Logs(args) => commands::logs::run(args).await,
        Verb::Flush { names } => simple::flush(&names).await,
        Verb::Kill => simple::kill().await,
        Verb::Update => commands::update::run().await,
        Verb::Check { file } => commands::check::run(&file),
        Verb::Import(args) => commands::import::run(args),
    }
}
