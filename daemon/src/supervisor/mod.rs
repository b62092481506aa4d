//! The supervisor: one task per app (see [`app`]), a registry of them, and the shared context
//! (which pids are leaders, the guard, resource samples).

mod app;
pub(crate) mod cgroup;
mod child;
pub(crate) mod cron;
mod drain;
mod exec;
mod group;
pub(crate) mod launcher;
mod pidfile;
mod process;
mod ready;
pub mod reaper;
pub mod restart;
mod sampler;
mod snapshot;
pub mod state;
pub(crate) mod watch;

pub(crate) use app::{AppState, GenState};
pub(crate) use ready::{notices, Notice};

use crate::guard::Guard;
use app::{AppHandle, Command, Shared};
use mcpd_core::config::AppConfig;
use mcpd_core::model::{AppDetail, AppInfo, AppName};
use mcpd_core::model::{LifecycleEvent, LogLine};
use mcpd_core::paths::Paths;
use mcpd_core::protocol::{
    AppOutcome, ErrorKind, LogsRequest, ProtoError, ReloadRequest, Response, StartRequest, Targets,
};
use mcpd_core::signal::Signal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every app task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub paths: Paths,
    /// Pids of the generation leaders the app tasks wait for; the reaper leaves them alone.
    pub leaders: Mutex<HashSet<u32>>,
    /// Process groups of generations not yet known to be empty (the reaper looks in these).
    pub groups: Mutex<HashSet<u32>>,
    /// Bumped after each SIGCHLD was handled: what a group's drain waits on.
    pub child_exits: tokio::sync::watch::Sender<u64>,
    pub guard: Guard,
    /// Last resource sample per process group.
    pub samples: Mutex<HashMap<u32, sampler::Sample>>,
    /// Bumped after every sample, so app tasks with a memory limit check it.
    pub samples_tick: tokio::sync::watch::Sender<u64>,
    /// Bumped whenever any app's snapshot changes.
    pub changes: tokio::sync::watch::Sender<u64>,
    /// The sampling interval: the smallest `memory_check_interval` of any app (1 s default).
    pub sample_every_ms: AtomicU64,
    /// Lifecycle events for subscribers (bounded: a slow subscriber is told what it missed).
    pub events: tokio::sync::broadcast::Sender<Arc<LifecycleEvent>>,
    /// The last event's sequence number.
    pub event_seq: AtomicU64,
    /// How generations are spawned (real processes; a double in the app task's tests).
    pub spawner: Arc<dyn process::Spawner>,
    /// A cgroup per generation, or process groups.
    pub tracking: cgroup::Tracking,
    /// The cgroups of running generations by leader pid (what the sampler measures).
    pub cgroups: Mutex<HashMap<u32, Arc<cgroup::GenCgroup>>>,
    /// What a dead predecessor left running, by app: entered in the app's history when the
    /// app is defined again (bounded by the apps that predecessor ran).
    pub orphans: Mutex<Vec<cgroup::Orphans>>,
}

impl Ctx {
    /// What a dead predecessor left of app `name` and this daemon killed, as history entries
    /// (once: the next definition of the app gets none).
    pub(crate) fn take_orphans(&self, name: &str) -> Vec<mcpd_core::model::ExitRecord> {
        let mut orphans = self.orphans.lock().expect("orphans lock");
        let (taken, kept) = std::mem::take(&mut *orphans).into_iter().partition(|o| o.app == name);
        *orphans = kept;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(drain::ms).unwrap_or(0);
        taken
            .into_iter()
            .map(|o: cgroup::Orphans| mcpd_core::model::ExitRecord {
                at_unix_ms: now,
                pid: o.pids.first().copied().unwrap_or(0),
                code: None,
                signal: Some(libc::SIGKILL),
                reason: format!(
                    "orphaned: {} process(es) left running by a previous daemon were killed when this daemon started (pids {})",
                    o.pids.len(),
                    o.pids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
                ),
                outcome: None,
            })
            .collect()
    }

    /// How the daemon tracks apps' processes: `cgroup` or `process group`.
    pub(crate) fn tracking_kind(&self) -> &'static str {
        self.tracking.kind()
    }
}

/// How many lifecycle events wait for the slowest subscriber before it misses some.
const EVENTS_QUEUED: usize = 256;

/// The open-files limit spawned apps get (the daemon raises its own).
pub(crate) fn set_apps_nofile(limit: u64) {
    exec::APPS_NOFILE.store(limit, std::sync::atomic::Ordering::Relaxed);
}

/// The open-files limit spawned apps get.
pub(crate) fn apps_nofile() -> u64 {
    exec::APPS_NOFILE.load(std::sync::atomic::Ordering::Relaxed)
}

/// A verb that acts on running apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Stop gracefully.
    Stop,
    /// Stop, then start a new generation.
    Restart,
    /// Stop and forget.
    Delete,
    /// Clear restart counters.
    Reset,
    /// Send a signal to every generation's group (or leader only).
    Signal { signal: Signal, leader_only: bool },
}

/// One app in the registry: a task per instance.
#[derive(Debug)]
struct Entry {
    /// Tells this entry apart from a later one of the same name.
    id: u64,
    /// Instance 0 first.
    instances: Vec<AppHandle>,
    /// Instances scaled down, draining their sessions before they end (bounded by the
    /// instances an app may have: pruned at each scale).
    retiring: Vec<AppHandle>,
    /// What its instances share (its front, its log files).
    shared: Arc<app::Shared>,
}

