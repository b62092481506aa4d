//! The app task in process, through a generation double: spawns, readiness, exits and
//! signals are the test's to command and to observe, so every effect the task has on its
//! generations is checked quickly and without real processes.

use super::*;
use crate::guard::Guard;
use crate::supervisor::group::GroupEnd;
use crate::supervisor::process::{Boxed, GenControl, SpawnArgs, SpawnError, Spawner};
use mcpd_core::config::parse;
use mcpd_core::model::{AppStatus, RestartReason};
use mcpd_core::paths::Paths;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::sync::oneshot;

/// One spawned double: what was done to it, and how to end it.
#[derive(Debug)]
struct Child {
    reports: mpsc::Sender<Report>,
    exit: Option<oneshot::Sender<ExitStatus>>,
    stop_requests: u32,
    signals: Vec<Signal>,
}

#[derive(Debug, Default)]
struct DoubleState {
    children: BTreeMap<u32, Child>,
    next_pid: u32,
    /// The next spawn fails.
    fail_next: bool,
    /// Pids that ignore their stop request (only SIGKILL ends them).
    stubborn: Vec<u32>,
}

/// The generation double (compare watchexec's `TestChild`).
#[derive(Debug, Clone, Default)]
struct Double(Arc<Mutex<DoubleState>>);

impl Double {
    fn state(&self) -> std::sync::MutexGuard<'_, DoubleState> {
        self.0.lock().expect("double lock")
    }

    /// Every pid spawned so far, in order.
    fn pids(&self) -> Vec<u32> {
        self.state().children.keys().copied().collect()
    }

    /// The pids whose leader has not exited.
    fn alive(&self) -> Vec<u32> {
        self.state().children.iter().filter(|(_, c)| c.exit.is_some()).map(|(p, _)| *p).collect()
    }

    fn ready(&self, pid: u32) {
        let _ = self.state().children[&pid].reports.try_send(Report::Ready { pid });
    }

    /// Ends the leader with an exit code (or a signal, negative).
    fn exit(&self, pid: u32, code: i32) {
        let raw = if code < 0 { -code } else { code << 8 };
        if let Some(tx) = self.state().children.get_mut(&pid).and_then(|c| c.exit.take()) {
            let _ = tx.send(ExitStatus::from_raw(raw));
        }
    }

    fn stop_requests(&self, pid: u32) -> u32 {
        self.state().children[&pid].stop_requests
    }

    fn killed(&self, pid: u32) -> bool {
        self.state().children[&pid].signals.contains(&Signal::KILL)
    }
}

#[derive(Debug)]
struct DoubleGen {
    pid: u32,
    double: Double,
    exit: Option<oneshot::Receiver<ExitStatus>>,
}

impl GenControl for DoubleGen {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn signal(&self, signal: Signal) {
        if let Some(c) = self.double.state().children.get_mut(&self.pid) {
            c.signals.push(signal);
        }
        if signal == Signal::KILL {
            self.double.exit(self.pid, -9);
        }
    }

    fn signal_leader(&self, signal: Signal) {
        if let Some(c) = self.double.state().children.get_mut(&self.pid) {
            c.signals.push(signal);
        }
    }

    fn request_stop(&self, _config: &AppConfig) {
        let stubborn = {
            let mut state = self.double.state();
            if let Some(c) = state.children.get_mut(&self.pid) {
                c.stop_requests += 1;
            }
            state.stubborn.contains(&self.pid)
        };
        if !stubborn {
            self.double.exit(self.pid, 0);
        }
    }

    fn leader_exit(&mut self) -> Boxed<std::io::Result<ExitStatus>> {
        let exit = self.exit.take();
        Box::pin(async move {
            match exit {
                Some(rx) => rx.await.map_err(|_| std::io::Error::other("the double was dropped")),
                None => Err(std::io::Error::other("already waited for")),
            }
        })
    }

