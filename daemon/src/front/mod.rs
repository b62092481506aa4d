//! The MCP front: mcpd owns an app's public socket, and each generation listens on a private
//! socket of its own. A request carrying an `Mcp-Session-Id` goes to the generation that
//! minted that session; anything else goes to a primary generation (the newest ready one of
//! each instance; with several, the one holding the fewest sessions). So a reload keeps every
//! session on the process that holds it in memory, while new sessions go to the new generation.
//!
//! The table forgets a session once it has been idle (nothing in flight, no open stream) for
//! `session_idle_timeout`; its later requests get 404, as a crashed generation's would, so the
//! client starts a new session.

mod listener;
mod proxy;
#[cfg(test)]
mod tests;

pub(crate) use listener::{accept, serve, serve_handed, PublicListener, FREEZE_EXCHANGE};
pub(crate) use proxy::{session_id, strip_hop_by_hop, HOP_BY_HOP};

use mcpd_core::config::FrontConfig;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A session pinned to a generation.
#[derive(Debug, Clone)]
struct Pin {
    pid: u32,
    /// When it was last used; while `active` is 0, its key in [`Routes::expiry`] is
    /// `(last, seq)`.
    last: Instant,
    seq: u64,
    /// Requests (and open streams) of the session in flight.
    active: u32,
}

#[derive(Debug, Default)]
struct Routes {
    /// Every live generation's private socket.
    upstreams: HashMap<u32, PathBuf>,
    /// Where new sessions and session-less requests go: per instance, its serving generation.
    primaries: BTreeMap<u32, u32>,
    pins: HashMap<Arc<str>, Pin>,
    /// The sessions with nothing in flight, oldest first: what the sweep expires. It holds one
    /// entry per idle session (added when its last request or stream ends, removed when it is
    /// used again, deleted or expired), so it is never larger than `pins`.
    expiry: BTreeMap<(Instant, u64), Arc<str>>,
    /// Tells apart sessions that went idle at the same instant.
    seq: u64,
    /// Sessions pinned to each generation, plus session-less requests awaiting its answer
    /// (an initialize counts before its session exists, so a burst of them is spread too).
    counts: HashMap<u32, usize>,
    /// Breaks ties between primaries with as many sessions (stateless servers have none).
    turn: usize,
}

/// The bounds of one front, from its app's config (the newest generation's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub session_idle: Duration,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_body: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        let addr = mcpd_core::config::ListenAddr::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        Settings::from(&FrontConfig::new(addr))
    }
}

impl From<&FrontConfig> for Settings {
    fn from(c: &FrontConfig) -> Settings {
        Settings {
            session_idle: c.session_idle_timeout,
            max_connections: c.max_connections,
            header_timeout: c.header_timeout,
            max_body: c.max_body,
        }
    }
}

/// The routing table of one app's front, and its idle upstream connections.
#[derive(Default)]
pub(crate) struct Front {
    routes: Mutex<Routes>,
    idle: Mutex<HashMap<PathBuf, Vec<(proxy::Upstream, Instant)>>>,
    settings: Mutex<Settings>,
    /// Cancelled when the daemon is updated in place: accepting stops, open streams of GET
    /// requests end, and each client connection is handed over once its exchange is done.
    pub(crate) freezing: CancellationToken,
    /// Client connections given up for the next daemon (bounded by `max_connections`).
    pub(crate) handed: Mutex<Vec<crate::handover::ConnState>>,
    /// Connection tasks running (each ends handed over or closed).
    pub(crate) open: std::sync::atomic::AtomicUsize,
    /// The accept loop runs (it may still start a connection task).
    pub(crate) accepting: std::sync::atomic::AtomicBool,
    pub(crate) closed: tokio::sync::Notify,
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
/// Sessions expired under one hold of the routing lock, so a sweep of many delays a request by
/// at most this many removals.
const EXPIRE_BATCH: usize = 1024;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub pid: u32,
    pub socket: PathBuf,
    /// Sent to a primary without a session: counted as load until [`Front::answered`].
    pub fresh: bool,
}

