//! The MCP front: mcpd owns an app's public socket, and each generation listens on a private
//! socket of its own. A request carrying an `Mcp-Session-Id` goes to the generation that
//! minted that session; anything else goes to a primary generation (the newest ready one of
//! each instance; with several, the one holding the fewest sessions). So a reload keeps every
//! session on the process that holds it in memory, while new sessions go to the new generation.

mod proxy;

pub(crate) use proxy::{accept, serve, PublicListener};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session pinned to a generation.
#[derive(Debug, Clone)]
struct Pin {
    pid: u32,
    last: Instant,
    /// Requests (and open streams) of the session in flight.
    active: u32,
}

#[derive(Debug, Default)]
struct Routes {
    /// Every live generation's private socket.
    upstreams: HashMap<u32, PathBuf>,
    /// Where new sessions and session-less requests go: per instance, its serving generation.
    primaries: BTreeMap<u32, u32>,
    pins: HashMap<String, Pin>,
    /// Sessions pinned to each generation, plus session-less requests awaiting its answer
    /// (an initialize counts before its session exists, so a burst of them is spread too).
    counts: HashMap<u32, usize>,
    /// Breaks ties between primaries with as many sessions (stateless servers have none).
    turn: usize,
}

/// The routing table of one app's front, and its idle upstream connections.
#[derive(Default)]
pub(crate) struct Front {
    routes: Mutex<Routes>,
    idle: Mutex<HashMap<PathBuf, Vec<(proxy::Upstream, Instant)>>>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front").field("routes", &self.routes).finish_non_exhaustive()
    }
}

/// A pooled connection idle longer than this is dropped rather than reused, well before the
/// app's own keep-alive timeout could close it under a request.
const IDLE_REUSE: Duration = Duration::from_secs(1);
/// Idle connections kept per generation.
const IDLE_MAX: usize = 64;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub pid: u32,
    pub socket: PathBuf,
    /// Sent to a primary without a session: counted as load until [`Front::answered`].
    pub fresh: bool,
}

impl Front {
    /// A generation's private socket exists (it is not routed to until primary or pinned).
    pub fn add(&self, pid: u32, socket: PathBuf) {
        self.routes.lock().expect("routes").upstreams.insert(pid, socket);
    }

    /// A generation is gone: its sessions are gone too.
    pub fn remove(&self, pid: u32) {
        let mut r = self.routes.lock().expect("routes");
        if let Some(socket) = r.upstreams.remove(&pid) {
            self.idle.lock().expect("idle").remove(&socket);
        }
        r.pins.retain(|_, p| p.pid != pid);
        r.counts.remove(&pid);
        r.primaries.retain(|_, p| *p != pid);
    }

    /// New sessions of `instance` go to `pid` (or, with `None`, to the other instances; with
    /// none left, nowhere: 503).
    pub fn set_primary(&self, instance: u32, pid: Option<u32>) {
        let mut r = self.routes.lock().expect("routes");
        match pid.filter(|p| r.upstreams.contains_key(p)) {
            Some(pid) => r.primaries.insert(instance, pid),
            None => r.primaries.remove(&instance),
        };
    }

    /// The primary holding the fewest sessions; ties take turns.
    fn least_loaded(r: &mut Routes) -> Option<u32> {
        let fewest = r.primaries.values().map(|pid| r.counts.get(pid).copied().unwrap_or(0)).min()?;
        let tied: Vec<u32> =
            r.primaries.values().copied().filter(|pid| r.counts.get(pid).copied().unwrap_or(0) == fewest).collect();
        r.turn = r.turn.wrapping_add(1);
        Some(tied[r.turn % tied.len()])
    }

    /// Picks the generation for a request, counting it as active for its session.
    pub fn route(&self, session: Option<&str>) -> Option<Route> {
        let mut r = self.routes.lock().expect("routes");
        let pinned = session.and_then(|s| r.pins.get(s)).map(|p| p.pid).filter(|pid| r.upstreams.contains_key(pid));
        let (pid, fresh) = match pinned {
            Some(pid) => (pid, false),
            None => (Self::least_loaded(&mut r)?, true),
        };
        let socket = r.upstreams.get(&pid)?.clone();
        if fresh {
            *r.counts.entry(pid).or_default() += 1;
        }
        if let Some(pin) = session.and_then(|s| r.pins.get_mut(s)) {
            pin.active += 1;
            pin.last = Instant::now();
        }
        Some(Route { pid, socket, fresh })
    }

    /// The answer to a session-less request came back (its session, if any, is pinned by now).
    pub fn answered(&self, route: &Route) {
        if route.fresh {
            Self::uncount(&mut self.routes.lock().expect("routes"), route.pid);
        }
    }

