//! The pure state machine of one app: `next(machine, event, now, policy)`.
//!
//! No I/O and no clock of its own: the caller passes `now`, performs the returned actions,
//! feeds their results back as events, and sends the returned answers to the requests that
//! wait. The machine names every live generation of the app: the one in its [`State`] (and a
//! reload's new one), and those on their way out in [`Machine::ending`]. Actions name the
//! generation they concern, so the task that performs them keeps a map of generations by id
//! and nothing can fall out of step. Tested by tables in `state_tests.rs` and by random event
//! sequences against invariants in `state_props.rs`.

pub use super::restart::Counters;
use mcpd_core::config::RestartConfig;
use mcpd_core::model::AppStatus;
pub use mcpd_core::model::{Failure, RestartReason};
use std::time::{Duration, Instant};

/// A generation's id: unique within its app task, never reused.
pub type GenId = u64;

/// A request waiting for an answer; unique within its app task.
pub type WaiterId = u64;

/// One generation: its id and its leader's pid (which is also its process group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Gen {
    pub id: GenId,
    pub pid: u32,
}

/// What the serving line of the app is doing; each variant carries the data that only makes
/// sense in it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// Not running, by the user's wish (or never started).
    Stopped,
    /// Spawned; waiting for its readiness until `deadline`.
    Starting {
        gen: Gen,
        #[serde(with = "crate::handover::mono")]
        since: Instant,
        #[serde(with = "crate::handover::mono")]
        deadline: Instant,
        attempt: Attempt,
    },
    /// Running and ready; `since` is when this generation was spawned.
    Online {
        gen: Gen,
        #[serde(with = "crate::handover::mono")]
        since: Instant,
    },
    /// `gen` serves while `next` (a reload's new generation) gets ready until `deadline`.
    Reloading {
        gen: Gen,
        #[serde(with = "crate::handover::mono")]
        since: Instant,
        next: Gen,
        #[serde(with = "crate::handover::mono")]
        deadline: Instant,
    },
    /// Stop requested; SIGKILL at `deadline` (None once SIGKILL was sent).
    Stopping {
        gen: Gen,
        #[serde(with = "crate::handover::mono_opt")]
        deadline: Option<Instant>,
        then: Then,
    },
    /// Exited unexpectedly; the next generation is spawned at `until`.
    WaitingRestart {
        #[serde(with = "crate::handover::mono")]
        until: Instant,
        why: Why,
    },
    /// Not running and not restarted until the user acts.
    Errored { reason: String },
}

/// Why mcpd replaces a generation: the typed reason (metrics, events) and the words for people.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Why {
    pub reason: RestartReason,
    pub text: String,
}

impl Why {
    /// A reason whose text is its plain description.
    pub fn plain(reason: RestartReason) -> Why {
        Why { reason, text: reason.describe().to_string() }
    }
}

/// Who asked for a generation: a failure before ready ends in `errored` for the user's
/// own start (so `mcpd start` fails and nothing flaps), in a restart for automatic ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Attempt {
    /// `start`, `restart`, `reload` of a stopped app.
    User,
    /// A restart after a crash, or a replacement by mcpd.
    Auto,
}

/// What to do once a stopping generation is gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Then {
    /// Stay stopped.
    Stop,
    /// Start a new generation (a restart by the user, or a replacement by mcpd).
    Start(Attempt, Why),
    /// Forget the app (delete, or daemon shutdown).
    Remove,
    /// It failed to get ready: become errored (user start) or restart (automatic start).
    Fail { reason: String, attempt: Attempt },
}

/// A generation on its way out: an old one after a reload, a failed reload's new one.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ending {
    pub gen: Gen,
    pub stage: EndStage,
    /// Why it is ending (the exit record's reason).
    pub why: String,
    /// Whether it was replaced by a ready successor or thrown away.
    pub kind: EndKind,
    /// When it was asked to stop (or SIGKILLed).
    #[serde(with = "crate::handover::mono_opt")]
    pub signalled_at: Option<Instant>,
}

