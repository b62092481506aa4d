//! Reaching the daemon: connect, or start one in the background and wait until it answers.

use anyhow::{bail, Context};
use mcpd_core::client::{Client, ClientError};
use mcpd_core::paths::Paths;
use mcpd_core::protocol::{Request, Response};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcpd_core::lock::HomeLock;
/// Set for a daemon that a verb started in the background.
pub use mcpd_core::paths::BACKGROUND_ENV;

/// `[daemon] http` of the config being started, passed to a daemon this CLI starts.
static DAEMON_HTTP: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A daemon started by this process serves its HTTP endpoint on `addr`.
pub fn start_daemon_with_http(addr: String) {
    let _ = DAEMON_HTTP.set(addr);
}

/// How long a verb that finds no daemon waits for one being launched before starting one.
const START_GRACE: Duration = Duration::from_millis(50);

/// How long a freshly started daemon may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The home this CLI talks to.
pub fn paths() -> anyhow::Result<Paths> {
    Ok(Paths::from_env()?)
}

/// Connects to the running daemon, starting one if none runs.
pub async fn connect_or_start(paths: &Paths) -> anyhow::Result<Client> {
    match Client::connect(paths).await {
        Ok(client) => return Ok(client),
        Err(ClientError::NotRunning { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    paths.create_dirs().with_context(|| format!("cannot create {}", paths.home().display()))?;
    // A daemon may be starting: `mcpd daemon` takes the lock before anything else, within a
    // few milliseconds of being run. Give one launched just before this verb that long, then
    // wait for it rather than start a rival that would take the home from it.
    let grace = Instant::now() + START_GRACE;
    loop {
        if HomeLock::is_held(paths) {
            return wait_for_socket(paths, None).await;
        }
        if Instant::now() >= grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let log_path = paths.daemon_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the mcpd executable")?;
    let mut command = Command::new(exe);
    command
        .arg("daemon")
        .env(mcpd_core::paths::HOME_ENV, paths.home())
        .env(BACKGROUND_ENV, "1")
        .envs(DAEMON_HTTP.get().map(|addr| (mcpd_core::paths::HTTP_ENV, addr)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from this terminal's
    // session so closing the terminal does not signal it.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let child = command.spawn().context("cannot start the daemon")?;
    wait_for_socket(paths, Some(child)).await
}

/// Waits until the daemon answers. If the one this process started (`child`) exits, that is
/// an error unless another daemon holds the home (it started first: this one waits for it).
async fn wait_for_socket(paths: &Paths, mut child: Option<std::process::Child>) -> anyhow::Result<Client> {
    let log_path = paths.daemon_log();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match Client::connect(paths).await {
            Ok(client) => return Ok(client),
            Err(ClientError::NotRunning { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let exited = match child.as_mut() {
            Some(c) => c.try_wait()?,
            None => None,
        };
        if let Some(status) = exited {
            if HomeLock::is_held(paths) {
                child = None;
                continue;
            }
            bail!(
                "the daemon exited at start ({status}); its log {} says:\n{}",
                log_path.display(),
                tail(&log_path, 5)
            );
        }
        if Instant::now() >= deadline {
            bail!("the daemon did not answer within {START_TIMEOUT:?}; see {}", log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sends one request (starting the daemon if needed); a daemon error becomes an `Err`.
pub async fn call(request: Request) -> anyhow::Result<Response> {
    let paths = paths()?;
    let mut client = connect_or_start(&paths).await?;
    match client.call(request).await? {
        Response::Error(e) => Err(anyhow::Error::new(e)),
        response => Ok(response),
    }
}
