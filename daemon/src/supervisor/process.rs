//! One generation of an app: spawned as the leader of its own process group with its
//! handed-over fds and environment, watched for readiness, asked to stop.

use super::cgroup::GenCgroup;
use super::exec::{self, ExecPlan, Handover};
use super::group::signal_group;
use super::ready::{self, Report};
use super::Ctx;
use crate::logs::{capture, AppLogs};
use mcpd_core::config::{read_env_file, AppConfig, Ready};
use mcpd_core::model::LogStream;
use mcpd_core::signal::Signal;
use nix::sys::socket::{setsockopt, socketpair, sockopt::PassCred, AddressFamily, SockFlag, SockType};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc::Sender;
use tokio_util::task::TaskTracker;

/// A running generation. Its leader's pid is also its process group id.
#[derive(Debug)]
pub(crate) struct Generation {
    /// Until the task's waiter takes it.
    child: Option<super::child::Child>,
    /// A copy of the leader's pidfd, to signal it alone (none for a leader adopted after it
    /// exited).
    leader_pidfd: Option<std::os::fd::OwnedFd>,
    /// The leader's pid and the group's id.
    pub pid: u32,
    ipc: Option<OwnedWriteHalf>,
    watcher: tokio::task::AbortHandle,
    notify_path: Option<PathBuf>,
    /// Its private socket behind a front.
    pub upstream: Option<PathBuf>,
    /// Its cgroup, where the daemon tracks by cgroup.
    cgroup: Option<Arc<GenCgroup>>,
    /// A copy of its notify socket (the watcher owns the socket), to hand over.
    notify_fd: Option<std::os::fd::OwnedFd>,
    /// Stops its captures for an update in place; they send back their pipes.
    freeze: tokio_util::sync::CancellationToken,
    frozen: [Option<tokio::sync::oneshot::Receiver<capture::Frozen>>; 2],
    /// Handed over to the next daemon: its socket files stay.
    handed: bool,
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.watcher.abort();
        if self.handed {
            return;
        }
        for path in self.notify_path.iter().chain(&self.upstream) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What a frozen generation hands over (see [`GenControl::freeze`]); the fds are owned by
/// the document from here on.
#[derive(Debug)]
pub(crate) struct FrozenGen {
    pub stdout: crate::handover::PipeState,
    pub stderr: crate::handover::PipeState,
    pub notify: Option<(PathBuf, RawFd)>,
    pub ipc: Option<RawFd>,
    pub upstream: Option<PathBuf>,
    pub cgroup: Option<crate::handover::CgroupState>,
}

/// A future an app task runs on a task of its own.
pub(crate) type Boxed<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// A live generation as its app task controls it: real processes ([`Generation`]), or a
/// double in the app task's tests.
pub(crate) trait GenControl: Send + Sync + std::fmt::Debug {
    /// The leader's pid (and the group's id).
    fn pid(&self) -> u32;
    /// Sends `signal` to every process of the group.
    fn signal(&self, signal: Signal);
    /// Sends `signal` to the leader only (`mcpd signal --leader`), through its pidfd: never
    /// to another process that got its pid after it was reaped.
    fn signal_leader(&self, signal: Signal);
    /// Asks the generation to stop (its shutdown message or its kill signal).
    fn request_stop(&self, config: &AppConfig);
    /// Resolves when the leader exits (taken once).
    fn leader_exit(&mut self) -> Boxed<std::io::Result<ExitStatus>>;
    /// Its private socket behind a front (removed with it).
    fn set_upstream(&mut self, path: PathBuf);
    /// After the leader exited: ends the rest of the group (`first` signal, SIGKILL at
    /// `deadline`) and describes the exit.
    fn finish(
        &self,
        ctx: Arc<Ctx>,
        status: std::io::Result<ExitStatus>,
        first: Option<Signal>,
        deadline: std::time::Instant,
        reason: String,
    ) -> Boxed<(mcpd_core::model::ExitRecord, super::group::GroupEnd)>;
    /// Stops watching the generation for an update in place (its processes are not
    /// touched): its captures write what they read and give back their pipes.
    fn freeze(&mut self) -> Boxed<FrozenGen> {
        use crate::handover::PipeState;
        let frozen = FrozenGen {
            stdout: PipeState::none(),
            stderr: PipeState::none(),
            notify: None,
            ipc: None,
            upstream: None,
            cgroup: None,
        };
        Box::pin(async move { frozen })
    }
}

/// What a generation is spawned with.
#[derive(Debug)]
pub(crate) struct SpawnArgs<'a> {
    pub config: &'a AppConfig,
    /// The fds handed over (listening sockets, or its private socket behind a front).
    pub fds: &'a [RawFd],
    /// Its private socket, for probes.
    pub via: Option<PathBuf>,
    pub reports: Sender<Report>,
    pub logs: &'a Arc<AppLogs>,
    pub tracker: &'a TaskTracker,
    /// The app's launcher, once it has one (see launcher.rs).
    pub launcher: Option<&'a super::launcher::Launcher>,
}