    /// A request (or its response stream) of `session` ended.
    pub fn done(&self, session: &str) {
        if let Some(pin) = self.routes.lock().expect("routes").pins.get_mut(session) {
            pin.active = pin.active.saturating_sub(1);
            pin.last = Instant::now();
        }
    }

    /// `pid` minted `session` (the response to an initialize carried it).
    pub fn pin(&self, session: &str, pid: u32) {
        let mut r = self.routes.lock().expect("routes");
        if let Some(old) = r.pins.insert(session.to_string(), Pin { pid, last: Instant::now(), active: 0 }) {
            Self::uncount(&mut r, old.pid);
        }
        *r.counts.entry(pid).or_default() += 1;
    }

    /// The session was deleted.
    pub fn unpin(&self, session: &str) {
        let mut r = self.routes.lock().expect("routes");
        if let Some(old) = r.pins.remove(session) {
            Self::uncount(&mut r, old.pid);
        }
    }

    fn uncount(r: &mut Routes, pid: u32) {
        if let Some(n) = r.counts.get_mut(&pid) {
            *n = n.saturating_sub(1);
        }
    }

    /// An idle connection to `socket` that is ready for a request, if one is pooled.
    pub(crate) fn take_idle(&self, socket: &std::path::Path) -> Option<proxy::Upstream> {
        let mut idle = self.idle.lock().expect("idle");
        let list = idle.get_mut(socket)?;
        while let Some((sender, since)) = list.pop() {
            if since.elapsed() < IDLE_REUSE && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// Pools a connection whose response was read to its end.
    pub(crate) fn put_idle(&self, socket: PathBuf, sender: proxy::Upstream) {
        if !self.routes.lock().expect("routes").upstreams.values().any(|s| *s == socket) {
            return;
        }
        let mut idle = self.idle.lock().expect("idle");
        let list = idle.entry(socket).or_default();
        if list.len() < IDLE_MAX {
            list.push((sender, Instant::now()));
        }
    }

    /// A generation's private socket.
    pub fn socket_of(&self, pid: u32) -> Option<PathBuf> {
        self.routes.lock().expect("routes").upstreams.get(&pid).cloned()
    }

    /// How many sessions each generation holds.
    pub fn sessions(&self) -> Vec<(u32, usize)> {
        let r = self.routes.lock().expect("routes");
        let mut counts: Vec<(u32, usize)> =
            r.upstreams.keys().map(|pid| (*pid, r.pins.values().filter(|p| p.pid == *pid).count())).collect();
        counts.sort();
        counts
    }

    /// Whether `pid` still has a session in use or used within `idle`.
    pub fn busy(&self, pid: u32, idle: Duration) -> bool {
        let r = self.routes.lock().expect("routes");
        r.pins.values().any(|p| p.pid == pid && (p.active > 0 || p.last.elapsed() < idle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_stay_with_the_generation_that_minted_them() {
        let front = Front::default();
        assert_eq!(front.route(None), None, "no ready generation: nothing to route to (503)");
        front.add(1, "/run/a.1".into());
        front.set_primary(0, Some(1));
        assert_eq!(front.route(None).unwrap().pid, 1);
        front.pin("s1", 1);
        front.add(2, "/run/a.2".into());
        front.set_primary(0, Some(2));
        assert_eq!(front.route(None).unwrap().pid, 2, "new sessions go to the new generation");
        assert_eq!(front.route(Some("s1")).unwrap().pid, 1, "a session stays where it was minted");
        assert_eq!(
            front.route(Some("unknown")).unwrap().pid,
            2,
            "an unknown id goes to the newest (which answers 404)"
        );
        assert!(front.busy(1, Duration::from_secs(30)));
        front.done("s1");
        assert!(!front.busy(1, Duration::ZERO), "idle once its requests ended and the idle time passed");
        front.unpin("s1");
        assert!(!front.busy(1, Duration::from_secs(30)), "a deleted session holds nothing");
        front.pin("s2", 1);
        front.remove(1);
        assert_eq!(front.route(Some("s2")).unwrap().pid, 2, "a crashed generation's sessions go to the newest (404)");
        assert_eq!(front.sessions(), [(2, 0)]);
    }

    #[test]
    fn new_sessions_go_to_the_instance_with_the_fewest() {
        let front = Front::default();
        for (instance, pid) in [(0, 10), (1, 11)] {
            front.add(pid, format!("/run/a.{pid}").into());
            front.set_primary(instance, Some(pid));
        }
        front.pin("a", 10);
        front.pin("b", 10);
        let answer = |route: Route| {
            front.answered(&route);
            route.pid
        };
        assert_eq!(answer(front.route(None).unwrap()), 11, "the instance without sessions takes the next one");
        front.pin("c", 11);
        assert_eq!(answer(front.route(None).unwrap()), 11, "1 session against 2");
        front.pin("d", 11);
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
    }
}
