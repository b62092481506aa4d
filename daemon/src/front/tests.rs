use super::*;

/// A session minted by `pid` whose initialize response has ended.
fn minted(front: &Front, session: &str, pid: u32) {
    front.pin(session, pid);
    front.done(session);
}

/// Every idle session, and only those, waits in the expiry index.
fn check_index(front: &Front) {
    let r = front.routes.lock().unwrap();
    let idle = r.pins.values().filter(|p| p.active == 0).count();
    assert_eq!(r.expiry.len(), idle, "one expiry entry per idle session");
    for ((last, seq), id) in &r.expiry {
        let pin = &r.pins[id];
        assert_eq!((pin.last, pin.seq, pin.active), (*last, *seq, 0), "{id}");
    }
}

#[test]
fn sessions_stay_with_the_generation_that_minted_them() {
    let front = Front::default();
    assert_eq!(front.route(None), Err(Miss::NotReady), "no ready generation: nothing to route to (503)");
    front.add(1, "/run/a.1".into());
    front.set_primary(0, Some(1));
    assert_eq!(front.route(None).unwrap().pid, 1);
    minted(&front, "s1", 1);
    front.add(2, "/run/a.2".into());
    front.set_primary(0, Some(2));
    assert_eq!(front.route(None).unwrap().pid, 2, "new sessions go to the new generation");
    assert_eq!(front.route(Some("s1")).unwrap().pid, 1, "a session stays where it was minted");
    assert_eq!(front.route(Some("unknown")), Err(Miss::UnknownSession), "an id nobody holds gets 404");
    assert!(front.busy(1, Duration::from_secs(30)));
    front.done("s1");
    assert!(!front.busy(1, Duration::ZERO), "idle once its requests ended and the idle time passed");
    front.unpin("s1");
    assert!(!front.busy(1, Duration::from_secs(30)), "a deleted session holds nothing");
    minted(&front, "s2", 1);
    front.remove(1);
    assert_eq!(front.route(Some("s2")), Err(Miss::UnknownSession), "a crashed generation's sessions are gone (404)");
    assert_eq!(front.sessions(), [(2, 0)]);
    check_index(&front);
}

#[test]
fn new_sessions_go_to_the_instance_with_the_fewest() {
    let front = Front::default();
    for (instance, pid) in [(0, 10), (1, 11)] {
        front.add(pid, format!("/run/a.{pid}").into());
        front.set_primary(instance, Some(pid));
    }
    minted(&front, "a", 10);
    minted(&front, "b", 10);
    let answer = |route: Route| {
        front.answered(&route);
        route.pid
    };
    assert_eq!(answer(front.route(None).unwrap()), 11, "the instance without sessions takes the next one");
    minted(&front, "c", 11);
    assert_eq!(answer(front.route(None).unwrap()), 11, "1 session against 2");
    minted(&front, "d", 11);
    let picks: std::collections::BTreeSet<u32> = (0..4).map(|_| answer(front.route(None).unwrap())).collect();
    assert_eq!(picks, [10, 11].into(), "equal loads take turns (stateless requests are spread)");
    let burst: Vec<u32> = (0..4).map(|_| front.route(None).unwrap().pid).collect();
    assert_eq!(
        (burst.iter().filter(|p| **p == 10).count(), burst.len()),
        (2, 4),
        "initializes not yet answered count: a burst is spread even if one instance is slow to answer"
    );
    front.unpin("a");
    front.set_primary(0, None);
    assert_eq!(front.route(None).unwrap().pid, 11, "an instance restarting takes no new sessions");
    assert_eq!(front.route(Some("b")).unwrap().pid, 10, "but keeps serving its own");
    assert_eq!(front.sessions(), [(10, 1), (11, 2)]);
    check_index(&front);
}

#[test]
fn idle_sessions_expire_and_placement_counts_live_ones_only() {
    let idle = Duration::from_secs(30);
    let front = Front::new(Settings { session_idle: idle, ..Settings::default() });
    for (instance, pid) in [(0, 10), (1, 11)] {
        front.add(pid, format!("/run/a.{pid}").into());
        front.set_primary(instance, Some(pid));
    }
    minted(&front, "idle", 10);
    minted(&front, "calling", 10);
    front.route(Some("calling")).unwrap();
    front.pin("streaming", 11); // its initialize answer is an SSE stream still open
    minted(&front, "reused", 11);
    front.route(Some("reused")).unwrap();
    front.done("reused");
    check_index(&front);
    let start = Instant::now();
    assert_eq!(front.expire(start, 100), (0, false), "nothing has been idle long enough");
    let later = start + idle + Duration::from_secs(1);
    assert_eq!(front.expire(later, 100), (2, false), "the idle sessions go; in flight and open streams stay");
    assert_eq!(front.route(Some("idle")), Err(Miss::UnknownSession), "an expired session gets 404");
    assert_eq!(front.route(Some("reused")), Err(Miss::UnknownSession));
    assert_eq!(front.sessions(), [(10, 1), (11, 1)]);
    let picks: std::collections::BTreeSet<u32> = (0..2)
        .map(|_| {
            let route = front.route(None).unwrap();
            front.answered(&route);
            route.pid
        })
        .collect();
    assert_eq!(picks, [10, 11].into(), "one live session each: expired ones weigh nothing");
    front.done("calling");
    front.done("streaming");
    check_index(&front);
    let much_later = Instant::now() + idle;
    assert_eq!(front.expire(much_later, 1), (1, true), "a sweep removes at most its batch");
    assert_eq!(front.expire(much_later, 1), (1, false));
    assert_eq!(front.sessions(), [(10, 0), (11, 0)]);
    assert_eq!(front.routes.lock().unwrap().counts.values().sum::<usize>(), 0, "no load left behind");
    check_index(&front);
}

#[test]
fn deleted_and_crashed_sessions_leave_the_expiry_index() {
    let front = Front::default();
    front.add(1, "/run/a.1".into());
    front.set_primary(0, Some(1));
    for id in ["a", "b", "c"] {
        minted(&front, id, 1);
    }
    front.unpin("a");
    minted(&front, "b", 1); // the same id minted again replaces the pin
    check_index(&front);
    front.route(Some("c")).unwrap();
    front.remove(1);
    front.done("c");
    check_index(&front);
    assert!(front.routes.lock().unwrap().expiry.is_empty());
}

#[test]
fn a_burst_of_abandoned_sessions_gives_its_memory_back() {
    let front = Front::new(Settings { session_idle: Duration::from_secs(1), ..Settings::default() });
    front.add(1, "/run/a.1".into());
    front.set_primary(0, Some(1));
    for i in 0..10_000 {
        minted(&front, &format!("{i:032x}"), 1);
    }
    let later = Instant::now() + Duration::from_secs(2);
    let mut rounds = 0;
    while front.expire(later, EXPIRE_BATCH).1 {
        rounds += 1;
        assert!(rounds < 10, "each batch removes EXPIRE_BATCH sessions");
    }
    let r = front.routes.lock().unwrap();
    assert!(r.pins.is_empty() && r.expiry.is_empty());
    assert!(r.pins.capacity() <= 64, "the table shrank back (capacity {})", r.pins.capacity());
}

#[test]
fn the_sweep_runs_often_enough_and_never_busily() {
    assert_eq!(sweep_period(Duration::from_secs(2)), Duration::from_millis(500));
    assert_eq!(sweep_period(Duration::from_secs(30)), Duration::from_secs(1));
    assert_eq!(sweep_period(Duration::ZERO), Duration::from_millis(10));
}
