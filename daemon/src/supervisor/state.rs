//! The pure state machine of one app: `next(state, event, now, policy)`.
//!
//! No I/O and no clock of its own: the caller passes `now`, performs the returned actions,
//! and feeds their results back as events. Tested by tables below.

use mcpd_core::model::AppStatus;
use std::time::{Duration, Instant};

/// An app's state; each variant carries the data that only makes sense in it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not running, by the user's wish (or never started).
    Stopped,
    /// Running; `since` is when this generation was spawned.
    Online { pid: u32, since: Instant },
    /// Stop signal sent; SIGKILL at `deadline` (None once SIGKILL was sent).
    Stopping {
        pid: u32,
        deadline: Option<Instant>,
        then: Then,
    },
    /// Exited unexpectedly; the next generation is spawned at `until`.
    WaitingRestart { until: Instant },
    /// Not running and not restarted until the user acts.
    Errored { reason: String },
}

/// What to do once a stopping generation is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Stay stopped.
    Stop,
    /// Start a new generation (a restart).
    Start,
    /// Forget the app (delete, or daemon shutdown).
    Remove,
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
    /// The user deleted it, or the daemon is shutting down.
    Remove,
    /// A generation was spawned.
    Spawned { pid: u32 },
    /// Spawning failed (program missing, bad env_file, ...).
    SpawnFailed { reason: String },
    /// The generation's leader exited and its group is gone.
    Exited,
    /// The state's deadline passed.
    Deadline,
}

/// What the caller must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Spawn a new generation; `restart` counts it as a restart.
    Spawn { restart: bool },
    /// Send the app's stop signal to its group.
    SignalStop,
    /// SIGKILL the group.
    Kill,
    /// The app is gone; end its task.
    Remove,
}

/// Why a request changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// Start of an online app.
    AlreadyOnline,
    /// Stop of an app that is not running.
    AlreadyStopped,
}

/// The timing an app's config sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Pause before restarting after a crash.
    pub restart_delay: Duration,
    /// Drain time between the stop signal and SIGKILL.
    pub kill_timeout: Duration,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The new state.
    pub state: State,
    /// Actions to perform, in order.
    pub actions: Vec<Action>,
    /// Set when the event changed nothing, to tell the user why.
    pub note: Option<Note>,
}

impl State {
    /// The status word for `list`.
    pub fn status(&self) -> AppStatus {
        match self {
            State::Stopped => AppStatus::Stopped,
            State::Online { .. } => AppStatus::Online,
            State::Stopping { .. } => AppStatus::Stopping,
            State::WaitingRestart { .. } => AppStatus::WaitingRestart,
            State::Errored { .. } => AppStatus::Errored,
        }
    }

    /// When the caller must feed [`Event::Deadline`], if ever.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            State::Stopping { deadline, .. } => *deadline,
            State::WaitingRestart { until } => Some(*until),
            _ => None,
        }
    }

    /// The running generation's pid.
    pub fn pid(&self) -> Option<u32> {
        match self {
            State::Online { pid, .. } | State::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

fn stay(state: &State, note: Option<Note>) -> Transition {
    Transition {
        state: state.clone(),
        actions: Vec::new(),
        note,
    }
}

fn to(state: State, actions: &[Action]) -> Transition {
    Transition {
        state,
        actions: actions.to_vec(),
        note: None,
    }
}

fn stopping(pid: u32, now: Instant, policy: &Policy, then: Then) -> Transition {
    to(
        Stopping {
            pid,
            deadline: Some(now + policy.kill_timeout),
            then,
        },
        &[Action::SignalStop],
    )
}

use State::*;

/// One step of the machine.
pub fn next(state: &State, event: Event, now: Instant, policy: &Policy) -> Transition {
    let spawn = |restart| to(state.clone(), &[Action::Spawn { restart }]);
    match (state, event) {
        (_, Event::Spawned { pid }) => to(Online { pid, since: now }, &[]),
        (_, Event::SpawnFailed { reason }) => to(Errored { reason }, &[]),

        (Stopped | Errored { .. }, Event::Start) => spawn(false),
        (WaitingRestart { .. }, Event::Start | Event::Restart) => spawn(true),
        (Online { .. }, Event::Start) => stay(state, Some(Note::AlreadyOnline)),
        (Stopping { pid, deadline, .. }, Event::Start | Event::Restart) => to(
            Stopping {
                pid: *pid,
                deadline: *deadline,
                then: Then::Start,
            },
            &[],
        ),

        (Online { pid, .. }, Event::Stop) => stopping(*pid, now, policy, Then::Stop),
        (WaitingRestart { .. }, Event::Stop) => to(Stopped, &[]),
        (Stopped | Errored { .. }, Event::Stop) => stay(state, Some(Note::AlreadyStopped)),
        (
            Stopping {
                pid,
                deadline,
                then,
            },
            Event::Stop,
        ) => {
            let then = if *then == Then::Remove {
                Then::Remove
            } else {
                Then::Stop
            };
            to(
                Stopping {
                    pid: *pid,
                    deadline: *deadline,
                    then,
                },
                &[],
            )
        }

        (Online { pid, .. }, Event::Restart) => stopping(*pid, now, policy, Then::Start),
        (Stopped | Errored { .. }, Event::Restart) => spawn(true),

        (Online { pid, .. }, Event::Remove) => stopping(*pid, now, policy, Then::Remove),
        (Stopping { pid, deadline, .. }, Event::Remove) => to(
            Stopping {
                pid: *pid,
                deadline: *deadline,
                then: Then::Remove,
            },
            &[],
        ),
        (Stopped | Errored { .. } | WaitingRestart { .. }, Event::Remove) => {
            to(Stopped, &[Action::Remove])
        }

        (Online { .. }, Event::Exited) => to(
            WaitingRestart {
                until: now + policy.restart_delay,
            },
            &[],
        ),
        (
            Stopping {
                then: Then::Stop, ..
            },
            Event::Exited,
        ) => to(Stopped, &[]),
        (
            Stopping {
                then: Then::Start, ..
            },
            Event::Exited,
        ) => to(Stopped, &[Action::Spawn { restart: true }]),
        (
            Stopping {
                then: Then::Remove, ..
            },
            Event::Exited,
        ) => to(Stopped, &[Action::Remove]),
        (Stopped | Errored { .. } | WaitingRestart { .. }, Event::Exited) => stay(state, None),

        (
            Stopping {
                pid,
                deadline: Some(at),
                then,
            },
            Event::Deadline,
        ) if now >= *at => to(
            Stopping {
                pid: *pid,
                deadline: None,
                then: *then,
            },
            &[Action::Kill],
        ),
        (WaitingRestart { until }, Event::Deadline) if now >= *until => spawn(true),
        (_, Event::Deadline) => stay(state, None),
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
