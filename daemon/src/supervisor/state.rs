//! The pure state machine of one app: `next(state, event, now, policy)`.
//!
//! No I/O and no clock of its own: the caller passes `now`, performs the returned actions,
//! and feeds their results back as events. Tested by tables in `state_tests.rs`.

pub use super::restart::Counters;
use mcpd_core::config::RestartConfig;
use mcpd_core::model::AppStatus;
use std::time::{Duration, Instant};

/// An app's state; each variant carries the data that only makes sense in it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not running, by the user's wish (or never started).
    Stopped,
    /// Spawned; waiting for its readiness until `deadline`.
    Starting { pid: u32, since: Instant, deadline: Instant, attempt: Attempt },
    /// Running and ready; `since` is when this generation was spawned.
    Online { pid: u32, since: Instant },
    /// `pid` serves while `new_pid` (the next generation) gets ready until `deadline`.
    Reloading { pid: u32, since: Instant, new_pid: u32, deadline: Instant },
    /// Stop requested; SIGKILL at `deadline` (None once SIGKILL was sent).
    Stopping { pid: u32, deadline: Option<Instant>, then: Then },
    /// Exited unexpectedly; the next generation is spawned at `until`.
    WaitingRestart { until: Instant },
    /// Not running and not restarted until the user acts.
    Errored { reason: String },
}

/// Who asked for a generation: a failure before ready ends in `errored` for the user's
/// own start (so `mcpd start` fails and nothing flaps), in a restart for automatic ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// `start`, `restart`, `reload` of a stopped app.
    User,
    /// A restart after a crash.
    Auto,
}

/// What to do once a stopping generation is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Stay stopped.
    Stop,
    /// Start a new generation (a restart, by the user or automatic).
    Start(Attempt),
    /// Forget the app (delete, or daemon shutdown).
    Remove,
    /// It failed to get ready: become errored (user start) or restart (automatic start).
    Fail { reason: String, attempt: Attempt },
}

/// Something that happened to the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The user asked to start it.
    Start,
    /// The user asked to stop it.
    Stop,
    /// The user asked to restart it.
    Restart,
    /// mcpd restarts it (memory limit, watchdog, health check): counters are kept.
    Recycle,
    /// The user asked for a graceful reload.
    Reload,
    /// The user deleted it, or the daemon is shutting down.
    Remove,
    /// The only generation was spawned.
    Spawned { pid: u32, attempt: Attempt },
    /// Spawning failed (program missing, port taken, bad env_file, ...).
    SpawnFailed { reason: String },
    /// The next generation of a reload was spawned.
    SpawnedNext { pid: u32 },
    /// The next generation could not be spawned.
    SpawnNextFailed { reason: String },
    /// The next generation got ready but a reload guard refused it (its tools changed).
    NextRefused { reason: String },
    /// A generation said it is ready.
    Ready { pid: u32 },
    /// A generation's leader exited and its group is gone; `how` is "exit code 3" or similar.
    Exited { pid: u32, how: String, code: Option<i32> },
    /// The state's deadline passed.
    Deadline,
}

/// What the caller must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Spawn the only generation; `restart` counts it as a restart.
    Spawn { restart: bool, attempt: Attempt },
    /// Spawn the next generation beside the serving one.
    SpawnNext,
    /// Ask the current generation to stop (its signal or shutdown message).
    SignalStop,
    /// SIGKILL the current generation's group.
    Kill,
    /// SIGKILL the next generation's group (a failed reload).
    KillNext,
    /// The next generation is ready: it becomes current, the old one drains.
    PromoteNext,
    /// The app is gone; end its task.
    Remove,
}

/// Why a request changed nothing, or how it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Start of an online app.
    AlreadyOnline,
    /// Stop of an app that is not running.
    AlreadyStopped,
    /// The app is in the middle of something that this request cannot interrupt.
    Busy(&'static str),
    /// A reload failed; the old generation keeps serving.
    ReloadFailed(String),
    /// An exit that the restart policy does not restart, and why.
    Stayed(String),
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
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The new state.
    pub state: State,
    /// Actions to perform, in order.
    pub actions: Vec<Action>,
    /// Set when the event changed nothing or failed, to tell the user why.
    pub note: Option<Note>,
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

    /// When the caller must feed [`Event::Deadline`], if ever.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            State::Starting { deadline, .. } | State::Reloading { deadline, .. } => Some(*deadline),
            State::Stopping { deadline, .. } => *deadline,
            State::WaitingRestart { until } => Some(*until),
            _ => None,
        }
    }

    /// The pid of the generation that serves (or is starting, or stopping).
    pub fn pid(&self) -> Option<u32> {
        match self {
            State::Starting { pid, .. }
            | State::Online { pid, .. }
            | State::Reloading { pid, .. }
            | State::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

#[path = "state_next.rs"]
mod state_next;
pub use state_next::next;

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
