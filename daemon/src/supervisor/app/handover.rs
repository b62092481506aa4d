//! An app task's side of an update in place: freezing (the old daemon) and adopting (the new
//! one). Between the two the processes run on untouched; the machine's state, each
//! generation's pipes, sockets and cgroups, and the `listen` sockets cross the exec.

use super::{AppHandle, AppTask, Checks, Live, Shared, REPORTS_QUEUED};
use crate::supervisor::state::{Gen, Machine, State};
use crate::supervisor::Ctx;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One instance of an app, as its task left it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AppState {
    pub config: mcpd_core::config::AppConfig,
    pub instance: u32,
    pub machine: crate::supervisor::state::Machine,
    pub next_gen: u64,
    pub gens: Vec<GenState>,
    /// The bound `listen` sockets, in config order.
    pub listen: Vec<RawFd>,
    pub restarts: u32,
    pub restarts_by_reason: std::collections::BTreeMap<mcpd_core::model::RestartReason, u32>,
    pub exits: Vec<mcpd_core::model::ExitRecord>,
    pub status_text: Option<String>,
}

/// One live generation.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GenState {
    pub id: u64,
    pub pid: u32,
    pub config: mcpd_core::config::AppConfig,
    /// The leader's wait status, once it exited (the rest of its group is being ended).
    pub leader_status: Option<i32>,
    /// It said it was ready (its readiness is not watched again).
    pub ready: bool,
    pub stdout: crate::handover::PipeState,
    pub stderr: crate::handover::PipeState,
    pub notify: Option<(PathBuf, RawFd)>,
    pub ipc: Option<RawFd>,
    pub upstream: Option<PathBuf>,
    pub cgroup: Option<crate::handover::CgroupState>,
}

/// What a request that waited on the app is told when the daemon is updated under it.
const INTERRUPTED: &str =
    "the daemon was updated in place while this request waited; the app keeps going in the new daemon: see `mcpd list`";

impl AppTask {
    /// Stops watching the app for an update in place and returns its state. Its processes
    /// are not touched; the requests that wait are answered. The task ends after this.
    pub(super) async fn freeze(&mut self) -> Result<AppState, String> {
        // Infallible today; a Result so the registry can report a refusal later.
        for (_, reply) in std::mem::take(&mut self.replies) {
            let _ = reply.send(self.outcome(false, INTERRUPTED.into(), None));
        }
        let mut machine = self.machine.clone();
        machine.waiters.clear();
        if let Some(run) = &mut machine.reload {
            run.waiters.clear();
        }
        let not_ready: Vec<u64> = match &machine.state {
            State::Starting { gen, .. } => vec![gen.id],
            State::Reloading { next, .. } => vec![next.id],
            _ => Vec::new(),
        };
        // Every generation's captures are stopped at once, then waited for together: the
        // wait is bounded by one flush, however many generations there are.
        let mut freezing = Vec::new();
        for (&id, live) in self.gens.iter_mut() {
            for task in [live.waiter.take(), live.drain.take()].into_iter().flatten() {
                task.abort();
            }
            freezing.push((id, live.generation.freeze()));
        }
        let (ids, futures): (Vec<u64>, Vec<_>) = freezing.into_iter().unzip();
        let frozen = futures_util::future::join_all(futures).await;
        let mut gens = Vec::new();
        for (id, frozen) in ids.into_iter().zip(frozen) {
            let Some(live) = self.gens.get(&id) else { continue };
            gens.push(GenState {
                id,
                pid: live.generation.pid(),
                config: (*live.config).clone(),
                leader_status: live.status.filter(|_| live.leader_gone),
                ready: !not_ready.contains(&id),
                stdout: frozen.stdout,
                stderr: frozen.stderr,
                notify: frozen.notify,
                ipc: frozen.ipc,
                upstream: frozen.upstream,
                cgroup: frozen.cgroup,
            });
        }
        // Dropped without a word to the guard: the next daemon tells it the whole state.
        let gens_taken = std::mem::take(&mut self.gens);
        drop(gens_taken);
        Ok(AppState {
            config: (*self.snap.config).clone(),
            instance: self.instance,
            machine,
            next_gen: self.next_gen,
            gens,
            listen: self.listeners.hand_over(),
            restarts: self.snap.restarts,
            restarts_by_reason: self.snap.restarts_by_reason.clone(),
            exits: self.snap.exits.iter().cloned().collect(),
            status_text: self.snap.status_text.clone(),
        })
    }
}

