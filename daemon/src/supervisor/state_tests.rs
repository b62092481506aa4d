use super::*;
use std::collections::VecDeque;
use State::*;

fn policy() -> Policy {
    Policy {
        restart_delay: Duration::from_millis(100),
        restarts: mcpd_core::config::RestartConfig::default(),
        kill_timeout: Duration::from_secs(5),
        ready_timeout: Duration::from_secs(10),
    }
}

/// (from, event, at, to, actions, note)
type Row = (State, Event, Instant, State, Vec<Action>, Option<Note>);

fn check(table: Vec<Row>) {
    for (i, (from, event, at, want_state, want_actions, want_note)) in table.into_iter().enumerate() {
        let label = format!("row {i}: {from:?} + {event:?}");
        let got = next(&from, &mut Counters::default(), event, at, &policy());
        assert_eq!(got.state, want_state, "{label}");
        assert_eq!(got.actions, want_actions, "{label}");
        assert_eq!(got.note, want_note, "{label}");
    }
}

fn exited(pid: u32) -> Event {
    Event::Exited { pid, how: "exit code 3".into(), code: Some(3) }
}

#[test]
fn start_stop_restart_remove() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let online = Online { pid: 7, since: t0 };
    let starting = |attempt| Starting { pid: 7, since: t0, deadline: ms(10_000), attempt };
    let stopping = |then| Stopping { pid: 7, deadline: Some(ms(5000)), then };
    let errored = Errored { reason: "boom".into() };
    let spawn = |restart, attempt| vec![Action::Spawn { restart, attempt }];
    let user = Attempt::User;
    check(vec![
        (Stopped, Event::Start, t0, Stopped, spawn(false, user), None),
        (errored.clone(), Event::Start, t0, errored.clone(), spawn(false, user), None),
        (Stopped, Event::Spawned { pid: 7, attempt: user }, t0, starting(user), vec![], None),
        (
            Stopped,
            Event::SpawnFailed { reason: "no such file".into() },
            t0,
            Errored { reason: "no such file".into() },
            vec![],
            None,
        ),
        (starting(user), Event::Ready { pid: 7 }, ms(30), online.clone(), vec![], None),
        (starting(user), Event::Ready { pid: 8 }, ms(30), starting(user), vec![], None),
        (starting(user), Event::Start, t0, starting(user), vec![], None),
        (online.clone(), Event::Start, t0, online.clone(), vec![], Some(Note::AlreadyOnline)),
        (online.clone(), Event::Ready { pid: 7 }, t0, online.clone(), vec![], None),
        (online.clone(), Event::Stop, t0, stopping(Then::Stop), vec![Action::SignalStop], None),
        (starting(user), Event::Stop, t0, stopping(Then::Stop), vec![Action::SignalStop], None),
        (online.clone(), Event::Restart, t0, stopping(Then::Start(Attempt::User)), vec![Action::SignalStop], None),
        (online.clone(), Event::Remove, t0, stopping(Then::Remove), vec![Action::SignalStop], None),
        (Stopped, Event::Stop, t0, Stopped, vec![], Some(Note::AlreadyStopped)),
        (errored.clone(), Event::Stop, t0, errored.clone(), vec![], Some(Note::AlreadyStopped)),
        (Stopped, Event::Restart, t0, Stopped, spawn(true, user), None),
        (Stopped, Event::Remove, t0, Stopped, vec![Action::Remove], None),
        (stopping(Then::Stop), exited(7), t0, Stopped, vec![], None),
        (stopping(Then::Stop), exited(9), t0, stopping(Then::Stop), vec![], None),
        (stopping(Then::Start(Attempt::User)), exited(7), t0, Stopped, spawn(true, user), None),
        (stopping(Then::Remove), exited(7), t0, Stopped, vec![Action::Remove], None),
        (stopping(Then::Stop), Event::Start, t0, stopping(Then::Start(Attempt::User)), vec![], None),
        (stopping(Then::Start(Attempt::User)), Event::Stop, t0, stopping(Then::Stop), vec![], None),
        (stopping(Then::Remove), Event::Stop, t0, stopping(Then::Remove), vec![], None),
        (stopping(Then::Stop), Event::Remove, t0, stopping(Then::Remove), vec![], None),
        (stopping(Then::Stop), Event::Deadline, ms(4999), stopping(Then::Stop), vec![], None),
        (
            stopping(Then::Stop),
            Event::Deadline,
            ms(5000),
            Stopping { pid: 7, deadline: None, then: Then::Stop },
            vec![Action::Kill],
            None,
        ),
        (
            Stopping { pid: 7, deadline: None, then: Then::Stop },
            Event::Deadline,
            ms(9000),
            Stopping { pid: 7, deadline: None, then: Then::Stop },
            vec![],
            None,
        ),
        (Stopped, exited(7), t0, Stopped, vec![], None),
    ]);
}

