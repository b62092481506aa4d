//! The transition function: one event, then the waiting requests settled.

use super::{
    later, Action, Answer, Attempt, EndKind, EndStage, Ending, Event, Failure, Gen, GenId, Goal, Machine, Policy,
    ReloadRun, RestartReason, Role, State, Then, Transition, Verb, WaiterId, Why, MAX_ENDING,
};
use crate::supervisor::restart::{decide, Decision, ExitFacts};
use mcpd_core::config::{RestartConfig, RestartMode};
use std::time::{Duration, Instant};
use State::*;

/// The least time between two spawns of one app's automatic restarts.
pub const MIN_RESTART_SPACING: Duration = Duration::from_millis(100);

/// One step of the machine: `event` at `now` under `policy`.
pub fn next(machine: &Machine, event: Event, now: Instant, policy: &Policy) -> Transition {
    let mut step = Step { m: machine.clone(), actions: Vec::new(), answers: Vec::new(), stayed: None, now, policy };
    if !step.m.removed {
        step.event(event);
        step.settle();
    } else if let Event::User { waiter, .. } = event {
        step.fail(waiter, Failure::Interrupted, "the app was deleted".into());
    }
    Transition { machine: step.m, actions: step.actions, answers: step.answers, stayed: step.stayed }
}

struct Step<'a> {
    m: Machine,
    actions: Vec<Action>,
    answers: Vec<(WaiterId, Answer)>,
    stayed: Option<String>,
    now: Instant,
    policy: &'a Policy,
}

