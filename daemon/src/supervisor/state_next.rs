//! The transition function, one match arm per (state, event) pair that does something.

use super::{Action, Attempt, Counters, Event, Note, Policy, State, Then, Transition};
use crate::supervisor::restart::{decide, Decision, ExitFacts};
use mcpd_core::config::{RestartConfig, RestartMode};
use std::time::{Duration, Instant};
use State::*;

fn stay(state: &State, note: Option<Note>) -> Transition {
    Transition { state: state.clone(), actions: Vec::new(), note }
}

fn to(state: State, actions: &[Action]) -> Transition {
    Transition { state, actions: actions.to_vec(), note: None }
}

fn stopping(pid: u32, now: Instant, policy: &Policy, then: Then, before: &[Action]) -> Transition {
    let mut actions = before.to_vec();
    actions.push(Action::SignalStop);
    to(Stopping { pid, deadline: Some(now + policy.kill_timeout), then }, &actions)
}

/// A generation ended on its own: the restart policy decides what follows.
fn ended(counters: &mut Counters, exit: ExitFacts, how: &str, now: Instant, policy: &Policy) -> Transition {
    match decide(&policy.restarts, policy.restart_delay, counters, exit, how) {
        Decision::Restart { delay } => to(WaitingRestart { until: now + delay }, &[]),
        Decision::Stop { why } => Transition { state: Stopped, actions: Vec::new(), note: Some(Note::Stayed(why)) },
        Decision::GiveUp { reason } => to(Errored { reason }, &[]),
    }
}

/// A generation never got ready: errored for the user's own start; for an automatic one, an
/// unstable failure that is retried (whatever the restart mode) until the crash-loop cutoff.
fn failed(counters: &mut Counters, attempt: Attempt, reason: String, now: Instant, policy: &Policy) -> Transition {
    match attempt {
        Attempt::User => to(Errored { reason }, &[]),
        Attempt::Auto => {
            let restarts =
                RestartConfig { restart: RestartMode::Always, stop_exit_codes: Vec::new(), ..policy.restarts.clone() };
            let always = Policy { restarts, ..policy.clone() };
            ended(counters, ExitFacts { code: None, uptime: Duration::ZERO }, &reason, now, &always)
        }
    }
}