/// What an ending generation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EndKind {
    /// An old generation a ready successor replaced: it drains (a reload's `draining-old`).
    Replaced,
    /// A reload's new generation that failed, or one nothing asked for: it is SIGKILLed.
    Discarded,
}

/// Where an ending generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EndStage {
    /// Behind a front: it keeps serving its sessions until they are idle or until `until`;
    /// it has not been signalled yet.
    Sessions {
        #[serde(with = "crate::handover::mono")]
        until: Instant,
    },
    /// Asked to stop; SIGKILL at `kill_at` (None once SIGKILL was sent).
    Signalled {
        #[serde(with = "crate::handover::mono_opt")]
        kill_at: Option<Instant>,
    },
}

/// What a waiting request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Goal {
    /// A generation is spawned (`start --no-wait`).
    Spawned,
    /// The app is online.
    Online,
    /// The app is down and no generation is left.
    Stopped,
    /// The app is gone.
    Removed,
}

/// The reload that runs: who waits for it and how far it got.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReloadRun {
    pub waiters: Vec<WaiterId>,
    /// Answer only once the old generation is gone (always without a front).
    pub wait_drain: bool,
    pub why: Why,
    /// Its new generation, once spawned.
    pub new: Option<Gen>,
    /// The old generation whose end answers the reload, once the new one took over.
    pub old: Option<Gen>,
    /// How the new generation took over (tells in the answer that the old one was gone).
    pub old_crashed: bool,
}

/// The phase of a reload, as `list` and events show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadPhase {
    /// The new generation is getting ready; the old one serves.
    StartingNew,
    /// The new generation serves; the old one drains.
    DrainingOld,
}

impl ReloadPhase {
    /// The word `list --json` and events use.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadPhase::StartingNew => "starting-new",
            ReloadPhase::DrainingOld => "draining-old",
        }
    }
}

/// Everything the machine knows of one app.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub state: State,
    /// Generations on their way out (never the one in `state`).
    pub ending: Vec<Ending>,
    /// Restart history the restart policy reads.
    pub counters: Counters,
    /// Requests waiting for a goal.
    pub waiters: Vec<(WaiterId, Goal)>,
    /// The running reload, if any.
    pub reload: Option<ReloadRun>,
    /// Delete (or daemon shutdown) was asked: once no generation is left, the app is gone.
    pub removing: bool,
    /// The app is gone: [`Action::Remove`] was returned.
    pub removed: bool,
}

/// Something that happened to the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A request of the user's; its answer goes to `waiter`.
    User { verb: Verb, waiter: WaiterId },
    /// The daemon shuts down (or the app's handle was dropped): like a delete nobody waits for.
    Shutdown,
    /// mcpd replaces the serving generation (memory limit, watchdog, health check); counters
    /// are kept. `graceful`: by a reload (start new, then stop old) if it can.
    Recycle { why: Why, graceful: bool },
    /// A generation asked for by [`Action::Spawn`] was spawned.
    Spawned { gen: Gen, role: Role },
    /// Spawning failed (program missing, port taken, bad env_file, ...).
    SpawnFailed { role: Role, reason: String },
    /// A generation said it is ready.
    Ready { gen: GenId },
    /// A reload's new generation got ready but a reload guard refused it (its tools changed).
    Refused { gen: GenId, reason: String },
    /// A generation's leader exited and its whole group is gone; `how` is "exit code 3" or similar.
    Exited { gen: GenId, how: String, code: Option<i32> },
    /// An ending generation behind a front has no busy session left.
    SessionsIdle { gen: GenId },
    /// A deadline the machine returned from [`Machine::deadline`] passed.
    Deadline,
}

/// A user's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Start and wait until online.
    Start,
    /// Start and answer once spawned.
    StartNoWait,
    Stop,
    Restart,
    /// Graceful reload; `wait_drain`: answer once the old generation is gone.
    Reload {
        wait_drain: bool,
    },
    /// Delete.
    Remove,
    /// Delete once its sessions have ended (an instance scaled down): behind a front, the
    /// serving generation takes no new session and drains as a reload's old one does.
    Retire,
}