/// How app tasks spawn generations.
pub(crate) trait Spawner: Send + Sync + std::fmt::Debug {
    fn spawn(&self, ctx: &Ctx, args: SpawnArgs<'_>) -> Result<Box<dyn GenControl>, SpawnError>;
}

/// Real processes, each the leader of its own group.
#[derive(Debug)]
pub(crate) struct Processes;

impl Spawner for Processes {
    fn spawn(&self, ctx: &Ctx, a: SpawnArgs<'_>) -> Result<Box<dyn GenControl>, SpawnError> {
        let generation = spawn(ctx, a)?;
        Ok(Box::new(generation))
    }
}

impl GenControl for Generation {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn signal(&self, signal: Signal) {
        Generation::signal(self, signal);
    }

    fn request_stop(&self, config: &AppConfig) {
        Generation::request_stop(self, config);
    }

    fn signal_leader(&self, signal: Signal) {
        let Some(pidfd) = &self.leader_pidfd else { return };
        // SAFETY: pidfd_send_signal(2) with a pidfd this generation owns and no siginfo.
        let sent = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal.number(), std::ptr::null::<()>(), 0)
        };
        if sent != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                tracing::warn!(pid = self.pid, %signal, error = %e, "cannot signal the leader");
            }
        }
    }

    fn leader_exit(&mut self) -> Boxed<std::io::Result<ExitStatus>> {
        Box::pin(Generation::leader_exit(self))
    }

    fn set_upstream(&mut self, path: PathBuf) {
        self.upstream = Some(path);
    }

    fn finish(
        &self,
        ctx: Arc<Ctx>,
        status: std::io::Result<ExitStatus>,
        first: Option<Signal>,
        deadline: std::time::Instant,
        reason: String,
    ) -> Boxed<(mcpd_core::model::ExitRecord, super::group::GroupEnd)> {
        let (pid, cgroup) = (self.pid, self.cgroup.clone());
        Box::pin(async move { super::drain::finish(&ctx, pid, cgroup, status, first, deadline, &reason).await })
    }

    fn freeze(&mut self) -> Boxed<FrozenGen> {
        use std::os::fd::IntoRawFd;
        self.watcher.abort();
        self.freeze.cancel();
        self.handed = true;
        let pid = self.pid;
        let kept = |what: &str, fd: std::io::Result<std::os::fd::OwnedFd>| match fd {
            Ok(fd) => Some(fd.into_raw_fd()),
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot hand over the {what} of a generation; it is closed");
                None
            }
        };
        let notify = match (&self.notify_path, self.notify_fd.take()) {
            (Some(path), Some(fd)) => kept("notify socket", Ok(fd)).map(|fd| (path.clone(), fd)),
            _ => None,
        };
        let ipc = self.ipc.take().and_then(|write| {
            let stream: &tokio::net::UnixStream = write.as_ref();
            let copy = kept("IPC channel", crate::handover::dup(stream.as_raw_fd()));
            // Not dropped: dropping a write half shuts the socket's write side down, which
            // the app would read as its channel closing (Node's 'disconnect').
            write.forget();
            copy
        });
        let frozen = std::mem::take(&mut self.frozen);
        let upstream = self.upstream.clone();
        let cgroup = self.cgroup.as_ref().map(|c| {
            c.hand_over();
            c.state()
        });
        Box::pin(async move {
            let mut pipes = Vec::new();
            for rx in frozen {
                // A capture that reached the end of its pipe (every writer gone) has nothing
                // to hand over.
                // Bounded: a capture at the end of its pipe may be waiting for its last lines
                // to be written; past the flush's bound the update gives way.
                let wait = capture::FREEZE_FLUSH + std::time::Duration::from_secs(1);
                let pipe = match rx {
                    Some(rx) => tokio::time::timeout(wait, rx).await.map(Result::ok),
                    None => Ok(None),
                };
                pipes.push(match pipe {
                    Ok(Some(f)) => crate::handover::PipeState {
                        fd: f.pipe.into_raw_fd(),
                        partial: f.partial,
                        formatted: f.formatted,
                        lines: f.lines,
                        flushed: f.flushed,
                    },
                    Ok(None) => crate::handover::PipeState::none(),
                    Err(_) => crate::handover::PipeState { flushed: false, ..crate::handover::PipeState::none() },
                });
            }
            let stderr = pipes.pop().unwrap_or_else(crate::handover::PipeState::none);
            let stdout = pipes.pop().unwrap_or_else(crate::handover::PipeState::none);
            FrozenGen { stdout, stderr, notify, ipc, upstream, cgroup }
        })
    }
}

