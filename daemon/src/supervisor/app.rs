//! One task per app: it owns the app's state and its running generation, and reacts to
//! control commands, the leader's exit, its deadline and shutdown.

use super::process::{self, Generation, GroupEnd};
use super::sampler::Sample;
use super::state::{next, Action, Event, Note, Policy, State, Then};
use super::Ctx;
use mcpd_core::config::AppConfig;
use mcpd_core::model::{AppDetail, AppInfo, ExitRecord};
use mcpd_core::protocol::AppOutcome;
use std::collections::{HashMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How many exits `describe` keeps.
const EXITS_KEPT: usize = 10;

/// A request to an app task; each carries where to send its outcome.
#[derive(Debug)]
pub(crate) enum Command {
    Start {
        config: Option<Box<AppConfig>>,
        reply: oneshot::Sender<AppOutcome>,
    },
    Stop {
        reply: oneshot::Sender<AppOutcome>,
    },
    Restart {
        reply: oneshot::Sender<AppOutcome>,
    },
    Remove {
        reply: oneshot::Sender<AppOutcome>,
    },
}

/// What readers (list, describe) see of an app, published after every change.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub config: Arc<AppConfig>,
    pub state: State,
    pub restarts: u32,
    pub exits: VecDeque<ExitRecord>,
}

impl Snapshot {
    /// The `list` row, with uptime computed now and the group's last resource sample.
    pub fn info(&self, samples: &HashMap<u32, Sample>) -> AppInfo {
        let now = Instant::now();
        let pid = self.state.pid();
        let sample = pid.and_then(|p| samples.get(&p));
        let (uptime_ms, next_start_in_ms, reason) = match &self.state {
            State::Online { since, .. } => {
                (Some(ms(now.saturating_duration_since(*since))), None, None)
            }
            State::WaitingRestart { until } => {
                (None, Some(ms(until.saturating_duration_since(now))), None)
            }
            State::Errored { reason } => (None, None, Some(reason.clone())),
            _ => (None, None, None),
        };
        AppInfo {
            name: self.config.name.clone(),
            status: self.state.status(),
            pid,
            restarts: self.restarts,
            uptime_ms,
            memory_bytes: sample.map(|s| s.rss_bytes),
            cpu_percent: sample.map(|s| s.cpu_percent),
            reason,
            next_start_in_ms,
        }
    }

    /// The `describe` view.
    pub fn detail(&self, samples: &HashMap<u32, Sample>) -> AppDetail {
        AppDetail {
            info: self.info(samples),
            config: (*self.config).clone(),
            last_exits: self.exits.iter().cloned().collect(),
        }
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The registry's handle on an app task.
#[derive(Debug)]
pub(crate) struct AppHandle {
    /// Tells this task apart from a later one of the same name.
    pub id: u64,
    tx: mpsc::UnboundedSender<Command>,
    snapshot: watch::Receiver<Snapshot>,
}

impl AppHandle {
    /// Queues a command; if the task has ended, the reply channel is dropped and the caller
    /// reports that.
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

/// Starts the task of a new app, stopped until it receives a command.
pub(crate) fn spawn(
    id: u64,
    config: AppConfig,
    ctx: Arc<Ctx>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> AppHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let snapshot = Snapshot {
        config: Arc::new(config),
        state: State::Stopped,
        restarts: 0,
        exits: VecDeque::new(),
    };
    let (snapshot_tx, snapshot_rx) = watch::channel(snapshot.clone());
    let task = AppTask {
        ctx,
        snap: snapshot,
        generation: None,
        publish: snapshot_tx,
        waiters: Vec::new(),
        removed: false,
    };
    tracker.spawn(task.run(rx, shutdown));
    AppHandle {
        id,
        tx,
        snapshot: snapshot_rx,
    }
}

/// What a caller waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Online,
    Stopped,
    Removed,
}

struct AppTask {
    ctx: Arc<Ctx>,
    snap: Snapshot,
    generation: Option<Generation>,
    publish: watch::Sender<Snapshot>,
    waiters: Vec<(Goal, oneshot::Sender<AppOutcome>)>,
    removed: bool,
}

async fn leader_exit(
    generation: &mut Option<Generation>,
) -> std::io::Result<std::process::ExitStatus> {
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
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>, shutdown: CancellationToken) {
        let mut shutting_down = false;
        while !self.removed {
            let deadline = self.snap.state.deadline();
            tokio::select! {
                status = leader_exit(&mut self.generation) => self.exited(status).await,
                command = rx.recv(), if !shutting_down => match command {
                    Some(command) => self.command(command),
                    None => {
                        self.step(Event::Remove);
                    }
                },
                _ = until(deadline) => {
                    self.step(Event::Deadline);
                }
                _ = shutdown.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    self.step(Event::Remove);
                }
            }
            self.settle();
        }
        rx.close();
        while let Ok(command) = rx.try_recv() {
            let reply = match command {
                Command::Start { reply, .. }
                | Command::Stop { reply }
                | Command::Restart { reply }
                | Command::Remove { reply } => reply,
            };
            let _ = reply.send(self.outcome(false, "the app was deleted".into()));
        }
    }

