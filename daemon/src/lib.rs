//! mcpd-daemon: the supervisor engine behind `mcpd daemon`.
//!
//! [`run`] is the whole daemon: it forks the [`guard`], takes the home's lock, becomes a
//! child subreaper, and serves the control socket until it is told to stop (SIGTERM, SIGINT,
//! SIGQUIT, or the `kill` verb; see [`signals`] for the others). Shutdown is a
//! [`CancellationToken`]: every app is drained in parallel, then the socket is removed and
//! `run` returns.

mod accept;
mod context;
mod front;
mod front_runtime;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod handover;

pub mod guard;
mod http;
mod listen;
mod lock;
pub mod logs;
mod main_entry;
mod pidfd;
pub mod server;
mod signals;
pub mod stdio;
pub mod supervisor;
mod systemd;
pub mod update;

pub use lock::LockError;
pub use main_entry::{daemon_main, BACKGROUND_ENV, HTTP_ENV};

use mcpd_core::paths::Paths;
use tokio_util::sync::CancellationToken;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon owns this home.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A file or socket of the home could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What failed, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A task's future as the one type every daemon task is spawned as (except the log captures,
/// the hot path): tokio compiles its task machinery (poll, complete, cancel, join: about 2 KB)
/// once per spawned future type, so this keeps one copy in the resident binary instead of one
/// per kind of task, for an allocation per spawn.
pub(crate) type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// Boxes `task` as a [`Task`].
pub(crate) fn boxed(task: impl std::future::Future<Output = ()> + Send + 'static) -> Task {
    Box::pin(task)
}

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Runs the daemon in this process until shutdown, starting the `boot` apps (from `mcpd daemon
/// --start FILE`) after the saved ones, with the `boot` file's `[daemon]` settings. Must be
/// called before any other thread exists (it forks the guard), so from `main` directly.
pub fn run(paths: Paths, boot: mcpd_core::config::ConfigFile) -> Result<(), DaemonError> {
    paths.create_dirs().map_err(io_error(format!("cannot create {}", paths.home().display())))?;
    // One malloc arena for every thread: the blocking threads (log writes, the sampler) would
    // each get an arena of their own and keep its pages; the daemon allocates little.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    if let Some(found) = accept::raise_nofile_limit() {
        supervisor::set_apps_nofile(found);
    }
    // An update in place (`mcpd update`) hands over its apps and fds; read first, while the
    // process is single-threaded.
    let handover = match update::inherited() {
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => {
            return Err(DaemonError::Io {
                what: "cannot take over from the previous daemon".into(),
                source: std::io::Error::other(e),
            })
        }
        None => None,
    };
    // A lock handed over by `mcpd daemon` is checked (and its variable removed) before the
    // guard is forked, which closes its copy so it never keeps the home locked.
    let inherited = mcpd_core::lock::HomeLock::inherited(&paths)?;
    let close = inherited.as_ref().map(|l| l.fd());
    let guard = match handover.as_ref().and_then(|h| h.guard.as_ref()) {
        Some(state) => guard::Guard::adopt(state, close).map_err(io_error("cannot take over the guard process"))?,
        None if handover.is_some() => {
            guard::Guard::start_by_exec(close).map_err(io_error("cannot start the guard process"))?
        }
        None => guard::Guard::start(close).map_err(io_error("cannot start the guard process"))?,
    };
    let lock = match (&handover, inherited) {
        (Some(_), Some(lock)) => lock::DaemonLock::adopt(lock),
        (_, inherited) => lock::DaemonLock::acquire(&paths, inherited)?,
    };
    let lock_fd = lock.fd();
    if let Some(limit) = handover.as_ref().map(|h| h.apps_nofile).filter(|l| *l > 0) {
        // This daemon's own limit was raised by its predecessor: the apps keep theirs.
        supervisor::set_apps_nofile(limit);
    }
    supervisor::reaper::become_subreaper().map_err(io_error("cannot become a child subreaper"))?;
    let (tracking, orphans) = track(&paths, &guard, handover.is_some());
    let exe = std::env::current_exe().map_err(io_error("cannot find the daemon's own binary"))?;
    let start = Start { handover, lock_fd, exe, args: std::env::args().skip(1).collect(), orphans };
    let leave = match &tracking {
        supervisor::cgroup::Tracking::Cgroup(tree) => Some((tree.root().to_path_buf(), tree.v1_roots())),
        supervisor::cgroup::Tracking::ProcessGroup(_) => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_error("cannot start the async runtime"))?;
    let result = runtime.block_on(async {
        // Before anything is served: from here on no signal a user may send has its default
        // action (ending the daemon, and through the guard every app, undrained).
        let signals = signals::Signals::install().map_err(io_error("cannot install the signal handlers"))?;
        server::serve(paths.clone(), guard, tracking, boot, CancellationToken::new(), signals, start).await
    });
    // Apps' launcher threads leave the tree's cgroups before it is left.
    drop(runtime);
    supervisor::launcher::join_all();
    if let Some((root, v1_roots)) = leave {
        supervisor::cgroup::leave(&root, &v1_roots);
    }
    drop(lock);
    result
}

