use super::*;

const POLICY: Policy = Policy {
    restart_delay: Duration::from_millis(100),
    kill_timeout: Duration::from_secs(5),
};

/// (from, event, at, to, actions, note)
type Row = (State, Event, Instant, State, Vec<Action>, Option<Note>);

#[test]
fn transitions() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let online = Online { pid: 7, since: t0 };
    let stopping = |then| Stopping {
        pid: 7,
        deadline: Some(ms(5000)),
        then,
    };
    let errored = Errored {
        reason: "boom".into(),
    };
    let spawn = |restart| vec![Action::Spawn { restart }];
    // (from, event, at, to, actions, note)
    let table: Vec<Row> = vec![
        (Stopped, Event::Start, t0, Stopped, spawn(false), None),
        (
            errored.clone(),
            Event::Start,
            t0,
            errored.clone(),
            spawn(false),
            None,
        ),
        (
            Stopped,
            Event::Spawned { pid: 7 },
            t0,
            online.clone(),
            vec![],
            None,
        ),
        (
            Stopped,
            Event::SpawnFailed {
                reason: "no such file".into(),
            },
            t0,
            Errored {
                reason: "no such file".into(),
            },
            vec![],
            None,
        ),
        (
            online.clone(),
            Event::Start,
            t0,
            online.clone(),
            vec![],
            Some(Note::AlreadyOnline),
        ),
        (
            online.clone(),
            Event::Exited,
            t0,
            WaitingRestart { until: ms(100) },
            vec![],
            None,
        ),
        (
            WaitingRestart { until: ms(100) },
            Event::Deadline,
            ms(99),
            WaitingRestart { until: ms(100) },
            vec![],
            None,
        ),
        (
            WaitingRestart { until: ms(100) },
            Event::Deadline,
            ms(100),
            WaitingRestart { until: ms(100) },
            spawn(true),
            None,
        ),
        (
            WaitingRestart { until: ms(100) },
            Event::Stop,
            t0,
            Stopped,
            vec![],
            None,
        ),
        (
            WaitingRestart { until: ms(100) },
            Event::Start,
            t0,
            WaitingRestart { until: ms(100) },
            spawn(true),
            None,
        ),
        (
            online.clone(),
            Event::Stop,
            t0,
            stopping(Then::Stop),
            vec![Action::SignalStop],
            None,
        ),
        (
            online.clone(),
            Event::Restart,
            t0,
            stopping(Then::Start),
            vec![Action::SignalStop],
            None,
        ),
        (
            online.clone(),
            Event::Remove,
            t0,
            stopping(Then::Remove),
            vec![Action::SignalStop],
            None,
        ),
        (
            Stopped,
            Event::Stop,
            t0,
            Stopped,
            vec![],
            Some(Note::AlreadyStopped),
        ),
        (
            errored.clone(),
            Event::Stop,
            t0,
            errored.clone(),
            vec![],
            Some(Note::AlreadyStopped),
        ),
        (Stopped, Event::Restart, t0, Stopped, spawn(true), None),
        (
            Stopped,
            Event::Remove,
            t0,
            Stopped,
            vec![Action::Remove],
            None,
        ),
        (
            stopping(Then::Stop),
            Event::Exited,
            t0,
            Stopped,
            vec![],
            None,
        ),
        (
            stopping(Then::Start),
            Event::Exited,
            t0,
            Stopped,
            spawn(true),
            None,
        ),
        (
            stopping(Then::Remove),
            Event::Exited,
            t0,
            Stopped,
            vec![Action::Remove],
            None,
        ),
        (
            stopping(Then::Stop),
            Event::Start,
            t0,
            stopping(Then::Start),
            vec![],
            None,
        ),
        (
            stopping(Then::Start),
            Event::Stop,
            t0,
            stopping(Then::Stop),
            vec![],
            None,
        ),
        (
            stopping(Then::Remove),
            Event::Stop,
            t0,
            stopping(Then::Remove),
            vec![],
            None,
        ),
        (
            stopping(Then::Stop),
            Event::Remove,
            t0,
            stopping(Then::Remove),
            vec![],
            None,
        ),
        (
            stopping(Then::Stop),
            Event::Deadline,
            ms(4999),
            stopping(Then::Stop),
            vec![],
            None,
        ),
        (
            stopping(Then::Stop),
            Event::Deadline,
            ms(5000),
            Stopping {
                pid: 7,
                deadline: None,
                then: Then::Stop,
            },
            vec![Action::Kill],
            None,
        ),
        (
            Stopping {
                pid: 7,
                deadline: None,
                then: Then::Stop,
            },
            Event::Deadline,
            ms(9000),
            Stopping {
                pid: 7,
                deadline: None,
                then: Then::Stop,
            },
            vec![],
            None,
        ),
        (Stopped, Event::Exited, t0, Stopped, vec![], None),
    ];
    for (i, (from, event, at, want_state, want_actions, want_note)) in table.into_iter().enumerate()
    {
        let label = format!("row {i}: {from:?} + {event:?}");
        let got = next(&from, event, at, &POLICY);
        assert_eq!(got.state, want_state, "{label}");
        assert_eq!(got.actions, want_actions, "{label}");
        assert_eq!(got.note, want_note, "{label}");
    }
}

#[test]
fn deadlines_and_status() {
    let t0 = Instant::now();
    let cases = [
        (Stopped, None, AppStatus::Stopped),
        (Online { pid: 1, since: t0 }, None, AppStatus::Online),
        (
            Stopping {
                pid: 1,
                deadline: Some(t0),
                then: Then::Stop,
            },
            Some(t0),
            AppStatus::Stopping,
        ),
        (
            WaitingRestart { until: t0 },
            Some(t0),
            AppStatus::WaitingRestart,
        ),
        (
            Errored {
                reason: String::new(),
            },
            None,
            AppStatus::Errored,
        ),
    ];
    for (state, deadline, status) in cases {
        assert_eq!(state.deadline(), deadline, "{state:?}");
        assert_eq!(state.status(), status, "{state:?}");
    }
}
