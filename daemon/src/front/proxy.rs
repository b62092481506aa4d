//! The front's HTTP/1.1 server (hyper): each request is streamed to the chosen generation's
//! private socket and the answer streamed back, event by event, without buffering a body.

use super::Front;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_util::sync::CancellationToken;

type Reply = Response<BoxBody<Bytes, hyper::Error>>;

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

/// Accepts on the public socket until `shutdown`, one hyper connection task each.
pub(crate) async fn serve(listener: PublicListener, front: Arc<Front>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = shutdown.cancelled() => return,
        };
        let (io, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "front: accept failed");
                continue;
            }
        };
        let front = front.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| proxy(req, peer.clone(), front.clone()));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
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

const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter_map(|s| HeaderName::from_bytes(s.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

fn plain(status: StatusCode, text: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
    r
}

async fn proxy(
    req: Request<Incoming>,
    peer: Option<String>,
    front: Arc<Front>,
) -> Result<Reply, std::convert::Infallible> {
    let session = req.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let Some(route) = front.route(session.as_deref()) else {
        let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "no generation of this app is ready; try again shortly\n");
        r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        return Ok(r);
    };
    let done = session.clone().map(|s| Done { front: front.clone(), session: s });
    let is_delete = req.method() == hyper::Method::DELETE;
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(ip) = peer {
        let forwarded = match parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded) {
            parts.headers.insert("x-forwarded-for", v);
        }
    }
    if let Some(pq) = parts.uri.path_and_query().cloned() {
        parts.uri = pq.as_str().parse().unwrap_or(parts.uri);
    }
    let upstream = Request::from_parts(parts, body);
    // Until its answer is in (also if the client goes away first), a session-less request
    // counts as load on its generation.
    let awaiting = Awaiting { front: front.clone(), route: route.clone() };
    let (response, sender) = match send(&front, &route.socket, upstream).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(pid = route.pid, error = %e, "front: the generation did not answer");
            return Ok(plain(StatusCode::BAD_GATEWAY, "the app's process did not answer\n"));
        }
    };
    let minted = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let (None, Some(id)) = (&session, &minted) {
        front.pin(id, route.pid);
    }
    drop(awaiting);
    if let (true, Some(id), true) = (is_delete, &session, response.status().is_success()) {
        front.unpin(id);
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let reuse = Some(Reuse { front: front.clone(), socket: route.socket.clone(), sender });
    Ok(Response::from_parts(parts, Tracked { inner: body, _done: done, reuse }.boxed()))
}

/// A keep-alive connection to a generation's private socket.
pub(crate) type Upstream = hyper::client::conn::http1::SendRequest<Incoming>;

/// Sends on an idle pooled connection to `socket` when one is ready, else on a new one.
async fn send(
    front: &Front,
    socket: &std::path::Path,
    request: Request<Incoming>,
) -> Result<(Response<Incoming>, Upstream), String> {
    let mut sender = match front.take_idle(socket) {
        Some(sender) => sender,
        None => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| format!("connect to {}: {e}", socket.display()))?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut sender = sender;
            sender.ready().await.map_err(|e| e.to_string())?;
            sender
        }
    };
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    Ok((response, sender))
}

/// A session-less request on its way to a generation.
struct Awaiting {
    front: Arc<Front>,
    route: super::Route,
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        self.front.answered(&self.route);
    }
}

/// Marks a session's request done when its response (or stream) ends.
struct Done {
    front: Arc<Front>,
    session: String,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.front.done(&self.session);
    }
}

/// The upstream connection of a response, pooled again once the body was read to its end.
struct Reuse {
    front: Arc<Front>,
    socket: std::path::PathBuf,
    sender: Upstream,
}

/// A response body that tells the routing table when it is finished or dropped.
struct Tracked {
    inner: Incoming,
    _done: Option<Done>,
    reuse: Option<Reuse>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(r) = self.reuse.take() {
                r.front.put_idle(r.socket, r.sender);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
