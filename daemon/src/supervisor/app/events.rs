//! The lifecycle events an app task publishes: spawns and exits as they happen, the rest
//! from what a step of the machine changed.

use super::AppTask;
use crate::supervisor::drain::ms;
use crate::supervisor::state::{Gen, ReloadPhase, State};
use mcpd_core::model::{EventKind, LifecycleEvent};
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What events are computed from, before and after a step.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct View {
    state: State,
    reload: Option<(ReloadPhase, Gen, Gen)>,
    /// Stopped (or errored) with no generation left.
    down: bool,
    removed: bool,
}

impl AppTask {
    pub(super) fn lifecycle_view(&self) -> View {
        View {
            state: self.machine.state.clone(),
            reload: self.machine.reload_phase(),
            down: self.machine.state.is_down() && self.gens.is_empty(),
            removed: self.machine.removed,
        }
    }

    /// Publishes one event, with the app's row after it (nothing when nobody listens).
    pub(super) fn emit(&self, kind: EventKind) {
        if self.ctx.events.receiver_count() == 0 {
            return;
        }
        let row = match kind {
            EventKind::Removed => None,
            _ => Some(Box::new(self.snap.info(&self.ctx.samples.lock().expect("samples lock")))),
        };
        let status = match self.machine.reload_phase() {
            Some(_) => mcpd_core::model::AppStatus::Reloading,
            None => self.machine.state.status(),
        };
        let event = LifecycleEvent {
            seq: self.ctx.event_seq.fetch_add(1, Ordering::Relaxed) + 1,
            at_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map(ms).unwrap_or(0),
            app: self.snap.config.name.clone(),
            instance: (self.snap.config.instances > 1).then_some(self.instance),
            status,
            kind,
            row,
        };
        let _ = self.ctx.events.send(std::sync::Arc::new(event));
    }

    /// The events one step made happen.
    pub(super) fn emit_changes(&self, before: View) {
        let after = self.lifecycle_view();
        if after == before {
            return;
        }
        let was_online = match before.state {
            State::Online { gen, .. } => Some(gen),
            _ => None,
        };
        match &after.state {
            State::Online { gen, .. } if was_online != Some(*gen) => self.emit(EventKind::Ready { pid: gen.pid }),
            State::WaitingRestart { until, why } if !matches!(before.state, State::WaitingRestart { .. }) => {
                let in_ms = ms(until.saturating_duration_since(Instant::now()));
                self.emit(EventKind::RestartScheduled { in_ms, reason: why.reason });
            }
            State::Errored { reason } if before.state != after.state => {
                self.emit(EventKind::Errored { reason: reason.clone() })
            }
            _ => {}
        }
        match (&before.reload, &after.reload) {
            (Some((p1, ..)), Some((p2, old, new))) if p1 != p2 => self.reload_event(*p2, *old, *new),
            (None, Some((phase, old, new))) => self.reload_event(*phase, *old, *new),
            (Some((_, old, new)), None) => {
                let done = matches!(after.state, State::Online { gen, .. } if gen == *new);
                let phase = if done { "done" } else { "failed" };
                self.emit(EventKind::Reload { phase: phase.into(), old_pid: old.pid, new_pid: new.pid });
            }
            _ => {}
        }
        if after.removed && !before.removed {
            self.emit(EventKind::Removed);
        } else if after.down && !before.down && after.state == State::Stopped {
            self.emit(EventKind::Stopped);
        }
    }

    /// After a resource sample: the serving generation's figures.
    pub(super) fn emit_sample(&self) {
        let Some(pid) = self.machine.state.pid() else { return };
        if self.ctx.events.receiver_count() == 0 {
            return;
        }
        let sample = self.ctx.samples.lock().expect("samples lock").get(&pid).copied();
        self.emit(EventKind::Sample {
            pid,
            memory_bytes: sample.map(|s| s.rss_bytes),
            cpu_percent: sample.map(|s| s.cpu_percent),
        });
    }

    fn reload_event(&self, phase: ReloadPhase, old: Gen, new: Gen) {
        self.emit(EventKind::Reload { phase: phase.as_str().into(), old_pid: old.pid, new_pid: new.pid });
    }
}
