//! The checks that make mcpd replace a serving generation: its process group's memory, the
//! sd_notify watchdog, and the liveness probe.

use super::AppTask;
use crate::supervisor::ready::{self, Report};
use crate::supervisor::state::{Event, RestartReason, State, Why};
use mcpd_core::config::format_size;
use std::time::Instant;

/// The checks' schedule for the serving generation.
#[derive(Debug, Default)]
pub(super) struct Checks {
    /// The generation the checks are armed for.
    pid: Option<u32>,
    /// When the watchdog fires unless `WATCHDOG=1` comes first.
    pub watchdog_due: Option<Instant>,
    /// When the next health probe is due.
    pub health_due: Option<Instant>,
    /// Health probes failed in a row.
    failures: u32,
    /// A probe is running.
    probing: bool,
}

impl AppTask {
    /// Arms the checks when a generation comes online; disarms them otherwise (starting,
    /// reloading, draining, stopped).
    pub(super) fn arm_checks(&mut self) {
        let serving = match self.snap.state {
            State::Online { gen, .. } => Some(gen.pid),
            _ => None,
        };
        if serving == self.checks.pid {
            return;
        }
        let limits = &self.snap.config.limits;
        let now = Instant::now();
        self.checks = Checks {
            pid: serving,
            watchdog_due: serving.and(limits.watchdog).map(|w| now + w),
            health_due: serving.and(limits.health.as_ref()).map(|h| now + h.interval),
            failures: 0,
            probing: false,
        };
    }

    /// Replaces the serving generation for `reason`. A generation that still serves (over its
    /// memory limit) is replaced by a graceful reload when the app has a readiness handshake;
    /// one that no longer answers (watchdog, health) is restarted: it cannot help the new one
    /// get ready, and a probe of a shared socket could reach it instead of the new one. With
    /// socket handoff a restart refuses nothing either: connections wait in the socket's queue.
    fn recycle(&mut self, reason: RestartReason, text: String, still_serving: bool) {
        tracing::warn!(app = %self.snap.config.name, reason = %text, "replacing the serving generation");
        self.checks = Checks::default();
        self.step(Event::Recycle { why: Why { reason, text }, graceful: still_serving });
    }

    /// After each resource sample: over the memory limit → recycle.
    pub(super) fn memory_check(&mut self) {
        // A per-session stdio app's limit is per child, applied by its bridge (each session
        // ends on its own); the group holds every session's child. A shared one's child is
        // the generation's and is checked with it.
        if self.snap.config.stdio.is_some_and(|s| s.sessions == mcpd_core::config::StdioSessions::PerSession) {
            return;
        }
        let (Some(limit), Some(pid)) = (self.snap.config.limits.max_memory_restart, self.checks.pid) else { return };
        let rss = self.ctx.samples.lock().expect("samples lock").get(&pid).map_or(0, |s| s.rss_bytes);
        if rss > limit {
            let text = format!("memory limit {} exceeded: RSS {}", format_size(limit), format_size(rss));
            self.recycle(RestartReason::Memory, text, true);
        }
    }

    /// `WATCHDOG=1` from the serving generation.
    pub(super) fn watchdog_ping(&mut self, pid: u32) {
        if self.checks.pid == Some(pid) {
            self.checks.watchdog_due = self.snap.config.limits.watchdog.map(|w| Instant::now() + w);
        }
    }

    pub(super) fn watchdog_expired(&mut self) {
        self.checks.watchdog_due = None;
        if let Some(w) = self.snap.config.limits.watchdog {
            let text = format!("watchdog: no WATCHDOG=1 for {}", humantime::format_duration(w));
            self.recycle(RestartReason::Watchdog, text, false);
        }
    }

    /// Starts a health probe (unless one runs) and schedules the next.
    pub(super) fn health_tick(&mut self) {
        let (Some(health), Some(pid)) = (self.snap.config.limits.health.clone(), self.checks.pid) else {
            self.checks.health_due = None;
            return;
        };
        self.checks.health_due = Some(Instant::now() + health.interval);
        if self.checks.probing {
            return;
        }
        self.checks.probing = true;
        let tx = self.reports_tx.clone();
        let via = self.front().and_then(|f| f.socket_of(pid));
        tokio::spawn(crate::boxed(async move {
            let result =
                match tokio::time::timeout(health.timeout, ready::probe_once(&health.probe, via.as_deref())).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {}", humantime::format_duration(health.timeout))),
                };
            let _ = tx.send(Report::Health { pid, result }).await;
        }));
    }

    pub(super) fn health_result(&mut self, pid: u32, result: Result<(), String>) {
        if self.checks.pid != Some(pid) {
            return;
        }
        self.checks.probing = false;
        let Some(health) = &self.snap.config.limits.health else { return };
        match result {
            Ok(()) => self.checks.failures = 0,
            Err(e) => {
                self.checks.failures += 1;
                tracing::warn!(app = %self.snap.config.name, failures = self.checks.failures, error = %e, "health check failed");
                if self.checks.failures >= health.failures {
                    let n = self.checks.failures;
                    self.recycle(RestartReason::Health, format!("health check failed {n} times in a row: {e}"), false);
                }
            }
        }
    }
}
