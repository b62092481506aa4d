//! What follows the end of a generation: its exit record, the rest of its group, and the
//! replies to a reload.

use super::AppTask;
use crate::supervisor::drain::{self, ms, Drained};
use crate::supervisor::state::{Attempt, Event, Note, State, Then};
use mcpd_core::signal::Signal;
use std::time::Instant;

impl AppTask {
    /// The serving generation's leader exited: end the rest of its group, record, step.
    pub(super) async fn current_exited(&mut self, status: std::io::Result<std::process::ExitStatus>) {
        let Some(generation) = self.current.take() else { return };
        let pid = generation.pid;
        drop(generation);
        let config = self.snap.config.clone();
        let (reason, first, deadline) = match &self.snap.state {
            State::Stopping { deadline, then, .. } => {
                let reason = match then {
                    Then::Stop => "user stop".to_string(),
                    Then::Start(Attempt::User) => "user restart".to_string(),
                    Then::Start(Attempt::Auto) => self.recycle_reason.take().unwrap_or_else(|| "restart".into()),
                    Then::Remove => "deleted".to_string(),
                    Then::Fail { reason, .. } => reason.clone(),
                };
                (reason, None, deadline.unwrap_or_else(Instant::now))
            }
            _ => ("crash".to_string(), Some(config.kill_signal), Instant::now() + config.kill_timeout),
        };
        let (record, end) = drain::finish(&self.ctx, pid, status, first, deadline, &reason).await;
        if let Some(front) = self.front() {
            front.remove(pid);
        }
        let how = record.describe();
        tracing::info!(app = %config.name, pid, exit = %how, %reason, group = ?end, "exited");
        let code = record.code;
        self.snap.record_exit(record);
        let note = self.step(Event::Exited { pid, how, code });
        self.set_outcome(note);
    }

    /// Says in the last exit record what mcpd did next.
    fn set_outcome(&mut self, note: Option<Note>) {
        let outcome = match (&self.snap.state, note) {
            (_, Some(Note::Stayed(why))) => format!("stays stopped: {why}"),
            (State::WaitingRestart { until }, _) => {
                format!("restart in {} ms", ms(until.saturating_duration_since(Instant::now())))
            }
            (State::Errored { reason }, _) => format!("errored: {reason}"),
            (State::Starting { pid, .. } | State::Online { pid, .. }, _) => format!("restarted as pid {pid}"),
            (State::Stopped, _) => "stopped".to_string(),
            (other, _) => other.status().to_string(),
        };
        if let Some(last) = self.snap.exits.back_mut() {
            last.outcome = Some(outcome);
        }
        self.publish_snapshot();
    }

    /// A reload's new generation exited before it was ready (or after KillNext).
    pub(super) async fn next_exited(&mut self, status: std::io::Result<std::process::ExitStatus>) {
        let Some(generation) = self.next.take() else { return };
        let pid = generation.pid;
        drop(generation);
        let (mut record, _) =
            drain::finish(&self.ctx, pid, status, Some(Signal::KILL), Instant::now(), "reload failed").await;
        if let Some(front) = self.front() {
            front.remove(pid);
        }
        record.outcome = Some("the old generation kept serving".into());
        let how = record.describe();
        tracing::warn!(app = %self.snap.config.name, pid, exit = %how, "reload: the new generation ended before it was ready");
        let code = record.code;
        self.snap.record_exit(record);
        self.step(Event::Exited { pid, how, code });
    }

    pub(super) fn drained(&mut self, done: Drained) {
        let old = done.record.pid;
        let how = if done.killed {
            format!("SIGKILLed after kill_timeout ({})", humantime::format_duration(self.snap.config.kill_timeout))
        } else {
            format!("drained in {} ms ({})", ms(done.took), done.record.describe())
        };
        tracing::info!(app = %self.snap.config.name, pid = old, %how, "reload: old generation gone");
        self.snap.record_exit(done.record);
        self.snap.draining.retain(|pid| *pid != old);
        self.publish_snapshot();
        if self.reload_answers_at_drain_of == Some(old) {
            let new = self.snap.state.pid().map_or_else(|| "-".to_string(), |p| p.to_string());
            self.answer_reload(format!("reloaded: pid {new} serving; old pid {old} {how}"));
        }
    }

    /// Answers every caller of a reload that succeeded.
    pub(super) fn answer_reload(&mut self, message: String) {
        self.reload_wait_drain = false;
        self.reload_answers_at_drain_of = None;
        let message = match self.tools_note.take() {
            Some(note) => format!("{message}; warning: {note}"),
            None => message,
        };
        for reply in std::mem::take(&mut self.reload_waiters) {
            let _ = reply.send(self.outcome(true, message.clone()));
        }
    }

    pub(super) fn reload_failed(&mut self, reason: String) {
        self.pending = None;
        self.reload_answers_at_drain_of = None;
        self.recycle_reason = None;
        tracing::warn!(app = %self.snap.config.name, %reason, "reload failed");
        for reply in std::mem::take(&mut self.reload_waiters) {
            let _ = reply.send(self.outcome(false, format!("reload failed: {reason}")));
        }
    }
}
