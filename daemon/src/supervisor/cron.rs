//! `cron_restart`: one task for the daemon that reloads (or restarts) each app with a cron
//! pattern when it is due, as PM2 does.
//!
//! The next due time of each app is computed on a blocking thread (it reads the local time
//! zone), once per pattern and after each firing; the task sleeps until the earliest (a
//! minute at most, so a changed clock is noticed) or until an app changes.

use super::{blocking, Supervisor, Verb};
use mcpd_core::config::Ready;
use mcpd_core::model::AppName;
use mcpd_core::protocol::{ReloadRequest, Response, Targets};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// The longest sleep between two looks at the clock.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// An app's next due time, as the task computed it.
#[derive(Debug, Clone)]
struct Due {
    /// The registry entry it was computed for (a deleted and re-added app is another).
    id: u64,
    pattern: String,
    at: Option<SystemTime>,
}

/// Each app's next due time, for `describe`. Holds one entry per app with a pattern.
#[derive(Debug, Default)]
pub(crate) struct Schedule(Mutex<BTreeMap<AppName, Option<SystemTime>>>);

impl Schedule {
    /// When `name` is next reloaded by its `cron_restart`.
    pub fn next(&self, name: &AppName) -> Option<SystemTime> {
        self.0.lock().expect("schedule lock").get(name).copied().flatten()
    }
}

/// Runs until `shutdown`.
pub(crate) async fn run(sup: Arc<Supervisor>, shutdown: CancellationToken) {
    let mut changes = sup.ctx.changes.subscribe();
    let mut due: BTreeMap<AppName, Due> = BTreeMap::new();
    // Apps whose firing has not finished: one at a time per app.
    let firing: Arc<Mutex<HashSet<AppName>>> = Arc::default();
    loop {
        let wanted = sup.cron_apps();
        due.retain(|name, d| wanted.iter().any(|(n, id, p)| n == name && *id == d.id && *p == d.pattern));
        let missing: Vec<(AppName, u64, String)> =
            wanted.into_iter().filter(|(name, _, _)| !due.contains_key(name)).collect();
        if !missing.is_empty() {
            let now = SystemTime::now();
            let computed = blocking(move || {
                missing
                    .into_iter()
                    .map(|(name, id, pattern)| {
                        let at = mcpd_core::config::next_cron_time(&pattern, now);
                        (name, Due { id, pattern, at })
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            due.extend(computed);
        }
        *sup.cron.0.lock().expect("schedule lock") = due.iter().map(|(n, d)| (n.clone(), d.at)).collect();
        let now = SystemTime::now();
        let ready: Vec<(AppName, u64)> =
            due.iter().filter(|(_, d)| d.at.is_some_and(|at| at <= now)).map(|(n, d)| (n.clone(), d.id)).collect();
        for (name, id) in ready {
            // Computed again from now: the next due time is after this one.
            due.remove(&name);
            if !firing.lock().expect("firing lock").insert(name.clone()) {
                tracing::warn!(app = %name, "cron_restart is due while the previous one still runs; skipped");
                continue;
            }
            let (sup, firing) = (sup.clone(), firing.clone());
            tokio::spawn(crate::boxed(async move {
                fire(&sup, &name, id, "cron_restart").await;
                firing.lock().expect("firing lock").remove(&name);
            }));
        }
        let earliest = due.values().filter_map(|d| d.at).min();
        let sleep = earliest.map_or(MAX_SLEEP, |at| at.duration_since(now).unwrap_or_default().min(MAX_SLEEP));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Reloads the app if it has readiness (its new generation must be ready before the old one
/// drains), else restarts it; only a running app, and only the registry entry `id`. `why`
/// (`cron_restart`, `watch`) is logged.
pub(crate) async fn fire(sup: &Supervisor, name: &AppName, id: u64, why: &'static str) {
    let Some((config, online)) = sup.restart_target(name, id) else { return };
    if !online {
        tracing::info!(app = %name, why, "a restart is due, but the app is not running: skipped");
        return;
    }
    let (how, response) = if config.ready != Ready::None {
        let request = ReloadRequest {
            targets: Targets::Names(vec![name.clone()]),
            apps: vec![(*config).clone()],
            config_file: None,
            wait_drain: false,
            env: None,
        };
        ("reload", sup.reload(request).await)
    } else {
        ("restart", sup.act(&Targets::Names(vec![name.clone()]), Verb::Restart).await)
    };
    match response {
        Response::Done { outcomes } if outcomes.iter().all(|o| o.ok) => tracing::info!(app = %name, how, why, "done"),
        other => tracing::warn!(app = %name, how, why, answer = ?other, "failed"),
    }
}
