//! The control commands an app task answers: each becomes an event of the machine, whose
//! answer goes back to the caller.

use super::{AppTask, Command, Reply};
use crate::supervisor::state::{Event, Verb};
use mcpd_core::config::AppConfig;
use std::sync::Arc;

impl AppTask {
    pub(super) fn command(&mut self, command: Command) {
        let (verb, reply) = match command {
            Command::Start { config, wait, reply } => {
                if let Some(config) = config {
                    if self.machine.state.gen().is_none() {
                        self.snap.config = Arc::new(*config);
                    } else if *config != *self.snap.config {
                        let pid = self.snap.state.pid().unwrap_or_default();
                        let msg = format!("already running (pid {pid}) with a different config; nothing changed: run `mcpd reload {}` to apply it", self.snap.config.name);
                        return drop(reply.send(self.outcome(true, msg, None)));
                    }
                }
                (if wait { Verb::Start } else { Verb::StartNoWait }, reply)
            }
            Command::Stop { reply } => (Verb::Stop, reply),
            Command::Restart { reply } => (Verb::Restart, reply),
            Command::Remove { reply } => (Verb::Remove, reply),
            Command::Retire { reply } => (Verb::Retire, reply),
            Command::Scaled { instances } => {
                Arc::make_mut(&mut self.snap.config).instances = instances;
                return self.publish_snapshot();
            }
            Command::Reset { reply } => {
                self.machine.counters = Default::default();
                self.snap.restarts = 0;
                self.publish_snapshot();
                return drop(reply.send(self.outcome(true, "restart counters reset".into(), None)));
            }
            Command::Reload { config, wait_drain, reply } => return self.reload(config, wait_drain, reply),
            Command::Signal { signal, leader_only, reply } => {
                let mut pids = Vec::new();
                for live in self.gens.values().filter(|l| !(leader_only && l.leader_gone)) {
                    match leader_only {
                        true => live.generation.signal_leader(signal),
                        false => live.generation.signal(signal),
                    }
                    pids.push(live.generation.pid().to_string());
                }
                let outcome = match (pids.is_empty(), leader_only) {
                    (true, _) => self.outcome(false, "not running: no process to signal".into(), None),
                    (false, true) => self.outcome(true, format!("{signal} sent to pid {}", pids.join(", ")), None),
                    (false, false) => self.outcome(
                        true,
                        format!("{signal} sent to every process of pid {}'s group", pids.join(", ")),
                        None,
                    ),
                };
                return drop(reply.send(outcome));
            }
            // Taken by the task's loop.
            Command::Handover { reply } => return drop(reply.send(Err("not frozen here".into()))),
        };
        self.user(verb, reply);
    }

    /// Feeds a user's verb to the machine; its answer goes to `reply`.
    fn user(&mut self, verb: Verb, reply: Reply) {
        let waiter = self.next_waiter;
        self.next_waiter += 1;
        self.replies.insert(waiter, reply);
        self.step(Event::User { verb, waiter });
    }

    fn reload(&mut self, config: Option<Box<AppConfig>>, wait_drain: bool, reply: Reply) {
        let config = config.map(|c| Arc::new(*c)).unwrap_or_else(|| self.snap.config.clone());
        if self.machine.state.gen().is_none() {
            // Not serving: a reload is a start with the new config.
            self.snap.config = config;
            return self.user(Verb::Reload { wait_drain }, reply);
        }
        if !self.listeners.matches(&config.listen) {
            let msg =
                "its listen addresses changed; a reload hands over the same sockets, so stop and start it to apply";
            return drop(reply.send(self.outcome(false, msg.into(), None)));
        }
        self.pending = Some(config);
        self.tools_note = None;
        self.user(Verb::Reload { wait_drain }, reply);
        // Taken when the new generation was spawned; left over when the reload was refused.
        self.pending = None;
    }
}