/// One step of the machine. `counters` carry the restart history across generations: a
/// start, restart or reload by the user of an app that is down resets them; the restart
/// policy advances them.
pub fn next(state: &State, counters: &mut Counters, event: Event, now: Instant, policy: &Policy) -> Transition {
    let user_start = matches!(event, Event::Start | Event::Restart | Event::Reload);
    if user_start && matches!(state, Stopped | Errored { .. } | WaitingRestart { .. }) {
        *counters = Counters::default();
    }
    let spawn = |restart, attempt| to(state.clone(), &[Action::Spawn { restart, attempt }]);
    let busy = |why| stay(state, Some(Note::Busy(why)));
    match (state, event) {
        (_, Event::Spawned { pid, attempt }) => {
            to(Starting { pid, since: now, deadline: now + policy.ready_timeout, attempt }, &[])
        }
        (_, Event::SpawnFailed { reason }) => to(Errored { reason }, &[]),
        (Online { pid, since }, Event::SpawnedNext { pid: new_pid }) => {
            to(Reloading { pid: *pid, since: *since, new_pid, deadline: now + policy.ready_timeout }, &[])
        }
        (_, Event::SpawnNextFailed { reason }) => stay(state, Some(Note::ReloadFailed(reason))),
        (Reloading { pid, since, .. }, Event::NextRefused { reason }) => Transition {
            state: Online { pid: *pid, since: *since },
            actions: vec![Action::KillNext],
            note: Some(Note::ReloadFailed(reason)),
        },
        (_, Event::NextRefused { .. }) => stay(state, None),
        (_, Event::SpawnedNext { .. }) => stay(state, None),

        // Start.
        (Stopped | Errored { .. }, Event::Start) => spawn(false, Attempt::User),
        (WaitingRestart { .. }, Event::Start | Event::Restart) => spawn(true, Attempt::User),
        (Starting { .. }, Event::Start) => stay(state, None),
        (Online { .. } | Reloading { .. }, Event::Start) => stay(state, Some(Note::AlreadyOnline)),
        (Stopping { pid, deadline, then: Then::Stop | Then::Start(_) }, Event::Start | Event::Restart) => {
            to(Stopping { pid: *pid, deadline: *deadline, then: Then::Start(Attempt::User) }, &[])
        }
        (Stopping { .. }, Event::Start | Event::Restart) => busy("it is being stopped after failing to get ready"),

        // Readiness.
        (Starting { pid, since, .. }, Event::Ready { pid: ready }) if *pid == ready => {
            to(Online { pid: *pid, since: *since }, &[])
        }
        (Reloading { new_pid, .. }, Event::Ready { pid: ready }) if *new_pid == ready => {
            to(Online { pid: ready, since: now }, &[Action::PromoteNext])
        }
        (_, Event::Ready { .. }) => stay(state, None),

        // Stop.
        (Online { pid, .. } | Starting { pid, .. }, Event::Stop) => stopping(*pid, now, policy, Then::Stop, &[]),
        (Reloading { pid, .. }, Event::Stop) => stopping(*pid, now, policy, Then::Stop, &[Action::KillNext]),
        (WaitingRestart { .. }, Event::Stop) => to(Stopped, &[]),
        (Stopped | Errored { .. }, Event::Stop) => stay(state, Some(Note::AlreadyStopped)),
        (Stopping { pid, deadline, then }, Event::Stop) => {
            let then = if *then == Then::Remove { Then::Remove } else { Then::Stop };
            to(Stopping { pid: *pid, deadline: *deadline, then }, &[])
        }

        // Restart, by the user or by mcpd (memory, watchdog, health).
        (Online { pid, .. } | Starting { pid, .. }, Event::Restart) => {
            stopping(*pid, now, policy, Then::Start(Attempt::User), &[])
        }
        (Stopped | Errored { .. }, Event::Restart) => spawn(true, Attempt::User),
        (Reloading { .. }, Event::Restart) => busy("a reload is running"),
        (Online { pid, .. }, Event::Recycle) => stopping(*pid, now, policy, Then::Start(Attempt::Auto), &[]),
        (_, Event::Recycle) => stay(state, None),

        // Reload.
        (Online { .. }, Event::Reload) => to(state.clone(), &[Action::SpawnNext]),
        (Stopped | Errored { .. }, Event::Reload) => spawn(false, Attempt::User),
        (WaitingRestart { .. }, Event::Reload) => spawn(true, Attempt::User),
        (Reloading { .. }, Event::Reload) => busy("a reload is already running"),
        (Starting { .. }, Event::Reload) => busy("it is still starting"),
        (Stopping { .. }, Event::Reload) => busy("it is stopping"),

        // Remove.
        (Online { pid, .. } | Starting { pid, .. }, Event::Remove) => stopping(*pid, now, policy, Then::Remove, &[]),
        (Reloading { pid, .. }, Event::Remove) => stopping(*pid, now, policy, Then::Remove, &[Action::KillNext]),
        (Stopping { pid, deadline, .. }, Event::Remove) => {
            to(Stopping { pid: *pid, deadline: *deadline, then: Then::Remove }, &[])
        }
        (Stopped | Errored { .. } | WaitingRestart { .. }, Event::Remove) => to(Stopped, &[Action::Remove]),

        // Exits.
        (Starting { pid, attempt: Attempt::User, .. }, Event::Exited { pid: gone, how, .. }) if *pid == gone => {
            to(Errored { reason: format!("{how} before it was ready") }, &[])
        }
        (Starting { pid, since, attempt: Attempt::Auto, .. }, Event::Exited { pid: gone, how, code })
            if *pid == gone =>
        {
            let exit = ExitFacts { code, uptime: now.saturating_duration_since(*since) };
            ended(counters, exit, &format!("{how} before it was ready"), now, policy)
        }
        (Online { pid, since }, Event::Exited { pid: gone, how, code }) if *pid == gone => {
            ended(counters, ExitFacts { code, uptime: now.saturating_duration_since(*since) }, &how, now, policy)
        }
        (Reloading { pid, since, new_pid, .. }, Event::Exited { pid: gone, how, .. }) if *new_pid == gone => {
            let reason =
                format!("the new generation (pid {gone}) ended ({how}) before it was ready; pid {pid} keeps serving");
            Transition {
                state: Online { pid: *pid, since: *since },
                actions: Vec::new(),
                note: Some(Note::ReloadFailed(reason)),
            }
        }
        (Reloading { pid, new_pid, deadline, .. }, Event::Exited { pid: gone, .. }) if *pid == gone => {
            // The old generation died mid-reload: the new one carries on as a plain start.
            to(Starting { pid: *new_pid, since: now, deadline: *deadline, attempt: Attempt::Auto }, &[])
        }
        (Stopping { pid, then, .. }, Event::Exited { pid: gone, .. }) if *pid == gone => match then {
            Then::Stop => to(Stopped, &[]),
            Then::Start(attempt) => to(Stopped, &[Action::Spawn { restart: true, attempt: *attempt }]),
            Then::Remove => to(Stopped, &[Action::Remove]),
            Then::Fail { reason, attempt } => failed(counters, *attempt, reason.clone(), now, policy),
        },
        (_, Event::Exited { .. }) => stay(state, None),

        // Deadlines.
        (Starting { pid, deadline, attempt, .. }, Event::Deadline) if now >= *deadline => {
            let reason = format!("not ready within {}", humantime::format_duration(policy.ready_timeout));
            stopping(*pid, now, policy, Then::Fail { reason, attempt: *attempt }, &[])
        }
        (Reloading { pid, since, new_pid, deadline }, Event::Deadline) if now >= *deadline => {
            let reason = format!(
                "the new generation (pid {new_pid}) was not ready within {}; it was killed and pid {pid} keeps serving",
                humantime::format_duration(policy.ready_timeout)
            );
            Transition {
                state: Online { pid: *pid, since: *since },
                actions: vec![Action::KillNext],
                note: Some(Note::ReloadFailed(reason)),
            }
        }
        (Stopping { pid, deadline: Some(at), then }, Event::Deadline) if now >= *at => {
            to(Stopping { pid: *pid, deadline: None, then: then.clone() }, &[Action::Kill])
        }
        (WaitingRestart { until }, Event::Deadline) if now >= *until => spawn(true, Attempt::Auto),
        (_, Event::Deadline) => stay(state, None),
    }
}