impl Step<'_> {
    fn answer(&mut self, waiter: WaiterId, answer: Answer) {
        self.answers.push((waiter, answer));
    }

    fn fail(&mut self, waiter: WaiterId, kind: Failure, message: String) {
        self.answer(waiter, Answer::Failed { kind, message });
    }

    fn busy(&mut self, waiter: WaiterId, why: &str) {
        self.fail(waiter, Failure::Busy, format!("not now: {why}; try again when it is done"));
    }

    fn wait(&mut self, waiter: WaiterId, goal: Goal) {
        self.m.waiters.push((waiter, goal));
    }

    fn spawn(&mut self, attempt: Attempt, restart: Option<RestartReason>) {
        self.actions.push(Action::Spawn { role: Role::Main { attempt, restart } });
    }

    /// Asks `gen` to stop; the state becomes Stopping with its SIGKILL deadline.
    fn stopping(&mut self, gen: Gen, then: Then) {
        self.actions.push(Action::SignalStop { gen: gen.id });
        self.m.state = Stopping { gen, deadline: Some(later(self.now, self.policy.kill_timeout)), then };
    }

    /// Moves `gen` out of the serving line: SIGKILLed at once (`kill`) or asked to stop.
    fn end(&mut self, gen: Gen, kill: bool, why: &str) {
        let (stage, kind) = if kill {
            self.actions.push(Action::Kill { gen: gen.id });
            (EndStage::Signalled { kill_at: None }, EndKind::Discarded)
        } else {
            self.actions.push(Action::SignalStop { gen: gen.id });
            (EndStage::Signalled { kill_at: Some(later(self.now, self.policy.kill_timeout)) }, EndKind::Replaced)
        };
        self.m.ending.push(Ending { gen, stage, why: why.to_string(), kind, signalled_at: Some(self.now) });
    }

    /// Ending generations still keeping sessions are asked to stop now (stop, delete).
    fn hurry_ending(&mut self) {
        let kill_at = later(self.now, self.policy.kill_timeout);
        for e in &mut self.m.ending {
            if let EndStage::Sessions { .. } = e.stage {
                e.stage = EndStage::Signalled { kill_at: Some(kill_at) };
                e.signalled_at = Some(self.now);
                self.actions.push(Action::SignalStop { gen: e.gen.id });
            }
        }
    }

    /// The running reload failed: its callers are told why.
    fn fail_reload(&mut self, message: String) {
        if let Some(run) = self.m.reload.take() {
            for waiter in run.waiters {
                self.fail(waiter, Failure::ReloadFailed, format!("reload failed: {message}"));
            }
        }
    }

    fn reset_counters_if_down(&mut self) {
        if self.m.state.is_down() {
            self.m.counters = Default::default();
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::User { verb, waiter } => self.user(verb, waiter),
            Event::Shutdown => self.remove(None),
            Event::Recycle { why, graceful } => self.recycle(why, graceful),
            Event::Spawned { gen, role } => self.spawned(gen, role),
            Event::SpawnFailed { role: Role::Main { .. }, reason } => self.m.state = Errored { reason },
            Event::SpawnFailed { role: Role::Next, reason } => {
                self.fail_reload(format!("cannot start the new generation: {reason}"))
            }
            Event::Ready { gen } => self.ready(gen),
            Event::Refused { gen, reason } => {
                if let Reloading { gen: old, since, next, .. } = self.m.state.clone() {
                    if next.id == gen {
                        self.m.state = Online { gen: old, since };
                        self.end(next, true, "reload failed");
                        self.fail_reload(reason);
                    }
                }
            }
            Event::Exited { gen, how, code } => self.exited(gen, how, code),
            Event::SessionsIdle { gen } => {
                let kill_at = later(self.now, self.policy.kill_timeout);
                if let Some(e) = self.m.ending.iter_mut().find(|e| e.gen.id == gen) {
                    if let EndStage::Sessions { .. } = e.stage {
                        e.stage = EndStage::Signalled { kill_at: Some(kill_at) };
                        e.signalled_at = Some(self.now);
                        self.actions.push(Action::SignalStop { gen });
                    }
                }
            }
            Event::Deadline => self.deadlines(),
        }
    }

    fn user(&mut self, verb: Verb, waiter: WaiterId) {
        if self.m.removing && verb == Verb::Stop {
            // Scaled down and draining its sessions: a stop cuts the drain short.
            self.hurry_ending();
            return self.busy(waiter, "it is being deleted");
        }
        if self.m.removing && verb != Verb::Remove {
            return self.busy(waiter, "it is being deleted");
        }
        match verb {
            Verb::Start | Verb::StartNoWait => self.start(verb, waiter),
            Verb::Stop => self.stop(waiter),
            Verb::Restart => self.restart(waiter),
            Verb::Reload { wait_drain } => self.reload(wait_drain, waiter),
            Verb::Remove => self.remove(Some(waiter)),
            Verb::Retire => self.retire(waiter),
        }
    }

    fn retire(&mut self, waiter: WaiterId) {
        match (self.m.state.clone(), self.policy.front_drain) {
            (Online { gen, .. }, Some(d)) if self.m.reload.is_none() => {
                self.m.removing = true;
                self.m.ending.push(Ending {
                    gen,
                    stage: EndStage::Sessions { until: later(self.now, d) },
                    why: "scaled down".into(),
                    kind: EndKind::Replaced,
                    signalled_at: None,
                });
                self.m.state = Stopped;
                self.wait(waiter, Goal::Removed);
            }
            _ => self.remove(Some(waiter)),
        }
    }

    fn start(&mut self, verb: Verb, waiter: WaiterId) {
        let goal = if verb == Verb::StartNoWait { Goal::Spawned } else { Goal::Online };
        self.reset_counters_if_down();
        match self.m.state.clone() {
            Stopped | Errored { .. } => self.spawn(Attempt::User, None),
            WaitingRestart { why, .. } => self.spawn(Attempt::User, Some(why.reason)),
            Starting { .. } => {}
            Online { gen, .. } | Reloading { gen, .. } => return self.answer(waiter, Answer::AlreadyOnline { gen }),
            Stopping { gen, deadline, then: Then::Stop | Then::Start(..) } => {
                let then = Then::Start(Attempt::User, Why::plain(RestartReason::UserRestart));
                self.m.state = Stopping { gen, deadline, then };
            }
            Stopping { .. } => return self.busy(waiter, "it is being stopped after failing to get ready"),
        }
        self.wait(waiter, goal);
    }

    fn stop(&mut self, waiter: WaiterId) {
        self.hurry_ending();
        match self.m.state.clone() {
            Online { gen, .. } | Starting { gen, .. } => self.stopping(gen, Then::Stop),
            Reloading { gen, next, .. } => {
                self.end(next, true, "reload failed");
                self.fail_reload("stopped before the new generation was ready".into());
                self.stopping(gen, Then::Stop);
            }
            WaitingRestart { .. } => self.m.state = Stopped,
            Stopped | Errored { .. } if self.m.ending.is_empty() => {
                return self.answer(waiter, Answer::AlreadyStopped { status: self.m.state.status() })
            }
            Stopped | Errored { .. } => {}
            Stopping { gen, deadline, then } => {
                let then = if then == Then::Remove { Then::Remove } else { Then::Stop };
                self.m.state = Stopping { gen, deadline, then };
            }
        }
        self.wait(waiter, Goal::Stopped);
    }

    fn restart(&mut self, waiter: WaiterId) {
        let why = Why::plain(RestartReason::UserRestart);
        self.reset_counters_if_down();
        match self.m.state.clone() {
            Online { gen, .. } | Starting { gen, .. } => self.stopping(gen, Then::Start(Attempt::User, why)),
            Stopped | Errored { .. } | WaitingRestart { .. } => self.spawn(Attempt::User, Some(why.reason)),
            Reloading { .. } => return self.busy(waiter, "a reload is running"),
            Stopping { gen, deadline, then: Then::Stop | Then::Start(..) } => {
                self.m.state = Stopping { gen, deadline, then: Then::Start(Attempt::User, why) };
            }
            Stopping { .. } => return self.busy(waiter, "it is being stopped after failing to get ready"),
        }
        self.wait(waiter, Goal::Online);
    }

    fn reload(&mut self, wait_drain: bool, waiter: WaiterId) {
        if self.m.reload.is_some() {
            return self.busy(waiter, "a reload is already running");
        }
        // Without a front the old generation drains within its kill_timeout: one reload at a
        // time. Behind a front old generations may keep sessions for minutes, side by side.
        let draining = self.m.ending.iter().any(|e| e.kind == EndKind::Replaced);
        if draining && self.policy.front_drain.is_none() {
            return self.busy(waiter, "the previous reload's old generation is still draining");
        }
        if self.m.ending.len() >= MAX_ENDING {
            return self.busy(waiter, &format!("{MAX_ENDING} old generations are still draining"));
        }
        self.reset_counters_if_down();
        match self.m.state.clone() {
            Online { .. } => {
                self.actions.push(Action::Spawn { role: Role::Next });
                self.m.reload = Some(ReloadRun {
                    waiters: vec![waiter],
                    wait_drain,
                    why: Why::plain(RestartReason::Reload),
                    new: None,
                    old: None,
                    old_crashed: false,
                });
            }
            // Not serving: a reload is a start (with the new config).
            Stopped | Errored { .. } => {
                self.spawn(Attempt::User, None);
                self.wait(waiter, Goal::Online);
            }
            WaitingRestart { why, .. } => {
                self.spawn(Attempt::User, Some(why.reason));
                self.wait(waiter, Goal::Online);
            }
            Reloading { .. } => self.busy(waiter, "a reload is already running"),
            Starting { .. } => self.busy(waiter, "it is still starting"),
            Stopping { .. } => self.busy(waiter, "it is stopping"),
        }
    }

    fn remove(&mut self, waiter: Option<WaiterId>) {
        self.m.removing = true;
        self.hurry_ending();
        match self.m.state.clone() {
            Online { gen, .. } | Starting { gen, .. } => self.stopping(gen, Then::Remove),
            Reloading { gen, next, .. } => {
                self.end(next, true, "reload failed");
                self.fail_reload("the app is being deleted".into());
                self.stopping(gen, Then::Remove);
            }
            Stopping { gen, deadline, .. } => self.m.state = Stopping { gen, deadline, then: Then::Remove },
            Stopped | Errored { .. } | WaitingRestart { .. } => self.m.state = Stopped,
        }
        if let Some(waiter) = waiter {
            self.wait(waiter, Goal::Removed);
        }
    }

    fn recycle(&mut self, why: Why, graceful: bool) {
        let Online { gen, .. } = self.m.state.clone() else { return };
        if graceful && self.policy.graceful_recycle && self.m.reload.is_none() && self.m.ending.len() < MAX_ENDING {
            self.actions.push(Action::Spawn { role: Role::Next });
            self.m.reload = Some(ReloadRun {
                waiters: Vec::new(),
                wait_drain: false,
                why,
                new: None,
                old: None,
                old_crashed: false,
            });
        } else {
            self.stopping(gen, Then::Start(Attempt::Auto, why));
        }
    }

    fn spawned(&mut self, gen: Gen, role: Role) {
        let deadline = later(self.now, self.policy.ready_timeout);
        match (self.m.state.clone(), role) {
            (Stopped | Errored { .. } | WaitingRestart { .. }, Role::Main { attempt, .. }) => {
                self.m.state = Starting { gen, since: self.now, deadline, attempt };
            }
            (Online { gen: serving, since }, Role::Next) if self.m.reload.is_some() => {
                self.m.state = Reloading { gen: serving, since, next: gen, deadline };
                if let Some(run) = &mut self.m.reload {
                    run.new = Some(gen);
                }
            }
            // Nothing asked for it any more: it must not outlive the machine's knowledge.
            _ => self.end(gen, true, "not wanted"),
        }
    }

    fn ready(&mut self, id: GenId) {
        match self.m.state.clone() {
            Starting { gen, since, .. } if gen.id == id => self.m.state = Online { gen, since },
            Reloading { gen: old, next, .. } if next.id == id => {
                self.m.state = Online { gen: next, since: self.now };
                let why = self.m.reload.as_ref().map_or_else(|| Why::plain(RestartReason::Reload), |r| r.why.clone());
                self.actions.push(Action::Promote { gen: next.id, old: old.id, reason: why.reason });
                match self.policy.front_drain {
                    Some(d) => self.m.ending.push(Ending {
                        gen: old,
                        stage: EndStage::Sessions { until: later(self.now, d) },
                        why: why.text.clone(),
                        kind: EndKind::Replaced,
                        signalled_at: None,
                    }),
                    None => self.end(old, false, &why.text),
                }
                let Some(mut run) = self.m.reload.take() else { return };
                if self.policy.front_drain.is_some() && !run.wait_drain {
                    for waiter in run.waiters {
                        let answer = Answer::Reloaded { new: next, old: None, sessions: Some(old), old_crashed: false };
                        self.answer(waiter, answer);
                    }
                } else {
                    run.old = Some(old);
                    self.m.reload = Some(run);
                }
            }
            _ => {}
        }
    }

    fn exited(&mut self, id: GenId, how: String, code: Option<i32>) {
        if let Some(i) = self.m.ending.iter().position(|e| e.gen.id == id) {
            let gone = self.m.ending.remove(i);
            if let Some(run) = self.m.reload.take_if(|r| r.old == Some(gone.gen)) {
                let took = gone.signalled_at.map_or(0, |at| self.now.saturating_duration_since(at).as_millis());
                let end = if self.policy_killed(&gone) {
                    format!("SIGKILLed after kill_timeout ({how})")
                } else {
                    format!("drained in {took} ms ({how})")
                };
                let new = self.m.state.gen().or(run.new).unwrap_or(gone.gen);
                for waiter in run.waiters {
                    let old = Some((gone.gen, end.clone()));
                    self.answer(waiter, Answer::Reloaded { new, old, sessions: None, old_crashed: false });
                }
            }
            return;
        }
        let uptime = |since: Instant| self.now.saturating_duration_since(since);
        match self.m.state.clone() {
            Starting { gen, attempt: Attempt::User, .. } if gen.id == id => {
                self.m.state = Errored { reason: format!("{how} before it was ready") };
            }
            Starting { gen, since, attempt: Attempt::Auto, .. } if gen.id == id => {
                self.ended(ExitFacts { code, uptime: uptime(since) }, &format!("{how} before it was ready"));
            }
            Online { gen, since } if gen.id == id => self.ended(ExitFacts { code, uptime: uptime(since) }, &how),
            Reloading { gen, since, next, .. } if next.id == id => {
                self.m.state = Online { gen, since };
                self.fail_reload(format!(
                    "the new generation (pid {}) ended ({how}) before it was ready; pid {} keeps serving",
                    next.pid, gen.pid
                ));
            }
            Reloading { gen, next, deadline, .. } if gen.id == id => {
                // The serving generation died mid-reload: the new one carries on as a start,
                // and the reload is answered by its readiness.
                self.m.state = Starting { gen: next, since: self.now, deadline, attempt: Attempt::Auto };
                if let Some(run) = &mut self.m.reload {
                    run.old_crashed = true;
                }
            }
            Stopping { gen, then, .. } if gen.id == id => match then {
                Then::Stop | Then::Remove => self.m.state = Stopped,
                Then::Start(attempt, why) => {
                    self.m.state = Stopped;
                    self.spawn(attempt, Some(why.reason));
                }
                Then::Fail { reason, attempt } => self.failed(attempt, reason),
            },
            _ => {}
        }
    }

    /// Whether the machine had to SIGKILL an ending generation.
    fn policy_killed(&self, gone: &Ending) -> bool {
        matches!(gone.stage, EndStage::Signalled { kill_at: None })
    }

    /// A generation ended on its own: the restart policy decides what follows.
    fn ended(&mut self, exit: ExitFacts, how: &str) {
        self.decide(&self.policy.restarts.clone(), exit, how, RestartReason::Crash);
    }

    fn decide(&mut self, restarts: &RestartConfig, exit: ExitFacts, how: &str, reason: RestartReason) {
        match decide(restarts, self.policy.restart_delay, &mut self.m.counters, exit, how) {
            Decision::Restart { delay } => {
                // At most one spawn per MIN_RESTART_SPACING: a crash loop with no delay
                // costs a little CPU, not a core.
                let delay = delay.max(MIN_RESTART_SPACING.saturating_sub(exit.uptime));
                self.m.state = WaitingRestart { until: later(self.now, delay), why: Why::plain(reason) };
            }
            Decision::Stop { why } => {
                self.m.state = Stopped;
                self.stayed = Some(why);
            }
            Decision::GiveUp { reason } => self.m.state = Errored { reason },
        }
    }

    /// A generation never got ready: errored for the user's own start; for an automatic one,
    /// an unstable failure that is retried (whatever the restart mode) until the cutoff.
    fn failed(&mut self, attempt: Attempt, reason: String) {
        match attempt {
            Attempt::User => self.m.state = Errored { reason },
            Attempt::Auto => {
                let restarts = RestartConfig {
                    restart: RestartMode::Always,
                    stop_exit_codes: Vec::new(),
                    ..self.policy.restarts.clone()
                };
                let exit = ExitFacts { code: None, uptime: Duration::ZERO };
                self.decide(&restarts, exit, &reason, RestartReason::NotReady);
            }
        }
    }

    fn deadlines(&mut self) {
        let now = self.now;
        match self.m.state.clone() {
            Starting { gen, deadline, attempt, .. } if now >= deadline => {
                let reason = format!("not ready within {}", humantime::format_duration(self.policy.ready_timeout));
                self.stopping(gen, Then::Fail { reason, attempt });
            }
            Reloading { gen, since, next, deadline } if now >= deadline => {
                self.m.state = Online { gen, since };
                self.end(next, true, "reload failed");
                self.fail_reload(format!(
                    "the new generation (pid {}) was not ready within {}; it was killed and pid {} keeps serving",
                    next.pid,
                    humantime::format_duration(self.policy.ready_timeout),
                    gen.pid
                ));
            }
            Stopping { gen, deadline: Some(at), then } if now >= at => {
                self.actions.push(Action::Kill { gen: gen.id });
                self.m.state = Stopping { gen, deadline: None, then };
            }
            WaitingRestart { until, why } if now >= until => self.spawn(Attempt::Auto, Some(why.reason)),
            _ => {}
        }
        let kill_at = later(now, self.policy.kill_timeout);
        for e in &mut self.m.ending {
            match e.stage {
                EndStage::Sessions { until } if now >= until => {
                    e.stage = EndStage::Signalled { kill_at: Some(kill_at) };
                    e.signalled_at = Some(now);
                    self.actions.push(Action::SignalStop { gen: e.gen.id });
                }
                EndStage::Signalled { kill_at: Some(at) } if now >= at => {
                    e.stage = EndStage::Signalled { kill_at: None };
                    self.actions.push(Action::Kill { gen: e.gen.id });
                }
                _ => {}
            }
        }
    }

    /// Answers every waiter whose goal is reached or can no longer be; ends the app once it
    /// is deleted and nothing of it is left.
    fn settle(&mut self) {
        if self.actions.iter().any(|a| matches!(a, Action::Spawn { .. })) {
            // The spawn's outcome is the very next event: settle then.
            return;
        }
        if self.m.removing && self.m.state.is_down() && self.m.ending.is_empty() && !self.m.removed {
            self.m.state = Stopped;
            self.m.removed = true;
            self.actions.push(Action::Remove);
        }
        self.settle_reload();
        let state = self.m.state.clone();
        let nothing_left = self.m.ending.is_empty();
        for (waiter, goal) in std::mem::take(&mut self.m.waiters) {
            let answer = match (goal, &state) {
                (Goal::Removed, _) if self.m.removed => Some(Answer::Removed),
                _ if self.m.removed => Some(interrupted("the app was deleted".into())),
                (Goal::Removed, _) => None,
                (Goal::Spawned, Starting { gen, .. } | Online { gen, .. }) => Some(Answer::Started { gen: *gen }),
                (Goal::Online, Online { gen, since }) => Some(Answer::Online { gen: *gen, since: *since }),
                (Goal::Spawned | Goal::Online, Errored { reason }) => {
                    Some(Answer::Failed { kind: Failure::NotReady, message: format!("errored: {reason}") })
                }
                (Goal::Spawned | Goal::Online, WaitingRestart { .. }) => Some(Answer::Failed {
                    kind: Failure::NotReady,
                    message: "exited before it was ready; restarting".into(),
                }),
                (Goal::Spawned | Goal::Online, Stopped) => Some(interrupted(match self.stayed.clone() {
                    Some(why) => format!("exited before it was ready and stays stopped: {why}"),
                    None => "stopped before it came online".into(),
                })),
                (Goal::Stopped, Stopped | Errored { .. }) if nothing_left => Some(Answer::Stopped),
                (Goal::Stopped, Starting { .. } | Online { .. } | Reloading { .. } | WaitingRestart { .. }) => {
                    Some(interrupted("started again before it was stopped".into()))
                }
                _ => None,
            };
            match answer {
                Some(answer) => self.answer(waiter, answer),
                None => self.m.waiters.push((waiter, goal)),
            }
        }
    }

    fn settle_reload(&mut self) {
        let Some(run) = &self.m.reload else { return };
        if run.old.is_some() {
            if self.m.removed {
                let run = self.m.reload.take().expect("a reload");
                for waiter in run.waiters {
                    self.answer(waiter, interrupted("the app was deleted".into()));
                }
            }
            // Otherwise answered when the old generation's exit comes.
            return;
        }
        match (&self.m.state, run.new) {
            (Reloading { .. }, _) => {}
            (Starting { gen, .. }, Some(new)) if *gen == new => {}
            (Online { gen, .. }, Some(new)) if *gen == new => {
                let run = self.m.reload.take().expect("a reload");
                for waiter in run.waiters {
                    let answer = Answer::Reloaded { new, old: None, sessions: None, old_crashed: run.old_crashed };
                    self.answer(waiter, answer);
                }
            }
            (state, _) => {
                let status = state.status();
                self.fail_reload(format!("interrupted: the app is now {status}"));
            }
        }
    }
}

fn interrupted(message: String) -> Answer {
    Answer::Failed { kind: Failure::Interrupted, message }
}
