//! An app task's side of the MCP front: the public socket and its server, a private socket
//! per generation, and which generation takes new sessions.

use super::AppTask;
use crate::front::{self, Front};
use crate::supervisor::state::{Event, GenId, State};
use mcpd_core::config::{AppConfig, FrontConfig, OnToolsChange};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How long the reload guard may take to probe one generation.
const TOOLS_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Tells private sockets of one daemon apart.
static UPSTREAM_SEQ: AtomicU64 = AtomicU64::new(1);

/// The front of one app while it is defined.
#[derive(Debug)]
pub(crate) struct FrontRuntime {
    pub front: Arc<Front>,
    public: std::sync::Mutex<crate::listen::Listeners>,
    stop: CancellationToken,
}

impl FrontRuntime {
    /// Freezes the front for an update in place: it stops accepting (new clients wait in the
    /// backlog), ends the streams of GET requests, lets every other exchange in progress
    /// finish, and gives up its public socket, its sessions and its client connections.
    pub(crate) async fn freeze(&self, app: &str) -> crate::handover::FrontState {
        let front = &self.front;
        front.freezing.cancel();
        let deadline = tokio::time::Instant::now() + front::FREEZE_EXCHANGE + std::time::Duration::from_secs(1);
        // Done once the accept loop has returned (no connection can start after that) and
        // every connection task has ended, handed over or closed.
        loop {
            let closed = front.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if !front.accepting.load(Ordering::Acquire) && front.open.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                tracing::warn!(app, "front: connections still busy after the update's wait are closed");
                break;
            }
        }
        let public = self.public.lock().expect("public").hand_over().into_iter().next().unwrap_or(-1);
        crate::handover::FrontState {
            app: app.to_string(),
            public,
            sessions: front.sessions_table(),
            connections: std::mem::take(&mut *front.handed.lock().expect("handed")),
        }
    }

    /// The front a previous daemon handed over, with its sessions. It serves (its public
    /// socket and client connections) once [`AdoptedFront::serve`] is called: after the app
    /// tasks registered their generations, so no request meets a front that does not know
    /// where its session lives.
    pub(crate) fn adopt(state: crate::handover::FrontState, config: &FrontConfig) -> Result<AdoptedFront, String> {
        let runtime = crate::front_runtime::handle().map_err(|e| format!("cannot start the fronts' thread: {e}"))?;
        let public = crate::listen::Listeners::adopt(std::slice::from_ref(&config.listen), &[state.public])?;
        let (public, listener) = {
            let _in_front_runtime = runtime.enter();
            front::PublicListener::over(&config.listen, public)?
        };
        let front = Arc::new(Front::new(config.into()));
        front.restore(state.sessions);
        let stop = CancellationToken::new();
        let serve = front::serve_handed(listener, front.clone(), stop.clone(), state.connections);
        let front = Arc::new(FrontRuntime { front, public: std::sync::Mutex::new(public), stop });
        Ok(AdoptedFront { front, serve: crate::boxed(serve), runtime })
    }
}

/// A front taken over, not serving yet.
pub(crate) struct AdoptedFront {
    pub front: Arc<FrontRuntime>,
    serve: crate::Task,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for AdoptedFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdoptedFront").field("front", &self.front).finish_non_exhaustive()
    }
}

impl AdoptedFront {
    /// Starts serving, on the fronts' thread.
    pub(crate) fn serve(self) {
        self.runtime.spawn(self.serve);
    }
}

impl Drop for FrontRuntime {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What a generation is given: the fds to hand over, and its private socket if it has one.
pub(super) struct Handed {
    pub fds: Vec<RawFd>,
    pub upstream: Option<(PathBuf, OwnedFd)>,
}

impl AppTask {
    /// The fds for a new generation of `config`: the shared `listen` sockets, or with a front a
    /// private socket of its own (bound here; the front server is started on first use).
    pub(super) fn handed_sockets(&mut self, config: &AppConfig) -> Result<Handed, String> {
        let Some(fc) = &config.front else {
            self.listeners.ensure(&config.listen)?;
            return Ok(Handed { fds: self.listeners.fds(), upstream: None });
        };
        self.ensure_front(fc)?;
        let seq = UPSTREAM_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self.ctx.paths.run_dir().join(format!("{}.{seq}.upstream", config.name));
        let _ = std::fs::remove_file(&path);
        let socket = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| format!("cannot create the private socket {}: {e}", path.display()))?;
        let fd = OwnedFd::from(socket);
        Ok(Handed { fds: vec![fd.as_raw_fd()], upstream: Some((path, fd)) })
    }

