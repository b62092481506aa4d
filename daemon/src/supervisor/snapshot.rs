//! What readers (list, describe, replies) see of an app, published by its task after every change.

use super::drain::ms;
use super::sampler::Sample;
use super::state::{ReloadPhase, RestartReason, State};
use crate::logs::AppLogs;
use mcpd_core::config::AppConfig;
use mcpd_core::model::{AppDetail, AppInfo, AppStatus, ExitRecord, GenerationSessions, ReloadInfo};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// How many exits `describe` keeps.
pub(crate) const EXITS_KEPT: usize = 10;

/// An app as its task last published it.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub config: Arc<AppConfig>,
    pub state: State,
    pub restarts: u32,
    pub exits: VecDeque<ExitRecord>,
    /// The last `STATUS=` of the serving generation.
    pub status_text: Option<String>,
    /// Old generations still draining after reloads (behind a front they keep their sessions).
    pub draining: Vec<u32>,
    /// The app's front, for sessions per generation.
    pub front: Option<Arc<crate::front::Front>>,
    /// The app's log files.
    pub logs: Arc<AppLogs>,
    /// Which of the app's instances this is.
    pub instance: u32,
    /// `restarts` by reason.
    pub restarts_by_reason: std::collections::BTreeMap<RestartReason, u32>,
    /// The running reload's phase, old pid and new pid.
    pub reload: Option<(ReloadPhase, u32, u32)>,
}

impl Snapshot {
    /// A stopped app.
    pub fn new(config: AppConfig, logs: Arc<AppLogs>) -> Snapshot {
        Snapshot {
            config: Arc::new(config),
            state: State::Stopped,
            restarts: 0,
            exits: VecDeque::new(),
            status_text: None,
            draining: Vec::new(),
            front: None,
            logs,
            instance: 0,
            restarts_by_reason: Default::default(),
            reload: None,
        }
    }

    /// Records an exit, keeping the last [`EXITS_KEPT`].
    pub fn record_exit(&mut self, record: ExitRecord) {
        if self.exits.len() == EXITS_KEPT {
            self.exits.pop_front();
        }
        self.exits.push_back(record);
    }

    /// The `list` row, with uptime computed now and the group's last resource sample.
    pub fn info(&self, samples: &HashMap<u32, Sample>) -> AppInfo {
        let now = Instant::now();
        let pid = self.state.pid();
        let sample = pid.and_then(|p| samples.get(&p));
        let (uptime_ms, next_start_in_ms, reason) = match &self.state {
            State::Online { since, .. } | State::Reloading { since, .. } | State::Starting { since, .. } => {
                (Some(ms(now.saturating_duration_since(*since))), None, None)
            }
            State::WaitingRestart { until, .. } => (None, Some(ms(until.saturating_duration_since(now))), None),
            State::Errored { reason } => (None, None, Some(reason.clone())),
            _ => (None, None, None),
        };
        let reload =
            self.reload.map(|(phase, old_pid, new_pid)| ReloadInfo { old_pid, new_pid, phase: phase.as_str().into() });
        let status = if reload.is_some() { AppStatus::Reloading } else { self.state.status() };
        AppInfo {
            restarts_by_reason: self.restarts_by_reason.clone(),
            name: self.config.name.clone(),
            instance: (self.config.instances > 1).then_some(self.instance),
            status,
            pid,
            restarts: self.restarts,
            uptime_ms,
            memory_bytes: sample.map(|s| s.rss_bytes),
            cpu_percent: sample.map(|s| s.cpu_percent),
            reason,
            next_start_in_ms,
            status_text: self.status_text.clone(),
            reload,
            log_error: self.logs.error(),
            sessions: self
                .front
                .as_ref()
                .map(|f| f.sessions().into_iter().map(|(pid, sessions)| GenerationSessions { pid, sessions }).collect())
                .unwrap_or_default(),
        }
    }

    /// The `describe` view (env values hidden).
    pub fn detail(&self, samples: &HashMap<u32, Sample>) -> AppDetail {
        AppDetail {
            info: self.info(samples),
            // Env values are secrets: no client is shown them.
            config: self.config.with_env_hidden(),
            last_exits: self.exits.iter().cloned().collect(),
            other_instances: Vec::new(),
            tracking: None,
            cron_next_unix_ms: None,
        }
    }
}
