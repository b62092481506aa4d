//! One task per app: it owns the app's state machine and a map of its live generations by
//! id, performs the machine's actions, and reacts to control commands, leader exits,
//! readiness reports, the machine's deadline and shutdown.

use super::drain::ms;
use super::process::{GenControl, SpawnArgs, SpawnError};
use super::ready::Report;
use super::snapshot::Snapshot;
use super::state::{next, Action, Answer, Event, Gen, GenId, Machine, Policy, Role, State, WaiterId};
use super::Ctx;
use crate::listen::Listeners;
use crate::logs::AppLogs;
use mcpd_core::config::{AppConfig, Ready};
use mcpd_core::model::{EventKind, ExitRecord};
use mcpd_core::protocol::AppOutcome;
use mcpd_core::signal::Signal;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod checks;
mod commands;
mod events;
mod exits;
mod front;
mod handover;

pub(crate) use front::FrontRuntime;
pub(crate) use handover::{spawn_adopted, AppState, GenState};

use checks::Checks;

pub(crate) type Reply = oneshot::Sender<AppOutcome>;

/// A request to an app task; each carries where to send its outcome.
#[derive(Debug)]
pub(crate) enum Command {
    Start {
        config: Option<Box<AppConfig>>,
        wait: bool,
        reply: Reply,
    },
    Stop {
        reply: Reply,
    },
    Restart {
        reply: Reply,
    },
    Reload {
        config: Option<Box<AppConfig>>,
        wait_drain: bool,
        reply: Reply,
    },
    Remove {
        reply: Reply,
    },
    Reset {
        reply: Reply,
    },
    /// Delete once the serving generation's sessions have ended (scaled down).
    Retire {
        reply: Reply,
    },
    /// The app now runs this many instances (shown in outcomes and rows).
    Scaled {
        instances: u32,
    },
    /// Send a signal to the live generations' groups (or leaders only).
    Signal {
        signal: Signal,
        leader_only: bool,
        reply: Reply,
    },
    /// Freeze for an update in place and give back the app's state; the task ends.
    Handover {
        reply: oneshot::Sender<Result<crate::supervisor::AppState, String>>,
    },
}

/// The registry's handle on an app task.
#[derive(Debug, Clone)]
pub(crate) struct AppHandle {
    tx: mpsc::UnboundedSender<Command>,
    snapshot: watch::Receiver<Snapshot>,
}

