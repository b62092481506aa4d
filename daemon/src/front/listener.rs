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
        let mut public = crate::listen::Listeners::default();
        public.ensure(std::slice::from_ref(addr))?;
        Self::over(addr, public)
    }

    /// A listener on a duplicate of `public`'s socket (bound for `addr`).
    pub(crate) fn over(
        addr: &mcpd_core::config::ListenAddr,
        public: crate::listen::Listeners,
    ) -> Result<(crate::listen::Listeners, PublicListener), String> {
        use mcpd_core::config::ListenAddr;
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

/// Accepts on the public socket until `shutdown` (or until the front freezes for an update
/// in place), one hyper connection task each and at most `max_connections` at once (more
/// wait in the listen backlog), and meanwhile expires idle sessions.
pub(crate) async fn serve(listener: PublicListener, front: Arc<Front>, shutdown: CancellationToken) {
    serve_with(listener, front, shutdown, Vec::new()).await
}

/// [`serve`], first taking back the client connections a previous daemon handed over.
pub(crate) async fn serve_handed(
    listener: PublicListener,
    front: Arc<Front>,
    shutdown: CancellationToken,
    handed: Vec<crate::handover::ConnState>,
) {
    serve_with(listener, front, shutdown, handed).await
}

async fn serve_with(
    listener: PublicListener,
    front: Arc<Front>,
    shutdown: CancellationToken,
    handed: Vec<crate::handover::ConnState>,
) {
    front.accepting.store(true, Ordering::Release);
    let _accepting = Accepting(front.clone());
    tokio::spawn(crate::boxed(super::sweep(front.clone(), shutdown.clone())));
    let slots = Arc::new(Slots::default());
    for c in handed {
        let slot = slots.take(usize::MAX).await;
        match Conn::adopt(&c) {
            Ok(conn) => connection(front.clone(), conn, c.peer, slot),
            Err(e) => tracing::warn!(error = %e, "front: cannot take over a client connection"),
        }
    }
    let mut failures = Throttled::default();
    let mut backoff = None;
    let freezing = front.freezing.clone();
    loop {
        let settings = front.settings();
        let (slot, accepted) = tokio::select! {
            a = async {
                let slot = slots.take(settings.max_connections).await;
                (slot, accept(&listener).await)
            } => a,
            _ = shutdown.cancelled() => return,
            // What is not accepted yet waits in the backlog for the next daemon.
            _ = freezing.cancelled() => return,
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
        connection(front.clone(), io, peer, slot);
    }
}

/// Serves one client connection on a task of its own. When the front freezes, the exchange
/// in progress is finished and the connection (with what was read of the next request) is
/// handed over instead of closed.
fn connection(front: Arc<Front>, io: Conn, peer: Option<String>, slot: Slot) {
    front.open.fetch_add(1, Ordering::AcqRel);
    tokio::spawn(crate::boxed(async move {
        let _slot = slot;
        let _open = Open(front.clone());
        let settings = front.settings();
        let max_body = settings.max_body;
        let tcp = io.is_tcp();
        let service = {
            let (front, peer) = (front.clone(), peer.clone());
            hyper::service::service_fn(move |req| {
                Box::pin(super::proxy::proxy(req, peer.clone(), front.clone(), max_body))
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
            })
        };
        // The header timeout runs from when the connection opens, and again from the end of
        // each response: it bounds both a slow sender of headers and an idle kept-alive
        // connection.
        let mut conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .max_buf_size(MAX_BUF)
            .serve_connection(TokioIo::new(io), service);
        let freezing = front.freezing.clone();
        tokio::select! {
            _ = &mut conn => return,
            _ = freezing.cancelled() => {}
        }
        std::pin::Pin::new(&mut conn).graceful_shutdown();
        let finished =
            tokio::time::timeout(FREEZE_EXCHANGE, std::future::poll_fn(|cx| conn.poll_without_shutdown(cx))).await;
        if !matches!(finished, Ok(Ok(()))) {
            return;
        }
        let parts = conn.into_parts();
        let mut read = parts.read_buf.to_vec();
        let (fd, rest) = match parts.io.into_inner().into_fd() {
            Ok(pair) => pair,
            Err(e) => return tracing::warn!(error = %e, "front: cannot hand over a client connection"),
        };
        read.extend_from_slice(&rest);
        use std::os::fd::IntoRawFd;
        let state = crate::handover::ConnState { fd: fd.into_raw_fd(), tcp, peer, read };
        front.handed.lock().expect("handed").push(state);
    }));
}

/// How long an exchange in progress has to finish when the daemon is updated in place; a
/// connection still busy then is closed.
pub(crate) const FREEZE_EXCHANGE: Duration = Duration::from_secs(10);

/// The accept loop of a front, marked while it runs.
struct Accepting(Arc<Front>);

impl Drop for Accepting {
    fn drop(&mut self) {
        self.0.accepting.store(false, Ordering::Release);
        self.0.closed.notify_waiters();
    }
}

/// A connection task of a front, counted while it runs.
struct Open(Arc<Front>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
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

/// A client connection of a front: its stream, and bytes already read from it (a connection
/// handed over between requests may carry the start of the next one).
#[derive(Debug)]
pub(crate) struct Conn {
    stream: Stream,
    prefix: bytes::Bytes,
}

#[derive(Debug)]
enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Conn {
    fn is_tcp(&self) -> bool {
        matches!(self.stream, Stream::Tcp(_))
    }

    /// The fd (blocking mode is left as it is: the next daemon registers it again) and the
    /// bytes read but not consumed.
    fn into_fd(self) -> std::io::Result<(std::os::fd::OwnedFd, Vec<u8>)> {
        let fd = match self.stream {
            Stream::Tcp(s) => std::os::fd::OwnedFd::from(s.into_std()?),
            Stream::Unix(s) => std::os::fd::OwnedFd::from(s.into_std()?),
        };
        Ok((fd, self.prefix.to_vec()))
    }

    /// A connection the previous daemon handed over.
    fn adopt(state: &crate::handover::ConnState) -> std::io::Result<Conn> {
        let fd = crate::handover::take(state.fd)?;
        let stream = if state.tcp {
            let s = std::net::TcpStream::from(fd);
            s.set_nonblocking(true)?;
            Stream::Tcp(tokio::net::TcpStream::from_std(s)?)
        } else {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            Stream::Unix(tokio::net::UnixStream::from_std(s)?)
        };
        Ok(Conn { stream, prefix: bytes::Bytes::from(state.read.clone()) })
    }
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let taken = self.prefix.split_to(n);
            buf.put_slice(&taken);
            return std::task::Poll::Ready(Ok(()));
        }
        match &mut self.stream {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.stream {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.stream {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.stream {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.stream {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A client that vanished without closing its connection (its host gone, a NAT that forgot it,
/// a cable pulled) is found instead of pinning its session and, for a stdio app, its child:
/// keepalive probes once the connection is idle for 30 s (3 of them, 10 s apart), and data
/// left unacknowledged for 45 s (an open stream's heartbeat) ends the connection. A client
/// that is there sees nothing of it.
fn detect_dead_peers(fd: std::os::fd::RawFd) {
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: setsockopt reads an int from our stack; a failure leaves the default.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 30);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
    set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, 45_000);
}

pub(crate) async fn accept(listener: &PublicListener) -> std::io::Result<(Conn, Option<String>)> {
    match listener {
        PublicListener::Tcp(l) => {
            let (s, addr) = l.accept().await?;
            let _ = s.set_nodelay(true);
            detect_dead_peers(std::os::fd::AsRawFd::as_raw_fd(&s));
            Ok((Conn { stream: Stream::Tcp(s), prefix: bytes::Bytes::new() }, Some(addr.ip().to_string())))
        }
        PublicListener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((Conn { stream: Stream::Unix(s), prefix: bytes::Bytes::new() }, None))
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