/// Which generation a spawn is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The only generation; `restart` counts it as a restart for that reason.
    Main { attempt: Attempt, restart: Option<RestartReason> },
    /// A reload's new generation beside the serving one.
    Next,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn a generation, then feed [`Event::Spawned`] or [`Event::SpawnFailed`] with `role`.
    Spawn { role: Role },
    /// Ask a generation to stop (its signal or shutdown message).
    SignalStop { gen: GenId },
    /// SIGKILL a generation's group.
    Kill { gen: GenId },
    /// A reload's new generation `gen` is ready and serves; `old` is on its way out. Counts
    /// as a restart for `reason`.
    Promote { gen: GenId, old: GenId, reason: RestartReason },
    /// The app is gone; end its task.
    Remove,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Online: `gen` spawned at `since`.
    Online { gen: Gen, since: Instant },
    /// Spawned (not waiting for readiness).
    Started { gen: Gen },
    /// It was online already; nothing changed.
    AlreadyOnline { gen: Gen },
    /// Stopped, with no generation left.
    Stopped,
    /// It was not running; nothing changed.
    AlreadyStopped { status: AppStatus },
    /// Deleted.
    Removed,
    /// A reload took effect: `new` serves. `old` is how the old generation ended (when the
    /// answer waited for it); `sessions` when the old one keeps its sessions behind a front.
    Reloaded { new: Gen, old: Option<(Gen, String)>, sessions: Option<Gen>, old_crashed: bool },
    /// It failed, or cannot be done now.
    Failed { kind: Failure, message: String },
}

/// The timing and restart policy an app's config sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Fixed pause before restarting after a crash (without backoff).
    pub restart_delay: Duration,
    /// Restart policy, backoff, crash-loop cutoff.
    pub restarts: RestartConfig,
    /// Drain time between the stop request and SIGKILL.
    pub kill_timeout: Duration,
    /// Time a new generation has to become ready.
    pub ready_timeout: Duration,
    /// With a front: how long an old generation may keep its sessions before it is stopped.
    pub front_drain: Option<Duration>,
    /// Whether a memory recycle can be a reload (the app has a readiness handshake).
    pub graceful_recycle: bool,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The new machine.
    pub machine: Machine,
    /// Actions to perform, in order.
    pub actions: Vec<Action>,
    /// Answers to send, in order.
    pub answers: Vec<(WaiterId, Answer)>,
    /// Set when a generation ended and the restart policy keeps the app stopped, saying why.
    pub stayed: Option<String>,
}

/// How many old generations may drain at once behind a front (a reload beyond is refused).
pub const MAX_ENDING: usize = 8;

/// `now + d`, saturating far in the future instead of overflowing.
pub fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl State {
    /// The status word for `list`.
    pub fn status(&self) -> AppStatus {
        match self {
            State::Stopped => AppStatus::Stopped,
            State::Starting { .. } => AppStatus::Starting,
            State::Online { .. } => AppStatus::Online,
            State::Reloading { .. } => AppStatus::Reloading,
            State::Stopping { .. } => AppStatus::Stopping,
            State::WaitingRestart { .. } => AppStatus::WaitingRestart,
            State::Errored { .. } => AppStatus::Errored,
        }
    }

    /// The generation that serves (or is starting, or stopping).
    pub fn gen(&self) -> Option<Gen> {
        match self {
            State::Starting { gen, .. }
            | State::Online { gen, .. }
            | State::Reloading { gen, .. }
            | State::Stopping { gen, .. } => Some(*gen),
            _ => None,
        }
    }

    /// The pid of the generation that serves (or is starting, or stopping).
    pub fn pid(&self) -> Option<u32> {
        self.gen().map(|g| g.pid)
    }

    /// Whether no generation runs in this state.
    pub fn is_down(&self) -> bool {
        matches!(self, State::Stopped | State::Errored { .. } | State::WaitingRestart { .. })
    }
}