impl AppHandle {
    /// Queues a command; if the task has ended, the dropped reply tells the caller.
    pub fn send(&self, command: Command) {
        let _ = self.tx.send(command);
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// The config of the latest snapshot (without copying the rest of it).
    pub fn config(&self) -> Arc<AppConfig> {
        self.snapshot.borrow().config.clone()
    }

    /// Whether the task has ended (the app was removed).
    pub fn is_finished(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What the instances of one app share: its front and its log files.
#[derive(Debug)]
pub(crate) struct Shared {
    front: Mutex<Weak<front::FrontRuntime>>,
    logs: Mutex<Arc<AppLogs>>,
}

impl Shared {
    /// Nothing open yet but the logs of `config`.
    pub fn new(config: &AppConfig, ctx: &Ctx) -> Arc<Shared> {
        let logs = Arc::new(AppLogs::new(config.name.as_str(), &config.logs, &ctx.paths));
        Arc::new(Shared { front: Mutex::new(Weak::new()), logs: Mutex::new(logs) })
    }

    /// Whether a write to the app's log files has been going on for `longer`.
    pub fn logs_stuck(&self, longer: Duration) -> bool {
        self.logs.lock().expect("logs lock").stuck(longer)
    }

    /// The app's front, while one runs.
    pub fn front_runtime(&self) -> Option<Arc<front::FrontRuntime>> {
        self.front.lock().expect("front lock").upgrade()
    }

    /// The front a previous daemon handed over.
    pub fn set_front(&self, runtime: &Arc<front::FrontRuntime>) {
        *self.front.lock().expect("front lock") = Arc::downgrade(runtime);
    }

    /// The log files of `config` (reopened if its log settings changed).
    pub(super) fn logs(&self, config: &AppConfig, ctx: &Ctx) -> Arc<AppLogs> {
        let mut logs = self.logs.lock().expect("logs lock");
        if logs.config != config.logs {
            *logs = Arc::new(AppLogs::new(config.name.as_str(), &config.logs, &ctx.paths));
        }
        logs.clone()
    }
}

/// Starts the task of one instance of an app, stopped until it receives a command.
pub(crate) fn spawn(
    instance: u32,
    shared: Arc<Shared>,
    config: AppConfig,
    ctx: Arc<Ctx>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> AppHandle {
    // Unbounded: each control request waits for its answer, so at most one command per open
    // control connection is queued (and only the daemon's own user may connect).
    let (tx, rx) = mpsc::unbounded_channel();
    let logs = shared.logs(&config, &ctx);
    let mut snap = Snapshot::new(config, logs);
    snap.instance = instance;
    if instance == 0 {
        for record in ctx.take_orphans(snap.config.name.as_str()) {
            snap.record_exit(record);
        }
    }
    let (publish, snapshot) = watch::channel(snap.clone());
    // Reports are bounded: a generation that floods its notify socket waits on its own
    // socket buffer. Exits are unbounded: two per generation, and generations are bounded.
    let (reports_tx, reports) = mpsc::channel(REPORTS_QUEUED);
    let (exits_tx, exits) = mpsc::unbounded_channel();
    let samples = ctx.samples_tick.subscribe();
    let task = AppTask {
        instance,
        shared,
        machine: Machine::new(),
        checks: Checks::default(),
        front: None,
        tools_note: None,
        ctx,
        tracker: tracker.clone(),
        snap,
        gens: BTreeMap::new(),
        next_gen: 1,
        pending: None,
        listeners: Listeners::default(),
        launcher: None,
        reports_tx,
        exits_tx,
        publish,
        replies: HashMap::new(),
        next_waiter: 1,
        queued_events: Vec::new(),
        pid_file: Default::default(),
    };
    tracker.spawn(crate::boxed(task.run(rx, reports, exits, samples, shutdown, false)));
    AppHandle { tx, snapshot }
}

/// A live generation and the config it runs with.
#[derive(Debug)]
struct Live {
    generation: Box<dyn GenControl>,
    config: Arc<AppConfig>,
    /// Its leader has exited; the rest of its group is being ended.
    leader_gone: bool,
    /// The leader's wait status, once it exited (handed over with the generation).
    status: Option<i32>,
    /// The task waiting for the leader's exit (stopped when the generation is handed over).
    waiter: Option<tokio::task::AbortHandle>,
    /// The task ending the rest of its group once the leader exited (stopped likewise: the
    /// next daemon ends it).
    drain: Option<tokio::task::AbortHandle>,
}

/// What a generation's waiter tells the task. Kept small (the record is boxed): each app's
/// channel of these holds a block of 32 from the start.
#[derive(Debug)]
enum GenNews {
    /// The leader exited.
    LeaderExit { gen: GenId, status: std::io::Result<std::process::ExitStatus> },
    /// The whole group is gone.
    Gone { gen: GenId, record: Box<ExitRecord> },
}

/// Readiness reports (ready, STATUS=, WATCHDOG=1, probe results) queued for the app task.
const REPORTS_QUEUED: usize = 64;

/// How often an old generation behind a front is looked at for idle sessions.
const SESSION_POLL: Duration = Duration::from_millis(100);

struct AppTask {
    ctx: Arc<Ctx>,
    /// Which of the app's `instances` this task runs (0 with one).
    instance: u32,
    shared: Arc<Shared>,
    /// The app's state; written only through [`next`].
    machine: Machine,
    /// Memory, watchdog and health checks of the serving generation.
    checks: Checks,
    /// The MCP front, when the app has one (shared by its instances).
    front: Option<Arc<front::FrontRuntime>>,
    /// What the tools guard said about the running reload (with on_tools_change = "warn").
    tools_note: Option<String>,
    tracker: TaskTracker,
    snap: Snapshot,
    /// Every live generation, by id: exactly those the machine names.
    gens: BTreeMap<GenId, Live>,
    next_gen: GenId,
    /// The config a reload's new generation runs with, until it is spawned.
    pending: Option<Arc<AppConfig>>,
    listeners: Listeners,
    /// Starts generations from inside their v1 cgroups, once the app crashed (launcher.rs).
    launcher: Option<super::launcher::Launcher>,
    reports_tx: mpsc::Sender<Report>,
    exits_tx: mpsc::UnboundedSender<GenNews>,
    publish: watch::Sender<Snapshot>,
    /// Requests waiting for the machine's answer.
    replies: HashMap<WaiterId, Reply>,
    next_waiter: WaiterId,
    /// Events of this step (spawns, exits), published with the status the step ends in.
    queued_events: Vec<EventKind>,
    /// `pid_file`: the serving generation's pid.
    pid_file: super::pidfile::PidFile,
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl AppTask {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
        mut reports: mpsc::Receiver<Report>,
        mut exits: mpsc::UnboundedReceiver<GenNews>,
        mut samples: watch::Receiver<u64>,
        shutdown: CancellationToken,
        adopted: bool,
    ) {
        let mut shutting_down = false;
        if !adopted {
            // A monitor learns of a new app from its first event, even one that stays stopped.
            self.emit(EventKind::Stopped);
        }
        while !self.machine.removed {
            let deadline = self.machine.deadline();
            let sessions_due = self.machine.waits_for_sessions().next().map(|_| Instant::now() + SESSION_POLL);
            tokio::select! {
                Some(news) = exits.recv() => self.gen_news(news),
                Some(report) = reports.recv() => self.report(report),
                command = rx.recv(), if !shutting_down => match command {
                    Some(Command::Handover { reply }) => {
                        // What already happened is taken in first.
                        while let Ok(news) = exits.try_recv() {
                            self.gen_news(news);
                        }
                        while let Ok(report) = reports.try_recv() {
                            self.report(report);
                        }
                        let _ = reply.send(self.freeze().await);
                        return;
                    }
                    Some(command) => self.command(command),
                    None => { shutting_down = true; self.step(Event::Shutdown); }
                },
                _ = until(deadline) => self.step(Event::Deadline),
                _ = until(sessions_due) => self.sessions_check(),
                _ = until(self.checks.watchdog_due) => self.watchdog_expired(),
                _ = until(self.checks.health_due) => self.health_tick(),
                Ok(()) = samples.changed() => {
                    self.emit_sample();
                    self.memory_check();
                }
                _ = shutdown.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    self.step(Event::Shutdown);
                }
            }
            self.arm_checks();
        }
        debug_assert!(self.gens.is_empty(), "removed with live generations: {:?}", self.gens.keys());
        self.pid_file.update(self.snap.config.pid_file.as_deref(), None);
        self.pid_file.flush().await;
        rx.close();
        while let Ok(command) = rx.try_recv() {
            let (Command::Start { reply, .. }
            | Command::Stop { reply }
            | Command::Restart { reply }
            | Command::Reload { reply, .. }
            | Command::Remove { reply }
            | Command::Reset { reply }
            | Command::Retire { reply }
            | Command::Signal { reply, .. }) = command
            else {
                continue;
            };
            let _ = reply.send(self.outcome(false, "the app was deleted".into(), None));
        }
    }

    /// Publishes the snapshot for readers and tells watchers (`mcpd monit`) something changed.
    fn publish_snapshot(&mut self) {
        self.sync_front();
        self.snap.state = self.machine.state.clone();
        self.snap.reload = self.machine.reload_phase().map(|(phase, old, new)| (phase, old.pid, new.pid));
        self.snap.draining = self.machine.ending.iter().map(|e| e.gen.pid).collect();
        let serving = self.machine.state.gen().map(|g| g.pid);
        self.pid_file.update(self.snap.config.pid_file.as_deref(), serving);
        let _ = self.publish.send_replace(self.snap.clone());
        self.ctx.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn policy(&self, for_gen: Option<GenId>) -> Policy {
        let c = &self.snap.config;
        // A reload's new generation gets ready under its own (new) config's timeout.
        let ready_timeout = for_gen.and_then(|g| self.gens.get(&g)).map_or(c.ready_timeout, |l| l.config.ready_timeout);
        Policy {
            restart_delay: c.restart_delay,
            restarts: c.restarts.clone(),
            kill_timeout: c.kill_timeout,
            ready_timeout,
            front_drain: c.front.as_ref().map(|f| f.drain_deadline),
            graceful_recycle: c.ready != Ready::None,
        }
    }

    /// Feeds one event to the state machine, performs its actions (feeding their results back
    /// at once) and sends its answers.
    fn step(&mut self, event: Event) {
        let before = self.lifecycle_view();
        self.step_machine(event);
        for kind in std::mem::take(&mut self.queued_events) {
            self.emit(kind);
        }
        self.emit_changes(before);
    }

    fn step_machine(&mut self, event: Event) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let for_gen = match (&event, &self.machine.state) {
                (Event::Spawned { gen, .. }, _) => Some(gen.id),
                (_, State::Reloading { next, .. }) => Some(next.id),
                _ => None,
            };
            let policy = self.policy(for_gen);
            let t = next(&self.machine, event, Instant::now(), &policy);
            self.machine = t.machine;
            if let Some(why) = t.stayed {
                self.set_exit_outcome(format!("stays stopped: {why}"));
            }
            for action in t.actions {
                self.act(action, &mut queue);
            }
            for (waiter, answer) in t.answers {
                self.answer(waiter, answer);
            }
        }
        if self.machine.state.is_down() && self.gens.is_empty() {
            // Nothing will accept on the `listen` sockets: close them, so clients are refused
            // at once instead of waiting in the backlog (a restart keeps them; start binds again).
            self.listeners.close();
        }
        if self.machine.removed {
            self.listeners.close();
            self.front = None;
        }
        self.publish_snapshot();
    }

    fn act(&mut self, action: Action, queue: &mut VecDeque<Event>) {
        let name = self.snap.config.name.clone();
        match action {
            Action::Spawn { role } => {
                let config = match role {
                    Role::Main { restart, .. } => {
                        if let Some(reason) = restart {
                            self.snap.restarts += 1;
                            *self.snap.restarts_by_reason.entry(reason).or_default() += 1;
                        }
                        self.snap.status_text = None;
                        self.pending = None;
                        self.snap.config.clone()
                    }
                    Role::Next => self.pending.take().unwrap_or_else(|| self.snap.config.clone()),
                };
                let ready_at_spawn = config.ready == Ready::None;
                match self.spawn(config.clone()) {
                    Ok(generation) => {
                        let gen = Gen { id: self.next_gen, pid: generation.pid() };
                        self.next_gen += 1;
                        tracing::info!(app = %name, pid = gen.pid, ?role, "started");
                        self.queued_events.push(EventKind::Spawned { pid: gen.pid, next: role == Role::Next });
                        self.watch(gen, generation, config);
                        queue.push_back(Event::Spawned { gen, role });
                        if ready_at_spawn {
                            queue.push_back(Event::Ready { gen: gen.id });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(app = %name, reason = %e, "cannot start");
                        queue.push_back(Event::SpawnFailed { role, reason: e.to_string() });
                    }
                }
            }
            Action::SignalStop { gen } => {
                if let Some(live) = self.gens.get(&gen).filter(|l| !l.leader_gone) {
                    live.generation.request_stop(&live.config);
                }
            }
            Action::Kill { gen } => {
                if let Some(live) = self.gens.get(&gen) {
                    tracing::warn!(app = %name, pid = live.generation.pid(), "drain time over: SIGKILL to the group");
                    live.generation.signal(Signal::KILL);
                }
            }
            Action::Promote { gen, old, reason } => {
                let Some(new) = self.gens.get(&gen) else { return };
                self.snap.config = new.config.clone();
                self.snap.restarts += 1;
                *self.snap.restarts_by_reason.entry(reason).or_default() += 1;
                self.snap.status_text = None;
                let old_pid = self.gens.get(&old).map_or(0, |l| l.generation.pid());
                tracing::info!(app = %name, pid = old_pid, "reload: new generation ready, draining the old one");
            }
            Action::Remove => {}
        }
    }

    /// Registers a spawned generation and waits for its leader on a task of its own.
    fn watch(&mut self, gen: Gen, mut generation: Box<dyn GenControl>, config: Arc<AppConfig>) {
        let exit = generation.leader_exit();
        let tx = self.exits_tx.clone();
        let waiter = self.tracker.spawn(crate::boxed(async move {
            let status = exit.await;
            let _ = tx.send(GenNews::LeaderExit { gen: gen.id, status });
        }));
        let waiter = Some(waiter.abort_handle());
        self.gens.insert(gen.id, Live { generation, config, leader_gone: false, status: None, waiter, drain: None });
    }

    fn spawn(&mut self, config: Arc<AppConfig>) -> Result<Box<dyn GenControl>, SpawnError> {
        let handed = self.handed_sockets(&config).map_err(SpawnError::Config)?;
        if self.snap.logs.config != config.logs {
            self.snap.logs = self.shared.logs(&config, &self.ctx);
        }
        let mut config = config;
        let vars = config.instance_env(self.instance);
        let owned = Arc::make_mut(&mut config);
        for (name, value) in vars {
            // Over `env` and the selected set alike: neither may undo them.
            if let Some(set) = owned.env_selected.as_ref().and_then(|s| owned.env_sets.get_mut(s)) {
                set.remove(&name);
            }
            owned.env.insert(name, value);
        }
        let via = handed.upstream.as_ref().map(|(path, _)| path.clone());
        let args = SpawnArgs {
            config: &config,
            fds: &handed.fds,
            via: via.clone(),
            reports: self.reports_tx.clone(),
            logs: &self.snap.logs,
            tracker: &self.tracker,
            launcher: self.launcher.as_ref(),
        };
        let mut generation = self.ctx.spawner.spawn(&self.ctx, args)?;
        if let (Some(front), Some(path)) = (self.front(), via) {
            front.add(generation.pid(), path.clone());
            generation.set_upstream(path);
        }
        Ok(generation)
    }

    /// Gives the app a launcher (where generations enter v1 cgroups), which starts making
    /// the next generation's cgroups. A thread that cannot start leaves the ordinary path.
    fn warm_launcher(&mut self, config: &AppConfig) {
        let Some(tree) = self.ctx.tracking.tree() else { return };
        let controllers = tree.v1_launchable(&config.limits);
        if controllers.is_empty() {
            return;
        }
        if self.launcher.is_none() {
            match super::launcher::Launcher::start(config.name.as_str(), tree.v1_homes()) {
                Ok(launcher) => self.launcher = Some(launcher),
                Err(e) => return tracing::debug!(app = %config.name, error = %e, "cannot start a launcher thread"),
            }
        }
        if let Some(launcher) = &self.launcher {
            launcher.prepare(|| tree.next_v1_dirs(config.name.as_str(), &controllers));
        }
    }

    /// The id of the live generation whose leader is `pid`.
    fn gen_of(&self, pid: u32) -> Option<GenId> {
        self.gens.iter().find(|(_, l)| l.generation.pid() == pid && !l.leader_gone).map(|(id, _)| *id)
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::Ready { pid } => {
                if let Some(gen) = self.gen_of(pid) {
                    if !self.guard_tools(gen) {
                        self.step(Event::Ready { gen });
                    }
                }
            }
            Report::Tools { pid, hashes } => self.tools_compared(pid, *hashes),
            Report::Status { pid, text } => {
                if self.snap.state.pid() == Some(pid) {
                    self.snap.status_text = Some(text);
                    self.publish_snapshot();
                }
            }
            Report::Watchdog { pid } => self.watchdog_ping(pid),
            Report::Health { pid, result } => self.health_result(pid, result),
        }
    }

    /// Feeds [`Event::SessionsIdle`] for each ending generation behind a front whose sessions
    /// are all idle (or gone).
    fn sessions_check(&mut self) {
        let Some(front) = self.front() else {
            let idle: Vec<GenId> = self.machine.waits_for_sessions().map(|g| g.id).collect();
            return idle.into_iter().for_each(|gen| self.step(Event::SessionsIdle { gen }));
        };
        let idle: Vec<GenId> = self
            .machine
            .waits_for_sessions()
            .filter(|g| {
                let timeout = self
                    .gens
                    .get(&g.id)
                    .and_then(|l| l.config.front.as_ref())
                    .map_or(Duration::ZERO, |f| f.session_idle_timeout);
                !front.busy(g.pid, timeout)
            })
            .map(|g| g.id)
            .collect();
        for gen in idle {
            self.step(Event::SessionsIdle { gen });
        }
    }

    /// Sends one answer of the machine to its request.
    fn answer(&mut self, waiter: WaiterId, answer: Answer) {
        let Some(reply) = self.replies.remove(&waiter) else { return };
        let (ok, message, kind) = match answer {
            Answer::Online { gen, since } => {
                (true, format!("online (pid {}, ready after {} ms)", gen.pid, ms(since.elapsed())), None)
            }
            Answer::Started { gen } => (true, format!("started (pid {}), not waiting for readiness", gen.pid), None),
            Answer::AlreadyOnline { gen } => (true, format!("already online (pid {}), unchanged", gen.pid), None),
            Answer::Stopped => (true, "stopped".to_string(), None),
            Answer::AlreadyStopped { status } => (true, format!("already {status}"), None),
            Answer::Removed => (true, "deleted".to_string(), None),
            Answer::Reloaded { new, old, sessions, old_crashed } => {
                let message = match (old, sessions) {
                    (Some((old, how)), _) => format!("reloaded: pid {} serving; old pid {} {how}", new.pid, old.pid),
                    (None, Some(old)) => format!(
                        "reloaded: pid {} takes new sessions; old pid {} keeps its sessions until they are idle, then drains",
                        new.pid, old.pid
                    ),
                    (None, None) if old_crashed => {
                        format!("reloaded: pid {} serving; the old generation had ended before it was ready", new.pid)
                    }
                    (None, None) => format!("reloaded: pid {} serving", new.pid),
                };
                let message = match self.tools_note.take() {
                    Some(note) => format!("{message}; warning: {note}"),
                    None => message,
                };
                (true, message, None)
            }
            Answer::Failed { kind, message } => (false, message, Some(kind)),
        };
        let _ = reply.send(self.outcome(ok, message, kind));
    }

    fn outcome(&self, ok: bool, message: String, error: Option<mcpd_core::model::Failure>) -> AppOutcome {
        let message =
            if self.snap.config.instances > 1 { format!("instance {}: {message}", self.instance) } else { message };
        let samples = self.ctx.samples.lock().expect("samples lock");
        AppOutcome {
            name: self.snap.config.name.clone(),
            ok,
            message,
            error,
            info: (!self.machine.removed).then(|| self.snap.info(&samples)),
        }
    }
}

#[cfg(test)]
mod tests;
