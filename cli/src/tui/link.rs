//! The monitor's connections to the daemon: an event subscription (the rows once, then each
//! changed app's row with its event, and a sample per running app each second), a log
//! follower for the selected app, and one short request per action.
//! If the daemon goes away, it says so and connects again once a second.

use super::app::{Act, Command, Incoming};
use crate::connect;
use mcpd_core::client::Client;
use mcpd_core::model::{AppInfo, AppName, LifecycleEvent};
use mcpd_core::paths::Paths;
use mcpd_core::protocol::{DescribeRequest, EventsRequest, LogsRequest, Request, Response, TargetRequest, Targets};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

/// Pause between reconnection attempts.
const RETRY: Duration = Duration::from_secs(1);
/// Past lines shown when an app is selected.
const BACKLOG: usize = 50;

/// Carries out the monitor's commands.
pub struct Link {
    paths: Paths,
    tx: UnboundedSender<Incoming>,
    follower: Option<JoinHandle<()>>,
    watcher: JoinHandle<()>,
}

impl Link {
    /// Connects (starting the daemon if none runs) and starts watching.
    pub fn start(paths: Paths, tx: UnboundedSender<Incoming>) -> Link {
        let watcher = tokio::spawn(watch(paths.clone(), tx.clone()));
        Link { paths, tx, follower: None, watcher }
    }

    /// Carries out one command in the background; results come back as [`Incoming`].
    pub fn run(&mut self, command: Command) {
        let (paths, tx) = (self.paths.clone(), self.tx.clone());
        match command {
            Command::Select(app) => {
                if let Some(old) = self.follower.take() {
                    old.abort();
                }
                if let Some(app) = app {
                    self.follower = Some(tokio::spawn(follow(paths.clone(), app.clone(), tx.clone())));
                    tokio::spawn(detail(paths, app, tx));
                }
            }
            Command::Detail(app) => drop(tokio::spawn(detail(paths, app, tx))),
            Command::Act(act, app) => drop(tokio::spawn(act_on(paths, act, app, tx))),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(f) = self.follower.take() {
            f.abort();
        }
    }
}

async fn watch(paths: Paths, tx: UnboundedSender<Incoming>) {
    let mut first = true;
    loop {
        let client = if first {
            connect::connect_or_start(&paths).await
        } else {
            Client::connect(&paths).await.map_err(Into::into)
        };
        first = false;
        let reason = match client {
            Ok(mut client) => {
                let _ = tx.send(Incoming::Connected);
                let request = Request::Events(EventsRequest { app: None, samples: true });
                let mut next = client.call(request).await.map(Some);
                let mut rows = Vec::new();
                loop {
                    match next {
                        Ok(Some(Response::List { apps })) => rows = apps,
                        Ok(Some(Response::Events { events, .. })) => apply(&mut rows, events),
                        Ok(_) => break "the daemon closed the connection".to_string(),
                        Err(e) => break e.to_string(),
                    }
                    if tx.send(Incoming::Apps(rows.clone())).is_err() {
                        return;
                    }
                    next = client.next().await;
                }
            }
            Err(e) => format!("{e:#}"),
        };
        if tx.send(Incoming::Disconnected(reason)).is_err() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Updates the table from events: each carries its app's row after it (none once deleted).
fn apply(rows: &mut Vec<AppInfo>, events: Vec<LifecycleEvent>) {
    for e in events {
        let key = (e.app.clone(), e.instance);
        match e.row {
            Some(row) => match rows.binary_search_by(|r| (&r.name, r.instance).cmp(&(&key.0, key.1))) {
                Ok(i) => rows[i] = *row,
                Err(i) => rows.insert(i, *row),
            },
            None => rows.retain(|r| (&r.name, r.instance) != (&key.0, key.1)),
        }
    }
}

async fn follow(paths: Paths, app: AppName, tx: UnboundedSender<Incoming>) {
    let Ok(mut client) = Client::connect(&paths).await else { return };
    let request = LogsRequest { app: Some(app.clone()), lines: BACKLOG, follow: true, stream: None, daemon: false };
    let mut next = client.call(Request::Logs(request)).await.map(Some);
    while let Ok(Some(Response::Logs { lines, .. })) = next {
        if tx.send(Incoming::Logs { app: app.to_string(), lines }).is_err() {
            return;
        }
        next = client.next().await;
    }
}

async fn detail(paths: Paths, app: AppName, tx: UnboundedSender<Incoming>) {
    let Ok(mut client) = Client::connect(&paths).await else { return };
    if let Ok(Response::Describe(d)) = client.call(DescribeRequest { name: app }).await {
        let _ = tx.send(Incoming::Detail(d));
    }
}

async fn act_on(paths: Paths, act: Act, app: AppName, tx: UnboundedSender<Incoming>) {
    let targets = TargetRequest { targets: Targets::Names(vec![app.clone()]) };
    let request = match act {
        Act::Restart => Request::Restart(targets),
        Act::Stop => Request::Stop(targets),
        Act::Delete => Request::Delete(targets),
        Act::Reload => Request::Reload(mcpd_core::protocol::ReloadRequest {
            config_file: None,
            targets: targets.targets,
            apps: Vec::new(),
            wait_drain: false,
            env: None,
        }),
        Act::Start => {
            Request::Start(mcpd_core::protocol::StartRequest { apps: Vec::new(), names: vec![app.clone()], wait: true })
        }
    };
    let message = match Client::connect(&paths).await {
        Ok(mut client) => match client.call(request).await {
            Ok(Response::Done { outcomes }) => outcomes
                .iter()
                .map(|o| format!("{} {}: {}{}", act.verb(), o.name, if o.ok { "" } else { "failed: " }, o.message))
                .collect::<Vec<_>>()
                .join("; "),
            Ok(Response::Error(e)) => format!("{} {app} failed: {e}", act.verb()),
            Ok(other) => format!("{} {app}: unexpected answer {other:?}", act.verb()),
            Err(e) => format!("{} {app} failed: {e}", act.verb()),
        },
        Err(e) => format!("{} {app} failed: {e}", act.verb()),
    };
    let _ = tx.send(Incoming::Outcome(message));
}
