//! One task per app: it owns the app's state and its generations, and reacts to control
//! commands, leader exits, readiness reports, drains, its deadline and shutdown.

use super::drain::{self, ms, Drained};
use super::process::{self, Generation};
use super::ready::Report;
use super::snapshot::Snapshot;
use super::sockets::Listeners;
use super::state::{next, Action, Counters, Event, Note, Policy, State};
use super::Ctx;
use crate::logs::AppLogs;
use mcpd_core::config::{AppConfig, Ready};
use mcpd_core::protocol::AppOutcome;
use mcpd_core::signal::Signal;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod checks;
mod commands;
mod exits;
mod front;

use checks::Checks;

pub(crate) type Reply = oneshot::Sender<AppOutcome>;

/// A request to an app task; each carries where to send its outcome.
#[derive(Debug)]
pub(crate) enum Command {
    Start { config: Option<Box<AppConfig>>, wait: bool, reply: Reply },
    Stop { reply: Reply },
    Restart { reply: Reply },
    Reload { config: Option<Box<AppConfig>>, wait_drain: bool, reply: Reply },
    Remove { reply: Reply },
    Reset { reply: Reply },
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

    /// The log files of `config` (reopened if its log settings changed).
    fn logs(&self, config: &AppConfig, ctx: &Ctx) -> Arc<AppLogs> {
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
    let (tx, rx) = mpsc::unbounded_channel();
    let logs = shared.logs(&config, &ctx);
    let mut snap = Snapshot::new(config, logs);
    snap.instance = instance;
    let (publish, snapshot) = watch::channel(snap.clone());
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let (drained_tx, drained) = mpsc::unbounded_channel();
    let samples = ctx.samples_tick.subscribe();
    let task = AppTask {
        instance,
        shared,
        counters: Counters::default(),
        recycle_reason: None,
        checks: Checks::default(),
        front: None,
        reload_wait_drain: false,
        reload_answers_at_drain_of: None,
        tools_note: None,
        ctx,
        tracker: tracker.clone(),
        snap,
        current: None,
        next: None,
        pending: None,
        listeners: Listeners::default(),
        reports_tx,
        drained_tx,
        publish,
        waiters: Vec::new(),
        reload_waiters: Vec::new(),
        removed: false,
    };
    tracker.spawn(task.run(rx, reports, drained, samples, shutdown));
    AppHandle { tx, snapshot }
}

/// What a caller of start/stop/restart/delete waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Online,
    Stopped,
    Removed,
}

struct AppTask {
    ctx: Arc<Ctx>,
    /// Which of the app's `instances` this task runs (0 with one).
    instance: u32,
    shared: Arc<Shared>,
    /// Restart history the restart policy reads.
    counters: Counters,
    /// Why mcpd is replacing the serving generation (memory limit, watchdog, health).
    recycle_reason: Option<String>,
    /// Memory, watchdog and health checks of the serving generation.
    checks: Checks,
    /// The MCP front, when the app has one (shared by its instances).
    front: Option<Arc<front::FrontRuntime>>,
    /// `reload --wait-drain`: answer reload waiters only once the old generation is gone.
    reload_wait_drain: bool,
    /// The old generation whose end answers the running reload (without a front, or with
    /// `--wait-drain`); drains of earlier reloads answer nobody.
    reload_answers_at_drain_of: Option<u32>,
    /// What the tools guard said about the running reload (with on_tools_change = "warn").
    tools_note: Option<String>,
    tracker: TaskTracker,
    snap: Snapshot,
    /// The serving (or starting, or stopping) generation.
    current: Option<Generation>,
    /// A reload's new generation until it is ready.
    next: Option<Generation>,
    /// The config a reload's new generation runs with.
    pending: Option<Arc<AppConfig>>,
    listeners: Listeners,
    reports_tx: mpsc::UnboundedSender<Report>,
    drained_tx: mpsc::UnboundedSender<Drained>,
    publish: watch::Sender<Snapshot>,
    waiters: Vec<(Goal, Reply)>,
    reload_waiters: Vec<Reply>,
    removed: bool,
}