/// Why a generation could not be spawned.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    /// The config cannot be run as it is (env_file, user, group, program, arguments, sockets).
    #[error("{0}")]
    Config(String),
    /// `cwd` is missing.
    #[error("cwd {0} is not a directory")]
    Cwd(PathBuf),
    /// A socket mcpd makes for the generation could not be made.
    #[error("cannot create the {what} {path}: {source}")]
    Socket { what: &'static str, path: PathBuf, source: std::io::Error },
    /// fork or exec failed.
    #[error("cannot start {program}: {source}")]
    Exec { program: PathBuf, source: std::io::Error },
    /// Setting up the generation's channels failed.
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
}

impl From<String> for SpawnError {
    fn from(message: String) -> SpawnError {
        SpawnError::Config(message)
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SpawnError {
    move |source| SpawnError::Io { what, source }
}

/// Tells the notify socket files of one daemon apart.
static NOTIFY_SEQ: AtomicU64 = AtomicU64::new(1);

type NotifySocket = (PathBuf, std::os::unix::net::UnixDatagram);
type IpcPair = (std::os::unix::net::UnixStream, std::os::fd::OwnedFd);

/// What [`spawn`] would refuse before it forks, checked without forking (for a `start` request,
/// before any app is defined): `env_file`, `cwd`, `user`/`group`, the program (in the app's
/// PATH), NUL bytes. Reads files and the user database: call it on a blocking thread.
pub(crate) fn preflight(config: &AppConfig) -> Result<(), String> {
    let mut configured = match &config.env_file {
        Some(file) => read_env_file(file).map_err(|e| format!("env_file: {e}"))?,
        None => Default::default(),
    };
    configured.extend(config.configured_env().map(|(k, v)| (k.clone(), v.clone())));
    if !config.cwd.is_dir() {
        return Err(format!("cwd: {} is not a directory: create it or fix the path", config.cwd.display()));
    }
    let ids = exec::resolve_ids(config.user.as_deref(), config.group.as_deref()).map_err(|e| format!("user: {e}"))?;
    let handover = Handover { ids, ..Handover::default() };
    let env = exec::environment(configured, &handover);
    let program = exec::resolve_program(&config.command, &config.cwd, &env)
        .map_err(|e| format!("command: {e}: install it, or give its absolute path"))?;
    ExecPlan::new(&program, &config.cwd, &config.args, &env, &handover).map(drop)
}

/// Spawns a generation of `config` with the given listening sockets; its readiness watcher
/// reports to `reports`.
pub(crate) fn spawn(
    ctx: &Ctx,
    SpawnArgs { config, fds: listen, via, reports, logs, tracker, launcher }: SpawnArgs<'_>,
) -> Result<Generation, SpawnError> {
    let mut configured = match &config.env_file {
        Some(file) => read_env_file(file)?,
        None => Default::default(),
    };
    configured.extend(config.configured_env().map(|(k, v)| (k.clone(), v.clone())));
    if !config.cwd.is_dir() {
        return Err(SpawnError::Cwd(config.cwd.clone()));
    }
    let notify = match config.ready {
        Ready::Notify => Some(notify_socket(config, ctx)?),
        _ => None,
    };
    let (ipc_ours, ipc_theirs) = match config.ipc_channel() {
        true => ipc_pair().map(|(ours, theirs)| (Some(ours), Some(theirs)))?,
        false => (None, None),
    };
    let handover = Handover {
        listen: listen.to_vec(),
        listen_name: config.name.to_string(),
        ipc: ipc_theirs.as_ref().map(|theirs| theirs.as_raw_fd()),
        notify_socket: notify.as_ref().map(|(path, _)| path.clone()),
        watchdog: config.limits.watchdog,
        ids: exec::resolve_ids(config.user.as_deref(), config.group.as_deref())?,
    };
    if let (Some(ids), Some((path, _))) = (&handover.ids, &notify) {
        // The app must be able to write to its notify socket.
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(ids.uid)), Some(nix::unistd::Gid::from_raw(ids.gid)))
            .map_err(|e| io("cannot hand the notify socket to the app's user")(e.into()))?;
    }
    let env = exec::environment(configured, &handover);
    let program = exec::resolve_program(&config.command, &config.cwd, &env)?;
    // A stdio MCP server runs behind a bridge (this binary), which starts its children.
    let (program, args, env) = match config.stdio {
        Some(_) => crate::stdio::plan(config, program, env)?,
        None => (program, config.args.clone(), env),
    };
    let mut plan = ExecPlan::new(&program, &config.cwd, &args, &env, &handover)?;
    plan.set_rlimits(&config.rlimits)?;
    // A limit the machine cannot apply is an error, never quietly dropped (a start request
    // was checked already; this is for saved apps, boot files and reloads).
    ctx.tracking.check_limits(&config.limits)?;
    let tree = ctx.tracking.tree();
    let controllers = tree.map(|t| t.v1_launchable(&config.limits)).unwrap_or_default();
    // Taken even for no controllers, so a set prepared before a new limit is given back.
    let prepared = launcher.and_then(|l| l.take(&controllers));
    let from_launcher = prepared.is_some();
    let cgroup = match tree {
        Some(tree) => Some(Arc::new(tree.create(config.name.as_str(), &config.limits, prepared)?)),
        None => None,
    };
    if let Some(cgroup) = &cgroup {
        plan.enter_cgroups(cgroup.v1_procs_fds(), Some(cgroup.tracking_procs_fd()));
    }
    // Registered before the child exists: nothing can fail after it runs.
    let (ipc_read, ipc_write) = match ipc_ours {
        Some(ours) => {
            let (read, write) =
                tokio::net::UnixStream::from_std(ours).map_err(io("cannot watch the IPC channel"))?.into_split();
            (Some(read), Some(write))
        }
        None => (None, None),
    };
    let (notify_path, notify_socket) = match notify {
        Some((path, socket)) => (
            Some(path),
            Some(tokio::net::UnixDatagram::from_std(socket).map_err(io("cannot watch the notify socket"))?),
        ),
        None => (None, None),
    };
    let pipes = super::child::pipes().map_err(io("cannot create the app's output pipes"))?;
    // Held across clone and registration, so the orphan reapers never take a leader's exit.
    let mut leaders = ctx.leaders.lock().expect("leaders lock");
    // Cloned into its cgroup where that is the only one to enter (the v1 ones prepared by the
    // launcher are inherited from its thread); where a v1 cgroup must be entered too, the
    // child writes itself into both (v2 first), as cloning gains nothing there (the v1 write
    // waits for an RCU grace period either way) and was measured to cost: a 200 MiB log flood
    // through mcpd took 1.41-1.49x as long as straight to a file, against 1.13-1.21x.
    let into = match &cgroup {
        Some(c) if c.v1_procs_fds().is_empty() => Some(c.tracking_dir_fd()),
        Some(_) => {
            plan.enter_tracking_cgroup_itself();
            None
        }
        None => None,
    };
    let started = match launcher.filter(|_| from_launcher) {
        Some(launcher) => launcher.spawn(plan, pipes.ends, into),
        None => super::child::start(&mut plan, pipes.ends, into),
    }
    .map_err(|source| SpawnError::Exec { program: program.clone(), source })?;
    let pid = started.pid;
    leaders.insert(pid);
    drop(leaders);
    ctx.groups.lock().expect("groups lock").insert(pid);
    if let Some(cgroup) = &cgroup {
        ctx.cgroups.lock().expect("cgroups lock").insert(pid, cgroup.clone());
        cgroup.dirs().for_each(|d| ctx.guard.watch_cgroup(d));
    }
    ctx.guard.watch(pid);
    if let (Some(tree), Some(launcher)) = (tree, launcher.filter(|_| !controllers.is_empty())) {
        // The launcher pays the next generation's grace period now, off the spawn's way.
        launcher.prepare(|| tree.next_v1_dirs(config.name.as_str(), &controllers));
    }
    let freeze = tokio_util::sync::CancellationToken::new();
    let frozen = start_captures(
        tracker,
        logs,
        [Some((pipes.stdout, capture::Resume::default())), Some((pipes.stderr, capture::Resume::default()))],
        &freeze,
    );
    // The child has its own copies of the handed-over fds now.
    drop(ipc_theirs);
    let notify_fd = notify_copy(notify_socket.as_ref());
    let watcher =
        tokio::spawn(crate::boxed(ready::watch(pid, config.ready.clone(), via, notify_socket, ipc_read, reports)))
            .abort_handle();
    let leader_pidfd = started.pidfd_copy().ok();
    Ok(Generation {
        child: Some(started),
        leader_pidfd,
        pid,
        ipc: ipc_write,
        watcher,
        notify_path,
        upstream: None,
        cgroup,
        notify_fd,
        freeze,
        frozen,
        handed: false,
    })
}

