//! The front's public socket: binding it, and the accept loop with its bounds (connections at
//! once, time for a request's headers and between requests, header size, backoff on accept
//! errors), each connection served by hyper with [`super::proxy`].

use super::Front;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The public socket of a front.
#[derive(Debug)]
pub(crate) enum PublicListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl PublicListener {
    /// Binds `addr` (as `listen` sockets are bound); returns the owner of the socket and a
    /// listener on a duplicate of it.
    pub(crate) fn bind(
        addr: &mcpd_core::config::ListenAddr,
    ) -> Result<(crate::listen::Listeners, PublicListener), String> {
        use mcpd_core::config::ListenAddr;
        let mut public = crate::listen::Listeners::default();
        public.ensure(std::slice::from_ref(addr))?;
        let fd = public.fds()[0];
        // SAFETY: `fd` is the listening socket `public` owns; it is duplicated, not taken.
        let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().map_err(|e| e.to_string())?;
        let listener = match addr {
            ListenAddr::Tcp(_) => {
                let l = std::net::TcpListener::from(dup);
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                PublicListener::Tcp(tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?)
            }
            ListenAddr::Unix(_) => {
                let l = std::os::unix::net::UnixListener::from(dup);
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                PublicListener::Unix(tokio::net::UnixListener::from_std(l).map_err(|e| e.to_string())?)
            }
        };
        Ok((public, listener))
    }
}

/// Client connections' read buffer bound, which is also the largest header block accepted
/// (431 above it): hyper's default (~400 KiB) times `max_connections` would be a lot of memory.
const MAX_BUF: usize = 64 << 10;

/// Accepts on the public socket until `shutdown`, one hyper connection task each and at most
/// `max_connections` at once (more wait in the listen backlog), and meanwhile expires idle
/// sessions.
pub(crate) async fn serve(listener: PublicListener, front: Arc<Front>, shutdown: CancellationToken) {
    tokio::spawn(crate::boxed(super::sweep(front.clone(), shutdown.clone())));
    let slots = Arc::new(Slots::default());
    let mut failures = Throttled::default();
    let mut backoff = None;
    loop {
        let settings = front.settings();
        let (slot, accepted) = tokio::select! {
            a = async {
                let slot = slots.take(settings.max_connections).await;
                (slot, accept(&listener).await)
            } => a,
            _ = shutdown.cancelled() => return,
        };
        let (io, peer) = match accepted {
            Ok(pair) => {
                backoff = None;
                pair
            }
            Err(e) => {
                if let Some(suppressed) = failures.admit(Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "front: accept failed");
                }
                if !per_connection(&e) {
                    // Out of fds or memory: the pending connection stays queued, so retrying at
                    // once would spin.
                    let pause = next_backoff(backoff);
                    backoff = Some(pause);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                continue;
            }
        };
        let front = front.clone();
        tokio::spawn(crate::boxed(async move {
            let _slot = slot;
            let max_body = settings.max_body;
            let service =
                hyper::service::service_fn(move |req| super::proxy::proxy(req, peer.clone(), front.clone(), max_body));
            // The header timeout runs from when the connection opens, and again from the end of
            // each response: it bounds both a slow sender of headers and an idle kept-alive
            // connection.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(settings.header_timeout)
                .max_buf_size(MAX_BUF)
                .serve_connection(io, service)
                .await;
        }));
    }
}

/// The open client connections of one front, so that `serve` stops accepting at its bound.
#[derive(Default)]
struct Slots {
    open: AtomicUsize,
    freed: tokio::sync::Notify,
}

impl Slots {
    /// Waits until fewer than `limit` connections are open and counts one more. Only the accept
    /// loop takes slots, so nothing comes between the check and the count.
    async fn take(self: &Arc<Self>, limit: usize) -> Slot {
        loop {
            let freed = self.freed.notified();
            if self.open.load(Ordering::Acquire) < limit.max(1) {
                self.open.fetch_add(1, Ordering::AcqRel);
                return Slot(self.clone());
            }
            freed.await;
        }
    }
}

/// One open client connection; closing it frees its slot.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

/// Whether an accept error concerns only the connection being accepted (the next one may
/// well succeed at once) rather than the process (out of fds or memory).
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted)
}

/// The pause after an accept error that is not the connection's own: 100 ms, doubling to 1 s
/// while they repeat.
fn next_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(Duration::from_millis(100), |d| (d * 2).min(Duration::from_secs(1)))
}

/// At most one log line a second for a repeating failure; the line says how many were left out.
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// Whether to log a failure at `now`; if so, how many were not logged since the last line.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

pub(crate) type Io = TokioIo<Box<dyn IoStream>>;
pub(crate) trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> IoStream for T {}

pub(crate) async fn accept(listener: &PublicListener) -> std::io::Result<(Io, Option<String>)> {
    match listener {
        PublicListener::Tcp(l) => {
            let (s, addr) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((TokioIo::new(Box::new(s) as Box<dyn IoStream>), Some(addr.ip().to_string())))
        }
        PublicListener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((TokioIo::new(Box::new(s) as Box<dyn IoStream>), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_accept_failures_log_once_a_second_with_a_count() {
        let mut log = Throttled::default();
        let t0 = Instant::now();
        assert_eq!(log.admit(t0), Some(0), "the first failure is logged");
        let lines: Vec<Option<u64>> =
            (1..=20).map(|i| log.admit(t0 + Duration::from_millis(i * 100))).filter(Option::is_some).collect();
        assert_eq!(lines, [Some(9), Some(9)], "two seconds of failures every 100 ms: two lines, each with a count");
    }

    #[test]
    fn accept_errors_of_the_process_back_off_up_to_a_second() {
        let pauses: Vec<u64> = std::iter::successors(Some(next_backoff(None)), |d| Some(next_backoff(Some(*d))))
            .take(6)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert!(!per_connection(&std::io::Error::from_raw_os_error(libc::EMFILE)), "out of fds: back off");
        assert!(per_connection(&std::io::Error::from(std::io::ErrorKind::ConnectionAborted)), "retry at once");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_past_the_bound_wait_for_a_free_slot() {
        let slots = Arc::new(Slots::default());
        let held: Vec<Slot> = futures_util::future::join_all((0..2).map(|_| slots.take(2))).await;
        let third = tokio::time::timeout(Duration::from_millis(50), slots.take(2)).await;
        assert!(third.is_err(), "a third waits while two are open");
        drop(held);
        let third = tokio::time::timeout(Duration::from_secs(5), slots.take(2)).await;
        assert!(third.is_ok(), "a closed connection frees its slot");
        assert_eq!(slots.open.load(Ordering::Acquire), 1);
    }
}