    fn command(&mut self, command: Command) {
        let (event, goal, reply) = match command {
            Command::Start { config, reply } => {
                if let Some(config) = config {
                    if self.generation.is_none() {
                        self.snap.config = Arc::new(*config);
                    } else if *config != *self.snap.config {
                        let pid = self.snap.state.pid().unwrap_or_default();
                        let msg = format!("already running (pid {pid}) with a different config; nothing changed: `mcpd restart {}` does not re-read the file, stop and start it to apply", self.snap.config.name);
                        let _ = reply.send(self.outcome(true, msg));
                        return;
                    }
                }
                (Event::Start, Goal::Online, reply)
            }
            Command::Stop { reply } => (Event::Stop, Goal::Stopped, reply),
            Command::Restart { reply } => (Event::Restart, Goal::Online, reply),
            Command::Remove { reply } => (Event::Remove, Goal::Removed, reply),
        };
        match self.step(event) {
            Some(Note::AlreadyOnline) => {
                let pid = self.snap.state.pid().unwrap_or_default();
                let _ = reply
                    .send(self.outcome(true, format!("already online (pid {pid}), unchanged")));
            }
            Some(Note::AlreadyStopped) => {
                let _ =
                    reply.send(self.outcome(true, format!("already {}", self.snap.state.status())));
            }
            None => self.waiters.push((goal, reply)),
        }
    }

    /// Feeds one event to the state machine and performs its actions.
    fn step(&mut self, event: Event) -> Option<Note> {
        let policy = Policy {
            restart_delay: self.snap.config.restart_delay,
            kill_timeout: self.snap.config.kill_timeout,
        };
        let mut queue = VecDeque::from([event]);
        let mut first_note = None;
        let mut first = true;
        while let Some(event) = queue.pop_front() {
            let t = next(&self.snap.state, event, Instant::now(), &policy);
            if first {
                first_note = t.note;
                first = false;
            }
            self.snap.state = t.state;
            for action in t.actions {
                match action {
                    Action::Spawn { restart } => {
                        if restart {
                            self.snap.restarts += 1;
                        }
                        queue.push_back(match process::spawn(&self.snap.config, &self.ctx) {
                            Ok(generation) => {
                                let pid = generation.pid;
                                tracing::info!(app = %self.snap.config.name, pid, "started");
                                self.generation = Some(generation);
                                Event::Spawned { pid }
                            }
                            Err(reason) => {
                                tracing::warn!(app = %self.snap.config.name, %reason, "cannot start");
                                Event::SpawnFailed { reason }
                            }
                        });
                    }
                    Action::SignalStop => self.signal(self.snap.config.kill_signal),
                    Action::Kill => {
                        tracing::warn!(app = %self.snap.config.name, "drain time over: SIGKILL to the group");
                        self.signal(mcpd_core::signal::Signal::KILL);
                    }
                    Action::Remove => self.removed = true,
                }
            }
        }
        let _ = self.publish.send_replace(self.snap.clone());
        first_note
    }

    fn signal(&self, signal: mcpd_core::signal::Signal) {
        if let Some(g) = &self.generation {
            g.signal(signal);
        }
    }

    /// The leader exited: end the rest of its group, record the exit, then step.
    async fn exited(&mut self, status: std::io::Result<std::process::ExitStatus>) {
        let Some(generation) = self.generation.take() else {
            return;
        };
        let pid = generation.pid;
        self.ctx.leaders.lock().expect("leaders lock").remove(&pid);
        let config = self.snap.config.clone();
        let (reason, first, deadline) = match &self.snap.state {
            State::Stopping { deadline, then, .. } => {
                let reason = match then {
                    Then::Stop => "stopped",
                    Then::Start => "restart",
                    Then::Remove => "removed",
                };
                (reason, None, deadline.unwrap_or_else(Instant::now))
            }
            _ => (
                "crash",
                Some(config.kill_signal),
                Instant::now() + config.kill_timeout,
            ),
        };
        let end = process::end_group(&self.ctx, pid, first, deadline).await;
        if end != GroupEnd::Empty {
            tracing::info!(app = %config.name, pid, ?end, "ended the rest of the process group");
        }
        self.ctx.guard.forget(pid);
        let (code, signal) = match &status {
            Ok(s) => (s.code(), s.signal()),
            Err(_) => (None, None),
        };
        let record = ExitRecord {
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(ms)
                .unwrap_or(0),
            pid,
            code,
            signal,
            reason: reason.to_string(),
        };
        tracing::info!(app = %config.name, pid, exit = %record.describe(), reason, "exited");
        if self.snap.exits.len() == EXITS_KEPT {
            self.snap.exits.pop_front();
        }
        self.snap.exits.push_back(record);
        self.step(Event::Exited);
    }

    /// Answers every waiter whose goal is reached or can no longer be.
    fn settle(&mut self) {
        let state = self.snap.state.clone();
        let waiters = std::mem::take(&mut self.waiters);
        for (goal, reply) in waiters {
            let done = match (goal, &state) {
                (_, _) if self.removed => Some(if goal == Goal::Removed {
                    (true, "deleted".to_string())
                } else {
                    (false, "the app was deleted".to_string())
                }),
                (Goal::Online, State::Online { pid, .. }) => {
                    Some((true, format!("online (pid {pid})")))
                }
                (Goal::Online, State::Errored { reason }) => {
                    Some((false, format!("errored: {reason}")))
                }
                (Goal::Online, State::Stopped) => {
                    Some((false, "stopped before it came online".to_string()))
                }
                (Goal::Stopped, State::Stopped | State::Errored { .. }) => {
                    Some((true, "stopped".to_string()))
                }
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
        let samples = self.ctx.samples.lock().expect("samples lock");
        AppOutcome {
            name: self.snap.config.name.clone(),
            ok,
            message,
            info: (!self.removed).then(|| self.snap.info(&samples)),
        }
    }
}