impl Machine {
    /// A stopped app that never ran.
    pub fn new() -> Machine {
        Machine {
            state: State::Stopped,
            ending: Vec::new(),
            counters: Counters::default(),
            waiters: Vec::new(),
            reload: None,
            removing: false,
            removed: false,
        }
    }

    /// Every live generation the machine knows: the serving one, a reload's new one, and
    /// those ending.
    pub fn live(&self) -> Vec<Gen> {
        let mut gens: Vec<Gen> = self.state.gen().into_iter().collect();
        if let State::Reloading { next, .. } = &self.state {
            gens.push(*next);
        }
        gens.extend(self.ending.iter().map(|e| e.gen));
        gens
    }

    /// When the caller must feed [`Event::Deadline`], if ever: the earliest of every deadline.
    pub fn deadline(&self) -> Option<Instant> {
        let own = match &self.state {
            State::Starting { deadline, .. } | State::Reloading { deadline, .. } => Some(*deadline),
            State::Stopping { deadline, .. } => *deadline,
            State::WaitingRestart { until, .. } => Some(*until),
            _ => None,
        };
        let ending = self.ending.iter().filter_map(|e| match e.stage {
            EndStage::Sessions { until } => Some(until),
            EndStage::Signalled { kill_at } => kill_at,
        });
        own.into_iter().chain(ending).min()
    }

    /// Whether an ending generation waits for its sessions to be idle (the caller then feeds
    /// [`Event::SessionsIdle`] when they are).
    pub fn waits_for_sessions(&self) -> impl Iterator<Item = Gen> + '_ {
        self.ending.iter().filter(|e| matches!(e.stage, EndStage::Sessions { .. })).map(|e| e.gen)
    }

    /// The reload's phase and its old and new generation, for `list` and events.
    pub fn reload_phase(&self) -> Option<(ReloadPhase, Gen, Gen)> {
        match &self.state {
            State::Reloading { gen, next, .. } => Some((ReloadPhase::StartingNew, *gen, *next)),
            State::Online { gen, .. } => self
                .ending
                .iter()
                .find(|e| e.kind == EndKind::Replaced)
                .map(|e| (ReloadPhase::DrainingOld, e.gen, *gen)),
            _ => None,
        }
    }

    /// The words for an exit of `gen` (its exit record's reason), from what the machine had
    /// asked of it: "crash" when it had asked nothing.
    pub fn exit_reason(&self, gen: GenId) -> String {
        if let Some(e) = self.ending.iter().find(|e| e.gen.id == gen) {
            return e.why.clone();
        }
        match &self.state {
            State::Stopping { gen: g, then, .. } if g.id == gen => match then {
                Then::Stop => "user stop".into(),
                Then::Start(_, why) => why.text.clone(),
                Then::Remove => "deleted".into(),
                Then::Fail { reason, .. } => reason.clone(),
            },
            State::Reloading { next, .. } if next.id == gen => "reload failed".into(),
            _ => RestartReason::Crash.describe().into(),
        }
    }

    /// Whether the machine has already asked `gen` to stop (so the rest of its group gets no
    /// further signal of its own after the leader exits, only SIGKILL at the deadline).
    pub fn stop_deadline(&self, gen: GenId) -> Option<Option<Instant>> {
        if let Some(e) = self.ending.iter().find(|e| e.gen.id == gen) {
            return match e.stage {
                EndStage::Signalled { kill_at } => Some(kill_at),
                EndStage::Sessions { .. } => None,
            };
        }
        match &self.state {
            State::Stopping { gen: g, deadline, .. } if g.id == gen => Some(*deadline),
            _ => None,
        }
    }
}

impl Default for Machine {
    fn default() -> Machine {
        Machine::new()
    }
}

#[path = "state_next.rs"]
mod state_next;
pub use state_next::next;

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "state_props.rs"]
mod props;
