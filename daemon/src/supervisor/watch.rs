//! `watch`: restart (or reload, with readiness) an app when a file it watches changes, as
//! PM2's watch mode; for development.
//!
//! Each app with `watch` has a thread of its own (it walks directories and reads inotify,
//! which would block the runtime): it watches every directory under the app's paths but the
//! ignored ones, and once changes pause for `watch_delay`, tells the task here, which restarts
//! the app. The task starts and stops the threads as apps come, change and go.

use super::Supervisor;
use mcpd_core::config::AppConfig;
use mcpd_core::model::AppName;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The most directories one app's watch follows (inotify watches are a per-user resource,
/// `max_user_watches`); past it, changes in the others are not seen, and the log says so.
const MAX_WATCHES: usize = 4096;
/// How often a watcher thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(250);

/// One app's watcher thread, as the task sees it.
struct Running {
    id: u64,
    /// The config it watches for: a new one (a reload) starts a new thread.
    config: Arc<AppConfig>,
    stop: Arc<AtomicBool>,
}

/// Runs until `shutdown`.
pub(crate) async fn run(sup: Arc<Supervisor>, shutdown: CancellationToken) {
    let mut changes = sup.ctx.changes.subscribe();
    // One pending restart per app at most: each thread waits for the channel to take it.
    let (tx, mut rx) = mpsc::channel::<(AppName, u64, PathBuf)>(64);
    let mut running: BTreeMap<AppName, Running> = BTreeMap::new();
    let mut firing: HashMap<AppName, tokio::task::JoinHandle<()>> = HashMap::new();
    // Changes seen while the app's restart ran (one entry per watched app at most).
    let mut dirty: HashMap<AppName, (u64, PathBuf)> = HashMap::new();
    // Each firing says when it is done (at most one firing per app: bounded by the apps).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<AppName>();
    loop {
        let wanted = sup.watched_apps();
        running.retain(|name, r| {
            let keep = wanted.iter().any(|(n, id, c)| n == name && *id == r.id && watch_same(c, &r.config));
            if !keep {
                r.stop.store(true, Ordering::Relaxed);
            }
            keep
        });
        for (name, id, config) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let (thread_name, thread_config, thread_stop, thread_tx) =
                (name.clone(), config.clone(), stop.clone(), tx.clone());
            let home = sup.ctx.paths.home().to_path_buf();
            let started = std::thread::Builder::new()
                .name(format!("watch {name}"))
                .spawn(move || watch_thread(thread_name, id, &thread_config, &home, &thread_stop, &thread_tx));
            match started {
                Ok(_) => drop(running.insert(name, Running { id, config, stop })),
                Err(e) => tracing::warn!(app = %name, error = %e, "cannot start the watch thread"),
            }
        }
        firing.retain(|_, task| !task.is_finished());
        let again: Vec<AppName> = dirty.keys().filter(|n| !firing.contains_key(*n)).cloned().collect();
        for name in again {
            if let Some((id, path)) = dirty.remove(&name) {
                // The restart finished before this pass: the task sees it on the next one.
                let _ = tx.try_send((name, id, path));
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            Some((name, id, path)) = rx.recv() => {
                if firing.contains_key(&name) {
                    // Changed during its restart: once more when that is done.
                    dirty.insert(name, (id, path));
                    continue;
                }
                tracing::info!(app = %name, path = %path.display(), "watch: a file changed; restarting");
                let (sup, app, done) = (sup.clone(), name.clone(), done_tx.clone());
                firing.insert(name, tokio::spawn(crate::boxed(async move {
                    super::cron::fire(&sup, &app, id, "watch").await;
                    let _ = done.send(app);
                })));
            }
            Some(name) = done_rx.recv() => drop(firing.remove(&name)),
            _ = shutdown.cancelled() => break,
        }
    }
    for r in running.values() {
        r.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether two configs watch the same way (a reload that changes only other keys keeps the
/// thread).
fn watch_same(a: &AppConfig, b: &AppConfig) -> bool {
    (&a.watch, &a.ignore_watch, a.watch_delay, &a.cwd, &a.logs)
        == (&b.watch, &b.ignore_watch, b.watch_delay, &b.cwd, &b.logs)
}

/// Watches the app's paths until `stop`, never counting the app's own log files nor the
/// daemon's home (its logs and sockets), which would restart the app at each line written.
fn watch_thread(
    name: AppName,
    id: u64,
    config: &AppConfig,
    home: &Path,
    stop: &AtomicBool,
    tx: &mpsc::Sender<(AppName, u64, PathBuf)>,
) {
    let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
        Ok(i) => i,
        Err(e) => return tracing::warn!(app = %name, error = %e, "watch: cannot use inotify"),
    };
    let mut dirs: HashMap<WatchDescriptor, (PathBuf, PathBuf)> = HashMap::new();
    let mut full = false;
    for path in &config.watch {
        let root = config.cwd.join(path);
        add_tree(&inotify, &root, &root, config, home, &mut dirs, &mut full, &name);
    }
    // The app's own files: its logs (and their rotated copies), its pid file (and the
    // temporary file renamed over it).
    let logs: Vec<PathBuf> = [&config.logs.out_file, &config.logs.err_file].into_iter().flatten().cloned().collect();
    let pid_file = config.pid_file.clone();
    let own_pid_file = |path: &Path| {
        pid_file.as_ref().is_some_and(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            path == p
                || (path.parent() == p.parent()
                    && path.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&format!(".{name}."))))
        })
    };
    // Watched paths whose watch the kernel dropped (deleted, or replaced by a rename, as
    // editors save): watched again once they are back.
    let mut lost: Vec<PathBuf> = Vec::new();
    let mut pending: Option<(Instant, PathBuf)> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd { fd: inotify.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for an fd this thread owns until it returns.
        unsafe { libc::poll(&mut pfd, 1, POLL.as_millis() as i32) };
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                let Some((root, dir)) = dirs.get(&event.wd).cloned() else { continue };
                if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                    dirs.remove(&event.wd);
                    if root == dir {
                        lost.push(root);
                    }
                    continue;
                }
                let path = match &event.name {
                    Some(n) => dir.join(n),
                    None => dir.clone(),
                };
                let own = path.starts_with(home)
                    || own_pid_file(&path)
                    || logs.iter().any(|l| path.starts_with(l) || is_rotated(&path, l));
                if own || config.watch_ignores(&root, &path) {
                    continue;
                }
                if event.mask.contains(AddWatchFlags::IN_ISDIR)
                    && event.mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                {
                    add_tree(&inotify, &root, &path, config, home, &mut dirs, &mut full, &name);
                }
                pending = Some((Instant::now(), path));
            }
        }
        lost.retain(|root| match root.exists() {
            true => {
                add_tree(&inotify, root, root, config, home, &mut dirs, &mut full, &name);
                pending = Some((Instant::now(), root.clone()));
                false
            }
            false => true,
        });
        if let Some((at, path)) = pending.take() {
            if at.elapsed() < config.watch_delay {
                pending = Some((at, path));
            } else if tx.try_send((name.clone(), id, path.clone())).is_err() {
                // The task is busy or gone: try again at the next look.
                pending = Some((at, path));
            }
        }
    }
}