#[test]
fn crashes_and_readiness_failures() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let online = Online { pid: 7, since: t0 };
    let starting = |attempt| Starting { pid: 7, since: t0, deadline: ms(10_000), attempt };
    let fail = |attempt| Then::Fail { reason: "not ready within 10s".into(), attempt };
    let failing = |attempt| Stopping { pid: 7, deadline: Some(ms(15_000)), then: fail(attempt) };
    check(vec![
        (online.clone(), exited(7), t0, WaitingRestart { until: ms(100) }, vec![], None),
        (online.clone(), exited(8), t0, online.clone(), vec![], None),
        (WaitingRestart { until: ms(100) }, Event::Deadline, ms(99), WaitingRestart { until: ms(100) }, vec![], None),
        (
            WaitingRestart { until: ms(100) },
            Event::Deadline,
            ms(100),
            WaitingRestart { until: ms(100) },
            vec![Action::Spawn { restart: true, attempt: Attempt::Auto }],
            None,
        ),
        (WaitingRestart { until: ms(100) }, Event::Stop, t0, Stopped, vec![], None),
        (
            WaitingRestart { until: ms(100) },
            Event::Start,
            t0,
            WaitingRestart { until: ms(100) },
            vec![Action::Spawn { restart: true, attempt: Attempt::User }],
            None,
        ),
        // A user's start that exits before ready is errored; an automatic one retries.
        (
            starting(Attempt::User),
            exited(7),
            t0,
            Errored { reason: "exit code 3 before it was ready".into() },
            vec![],
            None,
        ),
        (starting(Attempt::Auto), exited(7), t0, WaitingRestart { until: ms(100) }, vec![], None),
        // A readiness timeout stops the generation gracefully, then fails.
        (starting(Attempt::User), Event::Deadline, ms(9_999), starting(Attempt::User), vec![], None),
        (starting(Attempt::User), Event::Deadline, ms(10_000), failing(Attempt::User), vec![Action::SignalStop], None),
        (
            failing(Attempt::User),
            exited(7),
            ms(10_100),
            Errored { reason: "not ready within 10s".into() },
            vec![],
            None,
        ),
        (failing(Attempt::Auto), exited(7), ms(10_100), WaitingRestart { until: ms(10_200) }, vec![], None),
        (
            failing(Attempt::User),
            Event::Start,
            t0,
            failing(Attempt::User),
            vec![],
            Some(Note::Busy("it is being stopped after failing to get ready")),
        ),
    ]);
}

#[test]
fn reloads() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let online = Online { pid: 7, since: t0 };
    let reloading = Reloading { pid: 7, since: t0, new_pid: 8, deadline: ms(10_500) };
    let failed = |reason: &str| Some(Note::ReloadFailed(reason.into()));
    check(vec![
        (online.clone(), Event::Reload, ms(500), online.clone(), vec![Action::SpawnNext], None),
        (online.clone(), Event::SpawnedNext { pid: 8 }, ms(500), reloading.clone(), vec![], None),
        (
            reloading.clone(),
            Event::NextRefused { reason: "tools changed".into() },
            ms(600),
            online.clone(),
            vec![Action::KillNext],
            failed("tools changed"),
        ),
        (online.clone(), Event::NextRefused { reason: "late".into() }, ms(600), online.clone(), vec![], None),
        (
            online.clone(),
            Event::SpawnNextFailed { reason: "port taken".into() },
            ms(500),
            online.clone(),
            vec![],
            failed("port taken"),
        ),
        (reloading.clone(), Event::Ready { pid: 7 }, ms(600), reloading.clone(), vec![], None),
        (
            reloading.clone(),
            Event::Ready { pid: 8 },
            ms(600),
            Online { pid: 8, since: ms(600) },
            vec![Action::PromoteNext],
            None,
        ),
        (
            reloading.clone(),
            Event::Deadline,
            ms(10_500),
            online.clone(),
            vec![Action::KillNext],
            failed("the new generation (pid 8) was not ready within 10s; it was killed and pid 7 keeps serving"),
        ),
        (
            reloading.clone(),
            exited(8),
            ms(700),
            online.clone(),
            vec![],
            failed("the new generation (pid 8) ended (exit code 3) before it was ready; pid 7 keeps serving"),
        ),
        (
            reloading.clone(),
            exited(7),
            ms(700),
            Starting { pid: 8, since: ms(700), deadline: ms(10_500), attempt: Attempt::Auto },
            vec![],
            None,
        ),
        (
            reloading.clone(),
            Event::Reload,
            t0,
            reloading.clone(),
            vec![],
            Some(Note::Busy("a reload is already running")),
        ),
        (reloading.clone(), Event::Restart, t0, reloading.clone(), vec![], Some(Note::Busy("a reload is running"))),
        (reloading.clone(), Event::Start, t0, reloading.clone(), vec![], Some(Note::AlreadyOnline)),
        (
            reloading.clone(),
            Event::Stop,
            t0,
            Stopping { pid: 7, deadline: Some(ms(5000)), then: Then::Stop },
            vec![Action::KillNext, Action::SignalStop],
            None,
        ),
        (
            reloading.clone(),
            Event::Remove,
            t0,
            Stopping { pid: 7, deadline: Some(ms(5000)), then: Then::Remove },
            vec![Action::KillNext, Action::SignalStop],
            None,
        ),
        (Stopped, Event::Reload, t0, Stopped, vec![Action::Spawn { restart: false, attempt: Attempt::User }], None),
        (
            Starting { pid: 7, since: t0, deadline: ms(1), attempt: Attempt::User },
            Event::Reload,
            t0,
            Starting { pid: 7, since: t0, deadline: ms(1), attempt: Attempt::User },
            vec![],
            Some(Note::Busy("it is still starting")),
        ),
    ]);
}