impl Entry {
    fn first(&self) -> &AppHandle {
        &self.instances[0]
    }

    /// Sends a command built by `make` to every instance; returns the replies in order.
    fn send_all(&self, name: &AppName, make: impl Fn(app::Reply) -> Command) -> Vec<Pending> {
        self.instances
            .iter()
            .map(|h| {
                let (reply, rx) = oneshot::channel();
                h.send(make(reply));
                (name.clone(), rx)
            })
            .collect()
    }
}

type Pending = (AppName, oneshot::Receiver<AppOutcome>);

/// The registry of apps.
#[derive(Debug)]
pub struct Supervisor {
    ctx: Arc<Ctx>,
    apps: Mutex<BTreeMap<AppName, Entry>>,
    tracker: TaskTracker,
    /// Cancelled to stop every app (daemon shutdown, `kill`).
    apps_token: CancellationToken,
    next_id: AtomicU64,
    /// Frozen for an update in place (between [`Supervisor::freeze`] and the exec, or
    /// [`Supervisor::adopt`] if it failed): no app may be added.
    frozen: std::sync::atomic::AtomicBool,
    /// When each app with a `cron_restart` is next due (kept by [`cron::run`]).
    cron: cron::Schedule,
}

impl Supervisor {
    /// A supervisor whose apps stop when `shutdown` is cancelled.
    pub(crate) fn new(
        paths: Paths,
        guard: Guard,
        tracking: cgroup::Tracking,
        orphans: Vec<cgroup::Orphans>,
        shutdown: &CancellationToken,
    ) -> Arc<Supervisor> {
        let ctx = Arc::new(Ctx {
            paths,
            leaders: Mutex::default(),
            groups: Mutex::default(),
            child_exits: tokio::sync::watch::Sender::new(0),
            guard,
            samples: Mutex::default(),
            samples_tick: tokio::sync::watch::Sender::new(0),
            changes: tokio::sync::watch::Sender::new(0),
            sample_every_ms: AtomicU64::new(sampler::SAMPLE_INTERVAL.as_millis() as u64),
            events: tokio::sync::broadcast::Sender::new(EVENTS_QUEUED),
            event_seq: AtomicU64::new(0),
            spawner: Arc::new(process::Processes),
            tracking,
            cgroups: Mutex::default(),
            orphans: Mutex::new(orphans),
        });
        let apps_token = shutdown.child_token();
        let tracker = TaskTracker::new();
        tracker.spawn(crate::boxed(reaper::run(ctx.clone(), apps_token.clone())));
        tracker.spawn(crate::boxed(sampler::run(ctx.clone(), apps_token.clone())));
        Arc::new(Supervisor {
            ctx,
            apps: Mutex::default(),
            tracker,
            apps_token,
            next_id: AtomicU64::new(1),
            frozen: std::sync::atomic::AtomicBool::new(false),
            cron: cron::Schedule::default(),
        })
    }