async fn leader_exit(generation: &mut Option<Generation>) -> std::io::Result<std::process::ExitStatus> {
    match generation {
        Some(g) => g.wait().await,
        None => std::future::pending().await,
    }
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
        mut reports: mpsc::UnboundedReceiver<Report>,
        mut drained: mpsc::UnboundedReceiver<Drained>,
        mut samples: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        let mut shutting_down = false;
        while !self.removed {
            let deadline = self.snap.state.deadline();
            tokio::select! {
                status = leader_exit(&mut self.current) => self.current_exited(status).await,
                status = leader_exit(&mut self.next) => self.next_exited(status).await,
                Some(report) = reports.recv() => self.report(report),
                Some(done) = drained.recv() => self.drained(done),
                command = rx.recv(), if !shutting_down => match command {
                    Some(command) => self.command(command),
                    None => drop(self.step(Event::Remove)),
                },
                _ = until(deadline) => drop(self.step(Event::Deadline)),
                _ = until(self.checks.watchdog_due) => self.watchdog_expired(),
                _ = until(self.checks.health_due) => self.health_tick(),
                Ok(()) = samples.changed() => self.memory_check(),
                _ = shutdown.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    self.step(Event::Remove);
                }
            }
            self.settle();
        }
        rx.close();
        while let Ok(command) = rx.try_recv() {
            let (Command::Start { reply, .. }
            | Command::Stop { reply }
            | Command::Restart { reply }
            | Command::Reload { reply, .. }
            | Command::Remove { reply }
            | Command::Reset { reply }) = command;
            let _ = reply.send(self.outcome(false, "the app was deleted".into()));
        }
    }

    /// Publishes the snapshot for readers and tells watchers (`mcpd monit`) something changed.
    fn publish_snapshot(&self) {
        self.sync_front();
        let _ = self.publish.send_replace(self.snap.clone());
        self.ctx.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn policy(&self) -> Policy {
        let c = &self.snap.config;
        // A reload's new generation gets ready under its own (new) config's timeout.
        let ready_timeout = self.pending.as_ref().map_or(c.ready_timeout, |p| p.ready_timeout);
        Policy {
            restart_delay: c.restart_delay,
            restarts: c.restarts.clone(),
            kill_timeout: c.kill_timeout,
            ready_timeout,
        }
    }

    /// Feeds one event to the state machine and performs its actions; returns the first note.
    fn step(&mut self, event: Event) -> Option<Note> {
        let mut queue = VecDeque::from([event]);
        let mut first_note = None;
        let mut first = true;
        while let Some(event) = queue.pop_front() {
            let policy = self.policy();
            let t = next(&self.snap.state, &mut self.counters, event, Instant::now(), &policy);
            if let Some(Note::ReloadFailed(reason)) = &t.note {
                self.reload_failed(reason.clone());
            }
            if first {
                first_note = t.note;
                first = false;
            }
            self.snap.state = t.state;
            for action in t.actions {
                self.act(action, &mut queue);
            }
        }
        if matches!(self.snap.state, State::Stopped | State::Errored { .. }) && self.current.is_none() {
            // Nothing will accept on the `listen` sockets: close them, so clients are refused
            // at once instead of waiting in the backlog (a restart keeps them; start binds again).
            self.listeners.close();
        }
        self.publish_snapshot();
        first_note
    }

    fn act(&mut self, action: Action, queue: &mut VecDeque<Event>) {
        let name = self.snap.config.name.clone();
        match action {
            Action::Spawn { restart, attempt } => {
                if restart {
                    self.snap.restarts += 1;
                    let why = self.snap.exits.back().map_or("other", |e| super::snapshot::restart_reason(&e.reason));
                    *self.snap.restarts_by_reason.entry(why).or_default() += 1;
                }
                self.snap.status_text = None;
                let ready_at_spawn = self.snap.config.ready == Ready::None;
                match self.spawn(self.snap.config.clone()) {
                    Ok(generation) => {
                        let pid = generation.pid;
                        tracing::info!(app = %name, pid, "started");
                        self.current = Some(generation);
                        queue.push_back(Event::Spawned { pid, attempt });
                        if ready_at_spawn {
                            queue.push_back(Event::Ready { pid });
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(app = %name, %reason, "cannot start");
                        queue.push_back(Event::SpawnFailed { reason });
                    }
                }
            }
            Action::SpawnNext => {
                let config = self.pending.clone().unwrap_or_else(|| self.snap.config.clone());
                let ready_at_spawn = config.ready == Ready::None;
                match self.spawn(config) {
                    Ok(generation) => {
                        let pid = generation.pid;
                        tracing::info!(app = %name, pid, "reload: started the new generation");
                        self.next = Some(generation);
                        queue.push_back(Event::SpawnedNext { pid });
                        if ready_at_spawn {
                            queue.push_back(Event::Ready { pid });
                        }
                    }
                    Err(reason) => queue.push_back(Event::SpawnNextFailed {
                        reason: format!("cannot start the new generation: {reason}"),
                    }),
                }
            }
            Action::SignalStop => {
                if let Some(g) = &self.current {
                    g.request_stop(&self.snap.config);
                }
            }
            Action::Kill => {
                tracing::warn!(app = %name, "drain time over: SIGKILL to the group");
                if let Some(g) = &self.current {
                    g.signal(Signal::KILL);
                }
            }
            Action::KillNext => {
                if let Some(g) = &self.next {
                    g.signal(Signal::KILL);
                }
            }
            Action::PromoteNext => {
                let old = std::mem::replace(&mut self.current, self.next.take());
                let new_config = self.pending.take().unwrap_or_else(|| self.snap.config.clone());
                let old_config = std::mem::replace(&mut self.snap.config, new_config);
                self.snap.restarts += 1;
                self.snap.status_text = None;
                if let Some(old) = old {
                    tracing::info!(app = %name, pid = old.pid, "reload: new generation ready, draining the old one");
                    self.snap.draining.push(old.pid);
                    let reason = self.recycle_reason.take().unwrap_or_else(|| "user reload".into());
                    *self.snap.restarts_by_reason.entry(super::snapshot::restart_reason(&reason)).or_default() += 1;
                    let done = self.drained_tx.clone();
                    let (ctx, front) = (self.ctx.clone(), self.front());
                    let old_pid = old.pid;
                    self.tracker.spawn(async move {
                        let _ = done.send(drain::drain(old, old_config, ctx, reason, front).await);
                    });
                    if self.front.is_none() || self.reload_wait_drain {
                        self.reload_answers_at_drain_of = Some(old_pid);
                    } else {
                        self.sync_front();
                        self.answer_reload(format!("reloaded: pid {} takes new sessions; old pid {old_pid} keeps its sessions until they are idle, then drains", self.snap.state.pid().unwrap_or_default()));
                    }
                }
            }
            Action::Remove => {
                self.listeners.close();
                self.front = None;
                self.removed = true;
            }
        }
    }

    fn spawn(&mut self, config: Arc<AppConfig>) -> Result<Generation, String> {
        let handed = self.handed_sockets(&config)?;
        if self.snap.logs.config != config.logs {
            self.snap.logs = self.shared.logs(&config, &self.ctx);
        }
        let mut config = config;
        Arc::make_mut(&mut config).env.insert("MCPD_INSTANCE".into(), self.instance.to_string());
        let via = handed.upstream.as_ref().map(|(path, _)| path.clone());
        let mut generation = process::spawn(
            &config,
            &self.ctx,
            &handed.fds,
            via.clone(),
            self.reports_tx.clone(),
            &self.snap.logs,
            &self.tracker,
        )?;
        if let (Some(front), Some(path)) = (self.front(), via) {
            front.add(generation.pid, path.clone());
            generation.upstream = Some(path);
        }
        Ok(generation)
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::Ready { pid } => {
                if !self.guard_tools(pid) {
                    self.step(Event::Ready { pid });
                }
            }
            Report::Tools { pid, hashes } => self.tools_compared(pid, hashes),
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

    /// Answers every waiter whose goal is reached or can no longer be.
    fn settle(&mut self) {
        self.arm_checks();
        let state = self.snap.state.clone();
        if !self.reload_waiters.is_empty() && !matches!(state, State::Reloading { .. } | State::Online { .. }) {
            self.reload_failed(format!("interrupted: the app is now {}", state.status()));
        }
        for (goal, reply) in std::mem::take(&mut self.waiters) {
            let done = match (goal, &state) {
                _ if self.removed => Some((
                    goal == Goal::Removed,
                    if goal == Goal::Removed { "deleted" } else { "the app was deleted" }.to_string(),
                )),
                (Goal::Online, State::Online { pid, since }) => {
                    Some((true, format!("online (pid {pid}, ready after {} ms)", ms(since.elapsed()))))
                }
                (Goal::Online, State::Errored { reason }) => Some((false, format!("errored: {reason}"))),
                (Goal::Online, State::WaitingRestart { .. }) => {
                    Some((false, "exited before it was ready; restarting".to_string()))
                }
                (Goal::Online, State::Stopped) => Some((false, "stopped before it came online".to_string())),
                (Goal::Stopped, State::Stopped | State::Errored { .. }) => Some((true, "stopped".to_string())),
                _ => None,
            };
            match done {
                Some((ok, message)) => {
                    let _ = reply.send(self.outcome(ok, message));
                }
                None => self.waiters.push((goal, reply)),
            }
        }
    }

    fn outcome(&self, ok: bool, message: String) -> AppOutcome {
        let message =
            if self.snap.config.instances > 1 { format!("instance {}: {message}", self.instance) } else { message };
        let samples = self.ctx.samples.lock().expect("samples lock");
        AppOutcome {
            name: self.snap.config.name.clone(),
            ok,
            message,
            info: (!self.removed).then(|| self.snap.info(&samples)),
        }
    }
}