#[test]
fn automatic_restarts_keep_counters_and_a_crash_loop_ends_in_errored() {
    let t0 = Instant::now();
    let online = Online { pid: 7, since: t0 };
    let recycle = next(&online, &mut Counters::default(), Event::Recycle, t0, &policy());
    assert_eq!(
        recycle.state,
        Stopping { pid: 7, deadline: Some(t0 + Duration::from_secs(5)), then: Then::Start(Attempt::Auto) }
    );
    assert_eq!(recycle.actions, [Action::SignalStop]);

    // Drive the machine through crashes 200 ms after each start: 16 restarts, then errored.
    let policy = policy();
    let mut counters = Counters::default();
    let mut state = Stopped;
    let mut now = t0;
    let mut spawns = 0;
    let mut events = VecDeque::from([Event::Start]);
    while let Some(event) = events.pop_front() {
        let t = next(&state, &mut counters, event, now, &policy);
        state = t.state;
        for action in t.actions {
            if let Action::Spawn { .. } = action {
                spawns += 1;
                events.push_back(Event::Spawned { pid: spawns, attempt: Attempt::Auto });
                events.push_back(Event::Ready { pid: spawns });
            }
        }
        if events.is_empty() {
            match &state {
                Online { pid, .. } => {
                    now += Duration::from_millis(200);
                    events.push_back(Event::Exited { pid: *pid, how: "exit code 1".into(), code: Some(1) });
                }
                WaitingRestart { until } => {
                    now = *until;
                    events.push_back(Event::Deadline);
                }
                _ => {}
            }
        }
        assert!(spawns <= 100, "the loop never stopped: {state:?}");
    }
    assert_eq!(spawns, 17, "the first start and 16 restarts");
    match state {
        Errored { reason } => assert!(reason.starts_with("crash loop: 16 restarts in a row"), "{reason}"),
        other => panic!("expected errored, got {other:?}"),
    }
    // The user starting it again resets the count.
    let again = next(&Errored { reason: String::new() }, &mut counters, Event::Start, now, &policy);
    assert_eq!(again.actions, [Action::Spawn { restart: false, attempt: Attempt::User }]);
    assert_eq!(counters, Counters::default());
}

#[test]
fn deadlines_and_status() {
    let t0 = Instant::now();
    let cases = [
        (Stopped, None, AppStatus::Stopped),
        (Starting { pid: 1, since: t0, deadline: t0, attempt: Attempt::User }, Some(t0), AppStatus::Starting),
        (Online { pid: 1, since: t0 }, None, AppStatus::Online),
        (Reloading { pid: 1, since: t0, new_pid: 2, deadline: t0 }, Some(t0), AppStatus::Reloading),
        (Stopping { pid: 1, deadline: Some(t0), then: Then::Stop }, Some(t0), AppStatus::Stopping),
        (WaitingRestart { until: t0 }, Some(t0), AppStatus::WaitingRestart),
        (Errored { reason: String::new() }, None, AppStatus::Errored),
    ];
    for (state, deadline, status) in cases {
        assert_eq!(state.deadline(), deadline, "{state:?}");
        assert_eq!(state.status(), status, "{state:?}");
    }
}