    /// The registry, without the apps whose tasks have ended (removed: normally the request
    /// that removed one takes it out, but a removal the previous daemon started before an
    /// update in place ends in this one, with no request waiting).
    fn registry(&self) -> std::sync::MutexGuard<'_, BTreeMap<AppName, Entry>> {
        let mut apps = self.apps.lock().expect("apps lock");
        apps.retain(|_, e| !e.instances.iter().all(AppHandle::is_finished));
        apps
    }

    /// `cgroup` or `process group`: how the daemon tracks apps' processes.
    pub fn tracking(&self) -> &'static str {
        self.ctx.tracking_kind()
    }

    /// How many apps are defined.
    pub fn len(&self) -> usize {
        self.registry().len()
    }

    /// Whether no app is defined.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Defines the given apps (replacing stopped definitions) and starts them and `names`.
    pub async fn start(&self, request: StartRequest) -> Response {
        if self.apps_token.is_cancelled() {
            return shutting_down();
        }
        let mut replies = Vec::new();
        {
            let mut apps = self.registry();
            if self.frozen.load(Ordering::Relaxed) {
                return updating();
            }
            let named = match expand(&apps, &request.names) {
                Ok(named) => named,
                Err(response) => return response,
            };
            if let Some(response) = request.apps.iter().find_map(|c| instances_changed(&apps, c, "start")) {
                return response;
            }
            for config in request.apps {
                let name = config.name.clone();
                let wait = request.wait;
                if !config.autostart {
                    // Defined (if new) but not started: `mcpd start NAME` starts it.
                    let message = match apps.contains_key(&name) {
                        true => format!(
                            "already defined; autostart = false, so left as it is (`mcpd start {name}` starts it)"
                        ),
                        false => format!("defined, not started (autostart = false): `mcpd start {name}` starts it"),
                    };
                    let entry = apps.entry(name.clone()).or_insert_with(|| self.spawn_app(config));
                    let info = entry.first().snapshot().info(&self.ctx.samples.lock().expect("samples lock"));
                    let (reply, rx) = oneshot::channel();
                    let _ =
                        reply.send(AppOutcome { name: name.clone(), ok: true, message, error: None, info: Some(info) });
                    replies.push((name, rx));
                    continue;
                }
                match apps.get(&name) {
                    Some(entry) => replies.extend(entry.send_all(&name, |reply| Command::Start {
                        config: Some(Box::new(config.clone())),
                        wait,
                        reply,
                    })),
                    None => {
                        let entry = self.spawn_app(config);
                        replies.extend(entry.send_all(&name, |reply| Command::Start { config: None, wait, reply }));
                        apps.insert(name.clone(), entry);
                    }
                }
            }
            for name in named {
                let wait = request.wait;
                replies.extend(apps[&name].send_all(&name, |reply| Command::Start { config: None, wait, reply }));
            }
        }
        collect(replies).await
    }

    /// What a `start` request would fail on, found before any app is defined or touched (so a
    /// failed start leaves no errored app behind): values no process can be given, what
    /// [`process::preflight`] refuses, and log files or addresses an app would share with
    /// another app of the request or one already defined. `None` when there is nothing.
    pub async fn check_start(&self, request: &StartRequest) -> Option<Response> {
        if request.apps.is_empty() {
            return None;
        }
        let defined: Vec<Arc<AppConfig>> = {
            let apps = self.registry();
            apps.iter()
                .filter(|(name, _)| !request.apps.iter().any(|a| &a.name == *name))
                .map(|(_, e)| e.first().config())
                .collect()
        };
        let (configs, logs_dir) = (request.apps.clone(), self.ctx.paths.logs_dir());
        let cgroup_problems: Vec<String> = request
            .apps
            .iter()
            .filter_map(|c| self.ctx.tracking.check_limits(&c.limits).err().map(|e| format!("app \"{}\": {e}", c.name)))
            .collect();
        let mut problems = blocking(move || start_problems(&defined, &configs, &logs_dir)).await.unwrap_or_default();
        problems.extend(cgroup_problems);
        (!problems.is_empty()).then(|| {
            Response::Error(ProtoError::new(
                ErrorKind::InvalidRequest,
                format!("{}\nnothing was started", problems.join("\n")),
            ))
        })
    }

    /// Applies `verb` to the targets; an unknown name fails the request before anything changes.
    pub async fn act(&self, targets: &Targets, verb: Verb) -> Response {
        let mut replies = Vec::new();
        let mut ids = Vec::new();
        {
            let apps = self.registry();
            let names = match resolve(&apps, targets) {
                Ok(names) => names,
                Err(response) => return response,
            };
            for name in names {
                let entry = &apps[&name];
                if verb == Verb::Delete {
                    // Instances scaled down and draining: they end now too (their replies are
                    // not awaited: they are not the app's instances any more).
                    for handle in &entry.retiring {
                        handle.send(Command::Remove { reply: oneshot::channel().0 });
                    }
                }
                replies.extend(entry.send_all(&name, |reply| match verb {
                    Verb::Stop => Command::Stop { reply },
                    Verb::Restart => Command::Restart { reply },
                    Verb::Delete => Command::Remove { reply },
                    Verb::Reset => Command::Reset { reply },
                    Verb::Signal { signal, leader_only } => Command::Signal { signal, leader_only, reply },
                }));
                ids.push((name.clone(), entry.id));
            }
        }
        let response = collect(replies).await;
        if verb == Verb::Delete {
            let mut apps = self.registry();
            for (name, id) in ids {
                if apps.get(&name).is_some_and(|e| e.id == id && e.instances.iter().all(AppHandle::is_finished)) {
                    apps.remove(&name);
                }
            }
        }
        response
    }

    /// Reloads the targets one after another, each with its new config: from the request
    /// (`--config`), else re-read from the file it came from. A config error fails the whole
    /// request before any app is touched.
    pub async fn reload(&self, request: ReloadRequest) -> Response {
        // The files the targets came from are read first, on a blocking thread.
        let sources: Vec<std::path::PathBuf> = {
            let apps = self.registry();
            let names = match resolve(&apps, &request.targets) {
                Ok(names) => names,
                Err(response) => return response,
            };
            // `--config FILE`: each app named must be in FILE (never reloaded from elsewhere).
            // (A namespace named stands for its apps: each of them.)
            if let (Some(file), Targets::Names(_)) = (&request.config_file, &request.targets) {
                if let Some(missing) = names.iter().find(|n| !request.apps.iter().any(|a| &a.name == *n)) {
                    return Response::Error(ProtoError::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "{} does not define app \"{missing}\"; nothing was reloaded: add [apps.{missing}] to it, \
                             or name the file that defines it",
                            file.display()
                        ),
                    ));
                }
            }
            let mut sources: Vec<_> = names
                .iter()
                .filter(|n| !request.apps.iter().any(|a| &a.name == *n))
                .filter_map(|n| apps[n].first().config().source.clone())
                .collect();
            sources.sort();
            sources.dedup();
            sources
        };
        let read =
            move || sources.into_iter().map(|f| (f.clone(), mcpd_core::config::load_checked(&f))).collect::<Vec<_>>();
        let mut loaded = BTreeMap::new();
        for (file, result) in blocking(read).await.unwrap_or_default() {
            match result {
                Ok(config) => {
                    loaded.insert(file, config.apps);
                }
                Err(e) => {
                    return Response::Error(ProtoError::new(
                        ErrorKind::InvalidRequest,
                        format!("{e}\nnothing was reloaded: fix {}", file.display()),
                    ))
                }
            }
        }
        let mut plan = Vec::new();
        let mut plan_has_env = false;
        {
            let apps = self.registry();
            let names = match resolve(&apps, &request.targets) {
                Ok(names) => names,
                Err(response) => return response,
            };
            for name in names {
                let current = apps[&name].first().config();
                let config = match (request.apps.iter().find(|a| a.name == name), &current.source) {
                    (Some(given), _) => given.clone(),
                    (None, Some(file)) => {
                        match loaded.get(file).and_then(|apps: &Vec<AppConfig>| apps.iter().find(|a| a.name == name)) {
                            Some(found) => found.clone(),
                            None => {
                                return Response::Error(ProtoError::new(
                                    ErrorKind::InvalidRequest,
                                    format!(
                                        "{} no longer defines app \"{name}\"; nothing was reloaded",
                                        file.display()
                                    ),
                                ))
                            }
                        }
                    }
                    (None, None) => (*current).clone(),
                };
                let mut config = config;
                // `--env NAME` applies to the apps that have the set; the others keep theirs.
                config.env_selected = match &request.env {
                    Some(set) if config.env_sets.contains_key(set) => Some(set.clone()),
                    _ => current.env_selected.clone(),
                };
                plan_has_env |= request.env.as_ref().is_some_and(|set| config.env_sets.contains_key(set));
                if let Some(response) = instances_changed(&apps, &config, "reload") {
                    return response;
                }
                let id = apps[&name].id;
                plan.push((name, id, config));
            }
        }
        if let Some(set) = request.env.as_ref().filter(|_| !plan_has_env) {
            return Response::Error(ProtoError::new(
                ErrorKind::InvalidRequest,
                format!("--env {set}: none of these apps has an env_{set} table; nothing was reloaded"),
            ));
        }
        // The instances of an app are replaced one at a time; a failed one stops the rest.
        let mut outcomes = Vec::new();
        for (name, id, config) in plan {
            for instance in 0.. {
                let (reply, rx) = oneshot::channel();
                {
                    let apps = self.registry();
                    match apps.get(&name).filter(|e| e.id == id).and_then(|e| e.instances.get(instance)) {
                        Some(handle) => handle.send(Command::Reload {
                            config: Some(Box::new(config.clone())),
                            wait_drain: request.wait_drain,
                            reply,
                        }),
                        None => break,
                    }
                }
                let Response::Done { outcomes: mut one } = collect(vec![(name.clone(), rx)]).await else { break };
                let failed = one.iter().any(|o| !o.ok);
                outcomes.append(&mut one);
                if failed {
                    break;
                }
            }
        }
        Response::Done { outcomes }
    }

    /// The environment the app's serving process (of its first instance) was started with,
    /// read from `/proc` on a blocking thread; values only if `values`.
    pub async fn env(&self, request: &mcpd_core::protocol::EnvRequest) -> Response {
        let pid = {
            let apps = self.registry();
            let Some(entry) = apps.get(&request.name) else { return Response::Error(unknown_app_error(&request.name)) };
            entry.first().snapshot().state.gen().map(|g| g.pid)
        };
        let Some(pid) = pid else {
            return Response::Error(ProtoError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "{} is not running: `mcpd describe {}` shows the env names its config sets",
                    request.name, request.name
                ),
            ));
        };
        let values = request.values;
        let read = move || std::fs::read(format!("/proc/{pid}/environ"));
        match blocking(read).await {
            Some(Ok(environ)) => Response::Env { pid, vars: environ_vars(&environ, values) },
            Some(Err(e)) => Response::Error(ProtoError::new(
                ErrorKind::Internal,
                format!("cannot read the environment of pid {pid}: {e}"),
            )),
            None => Response::Error(ProtoError::new(ErrorKind::Internal, "the reader thread failed")),
        }
    }

    /// The last lines of the requested logs, read on a blocking thread.
    pub async fn log_tail(&self, request: &LogsRequest) -> Result<Vec<LogLine>, ProtoError> {
        let (lines, stream) = (request.lines, request.stream);
        if request.daemon {
            let paths = self.ctx.paths.clone();
            return Ok(blocking(move || crate::logs::daemon_tail(&paths, lines)).await.unwrap_or_default());
        }
        let logs: Vec<_> = {
            let apps = self.registry();
            match &request.app {
                Some(name) => vec![apps.get(name).ok_or_else(|| unknown_app_error(name))?.first().snapshot().logs],
                None => apps.values().map(|e| e.first().snapshot().logs).collect(),
            }
        };
        let read = move || logs.iter().flat_map(|l| crate::logs::tail(l, lines, stream)).collect();
        Ok(blocking(read).await.unwrap_or_default())
    }

    /// Whether a followed line belongs to the request.
    pub fn log_matches(request: &LogsRequest, line: &LogLine) -> bool {
        if request.daemon {
            return line.app == "mcpd";
        }
        let app_ok = match &request.app {
            Some(name) => line.app == name.as_str(),
            None => line.app != "mcpd",
        };
        app_ok && request.stream.is_none_or(|s| s == line.stream)
    }

    /// Empties the targets' log files (live and rotated), on a blocking thread (a write in
    /// progress may hold a file for as long as its disk takes).
    pub async fn flush_logs(&self, targets: &Targets) -> Response {
        let snaps: Vec<_> = {
            let apps = self.registry();
            let names = match resolve(&apps, targets) {
                Ok(names) => names,
                Err(response) => return response,
            };
            names.into_iter().map(|name| (name.clone(), apps[&name].first().snapshot())).collect()
        };
        let flush = move || {
            snaps
                .into_iter()
                .map(|(name, snap)| {
                    let result: std::io::Result<()> =
                        snap.logs.sinks().iter().try_for_each(|s| s.lock().expect("sink lock").flush());
                    (name, snap, result)
                })
                .collect::<Vec<_>>()
        };
        let flushed = blocking(flush).await.unwrap_or_default();
        let samples = self.ctx.samples.lock().expect("samples lock");
        let outcomes = flushed
            .into_iter()
            .map(|(name, snap, result)| {
                let (ok, message) = match result {
                    Ok(()) => (true, "logs flushed".to_string()),
                    Err(e) => (false, format!("cannot flush its logs: {e}")),
                };
                AppOutcome { name, ok, message, error: None, info: Some(snap.info(&samples)) }
            })
            .collect();
        Response::Done { outcomes }
    }

    /// SIGHUP: reopens the daemon's log file and every app's (after logrotate renamed them
    /// aside). Each sink is flagged first, so one busy with a slow write reopens before its
    /// next; the others, and the daemon's log, are reopened at once on a blocking thread.
    /// Returns why the daemon's own log could not be reopened, if it could not.
    pub async fn reopen_logs(&self) -> Option<String> {
        let logs: Vec<_> = {
            let apps = self.registry();
            apps.values().flat_map(|e| &e.instances).map(|h| h.snapshot().logs).collect()
        };
        for status in logs.iter().flat_map(|l| &l.statuses) {
            status.request_reopen();
        }
        let reopen = move || {
            for sink in logs.iter().flat_map(|l| l.sinks()) {
                if let Ok(mut sink) = sink.try_lock() {
                    sink.honour_reopen();
                }
            }
            crate::logs::reopen_daemon_log().err().map(|e| e.to_string())
        };
        blocking(reopen).await.unwrap_or_else(|| Some("the reopening thread failed".into()))
    }

    /// Receivers that change when any app changes, and after each resource sample.
    pub fn subscribe(&self) -> (tokio::sync::watch::Receiver<u64>, tokio::sync::watch::Receiver<u64>) {
        (self.ctx.changes.subscribe(), self.ctx.samples_tick.subscribe())
    }

    /// A receiver of every lifecycle event from now on.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Arc<LifecycleEvent>> {
        self.ctx.events.subscribe()
    }

    /// What `mcpd save` writes: every app's config and whether it runs.
    pub fn saved_apps(&self) -> Vec<mcpd_core::persist::SavedApp> {
        let apps = self.registry();
        apps.values()
            .map(|e| {
                let running = e
                    .instances
                    .iter()
                    .any(|h| !matches!(h.snapshot().state, state::State::Stopped | state::State::Errored { .. }));
                mcpd_core::persist::SavedApp { config: (*e.first().config()).clone(), running }
            })
            .collect()
    }

    /// Defines the saved apps and starts those that were running; `None` if nothing was saved.
    pub async fn resurrect(&self) -> Result<Option<Vec<AppOutcome>>, mcpd_core::persist::LoadError> {
        let paths = self.ctx.paths.clone();
        let loaded = blocking(move || mcpd_core::persist::load(&paths)).await;
        let Some(saved) = loaded.unwrap_or(Ok(None))? else { return Ok(None) };
        let (mut running, mut by_name) = (Vec::new(), Vec::new());
        {
            let mut apps = self.registry();
            if self.frozen.load(Ordering::Relaxed) {
                return Ok(None);
            }
            for app in saved.apps {
                if app.running && app.config.autostart {
                    running.push(app.config);
                } else if app.running {
                    // `autostart = false` keeps `start FILE` from starting it; one that was
                    // running comes back running, as under PM2.
                    by_name.push(app.config.name.clone());
                    if !apps.contains_key(&app.config.name) {
                        let name = app.config.name.clone();
                        let handle = self.spawn_app(app.config);
                        apps.insert(name, handle);
                    }
                } else if !apps.contains_key(&app.config.name) {
                    let name = app.config.name.clone();
                    let handle = self.spawn_app(app.config);
                    apps.insert(name, handle);
                }
            }
        }
        match self.start(StartRequest { apps: running, names: by_name, wait: true }).await {
            Response::Done { outcomes } => Ok(Some(outcomes)),
            _ => Ok(Some(Vec::new())),
        }
    }

    /// Every app's row, sorted by name.
    pub fn list(&self) -> Vec<AppInfo> {
        let apps = self.registry();
        let samples = self.ctx.samples.lock().expect("samples lock");
        apps.values().flat_map(|e| &e.instances).map(|h| h.snapshot().info(&samples)).collect()
    }

    /// One app's detail.
    pub fn describe(&self, name: &AppName) -> Result<AppDetail, ProtoError> {
        let apps = self.registry();
        let entry = apps.get(name).ok_or_else(|| unknown_app_error(name))?;
        let samples = self.ctx.samples.lock().expect("samples lock");
        let mut detail = entry.first().snapshot().detail(&samples);
        detail.cron_next_unix_ms = self.cron.next(name).and_then(|at| {
            at.duration_since(std::time::UNIX_EPOCH).ok().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        detail.tracking = Some(self.ctx.tracking.describe());
        detail.other_instances = entry.instances[1..].iter().map(|h| h.snapshot().info(&samples)).collect();
        Ok(detail)
    }

    /// Whether an instance scaled down is still draining its sessions.
    pub fn retiring(&self) -> bool {
        self.registry().values().any(|e| e.retiring.iter().any(|h| !h.is_finished()))
    }

    /// `scale`: runs `n` instances of the app. New ones start with the app's config and take
    /// sessions once ready (answered then); removed ones (the last) take no new session and
    /// stop once theirs have ended (answered at once).
    pub async fn scale(&self, name: &AppName, n: u32) -> Response {
        let invalid = |message: String| Response::Error(ProtoError::new(ErrorKind::InvalidRequest, message));
        if !(1..=64).contains(&n) {
            return invalid(format!("expected a number of instances from 1 to 64, found {n}"));
        }
        let mut waiting = Vec::new();
        let mut outcomes = Vec::new();
        {
            let mut apps = self.registry();
            if self.frozen.load(Ordering::Relaxed) {
                return updating();
            }
            let Some(entry) = apps.get_mut(name) else { return Response::Error(unknown_app_error(name)) };
            let config = entry.first().config();
            if n > 1 && !config.listen.is_empty() {
                return invalid(format!("\"{name}\" has `listen` sockets, which several instances cannot share: give it `front = {{ listen = ... }}` instead (each instance gets a private socket behind it)"));
            }
            if n > 1 && config.pid_file.is_some() {
                return invalid(format!(
                    "\"{name}\" has a pid_file, which cannot hold several instances' pids: remove it first"
                ));
            }
            entry.retiring.retain(|h| !h.is_finished());
            let current = entry.instances.len() as u32;
            if n > current && !entry.retiring.is_empty() {
                return Response::Error(ProtoError::new(
                    ErrorKind::Busy,
                    format!("instances of \"{name}\" scaled down are still draining their sessions; scale up once they are gone (`mcpd list`)"),
                ));
            }
            if n == current {
                return Response::Message { text: format!("{name}: already {n} instance(s), unchanged") };
            }
            let mut scaled = (*config).clone();
            scaled.instances = n;
            for handle in &entry.instances {
                handle.send(Command::Scaled { instances: n });
            }
            if n > current {
                for i in current..n {
                    let handle = app::spawn(
                        i,
                        entry.shared.clone(),
                        scaled.clone(),
                        self.ctx.clone(),
                        &self.tracker,
                        self.apps_token.clone(),
                    );
                    let (reply, rx) = oneshot::channel();
                    handle.send(Command::Start { config: None, wait: true, reply });
                    waiting.push((name.clone(), rx));
                    entry.instances.push(handle);
                }
            } else {
                let samples = self.ctx.samples.lock().expect("samples lock");
                for _ in n..current {
                    let Some(handle) = entry.instances.pop() else { break };
                    let info = handle.snapshot().info(&samples);
                    // Behind a shared front, the row lists every generation's sessions.
                    let held: usize =
                        info.sessions.iter().filter(|g| Some(g.pid) == info.pid).map(|g| g.sessions).sum();
                    let (reply, _answered_when_gone) = oneshot::channel();
                    handle.send(Command::Retire { reply });
                    let message = match held {
                        0 => "scaled down: stopping".to_string(),
                        n => format!("scaled down: takes no new session, stops once its {n} session(s) end"),
                    };
                    outcomes.push(AppOutcome { name: name.clone(), ok: true, message, error: None, info: Some(info) });
                    entry.retiring.push(handle);
                }
            }
        }
        match collect(waiting).await {
            Response::Done { outcomes: mut started } => {
                outcomes.append(&mut started);
                Response::Done { outcomes }
            }
            other => other,
        }
    }

    /// The apps with a `cron_restart`: name, registry id, pattern.
    fn cron_apps(&self) -> Vec<(AppName, u64, String)> {
        let apps = self.registry();
        apps.iter()
            .filter_map(|(name, e)| Some((name.clone(), e.id, e.first().config().cron_restart.clone()?)))
            .collect()
    }

    /// The apps with `watch`: name, registry id, config.
    fn watched_apps(&self) -> Vec<(AppName, u64, Arc<AppConfig>)> {
        let apps = self.registry();
        apps.iter()
            .map(|(name, e)| (name.clone(), e.id, e.first().config()))
            .filter(|(_, _, c)| !c.watch.is_empty())
            .collect()
    }

    /// The config of the app `name` if it is still the registry entry `id`, and whether it runs.
    fn restart_target(&self, name: &AppName, id: u64) -> Option<(Arc<AppConfig>, bool)> {
        let apps = self.registry();
        let snapshot = apps.get(name).filter(|e| e.id == id)?.first().snapshot();
        Some((snapshot.config.clone(), snapshot.state.gen().is_some()))
    }

    /// Stops every app (each with its own stop signal and drain time, all at once) and waits
    /// until every app task has ended.
    pub async fn shutdown(&self) {
        self.apps_token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.registry().clear();
        // Off the runtime: it may wait (a second at most) for a guard that does not read.
        let ctx = self.ctx.clone();
        let _ = tokio::task::spawn_blocking(move || ctx.guard.clean_exit()).await;
    }

    fn spawn_app(&self, config: AppConfig) -> Entry {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let every = u64::try_from(config.limits.memory_check_interval.as_millis()).unwrap_or(u64::MAX);
        self.ctx.sample_every_ms.fetch_min(every, Ordering::Relaxed);
        let shared = Shared::new(&config, &self.ctx);
        let instances = (0..config.instances.max(1))
            .map(|i| {
                let (ctx, token) = (self.ctx.clone(), self.apps_token.clone());
                app::spawn(i, shared.clone(), config.clone(), ctx, &self.tracker, token)
            })
            .collect();
        Entry { id, instances, retiring: Vec::new(), shared }
    }

    /// Freezes every app for an update in place (see `handover.rs`): each front stops
    /// accepting and gives up its sockets, sessions and idle client connections; each app task
    /// answers its waiting requests, stops watching its generations and returns its state.
    /// The processes run on untouched. The registry is empty afterwards.
    pub(crate) async fn freeze(&self) -> (Vec<crate::supervisor::AppState>, Vec<crate::handover::FrontState>) {
        type Entries = Vec<(AppName, Vec<AppHandle>, Arc<Shared>)>;
        let (entries, retiring): (Entries, Vec<AppHandle>) = {
            let apps = self.registry();
            self.frozen.store(true, Ordering::Relaxed);
            let retiring = apps.values().flat_map(|e| &e.retiring).filter(|h| !h.is_finished()).cloned().collect();
            (apps.iter().map(|(n, e)| (n.clone(), e.instances.clone(), e.shared.clone())).collect(), retiring)
        };
        // An instance scaled down after the update's check: it ends now (its sessions with
        // it) rather than be left behind by the exec.
        for handle in retiring {
            let (reply, rx) = oneshot::channel();
            handle.send(Command::Remove { reply });
            let _ = rx.await;
        }
        // The fronts are held, so that an app task ending does not close one; they keep
        // serving (and routing to the generations, which run on) while the tasks freeze.
        let held: Vec<(AppName, Arc<app::FrontRuntime>)> =
            entries.iter().filter_map(|(n, _, shared)| Some((n.clone(), shared.front_runtime()?))).collect();
        // Every task is asked at once and they freeze together: from here no machine acts
        // (no spawn, no restart), so nothing changes under the fronts being frozen.
        let mut asked = Vec::new();
        for (name, handles, _) in entries {
            for handle in handles {
                let (reply, rx) = oneshot::channel();
                handle.send(Command::Handover { reply });
                asked.push((name.clone(), rx));
            }
        }
        let mut states = Vec::new();
        for (name, rx) in asked {
            match rx.await {
                Ok(Ok(state)) => states.push(state),
                Ok(Err(e)) => tracing::error!(app = %name, "cannot hand the app over: {e}"),
                // The task had ended (the app was being deleted).
                Err(_) => {}
            }
        }
        // Every front stops accepting at once, then they are waited for together.
        let fronts = futures_util::future::join_all(held.iter().map(|(name, f)| f.freeze(name.as_str()))).await;
        self.registry().clear();
        (states, fronts)
    }

    /// The apps whose log files have had a write in progress for `longer` (a stuck disk or
    /// FIFO): an update now would have to wait for them.
    pub(crate) fn stuck_logs(&self, longer: std::time::Duration) -> Vec<String> {
        let apps = self.registry();
        apps.iter().filter(|(_, e)| e.shared.logs_stuck(longer)).map(|(n, _)| n.to_string()).collect()
    }

    /// Takes over the apps and fronts a previous daemon froze (or this one, when the update
    /// did not go through).
    pub(crate) fn adopt(&self, states: Vec<crate::supervisor::AppState>, fronts: Vec<crate::handover::FrontState>) {
        let mut fronts: BTreeMap<String, crate::handover::FrontState> =
            fronts.into_iter().map(|f| (f.app.clone(), f)).collect();
        let mut by_name: BTreeMap<AppName, Vec<crate::supervisor::AppState>> = BTreeMap::new();
        for state in states {
            by_name.entry(state.config.name.clone()).or_default().push(state);
        }
        let mut apps = self.registry();
        for (name, mut instances) in by_name {
            instances.sort_by_key(|s| s.instance);
            let config = instances[0].config.clone();
            let every = u64::try_from(config.limits.memory_check_interval.as_millis()).unwrap_or(u64::MAX);
            self.ctx.sample_every_ms.fetch_min(every, Ordering::Relaxed);
            let shared = Shared::new(&config, &self.ctx);
            // Held until the instances took their references.
            let mut front = None;
            if let (Some(fc), Some(state)) = (&config.front, fronts.remove(name.as_str())) {
                match app::FrontRuntime::adopt(state, fc) {
                    Ok(adopted) => {
                        shared.set_front(&adopted.front);
                        front = Some(adopted);
                    }
                    Err(e) => tracing::error!(app = %name, "cannot take over the front: {e}"),
                }
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let handles = instances
                .into_iter()
                .map(|state| {
                    let (ctx, token) = (self.ctx.clone(), self.apps_token.clone());
                    app::spawn_adopted(state, shared.clone(), ctx, &self.tracker, token)
                })
                .collect();
            // The generations are registered: requests may come.
            if let Some(front) = front {
                front.serve();
            }
            apps.insert(name, Entry { id, instances: handles, retiring: Vec::new(), shared });
        }
        self.frozen.store(false, Ordering::Relaxed);
        drop(apps);
        // Fronts of apps that no longer have one: their sockets close.
        for (_, front) in fronts {
            for fd in std::iter::once(front.public).chain(front.connections.iter().map(|c| c.fd)) {
                let _ = crate::handover::take(fd);
            }
        }
        // The guard learns the whole state at once (what it knew may be half a line behind).
        self.ctx.guard.resync();
    }

    /// The guard, the tracking and the sampling interval, for the hand-over.
    pub(crate) fn ctx(&self) -> &Ctx {
        &self.ctx
    }
}

/// What `start` of `configs` would fail on, one line each, beside the `defined` apps (those
/// the request does not redefine). Log files are compared where they will be (the defaults in
/// `logs_dir` included).
fn start_problems(defined: &[Arc<AppConfig>], configs: &[AppConfig], logs_dir: &std::path::Path) -> Vec<String> {
    use mcpd_core::config::checks;
    let placed = |c: &AppConfig| {
        let mut c = c.clone();
        let default = |stream: &str| Some(logs_dir.join(format!("{}.{stream}.log", c.name)));
        c.logs.out_file = c.logs.out_file.clone().or_else(|| default("out"));
        if !c.logs.merge_logs {
            c.logs.err_file = c.logs.err_file.clone().or_else(|| default("err"));
        }
        c
    };
    let all: Vec<AppConfig> = defined.iter().map(|c| placed(c)).chain(configs.iter().map(placed)).collect();
    let refs: Vec<&AppConfig> = all.iter().collect();
    let mut problems = Vec::new();
    for config in configs {
        let values = checks::value_problems(config);
        if values.is_empty() {
            let runnable = process::preflight(config).and_then(|()| exec::prepare_rlimits(&config.rlimits).map(drop));
            if let Err(e) = runnable {
                problems.push(format!("app \"{}\": {e}", config.name));
            }
        }
        problems.extend(values.iter().map(|p| format!("app \"{}\": {}: {}", config.name, p.field.key(), p.message)));
    }
    for conflict in checks::conflicts(&refs).into_iter().filter(|c| c.app >= defined.len()) {
        let other = &all[conflict.other];
        let whose = if conflict.other < defined.len() {
            " (already defined: `mcpd delete` it first, or change this one)"
        } else {
            ""
        };
        let other = format!("app \"{}\"'s {}{whose}", other.name, conflict.other_field.key());
        problems.push(format!(
            "app \"{}\": {}: {}",
            all[conflict.app].name,
            conflict.field.key(),
            conflict.message(&other)
        ));
    }
    problems
}

/// A request that would change how many instances a defined app runs is refused: the
/// instances run as tasks of their own, created when the app is defined.
fn instances_changed(apps: &BTreeMap<AppName, Entry>, config: &AppConfig, verb: &str) -> Option<Response> {
    let entry = apps.get(&config.name)?;
    let running = entry.instances.len();
    (running != config.instances.max(1) as usize).then(|| {
        Response::Error(ProtoError::new(
            ErrorKind::InvalidRequest,
            format!(
                "app \"{}\" runs {running} instance(s) and the config asks for {}; {verb} cannot change that: \
                 `mcpd delete {}`, then `mcpd start` the file (nothing was changed)",
                config.name, config.instances, config.name
            ),
        ))
    })
}

/// The names `targets` means; an unknown name is an error response (nothing is touched).
fn resolve(apps: &BTreeMap<AppName, Entry>, targets: &Targets) -> Result<Vec<AppName>, Response> {
    match targets {
        Targets::All => Ok(apps.keys().cloned().collect()),
        Targets::Names(names) => expand(apps, names),
    }
}

/// App names as given, each a name of an app or, failing that, of a namespace (PM2's): all the
/// apps that have it, by name. Each app once, in the order first named.
fn expand(apps: &BTreeMap<AppName, Entry>, names: &[AppName]) -> Result<Vec<AppName>, Response> {
    let mut out: Vec<AppName> = Vec::new();
    for name in names {
        let found: Vec<AppName> = match apps.contains_key(name) {
            true => vec![name.clone()],
            false => apps
                .iter()
                .filter(|(_, e)| e.first().config().namespace.as_deref() == Some(name.as_str()))
                .map(|(n, _)| n.clone())
                .collect(),
        };
        if found.is_empty() {
            return Err(Response::Error(ProtoError::new(
                ErrorKind::UnknownApp,
                format!("no app or namespace named \"{name}\": see `mcpd list`, or start it from a config file"),
            )));
        }
        for app in found {
            if !out.contains(&app) {
                out.push(app);
            }
        }
    }
    Ok(out)
}

async fn collect(replies: Vec<Pending>) -> Response {
    let mut outcomes = Vec::with_capacity(replies.len());
    for (name, rx) in replies {
        outcomes.push(rx.await.unwrap_or_else(|_| AppOutcome {
            name,
            ok: false,
            message: "the app's task ended before answering (daemon shutting down?)".into(),
            error: Some(mcpd_core::model::Failure::Interrupted),
            info: None,
        }));
    }
    Response::Done { outcomes }
}

/// Runs file I/O on a blocking thread, never on the runtime's.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(work).await.ok()
}

fn unknown_app_error(name: &AppName) -> ProtoError {
    ProtoError::new(
        ErrorKind::UnknownApp,
        format!("no app named \"{name}\": see `mcpd list`, or start it from a config file"),
    )
}

/// The answer to a request that would add an app while the daemon is frozen for an update.
pub(crate) fn updating() -> Response {
    Response::Error(ProtoError::new(
        ErrorKind::Busy,
        "the daemon is being updated in place; try again in a moment (the new daemon answers)",
    ))
}

fn shutting_down() -> Response {
    Response::Error(ProtoError::new(
        ErrorKind::ShuttingDown,
        "the daemon is shutting down; try again once it has restarted",
    ))
}

/// `NAME=VALUE\0...` as `/proc/PID/environ` holds it: the names, with the values if asked
/// for; an entry without `=` is a name with an empty value.
fn environ_vars(environ: &[u8], values: bool) -> Vec<(String, Option<String>)> {
    environ
        .split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (name, value) = text.split_once('=').unwrap_or((&text, ""));
            (name.to_string(), values.then(|| value.to_string()))
        })
        .collect()
}