/// Why a request has nowhere to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// No generation takes new sessions (none is ready): 503.
    NotReady,
    /// The session is not in the table (expired, deleted, or its generation is gone): 404.
    UnknownSession,
}

impl Front {
    /// A front with `settings` (from the app's config).
    pub fn new(settings: Settings) -> Front {
        Front { settings: Mutex::new(settings), ..Front::default() }
    }

    /// Applies the bounds of the newest config (a reload may change them).
    pub fn configure(&self, settings: Settings) {
        *self.settings.lock().expect("settings") = settings;
    }

    /// The bounds in force.
    pub fn settings(&self) -> Settings {
        *self.settings.lock().expect("settings")
    }

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
        let Routes { pins, expiry, .. } = &mut *r;
        pins.retain(|_, p| {
            if p.pid == pid && p.active == 0 {
                expiry.remove(&(p.last, p.seq));
            }
            p.pid != pid
        });
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
    pub fn route(&self, session: Option<&str>) -> Result<Route, Miss> {
        let mut r = self.routes.lock().expect("routes");
        let Some(session) = session else {
            let pid = Self::least_loaded(&mut r).ok_or(Miss::NotReady)?;
            let socket = r.upstreams.get(&pid).ok_or(Miss::NotReady)?.clone();
            *r.counts.entry(pid).or_default() += 1;
            return Ok(Route { pid, socket, fresh: true });
        };
        let Routes { pins, expiry, upstreams, .. } = &mut *r;
        let pin = pins.get_mut(session).ok_or(Miss::UnknownSession)?;
        let socket = upstreams.get(&pin.pid).ok_or(Miss::UnknownSession)?.clone();
        if pin.active == 0 {
            expiry.remove(&(pin.last, pin.seq));
        }
        pin.active += 1;
        pin.last = Instant::now();
        Ok(Route { pid: pin.pid, socket, fresh: false })
    }

    /// Every session and the generation holding it (handed over by `mcpd update`).
    pub fn sessions_table(&self) -> Vec<(String, u32)> {
        self.routes.lock().expect("routes").pins.iter().map(|(id, p)| (id.to_string(), p.pid)).collect()
    }

    /// Sessions a previous daemon routed, each idle from now.
    pub fn restore(&self, sessions: Vec<(String, u32)>) {
        let mut r = self.routes.lock().expect("routes");
        let now = Instant::now();
        for (id, pid) in sessions {
            r.seq += 1;
            let seq = r.seq;
            let id: Arc<str> = Arc::from(id);
            r.expiry.insert((now, seq), id.clone());
            *r.counts.entry(pid).or_default() += 1;
            if let Some(old) = r.pins.insert(id, Pin { pid, last: now, seq, active: 0 }) {
                Self::forget(&mut r, &old);
            }
        }
    }

    /// The answer to a session-less request came back (its session, if any, is pinned by now).
    pub fn answered(&self, route: &Route) {
        if route.fresh {
            Self::uncount(&mut self.routes.lock().expect("routes"), route.pid);
        }
    }

    /// A request (or its response stream) of `session` ended.
    pub fn done(&self, session: &str) {
        let mut r = self.routes.lock().expect("routes");
        let Routes { pins, expiry, seq, .. } = &mut *r;
        let Some(id) = pins.get_key_value(session).map(|(id, _)| id.clone()) else { return };
        let Some(pin) = pins.get_mut(&id) else { return };
        pin.active = pin.active.saturating_sub(1);
        pin.last = Instant::now();
        if pin.active == 0 {
            *seq += 1;
            pin.seq = *seq;
            expiry.insert((pin.last, pin.seq), id);
        }
    }

    /// `pid` minted `session` (the response to an initialize carried it). The response is
    /// still on its way, so the session starts active: [`Front::done`] when it ends.
    pub fn pin(&self, session: &str, pid: u32) {
        let mut r = self.routes.lock().expect("routes");
        let pin = Pin { pid, last: Instant::now(), seq: 0, active: 1 };
        if let Some(old) = r.pins.insert(Arc::from(session), pin) {
            Self::forget(&mut r, &old);
        }
        *r.counts.entry(pid).or_default() += 1;
    }