/// Starts the task of an app instance the previous daemon handed over: its generations are
/// adopted (waited for, read, probed until ready) and its machine goes on where it was.
pub(crate) fn spawn_adopted(
    state: AppState,
    shared: Arc<Shared>,
    ctx: Arc<Ctx>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> AppHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = state.config;
    let logs = shared.logs(&config, &ctx);
    let mut snap = crate::supervisor::snapshot::Snapshot::new(config.clone(), logs.clone());
    snap.instance = state.instance;
    snap.restarts = state.restarts;
    snap.restarts_by_reason = state.restarts_by_reason;
    state.exits.into_iter().for_each(|e| snap.record_exit(e));
    snap.status_text = state.status_text;
    let (publish, snapshot) = watch::channel(snap.clone());
    let (reports_tx, reports) = mpsc::channel(REPORTS_QUEUED);
    let (exits_tx, exits) = mpsc::unbounded_channel();
    let samples = ctx.samples_tick.subscribe();
    let listeners = match crate::listen::Listeners::adopt(&config.listen, &state.listen) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(app = %config.name, "{e}");
            crate::listen::Listeners::default()
        }
    };
    let front = config.front.as_ref().and_then(|_| shared.front.lock().expect("front lock").upgrade());
    snap.front = front.as_ref().map(|f| f.front.clone());
    let mut task = AppTask {
        instance: state.instance,
        shared,
        machine: Machine::new(),
        checks: Checks::default(),
        front,
        tools_note: None,
        ctx: ctx.clone(),
        tracker: tracker.clone(),
        snap,
        gens: BTreeMap::new(),
        next_gen: state.next_gen,
        pending: None,
        listeners,
        launcher: None,
        reports_tx,
        exits_tx,
        publish,
        replies: HashMap::new(),
        next_waiter: 1,
        queued_events: Vec::new(),
        pid_file: Default::default(),
    };
    let mut machine = state.machine;
    let mut gone = Vec::new();
    for g in state.gens {
        let (id, pid, status) = (g.id, g.pid, g.leader_status);
        let cgroup_dir = g.cgroup.as_ref().map(|c| c.dir.clone());
        let gen_config = Arc::new(g.config.clone());
        match crate::supervisor::process::adopt(&ctx, g, &gen_config, task.reports_tx.clone(), &logs, tracker) {
            Ok(generation) => {
                if let (Some(front), Some(path)) = (task.front(), generation.upstream.clone()) {
                    front.add(pid, path);
                }
                let generation: Box<dyn crate::supervisor::process::GenControl> = Box::new(generation);
                match status {
                    None => task.watch(Gen { id, pid }, generation, gen_config),
                    Some(raw) => {
                        let live = Live {
                            generation,
                            config: gen_config,
                            leader_gone: false,
                            status: None,
                            waiter: None,
                            drain: None,
                        };
                        task.gens.insert(id, live);
                        gone.push((id, raw));
                    }
                }
            }
            Err(e) => {
                // Not adoptable: it is ended (nothing would watch, read or stop it) and the
                // machine goes on as if it had exited.
                tracing::error!(app = %config.name, pid, "cannot take over a generation, so it is killed: {e}");
                crate::supervisor::group::signal_group(pid, mcpd_core::signal::Signal::KILL);
                if let Some(dir) = cgroup_dir {
                    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
                }
                machine = forget(machine, id);
            }
        }
    }
    task.machine = machine;
    for (id, raw) in gone {
        task.leader_exited(id, Ok(std::os::unix::process::ExitStatusExt::from_raw(raw)));
    }
    if task.machine.state.is_down() && task.gens.is_empty() {
        task.listeners.close();
    }
    task.publish_snapshot();
    let handle = AppHandle { tx, snapshot };
    tracker.spawn(crate::boxed(task.run(rx, reports, exits, samples, shutdown, true)));
    handle
}

/// The machine without a generation that could not be taken over: as if it had exited.
fn forget(machine: Machine, id: u64) -> Machine {
    let mut m = machine;
    m.ending.retain(|e| e.gen.id != id);
    let lost = match &m.state {
        State::Starting { gen, .. } | State::Online { gen, .. } | State::Stopping { gen, .. } => gen.id == id,
        State::Reloading { gen, .. } => gen.id == id,
        _ => false,
    };
    if let State::Reloading { gen, since, next, .. } = m.state.clone() {
        if next.id == id {
            m.state = State::Online { gen, since };
            m.reload = None;
        }
    }
    if lost {
        m.state = State::Errored { reason: "its generation could not be taken over by the updated daemon".into() };
        m.reload = None;
    }
    m
}
