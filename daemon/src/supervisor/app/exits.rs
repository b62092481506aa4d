//! What follows the exit of a generation's leader: the rest of its group is ended on a task of
//! its own (so the app task keeps answering), then the machine hears that it is gone.

use super::{AppTask, GenNews};
use crate::supervisor::drain::ms;
use crate::supervisor::state::{EndKind, Event, GenId, State};
use mcpd_core::model::{EventKind, ExitRecord};
use std::time::Instant;

impl AppTask {
    pub(super) fn gen_news(&mut self, news: GenNews) {
        match news {
            GenNews::LeaderExit { gen, status } => self.leader_exited(gen, status),
            GenNews::Gone { gen, record } => self.gone(gen, *record),
        }
    }

    /// A leader exited: end what is left of its group. Asked to stop already, the rest gets
    /// SIGKILL at the machine's deadline; otherwise (a crash) its kill signal first.
    pub(super) fn leader_exited(&mut self, gen: GenId, status: std::io::Result<std::process::ExitStatus>) {
        let Some(live) = self.gens.get_mut(&gen) else { return };
        live.leader_gone = true;
        live.status = status.as_ref().ok().map(|s| std::os::unix::process::ExitStatusExt::into_raw(*s));
        let pid = live.generation.pid();
        let config = live.config.clone();
        let (first, deadline) = match self.machine.stop_deadline(gen) {
            Some(Some(at)) => (None, at),
            Some(None) => (None, Instant::now()),
            None => (Some(config.kill_signal), Instant::now() + config.kill_timeout),
        };
        let reason = self.machine.exit_reason(gen);
        let tx = self.exits_tx.clone();
        let crashed = first.is_some();
        let finish = live.generation.finish(self.ctx.clone(), status, first, deadline, reason.clone());
        let drain = self.tracker.spawn(crate::boxed(async move {
            let (record, end) = finish.await;
            tracing::info!(app = %config.name, pid, exit = %record.describe(), %reason, group = ?end, "exited");
            let _ = tx.send(GenNews::Gone { gen, record: Box::new(record) });
        }));
        live.drain = Some(drain.abort_handle());
        if crashed {
            // The next generations are started from inside their cgroups.
            let config = self.snap.config.clone();
            self.warm_launcher(&config);
        }
    }

    /// A generation's whole group is gone: forget it, record its exit, step the machine.
    fn gone(&mut self, gen: GenId, mut record: ExitRecord) {
        let Some(live) = self.gens.remove(&gen) else { return };
        if let Some(front) = self.front() {
            front.remove(live.generation.pid());
        }
        drop(live);
        let ending = self.machine.ending.iter().find(|e| e.gen.id == gen).map(|e| e.kind);
        let was_next = matches!(&self.machine.state, State::Reloading { next, .. } if next.id == gen);
        let how = record.describe();
        let code = record.code;
        let serving = ending.is_none() && !was_next;
        record.outcome = match (ending, was_next) {
            (Some(EndKind::Discarded), _) | (_, true) => Some("the old generation kept serving".into()),
            (Some(EndKind::Replaced), _) => Some("replaced by a ready new generation".into()),
            (None, false) => None,
        };
        if was_next {
            tracing::warn!(app = %self.snap.config.name, pid = record.pid, exit = %how, "reload: the new generation ended before it was ready");
        }
        let exited = EventKind::Exited { pid: record.pid, how: how.clone(), reason: record.reason.clone() };
        self.snap.record_exit(record);
        self.queued_events.push(exited);
        self.step(Event::Exited { gen, how, code });
        if serving {
            self.set_exit_outcome(self.outcome_text());
        }
    }

    /// What mcpd did after the serving generation ended, for its exit record.
    fn outcome_text(&self) -> String {
        match &self.machine.state {
            State::WaitingRestart { until, .. } => {
                format!("restart in {} ms", ms(until.saturating_duration_since(Instant::now())))
            }
            State::Errored { reason } => format!("errored: {reason}"),
            State::Starting { gen, .. } | State::Online { gen, .. } => format!("restarted as pid {}", gen.pid),
            State::Stopped => "stopped".to_string(),
            other => other.status().to_string(),
        }
    }

    /// Says in the last exit record what mcpd did next (a "stays stopped" note wins).
    pub(super) fn set_exit_outcome(&mut self, outcome: String) {
        if let Some(last) = self.snap.exits.back_mut() {
            if !last.outcome.as_deref().is_some_and(|o| o.starts_with("stays stopped")) {
                last.outcome = Some(outcome);
            }
        }
        self.publish_snapshot();
    }
}