    /// The session was deleted.
    pub fn unpin(&self, session: &str) {
        let mut r = self.routes.lock().expect("routes");
        if let Some(old) = r.pins.remove(session) {
            Self::forget(&mut r, &old);
        }
    }

    /// Undoes what a pin that left the table added elsewhere.
    fn forget(r: &mut Routes, pin: &Pin) {
        if pin.active == 0 {
            r.expiry.remove(&(pin.last, pin.seq));
        }
        Self::uncount(r, pin.pid);
    }

    fn uncount(r: &mut Routes, pid: u32) {
        if let Some(n) = r.counts.get_mut(&pid) {
            *n = n.saturating_sub(1);
        }
    }

    /// Forgets at most `max` sessions idle since `now - session_idle` or longer, oldest first;
    /// returns how many it forgot and whether more are due. It looks at nothing but the
    /// sessions it removes (the index is ordered by idle time), so its cost does not grow with
    /// the sessions in use.
    pub fn expire(&self, now: Instant, max: usize) -> (usize, bool) {
        let idle = self.settings().session_idle;
        let due = |since: &Instant| now.saturating_duration_since(*since) >= idle;
        let mut r = self.routes.lock().expect("routes");
        let mut removed = 0;
        while removed < max {
            let Some(entry) = r.expiry.first_entry() else { break };
            if !due(&entry.key().0) {
                break;
            }
            let id = entry.remove();
            if let Some(pin) = r.pins.remove(&id) {
                Self::uncount(&mut r, pin.pid);
            }
            removed += 1;
        }
        // A table that held a burst of sessions gives the memory back once they are gone.
        let len = r.pins.len();
        if removed > 0 && r.pins.capacity() > 64 && r.pins.capacity() / 4 > len {
            r.pins.shrink_to(len * 2);
        }
        (removed, r.expiry.first_key_value().is_some_and(|(k, _)| due(&k.0)))
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
        let mut counts: BTreeMap<u32, usize> = r.upstreams.keys().map(|pid| (*pid, 0)).collect();
        for pin in r.pins.values() {
            if let Some(n) = counts.get_mut(&pin.pid) {
                *n += 1;
            }
        }
        counts.into_iter().collect()
    }

    /// Whether `pid` still has a session in use or used within `idle`.
    pub fn busy(&self, pid: u32, idle: Duration) -> bool {
        let r = self.routes.lock().expect("routes");
        r.pins.values().any(|p| p.pid == pid && (p.active > 0 || p.last.elapsed() < idle))
    }
}

/// Sessions expired since the last trim after which the freed memory is handed back to the system.
const TRIM_AFTER: usize = 1024;

/// Hands the heap's free pages back to the system (glibc keeps them otherwise: a burst of
/// sessions would leave the daemon that much bigger for good). It walks the heap, so it runs
/// off the async thread.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    drop(tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim only returns free memory of the allocator to the system.
        unsafe { libc::malloc_trim(0) };
    }));
}

/// How often the sweep runs: a quarter of the idle timeout, so a session goes at most 25 %
/// past it, and at least once a second.
fn sweep_period(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Expires idle sessions until `stop`. Each round removes the sessions due at its start, in
/// batches of [`EXPIRE_BATCH`] with a yield between: sessions going idle meanwhile are not due
/// yet, so a round ends after (due sessions / batch) batches.
pub(crate) async fn sweep(front: Arc<Front>, stop: CancellationToken) {
    let mut freed = 0;
    loop {
        let period = sweep_period(front.settings().session_idle);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => return,
        }
        let now = Instant::now();
        let mut expired = 0;
        loop {
            let (removed, more) = front.expire(now, EXPIRE_BATCH);
            expired += removed;
            if !more {
                break;
            }
            tokio::task::yield_now().await;
        }
        if expired > 0 {
            tracing::debug!(expired, "front: idle sessions expired");
        }
        freed += expired;
        if freed >= TRIM_AFTER {
            freed = 0;
            give_back_memory();
        }
    }
}