/// A copy of a generation's notify socket, kept to hand it over (the watcher owns the socket
/// and closes it when it ends).
fn notify_copy(socket: Option<&tokio::net::UnixDatagram>) -> Option<std::os::fd::OwnedFd> {
    let socket = socket?;
    match crate::handover::dup(socket.as_raw_fd()) {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!(error = %e, "cannot keep a copy of a notify socket; an update in place will not hand it over");
            None
        }
    }
}

/// Starts the captures of a generation's stdout and stderr (each with the partial line it
/// starts from); returns where each gives back its pipe when frozen.
fn start_captures(
    tracker: &TaskTracker,
    logs: &Arc<AppLogs>,
    pipes: [Option<(tokio::net::unix::pipe::Receiver, capture::Resume)>; 2],
    freeze: &tokio_util::sync::CancellationToken,
) -> [Option<tokio::sync::oneshot::Receiver<capture::Frozen>>; 2] {
    let [out, err] = pipes;
    let start = |pipe: Option<(tokio::net::unix::pipe::Receiver, capture::Resume)>, stream| {
        let (pipe, resume) = pipe?;
        let (done, rx) = tokio::sync::oneshot::channel();
        let freeze = capture::Freeze { token: freeze.clone(), done };
        // Tracked, so a shutdown waits until every line the app wrote is in its files.
        tracker.spawn(capture::capture(pipe, stream, logs.clone(), resume, freeze));
        Some(rx)
    };
    [start(out, LogStream::Out), start(err, LogStream::Err)]
}

