//! The MCP front: mcpd owns an app's public socket, and each generation listens on a private
//! socket of its own. A request carrying an `Mcp-Session-Id` goes to the generation that
//! minted that session; anything else goes to the primary (newest ready) generation. So a
//! reload keeps every session on the process that holds it in memory, while new sessions go
//! to the new generation.

mod proxy;

pub(crate) use proxy::{serve, PublicListener};

use std::collections::HashMap;
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
    /// Where new sessions and session-less requests go.
    primary: Option<u32>,
    pins: HashMap<String, Pin>,
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
        if r.primary == Some(pid) {
            r.primary = None;
        }
    }

    /// New sessions go to `pid` (or nowhere: 503).
    pub fn set_primary(&self, pid: Option<u32>) {
        let mut r = self.routes.lock().expect("routes");
        r.primary = pid.filter(|p| r.upstreams.contains_key(p));
    }

    /// Picks the generation for a request, counting it as active for its session.
    pub fn route(&self, session: Option<&str>) -> Option<Route> {
        let mut r = self.routes.lock().expect("routes");
        let pinned = session.and_then(|s| r.pins.get(s)).map(|p| p.pid).filter(|pid| r.upstreams.contains_key(pid));
        let pid = pinned.or(r.primary)?;
        let socket = r.upstreams.get(&pid)?.clone();
        if let Some(pin) = session.and_then(|s| r.pins.get_mut(s)) {
            pin.active += 1;
            pin.last = Instant::now();
        }
        Some(Route { pid, socket })
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
        r.pins.insert(session.to_string(), Pin { pid, last: Instant::now(), active: 0 });
    }

    /// The session was deleted.
    pub fn unpin(&self, session: &str) {
        self.routes.lock().expect("routes").pins.remove(session);
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
        front.set_primary(Some(1));
        assert_eq!(front.route(None).unwrap().pid, 1);
        front.pin("s1", 1);
        front.add(2, "/run/a.2".into());
        front.set_primary(Some(2));
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
}
