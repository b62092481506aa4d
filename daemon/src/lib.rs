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

pub mod guard;
mod http;
mod listen;
mod lock;
pub mod logs;
mod main_entry;
pub mod server;
mod signals;
pub mod supervisor;
mod systemd;

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
    // A lock handed over by `mcpd daemon` is checked (and its variable removed) before the
    // guard is forked, which closes its copy so it never keeps the home locked.
    let inherited = mcpd_core::lock::HomeLock::inherited(&paths)?;
    let guard =
        guard::Guard::start(inherited.as_ref().map(|l| l.fd())).map_err(io_error("cannot start the guard process"))?;
    let lock = lock::DaemonLock::acquire(&paths, inherited)?;
    supervisor::reaper::become_subreaper().map_err(io_error("cannot become a child subreaper"))?;
    let (tracking, orphans) = track(&paths, &guard);
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
        server::serve(paths.clone(), guard, tracking, orphans, boot, CancellationToken::new(), signals).await
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

/// Turns cgroup tracking off (`0`), or limits it to the v2 hierarchy (`v2`: no controller
/// from a v1 hierarchy, so no v1 write on the way to each start), for comparing the ways of
/// tracking.
pub const CGROUPS_ENV: &str = "MCPD_CGROUPS";

/// Sets up a cgroup per generation where the machine allows it (after the lock is taken, so
/// one daemon at a time touches the home's tree); kills what a dead predecessor left.
fn track(paths: &Paths, guard: &guard::Guard) -> (supervisor::cgroup::Tracking, Vec<supervisor::cgroup::Orphans>) {
    use supervisor::cgroup::{Tracking, Tree};
    let setting = std::env::var_os(CGROUPS_ENV);
    let (tracking, orphans) = if setting.as_ref().is_some_and(|v| v == "0") {
        (Tracking::ProcessGroup(format!("{CGROUPS_ENV}=0")), Vec::new())
    } else {
        match Tree::setup(paths.home(), guard.pid(), setting.is_none_or(|v| v != "v2")) {
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