    fn set_upstream(&mut self, _path: std::path::PathBuf) {}

    fn finish(
        &self,
        _ctx: Arc<Ctx>,
        status: std::io::Result<ExitStatus>,
        _first: Option<Signal>,
        _deadline: Instant,
        reason: String,
    ) -> Boxed<(ExitRecord, GroupEnd)> {
        let pid = self.pid;
        Box::pin(async move {
            let status = status.ok();
            let record = ExitRecord {
                at_unix_ms: 0,
                pid,
                code: status.and_then(|s| s.code()),
                signal: status.and_then(|s| s.signal()),
                reason,
                outcome: None,
            };
            (record, GroupEnd::Empty)
        })
    }
}

impl Spawner for Double {
    fn spawn(&self, _ctx: &Ctx, args: SpawnArgs<'_>) -> Result<Box<dyn GenControl>, SpawnError> {
        let mut state = self.state();
        if std::mem::take(&mut state.fail_next) {
            return Err(SpawnError::Cwd("/nonexistent".into()));
        }
        state.next_pid += 1;
        let pid = 1000 + state.next_pid;
        let (tx, rx) = oneshot::channel();
        state.children.insert(pid, Child { reports: args.reports, exit: Some(tx), stop_requests: 0, signals: vec![] });
        Ok(Box::new(DoubleGen { pid, double: self.clone(), exit: Some(rx) }))
    }
}

/// An app task over the double, in a temporary home.
struct Harness {
    double: Double,
    handle: AppHandle,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    _home: tempfile::TempDir,
}

const CONFIG: &str = r#"
[apps.app]
command = "true"
ready = "notify"
ready_timeout = "400ms"
kill_timeout = "300ms"
restart_delay = "50ms"
max_memory_restart = "10M"
"#;

impl Harness {
    fn new() -> Harness {
        let home = tempfile::tempdir().expect("tempdir");
        let paths = Paths::new(home.path().join("home"));
        paths.create_dirs().expect("home dirs");
        let double = Double::default();
        let ctx = Arc::new(Ctx {
            paths,
            leaders: Mutex::default(),
            groups: Mutex::default(),
            child_exits: watch::Sender::new(0),
            guard: Guard::disabled(),
            samples: Mutex::default(),
            samples_tick: watch::Sender::new(0),
            changes: watch::Sender::new(0),
            sample_every_ms: std::sync::atomic::AtomicU64::new(1000),
            events: tokio::sync::broadcast::Sender::new(64),
            event_seq: std::sync::atomic::AtomicU64::new(0),
            spawner: Arc::new(double.clone()),
            tracking: crate::supervisor::cgroup::Tracking::ProcessGroup("a double".into()),
            cgroups: Mutex::default(),
            orphans: Mutex::default(),
        });
        let file = home.path().join("app.toml");
        let config = parse(CONFIG, &file, home.path()).expect("config").apps.remove(0);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let shared = Shared::new(&config, &ctx);
        let handle = spawn(0, shared, config, ctx.clone(), &tracker, shutdown.clone());
        Harness { double, handle, ctx, shutdown, tracker, _home: home }
    }

    /// Sends a command; returns the receiver of its outcome.
    fn send(&self, make: impl FnOnce(Reply) -> Command) -> oneshot::Receiver<AppOutcome> {
        let (reply, rx) = oneshot::channel();
        self.handle.send(make(reply));
        rx
    }

    fn start(&self) -> oneshot::Receiver<AppOutcome> {
        self.send(|reply| Command::Start { config: None, wait: true, reply })
    }

    fn stop(&self) -> oneshot::Receiver<AppOutcome> {
        self.send(|reply| Command::Stop { reply })
    }

    fn reload(&self) -> oneshot::Receiver<AppOutcome> {
        self.send(|reply| Command::Reload { config: None, wait_drain: false, reply })
    }

    fn status(&self) -> (AppStatus, Option<u32>) {
        let snap = self.handle.snapshot();
        (snap.state.status(), snap.state.pid())
    }