/// A generation the previous daemon handed over (`mcpd update`): its processes run on; its
/// pipes, sockets and cgroups are taken back and watched as [`spawn`] would have.
pub(crate) fn adopt(
    ctx: &Ctx,
    state: crate::supervisor::GenState,
    config: &AppConfig,
    reports: Sender<Report>,
    logs: &Arc<AppLogs>,
    tracker: &TaskTracker,
) -> Result<Generation, String> {
    use crate::handover::take;
    let pid = state.pid;
    let err = |what: &'static str| move |e: std::io::Error| format!("pid {pid}: cannot take over its {what}: {e}");
    // Every fd of the generation is taken first: whatever fails after, none stays open.
    let owned = |raw: RawFd| (raw >= 0).then(|| take(raw));
    let (out_fd, err_fd) = (owned(state.stdout.fd), owned(state.stderr.fd));
    let notify = state.notify.map(|(path, fd)| (path, take(fd)));
    let ipc = state.ipc.map(take);
    let pipe =
        |fd: Option<std::io::Result<std::os::fd::OwnedFd>>, p: crate::handover::PipeState| -> Result<_, String> {
            let Some(fd) = fd else { return Ok(None) };
            let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd.map_err(err("output pipe"))?)
                .map_err(err("output pipe"))?;
            Ok(Some((rx, capture::Resume { partial: p.partial, formatted: p.formatted, lines: p.lines })))
        };
    let stdout = pipe(out_fd, state.stdout)?;
    let stderr = pipe(err_fd, state.stderr)?;
    let (notify_path, notify_socket) = match notify {
        Some((path, fd)) => {
            let socket = std::os::unix::net::UnixDatagram::from(fd.map_err(err("notify socket"))?);
            (Some(path), Some(tokio::net::UnixDatagram::from_std(socket).map_err(err("notify socket"))?))
        }
        None => (None, None),
    };
    let (ipc_read, ipc_write) = match ipc {
        Some(fd) => {
            let stream = std::os::unix::net::UnixStream::from(fd.map_err(err("IPC channel"))?);
            let (r, w) = tokio::net::UnixStream::from_std(stream).map_err(err("IPC channel"))?.into_split();
            (Some(r), Some(w))
        }
        None => (None, None),
    };
    let cgroup = match state.cgroup {
        Some(c) => Some(Arc::new(GenCgroup::adopt(c).map_err(err("cgroup"))?)),
        None => None,
    };
    let child = match state.leader_status {
        None => Some(super::child::Child::adopt(pid).map_err(err("leader"))?),
        Some(_) => None,
    };
    if child.is_some() {
        ctx.leaders.lock().expect("leaders lock").insert(pid);
    }
    ctx.groups.lock().expect("groups lock").insert(pid);
    if let Some(cgroup) = &cgroup {
        ctx.cgroups.lock().expect("cgroups lock").insert(pid, cgroup.clone());
        cgroup.dirs().for_each(|d| ctx.guard.watch_cgroup(d));
    }
    ctx.guard.watch(pid);
    let freeze = tokio_util::sync::CancellationToken::new();
    let frozen = start_captures(tracker, logs, [stdout, stderr], &freeze);
    let notify_fd = notify_copy(notify_socket.as_ref());
    // A generation that said it was ready is not probed again; its notify and IPC channels
    // are read on (STATUS=, WATCHDOG=1, messages).
    let ready = if state.ready { Ready::None } else { config.ready.clone() };
    let via = state.upstream.clone();
    let watcher =
        tokio::spawn(crate::boxed(ready::watch(pid, ready, via, notify_socket, ipc_read, reports))).abort_handle();
    let leader_pidfd = child.as_ref().and_then(|c| c.pidfd_copy().ok());
    Ok(Generation {
        child,
        leader_pidfd,
        pid,
        ipc: ipc_write,
        watcher,
        notify_path,
        upstream: state.upstream,
        cgroup,
        notify_fd,
        freeze,
        frozen,
        handed: false,
    })
}