/// What precedes a build's tag in the binary: packaging (or a test's copy of the binary)
/// may overwrite the bytes after it, up to [`TAG_LEN`], to tell builds of one version apart.
pub const TAG_MARKER: &[u8] = b"MCPD_BUILD_TAG=";
/// Room for the tag, NUL-padded.
pub const TAG_LEN: usize = 32;

const fn tag_slot() -> [u8; 15 + TAG_LEN] {
    let mut slot = [0u8; 15 + TAG_LEN];
    let mut i = 0;
    while i < TAG_MARKER.len() {
        slot[i] = TAG_MARKER[i];
        i += 1;
    }
    slot
}

#[used]
static BUILD_TAG: [u8; 15 + TAG_LEN] = tag_slot();

/// The daemon's version: the package's, then `+TAG` when the binary carries a tag.
pub fn version() -> String {
    // SAFETY: a static read through a valid pointer; volatile so that the compiler reads the
    // bytes of the binary as it is on disk instead of folding the all-NUL default.
    let slot: [u8; 15 + TAG_LEN] = unsafe { std::ptr::read_volatile(&BUILD_TAG) };
    let tag = &slot[TAG_MARKER.len()..];
    let tag = &tag[..tag.iter().position(|&b| b == 0).unwrap_or(tag.len())];
    match std::str::from_utf8(tag) {
        Ok(tag) if !tag.is_empty() => format!("{}+{tag}", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Turns cgroup tracking off (`0`), or limits it to the v2 hierarchy (`v2`: no controller
/// from a v1 hierarchy, so no v1 write on the way to each start), for comparing the ways of
/// tracking.
pub const CGROUPS_ENV: &str = "MCPD_CGROUPS";

/// Sets up a cgroup per generation where the machine allows it (after the lock is taken, so
/// one daemon at a time touches the home's tree); kills what a dead predecessor left.
/// How this daemon came to be: started, or executed by its predecessor with a hand-over.
#[derive(Debug)]
pub(crate) struct Start {
    pub handover: Option<update::Handover>,
    pub lock_fd: std::os::fd::RawFd,
    /// This binary's path and arguments, for the next update.
    pub exe: std::path::PathBuf,
    pub args: Vec<String>,
    /// Processes a dead predecessor left, killed at start (for the apps' exit records).
    pub orphans: Vec<supervisor::cgroup::Orphans>,
}

fn track(
    paths: &Paths,
    guard: &guard::Guard,
    adopting: bool,
) -> (supervisor::cgroup::Tracking, Vec<supervisor::cgroup::Orphans>) {
    use supervisor::cgroup::{Tracking, Tree};
    let setting = std::env::var_os(CGROUPS_ENV);
    let (tracking, orphans) = if setting.as_ref().is_some_and(|v| v == "0") {
        (Tracking::ProcessGroup(format!("{CGROUPS_ENV}=0")), Vec::new())
    } else {
        match Tree::setup(paths.home(), guard.pid(), setting.is_none_or(|v| v != "v2"), adopting) {
            Ok((tree, orphans)) => {
                guard.watch_tree(tree.root());
                tree.v1_roots().iter().for_each(|r| guard.watch_tree(r));
                (Tracking::Cgroup(tree), orphans)
            }
            Err(why) => (Tracking::ProcessGroup(why), Vec::new()),
        }
    };
    tracing::info!("process tracking: {}", tracking.describe());
    for o in &orphans {
        tracing::warn!(
            app = %o.app,
            pids = ?o.pids,
            "killed {} process(es) of app {} left running by a previous daemon",
            o.pids.len(),
            o.app
        );
    }
    (tracking, orphans)
}

#[cfg(test)]
mod layering_tests;