/// `logs` is `NAME.out.log`; rotated copies are `NAME.out.log.1`, `...gz`.
fn is_rotated(path: &Path, log: &Path) -> bool {
    let (Some(p), Some(l)) = (path.to_str(), log.to_str()) else { return false };
    p.strip_prefix(l).is_some_and(|rest| rest.starts_with('.'))
}

/// Watches `dir` and every directory under it that is not ignored (nor `home`), up to
/// [`MAX_WATCHES`].
#[allow(clippy::too_many_arguments)]
fn add_tree(
    inotify: &Inotify,
    root: &Path,
    dir: &Path,
    config: &AppConfig,
    home: &Path,
    dirs: &mut HashMap<WatchDescriptor, (PathBuf, PathBuf)>,
    full: &mut bool,
    name: &AppName,
) {
    let mask = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DONT_FOLLOW;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if dirs.len() >= MAX_WATCHES {
            if !*full {
                *full = true;
                tracing::warn!(app = %name, max = MAX_WATCHES, "watch: too many directories; add the large ones to ignore_watch");
            }
            return;
        }
        let Ok(wd) = inotify.add_watch(&d, mask) else { continue };
        dirs.insert(wd, (root.to_path_buf(), d.clone()));
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            // Not through symlinks: a link to `/` would watch the whole machine.
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && !path.starts_with(home)
                && !config.watch_ignores(root, &path)
            {
                stack.push(path);
            }
        }
    }
}