fn notify_socket(config: &AppConfig, ctx: &Ctx) -> Result<NotifySocket, SpawnError> {
    let seq = NOTIFY_SEQ.fetch_add(1, Ordering::Relaxed);
    let path = ctx.paths.run_dir().join(format!("{}.{seq}.notify", config.name));
    let _ = std::fs::remove_file(&path);
    let socket = std::os::unix::net::UnixDatagram::bind(&path).map_err(|source| SpawnError::Socket {
        what: "notify socket",
        path: path.clone(),
        source,
    })?;
    setsockopt(&socket, PassCred, &true).map_err(|e| io("cannot enable credentials on the notify socket")(e.into()))?;
    socket.set_nonblocking(true).map_err(io("cannot make the notify socket non-blocking"))?;
    Ok((path, socket))
}

fn ipc_pair() -> Result<IpcPair, SpawnError> {
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| io("cannot create the IPC channel")(e.into()))?;
    let ours = std::os::unix::net::UnixStream::from(ours);
    ours.set_nonblocking(true).map_err(io("cannot make the IPC channel non-blocking"))?;
    Ok((ours, theirs))
}

impl Generation {
    /// Sends `signal` to every process of the group, and of the cgroup (what left the
    /// group with `setsid` too).
    pub fn signal(&self, signal: Signal) {
        signal_group(self.pid, signal);
        if let Some(cgroup) = &self.cgroup {
            cgroup.signal(signal, self.pid);
        }
    }

    /// Asks the generation to stop: the `'shutdown'` message over IPC when configured (the
    /// signal if the channel is gone), else `kill_signal` to the group.
    pub fn request_stop(&self, config: &AppConfig) {
        if config.shutdown_with_message {
            if let Some(ipc) = &self.ipc {
                if ipc.try_write(b"\"shutdown\"\n").is_ok() {
                    return;
                }
            }
        }
        self.signal(config.kill_signal);
    }

    /// A future that waits for the leader to exit (run by the app task's waiter).
    pub fn leader_exit(&mut self) -> impl std::future::Future<Output = std::io::Result<ExitStatus>> + Send + 'static {
        let child = self.child.take();
        async move {
            match child {
                Some(child) => child.wait().await,
                None => Err(std::io::Error::other("the leader is already waited for")),
            }
        }
    }
}