    /// Waits (bounded) until `check` holds of the double and the snapshot.
    async fn until(&self, what: &str, check: impl Fn(&Harness) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status {:?}, pids {:?}, alive {:?}",
                self.status(),
                self.double.pids(),
                self.double.alive()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until the `n`-th generation (from 1) is spawned; returns its pid.
    async fn spawned(&self, n: usize) -> u32 {
        self.until(&format!("generation {n} spawned"), |h| h.double.pids().len() >= n).await;
        self.double.pids()[n - 1]
    }

    /// Starts the app and makes its first generation ready.
    async fn online(&self) -> u32 {
        let rx = self.start();
        let pid = self.spawned(1).await;
        self.double.ready(pid);
        let outcome = answer(rx).await;
        assert!(outcome.ok, "{outcome:?}");
        pid
    }

    /// Shuts the task down; every generation must have ended.
    async fn finish(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await.expect("the task ends at shutdown");
        assert_eq!(self.double.alive(), Vec::<u32>::new(), "generations left after shutdown");
    }
}

async fn answer(rx: oneshot::Receiver<AppOutcome>) -> AppOutcome {
    tokio::time::timeout(Duration::from_secs(5), rx).await.expect("answered in time").expect("answered")
}

#[tokio::test]
async fn start_and_stop() {
    let h = Harness::new();
    let pid = h.online().await;
    assert_eq!(h.status(), (AppStatus::Online, Some(pid)));
    let outcome = answer(h.stop()).await;
    assert!(outcome.ok && outcome.message == "stopped", "{outcome:?}");
    assert_eq!(h.double.stop_requests(pid), 1);
    assert_eq!(h.status().0, AppStatus::Stopped);
    h.finish().await;
}

#[tokio::test]
async fn a_failed_spawn_errors_the_start() {
    let h = Harness::new();
    h.double.state().fail_next = true;
    let outcome = answer(h.start()).await;
    assert!(!outcome.ok && outcome.error == Some(mcpd_core::model::Failure::NotReady), "{outcome:?}");
    assert_eq!(h.status().0, AppStatus::Errored);
    h.finish().await;
}

#[tokio::test]
async fn a_crash_is_restarted_and_counted() {
    let h = Harness::new();
    let first = h.online().await;
    h.double.exit(first, 1);
    let second = h.spawned(2).await;
    h.double.ready(second);
    h.until("the second generation online", |h| h.status() == (AppStatus::Online, Some(second))).await;
    let snap = h.handle.snapshot();
    assert_eq!(snap.restarts, 1);
    assert_eq!(snap.restarts_by_reason.get(&RestartReason::Crash), Some(&1));
    assert_eq!(snap.exits.back().map(|e| e.reason.as_str()), Some("crash"));
    h.finish().await;
}

#[tokio::test]
async fn a_reload_drains_the_old_generation() {
    let h = Harness::new();
    let old = h.online().await;
    let rx = h.reload();
    let new = h.spawned(2).await;
    assert_eq!(h.status(), (AppStatus::Reloading, Some(old)));
    h.double.ready(new);
    let outcome = answer(rx).await;
    assert!(outcome.ok && outcome.message.contains(&format!("old pid {old} drained")), "{outcome:?}");
    assert_eq!(h.double.stop_requests(old), 1);
    assert_eq!(h.status(), (AppStatus::Online, Some(new)));
    assert_eq!(h.handle.snapshot().restarts_by_reason.get(&RestartReason::Reload), Some(&1));
    h.finish().await;
}

#[tokio::test]
async fn a_reload_whose_new_generation_fails_keeps_the_old_one() {
    let h = Harness::new();
    let old = h.online().await;
    // Exits before ready.
    let rx = h.reload();
    let new = h.spawned(2).await;
    h.double.exit(new, 3);
    let outcome = answer(rx).await;
    assert!(!outcome.ok && outcome.message.contains("ended (exit code 3) before it was ready"), "{outcome:?}");
    // Never ready: killed at ready_timeout.
    let rx = h.reload();
    let never = h.spawned(3).await;
    let outcome = answer(rx).await;
    assert!(!outcome.ok && outcome.message.contains("not ready within"), "{outcome:?}");
    assert!(h.double.killed(never));
    // Spawn fails.
    h.double.state().fail_next = true;
    let outcome = answer(h.reload()).await;
    assert!(!outcome.ok && outcome.message.contains("cannot start the new generation"), "{outcome:?}");
    assert_eq!(h.status(), (AppStatus::Online, Some(old)));
    assert_eq!(h.double.stop_requests(old), 0, "a failed reload never touches the serving generation");
    h.finish().await;
}

/// Issue 14's reproduction, in process.
#[tokio::test]
async fn the_serving_generation_dying_mid_reload_is_not_a_wedge() {
    let h = Harness::new();
    let old = h.online().await;
    let rx = h.reload();
    let new = h.spawned(2).await;
    h.double.exit(old, -9);
    h.until("the new generation starting alone", |h| h.status() == (AppStatus::Starting, Some(new))).await;
    h.double.ready(new);
    let outcome = answer(rx).await;
    assert!(outcome.ok, "{outcome:?}");
    let outcome = answer(h.stop()).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(h.double.stop_requests(new), 1);
    assert_eq!(h.double.alive(), Vec::<u32>::new());
    h.finish().await;
}

#[tokio::test]
async fn stop_during_each_reload_phase_ends_both_generations() {
    // While the new one gets ready: it is SIGKILLed, the old one asked to stop.
    let h = Harness::new();
    let old = h.online().await;
    let reload = h.reload();
    let new = h.spawned(2).await;
    let outcome = answer(h.stop()).await;
    assert!(outcome.ok, "{outcome:?}");
    assert!(h.double.killed(new) && h.double.stop_requests(old) == 1);
    assert!(!answer(reload).await.ok);
    assert_eq!(h.double.alive(), Vec::<u32>::new());
    h.finish().await;

    // While the old one drains (and ignores its stop request): SIGKILLed at kill_timeout.
    let h = Harness::new();
    let old = h.online().await;
    h.double.state().stubborn.push(old);
    let reload = h.reload();
    let new = h.spawned(2).await;
    h.double.ready(new);
    h.until("the old generation asked to stop", |h| h.double.stop_requests(old) == 1).await;
    let started = Instant::now();
    let outcome = answer(h.stop()).await;
    assert!(outcome.ok, "{outcome:?}");
    assert!(started.elapsed() < Duration::from_millis(1300), "stop took {:?}", started.elapsed());
    assert!(h.double.killed(old));
    let outcome = answer(reload).await;
    assert!(outcome.ok && outcome.message.contains("SIGKILLed"), "{outcome:?}");
    assert_eq!(h.double.alive(), Vec::<u32>::new());
    h.finish().await;
}

#[tokio::test]
async fn a_memory_limit_reloads_gracefully() {
    let h = Harness::new();
    let old = h.online().await;
    h.ctx.samples.lock().unwrap().insert(old, crate::supervisor::sampler::Sample::of_rss(50 << 20));
    h.ctx.samples_tick.send_modify(|n| *n += 1);
    let new = h.spawned(2).await;
    h.double.ready(new);
    h.until("the new generation serving", |h| h.status() == (AppStatus::Online, Some(new))).await;
    h.until("the old generation gone", |h| !h.double.alive().contains(&old)).await;
    let snap = h.handle.snapshot();
    assert_eq!(snap.restarts_by_reason.get(&RestartReason::Memory), Some(&1));
    assert!(snap.exits.back().is_some_and(|e| e.reason.starts_with("memory limit 10M exceeded")), "{:?}", snap.exits);
    h.finish().await;
}