    fn ensure_front(&mut self, config: &FrontConfig) -> Result<(), String> {
        let wanted = std::slice::from_ref(&config.listen);
        if let Some(f) = self.front.as_ref().filter(|f| f.public.lock().expect("public").matches(wanted)) {
            f.front.configure(config.into());
            return Ok(());
        }
        let mut slot = self.shared.front.lock().expect("front lock");
        if let Some(existing) = slot.upgrade().filter(|f| f.public.lock().expect("public").matches(wanted)) {
            // Another instance of the app opened it.
            existing.front.configure(config.into());
            self.snap.front = Some(existing.front.clone());
            self.front = Some(existing);
            return Ok(());
        }
        self.front = None;
        // Bound and served on the fronts' own thread (see `front_runtime`).
        let runtime = crate::front_runtime::handle().map_err(|e| format!("cannot start the fronts' thread: {e}"))?;
        let (public, listener) = {
            let _in_front_runtime = runtime.enter();
            front::PublicListener::bind(&config.listen)?
        };
        let front = Arc::new(Front::new(config.into()));
        let stop = CancellationToken::new();
        runtime.spawn(crate::boxed(front::serve(listener, front.clone(), stop.clone())));
        tracing::info!(app = %self.snap.config.name, listen = %config.listen, "front listening");
        let runtime = Arc::new(FrontRuntime { front, public: std::sync::Mutex::new(public), stop });
        *slot = Arc::downgrade(&runtime);
        self.front = Some(runtime);
        self.snap.front = self.front.as_ref().map(|f| f.front.clone());
        Ok(())
    }

    /// New sessions go to the generation that serves: online (or still serving while its
    /// successor gets ready); none while starting or stopping (the front answers 503).
    pub(super) fn sync_front(&self) {
        if let Some(f) = &self.front {
            let primary = match self.machine.state {
                State::Online { gen, .. } | State::Reloading { gen, .. } => Some(gen.pid),
                _ => None,
            };
            f.front.set_primary(self.instance, primary);
        }
    }

    /// With `on_tools_change` set, holds back the readiness of a reload's new generation until
    /// its tools are compared with the old one's (each probed on its private socket). Returns
    /// whether it did.
    pub(super) fn guard_tools(&mut self, gen: GenId) -> bool {
        let State::Reloading { gen: old, next, .. } = self.machine.state else { return false };
        let Some(config) = self.gens.get(&gen).map(|l| l.config.clone()) else { return false };
        let (Some(front), Some(url)) = (self.front(), config.mcp_url().map(str::to_string)) else { return false };
        if next.id != gen || config.on_tools_change == OnToolsChange::Allow {
            return false;
        }
        let (old, pid) = (old.pid, next.pid);
        let (old_socket, new_socket) = (front.socket_of(old), front.socket_of(pid));
        let tx = self.reports_tx.clone();
        tokio::spawn(crate::boxed(async move {
            let hash = |socket: Option<PathBuf>| {
                let url = url.clone();
                async move {
                    let socket = socket.ok_or("the generation has no private socket")?;
                    mcpd_core::mcp::probe_via(&url, Some(&socket), TOOLS_PROBE_TIMEOUT)
                        .await
                        .map(|r| r.tools_hash)
                        .map_err(|e| e.to_string())
                }
            };
            let hashes = match (hash(old_socket).await, hash(new_socket).await) {
                (Ok(a), Ok(b)) => Ok((a, b)),
                (Err(e), _) => Err(format!("cannot probe the old generation: {e}")),
                (_, Err(e)) => Err(format!("cannot probe the new generation: {e}")),
            };
            let _ = tx.send(crate::supervisor::ready::Report::Tools { pid, hashes: Box::new(hashes) }).await;
        }));
        true
    }

    /// The guard's verdict: ready as usual, ready with a warning, or refused (rolled back).
    pub(super) fn tools_compared(&mut self, pid: u32, hashes: Result<(String, String), String>) {
        let State::Reloading { gen: old, next, .. } = self.machine.state else { return };
        if next.pid != pid {
            return;
        }
        let (old, gen) = (old.pid, next.id);
        let policy = self.gens.get(&gen).map_or(self.snap.config.on_tools_change, |l| l.config.on_tools_change);
        let problem = match hashes {
            Ok((a, b)) if a == b => None,
            Ok((a, b)) => {
                Some(format!("the new generation's tools differ from the old one's (tools_hash {b}, was {a})"))
            }
            Err(e) => Some(format!("the tools could not be compared: {e}")),
        };
        match (problem, policy) {
            (Some(problem), OnToolsChange::Refuse) => {
                let reason = format!("{problem}; on_tools_change = \"refuse\": the new generation was killed and pid {old} keeps serving");
                self.step(Event::Refused { gen, reason });
            }
            (problem, _) => {
                if let Some(problem) = problem {
                    tracing::warn!(app = %self.snap.config.name, "{problem}");
                    self.tools_note = Some(problem);
                }
                self.step(Event::Ready { gen });
            }
        }
    }

    /// The front, for the generation drain and the health probe.
    pub(super) fn front(&self) -> Option<Arc<Front>> {
        self.front.as_ref().map(|f| f.front.clone())
    }
}
