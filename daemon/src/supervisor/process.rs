//! One generation of an app: spawned as the leader of its own process group, signalled and
//! ended as a group.

use super::Ctx;
use mcpd_core::config::{read_env_file, AppConfig};
use mcpd_core::signal::Signal;
use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessGroup};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long to wait for a SIGKILLed group to disappear before saying so in the log.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often to look whether a group is gone while waiting for it (bounded by a deadline).
const GROUP_POLL: Duration = Duration::from_millis(10);

/// A running generation. Its leader's pid is also its process group id.
#[derive(Debug)]
pub(crate) struct Generation {
    child: Box<dyn ChildWrapper>,
    /// The leader's pid and the group's id.
    pub pid: u32,
}

/// Spawns a generation of `config`: env_file then env on top of the daemon's environment,
/// stdout and stderr appended to the app's log files.
pub(crate) fn spawn(config: &AppConfig, ctx: &Ctx) -> Result<Generation, String> {
    let mut env = match &config.env_file {
        Some(file) => read_env_file(file)?,
        None => Default::default(),
    };
    env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let program = resolve_program(&config.command, &config.cwd);
    let logs = ctx.paths.logs_dir();
    let open = |suffix: &str| {
        let path = logs.join(format!("{}.{suffix}.log", config.name));
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))
    };
    let (out, err) = (open("out")?, open("err")?);
    if !config.cwd.is_dir() {
        return Err(format!("cwd {} is not a directory", config.cwd.display()));
    }
    let mut command = CommandWrap::with_new(&program, |c| {
        c.args(&config.args)
            .current_dir(&config.cwd)
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
    });
    command.wrap(ProcessGroup::leader());
    // Held across fork and registration, so the orphan reaper never takes a leader's exit.
    let mut leaders = ctx.leaders.lock().expect("leaders lock");
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let pid = child
        .id()
        .ok_or("the new process exited before its pid was read")?;
    leaders.insert(pid);
    drop(leaders);
    ctx.guard.watch(pid);
    Ok(Generation { child, pid })
}

/// A command with a `/` is a path (relative to `cwd`); a bare name is looked up in PATH.
fn resolve_program(command: &str, cwd: &Path) -> PathBuf {
    let path = PathBuf::from(command);
    if command.contains('/') && path.is_relative() {
        cwd.join(path)
    } else {
        path
    }
}

impl Generation {
    /// Sends `signal` to every process of the group.
    pub fn signal(&self, signal: Signal) {
        signal_group(self.pid, signal);
    }

    /// Waits for the leader to exit (cancel-safe).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.inner_mut().wait().await
    }
}

/// Sends `signal` to a group; a group already gone is not an error.
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    let sig = nix::sys::signal::Signal::try_from(signal.number()).expect("known signal");
    if let Err(e) = killpg(Pid::from_raw(pgid as i32), sig) {
        if e != Errno::ESRCH {
            tracing::warn!(pgid, %signal, error = %e, "cannot signal process group");
        }
    }
}

/// Whether any process (a zombie included) is left in the group.
pub(crate) fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None) != Err(Errno::ESRCH)
}

/// How the rest of a group ended after its leader exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupEnd {
    /// Nothing was left.
    Empty,
    /// The rest exited before the deadline.
    Drained,
    /// The rest was SIGKILLed at the deadline.
    Killed,
}

/// Ends what is left of a group whose leader exited: sends `first` (if any), waits until
/// `deadline`, then SIGKILLs the group and waits until every member is reaped.
pub(crate) async fn end_group(
    ctx: &Ctx,
    pgid: u32,
    first: Option<Signal>,
    deadline: Instant,
) -> GroupEnd {
    ctx.reap_orphans();
    if !group_alive(pgid) {
        return GroupEnd::Empty;
    }
    if let Some(signal) = first {
        signal_group(pgid, signal);
    }
    if wait_group_gone(ctx, pgid, deadline).await {
        return GroupEnd::Drained;
    }
    signal_group(pgid, Signal::KILL);
    if !wait_group_gone(ctx, pgid, Instant::now() + KILL_GRACE).await {
        tracing::error!(
            pgid,
            "process group still has members {KILL_GRACE:?} after SIGKILL"
        );
    }
    GroupEnd::Killed
}

async fn wait_group_gone(ctx: &Ctx, pgid: u32, deadline: Instant) -> bool {
    loop {
        ctx.reap_orphans();
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let step = deadline
            .saturating_duration_since(Instant::now())
            .min(GROUP_POLL);
        tokio::time::sleep(step).await;
    }
}
