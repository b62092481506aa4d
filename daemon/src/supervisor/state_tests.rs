//! Tables: sequences of events with the actions, answers and states they must give. Each
//! minimal sequence the property test (`state_props.rs`) ever shrank to is kept here too.

use super::props::{run, Op};
use super::*;
use std::time::Duration;
use State::*;

fn policy() -> Policy {
    Policy {
        restart_delay: Duration::from_millis(100),
        restarts: mcpd_core::config::RestartConfig::default(),
        kill_timeout: Duration::from_secs(5),
        ready_timeout: Duration::from_secs(10),
        front_drain: None,
        graceful_recycle: true,
    }
}

const A: Gen = Gen { id: 1, pid: 101 };
const B: Gen = Gen { id: 2, pid: 102 };
const C: Gen = Gen { id: 3, pid: 103 };

/// (ms since start, event, wanted actions, wanted answers, wanted status).
type Row = (u64, Event, Vec<Action>, Vec<(WaiterId, &'static str)>, &'static str);

/// Steps through `rows` of (ms since start, event, wanted actions, wanted answers), checking
/// the state after each against `states`.
fn check(mut m: Machine, rows: Vec<Row>) -> Machine {
    let t0 = Instant::now();
    for (i, (at, event, actions, answers, state)) in rows.into_iter().enumerate() {
        let label = format!("row {i}: {event:?} in {:?}", m.state);
        let t = next(&m, event, t0 + Duration::from_millis(at), &policy());
        assert_eq!(t.actions, actions, "{label}");
        let got: Vec<(WaiterId, String)> = t.answers.iter().map(|(w, a)| (*w, short(a))).collect();
        let want: Vec<(WaiterId, String)> = answers.iter().map(|(w, a)| (*w, a.to_string())).collect();
        assert_eq!(got, want, "{label}");
        assert_eq!(t.machine.state.status().as_str(), state, "{label}: {:?}", t.machine.state);
        m = t.machine;
    }
    m
}

/// An answer in a word.
fn short(answer: &Answer) -> String {
    match answer {
        Answer::Online { .. } => "online".into(),
        Answer::Started { .. } => "started".into(),
        Answer::AlreadyOnline { .. } => "already-online".into(),
        Answer::Stopped => "stopped".into(),
        Answer::AlreadyStopped { .. } => "already-stopped".into(),
        Answer::Removed => "removed".into(),
        Answer::Reloaded { .. } => "reloaded".into(),
        Answer::Failed { kind, .. } => kind.as_str().into(),
    }
}

fn user(verb: Verb, waiter: WaiterId) -> Event {
    Event::User { verb, waiter }
}

fn main_role(attempt: Attempt, restart: Option<RestartReason>) -> Role {
    Role::Main { attempt, restart }
}

fn exited(gen: Gen) -> Event {
    Event::Exited { gen: gen.id, how: "exit code 3".into(), code: Some(3) }
}

fn online_a() -> Machine {
    check(
        Machine::new(),
        vec![
            (0, user(Verb::Start, 1), vec![Action::Spawn { role: main_role(Attempt::User, None) }], vec![], "stopped"),
            (0, Event::Spawned { gen: A, role: main_role(Attempt::User, None) }, vec![], vec![], "starting"),
            (10, Event::Ready { gen: A.id }, vec![], vec![(1, "online")], "online"),
        ],
    )
}

#[test]
fn start_stop_restart_delete() {
    let m = online_a();
    let m = check(
        m,
        vec![
            (20, user(Verb::Start, 2), vec![], vec![(2, "already-online")], "online"),
            (30, user(Verb::Stop, 3), vec![Action::SignalStop { gen: A.id }], vec![], "stopping"),
            (40, user(Verb::Stop, 4), vec![], vec![], "stopping"),
            (5030, Event::Deadline, vec![Action::Kill { gen: A.id }], vec![], "stopping"),
            (5040, exited(A), vec![], vec![(3, "stopped"), (4, "stopped")], "stopped"),
            (5050, user(Verb::Stop, 5), vec![], vec![(5, "already-stopped")], "stopped"),
            (5060, user(Verb::Remove, 6), vec![Action::Remove], vec![(6, "removed")], "stopped"),
        ],
    );
    assert!(m.removed);
}

#[test]
fn crash_restart_and_cutoff() {
    let auto = main_role(Attempt::Auto, Some(RestartReason::Crash));
    check(
        online_a(),
        vec![
            (100, exited(A), vec![], vec![], "waiting-restart"),
            (150, Event::Deadline, vec![], vec![], "waiting-restart"),
            (200, Event::Deadline, vec![Action::Spawn { role: auto.clone() }], vec![], "waiting-restart"),
            (200, Event::Spawned { gen: B, role: auto }, vec![], vec![], "starting"),
            // Not ready in time: asked to stop, then (automatic start) retried.
            (10_200, Event::Deadline, vec![Action::SignalStop { gen: B.id }], vec![], "stopping"),
            (10_300, exited(B), vec![], vec![], "waiting-restart"),
        ],
    );
}

/// Issue 14's reproduction: the serving generation dies while a reload's new one gets ready;
/// the new one carries on, the reload is answered by its readiness, and a stop reaches it.
#[test]
fn the_serving_generation_dying_mid_reload_leaves_the_new_one_owned() {
    let m = check(
        online_a(),
        vec![
            (
                100,
                user(Verb::Reload { wait_drain: false }, 2),
                vec![Action::Spawn { role: Role::Next }],
                vec![],
                "online",
            ),
            (100, Event::Spawned { gen: B, role: Role::Next }, vec![], vec![], "reloading"),
            (200, exited(A), vec![], vec![], "starting"),
            (3100, Event::Ready { gen: B.id }, vec![], vec![(2, "reloaded")], "online"),
            (3200, user(Verb::Stop, 3), vec![Action::SignalStop { gen: B.id }], vec![], "stopping"),
            (3300, exited(B), vec![], vec![(3, "stopped")], "stopped"),
        ],
    );
    assert!(m.live().is_empty());
}

#[test]
fn a_stop_mid_reload_kills_the_new_generation_and_waits_for_it() {
    check(
        online_a(),
        vec![
            (
                100,
                user(Verb::Reload { wait_drain: false }, 2),
                vec![Action::Spawn { role: Role::Next }],
                vec![],
                "online",
            ),
            (100, Event::Spawned { gen: B, role: Role::Next }, vec![], vec![], "reloading"),
            (
                200,
                user(Verb::Stop, 3),
                vec![Action::Kill { gen: B.id }, Action::SignalStop { gen: A.id }],
                vec![(2, "reload-failed")],
                "stopping",
            ),
            (300, exited(A), vec![], vec![], "stopped"),
            (400, exited(B), vec![], vec![(3, "stopped")], "stopped"),
        ],
    );
}

#[test]
fn a_reload_drains_the_old_generation_and_answers_when_it_is_gone() {
    let promote = Action::Promote { gen: B.id, old: A.id, reason: RestartReason::Reload };
    let auto = main_role(Attempt::Auto, Some(RestartReason::Crash));
    let m = check(
        online_a(),
        vec![
            (
                100,
                user(Verb::Reload { wait_drain: false }, 2),
                vec![Action::Spawn { role: Role::Next }],
                vec![],
                "online",
            ),
            (100, Event::Spawned { gen: B, role: Role::Next }, vec![], vec![], "reloading"),
            (300, Event::Ready { gen: B.id }, vec![promote, Action::SignalStop { gen: A.id }], vec![], "online"),
            (400, user(Verb::Reload { wait_drain: false }, 3), vec![], vec![(3, "busy")], "online"),
            // The new generation crashes while the old one drains: both are still owned.
            (500, exited(B), vec![], vec![], "waiting-restart"),
            (600, Event::Deadline, vec![Action::Spawn { role: auto.clone() }], vec![], "waiting-restart"),
            (600, Event::Spawned { gen: C, role: auto }, vec![], vec![], "starting"),
            (5300, Event::Deadline, vec![Action::Kill { gen: A.id }], vec![], "starting"),
            (5400, exited(A), vec![], vec![(2, "reloaded")], "starting"),
        ],
    );
    assert_eq!(m.live(), vec![C]);
}

#[test]
fn durations_near_the_end_of_time_do_not_overflow() {
    let mut p = policy();
    p.kill_timeout = Duration::MAX;
    p.ready_timeout = Duration::MAX;
    let m = online_a();
    let t = next(&m, user(Verb::Stop, 9), Instant::now(), &p);
    assert!(matches!(t.machine.state, Stopping { deadline: Some(_), .. }));
}

/// Minimal sequences the property test found while the machine was written, kept as rows.
#[test]
fn shrunk_sequences() {
    let rows: Vec<(bool, bool, Vec<Op>)> = vec![
        // The reproduction of issue 14: run against the machine before generations had ids,
        // the property test shrank to these first four steps ("stop asked, but pid 1002 was
        // never signalled", found after 103 passing cases).
        (
            false,
            true,
            vec![
                Op::User(Verb::Start),
                Op::Ready(0),
                Op::User(Verb::Reload { wait_drain: false }),
                Op::Exit(0),
                Op::User(Verb::Stop),
                Op::Wait(6000),
            ],
        ),
    ];
    for (i, (front, graceful, ops)) in rows.into_iter().enumerate() {
        if let Err(e) = run(front, graceful, &ops) {
            panic!("row {i}: {e}");
        }
    }
}
