//! The control commands an app task answers.

use super::{AppTask, Command, Goal, Reply};
use crate::supervisor::state::{Event, Note, State};
use mcpd_core::config::AppConfig;
use std::sync::Arc;

impl AppTask {
    pub(super) fn command(&mut self, command: Command) {
        let (event, goal, reply) = match command {
            Command::Start { config, wait, reply } => {
                if let Some(config) = config {
                    if self.current.is_none() {
                        self.snap.config = Arc::new(*config);
                    } else if *config != *self.snap.config {
                        let pid = self.snap.state.pid().unwrap_or_default();
                        let msg = format!("already running (pid {pid}) with a different config; nothing changed: run `mcpd reload {}` to apply it", self.snap.config.name);
                        return drop(reply.send(self.outcome(true, msg)));
                    }
                }
                if !wait {
                    let note = self.step(Event::Start);
                    let message = match (note, self.snap.state.pid()) {
                        (Some(Note::AlreadyOnline), Some(pid)) => {
                            format!("already online (pid {pid}), unchanged")
                        }
                        (_, Some(pid)) => format!("started (pid {pid}), not waiting for readiness"),
                        _ => format!("{}", self.snap.state.status()),
                    };
                    let ok = !matches!(self.snap.state, State::Errored { .. });
                    return drop(reply.send(self.outcome(ok, message)));
                }
                (Event::Start, Goal::Online, reply)
            }
            Command::Stop { reply } => (Event::Stop, Goal::Stopped, reply),
            Command::Restart { reply } => (Event::Restart, Goal::Online, reply),
            Command::Remove { reply } => (Event::Remove, Goal::Removed, reply),
            Command::Reset { reply } => {
                self.counters = Default::default();
                self.snap.restarts = 0;
                self.publish_snapshot();
                return drop(reply.send(self.outcome(true, "restart counters reset".into())));
            }
            Command::Reload { config, wait_drain, reply } => return self.reload(config, wait_drain, reply),
        };
        match self.step(event) {
            Some(Note::AlreadyOnline) => {
                let pid = self.snap.state.pid().unwrap_or_default();
                let _ = reply.send(self.outcome(true, format!("already online (pid {pid}), unchanged")));
            }
            Some(Note::AlreadyStopped) => {
                let _ = reply.send(self.outcome(true, format!("already {}", self.snap.state.status())));
            }
            Some(Note::Busy(why)) => {
                let _ = reply.send(self.outcome(false, format!("not now: {why}; try again when it is done")));
            }
            Some(Note::ReloadFailed(_) | Note::Stayed(_)) | None => self.waiters.push((goal, reply)),
        }
    }

    fn reload(&mut self, config: Option<Box<AppConfig>>, wait_drain: bool, reply: Reply) {
        // Without a front the old generation drains within its kill_timeout: one reload at a
        // time. Behind a front old generations may keep sessions for minutes, side by side.
        let draining = !self.snap.draining.is_empty() && self.front.is_none();
        if !self.reload_waiters.is_empty() || draining {
            let msg = "a reload is already running; wait for it to finish (`mcpd list` shows it as reloading)";
            return drop(reply.send(self.outcome(false, msg.into())));
        }
        let config = config.map(|c| Arc::new(*c)).unwrap_or_else(|| self.snap.config.clone());
        if !matches!(self.snap.state, State::Online { .. }) {
            // Not serving: a reload is a start with the new config.
            if self.current.is_none() {
                self.snap.config = config;
            }
            return match self.step(Event::Reload) {
                Some(Note::Busy(why)) => {
                    drop(reply.send(self.outcome(false, format!("not now: {why}; try again when it is done"))))
                }
                _ => self.waiters.push((Goal::Online, reply)),
            };
        }
        if !self.listeners.matches(&config.listen) {
            let msg =
                "its listen addresses changed; a reload hands over the same sockets, so stop and start it to apply";
            return drop(reply.send(self.outcome(false, msg.into())));
        }
        self.pending = Some(config);
        self.reload_wait_drain = wait_drain;
        self.reload_answers_at_drain_of = None;
        self.reload_waiters.push(reply);
        self.step(Event::Reload);
    }
}
