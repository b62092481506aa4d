//! The front's requests: each is streamed to the chosen generation's private socket and the
//! answer streamed back, event by event, without buffering a body (bodies of requests are
//! bounded by `max_body`).

use super::{Front, Miss};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

type Reply = Response<BoxBody<Bytes, hyper::Error>>;

/// Headers that describe one connection, never passed on.
pub(crate) const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// Removes the headers of one hop (those named in `Connection` too) before a message is passed on.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

/// The `Mcp-Session-Id` of a request or response; one that is not visible ASCII counts as none.
pub(crate) fn session_id(headers: &HeaderMap) -> Option<String> {
    headers.get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn plain(status: StatusCode, text: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
    r
}

/// What an expired, deleted or unknown session gets, as the spec has a server answer.
fn session_not_found() -> Reply {
    let body = r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#;
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).map_err(|never| match never {}).boxed());
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// How long a body too large to pass is read and dropped before the 413 is sent.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads and drops up to `max` bytes of a body that will not be passed on (and for at most
/// [`DRAIN_TIME`]): a client still writing its body when the 413 and the close come would
/// get a reset instead of the answer.
async fn drain(mut body: Incoming, max: u64) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0u64;
        while read <= max {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                _ => break,
            }
        }
    })
    .await;
}

/// 413; the connection is closed, as the rest of the body is not read.
fn too_large(max_body: u64) -> Reply {
    let mut r = plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is larger than {max_body} bytes (front.max_body)\n"),
    );
    r.headers_mut().insert("connection", HeaderValue::from_static("close"));
    r
}

pub(super) async fn proxy(
    req: Request<Incoming>,
    peer: Option<String>,
    front: Arc<Front>,
    max_body: u64,
) -> Result<Reply, std::convert::Infallible> {
    if req.body().size_hint().lower() > max_body {
        drain(req.into_body(), max_body).await;
        return Ok(too_large(max_body));
    }
    let session = session_id(req.headers());
    let route = match front.route(session.as_deref()) {
        Ok(route) => route,
        Err(Miss::UnknownSession) => return Ok(session_not_found()),
        Err(Miss::NotReady) => {
            let mut r =
                plain(StatusCode::SERVICE_UNAVAILABLE, "no generation of this app is ready; try again shortly\n");
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            return Ok(r);
        }
    };
    let mut done = session.clone().map(|s| Done { front: front.clone(), session: s });
    let is_delete = req.method() == hyper::Method::DELETE;
    let is_get = req.method() == hyper::Method::GET;
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
    // A body without a length (chunked) is cut at the bound as it streams.
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let upstream = Request::from_parts(parts, Limited::new(body, limit));
    // Until its answer is in (also if the client goes away first), a session-less request
    // counts as load on its generation.
    let awaiting = Awaiting { front: front.clone(), route: route.clone() };
    let (response, sender) = match send(&front, &route.socket, upstream).await {
        Ok(r) => r,
        Err(e) if e.too_large() => return Ok(too_large(max_body)),
        Err(e) => {
            tracing::warn!(pid = route.pid, error = %e, "front: the generation did not answer");
            return Ok(plain(StatusCode::BAD_GATEWAY, "the app's process did not answer\n"));
        }
    };
    let minted = session_id(response.headers());
    if let (None, Some(id)) = (&session, minted) {
        // The session is in use until this response (maybe a stream) ends.
        front.pin(&id, route.pid);
        done = Some(Done { front: front.clone(), session: id });
    }
    drop(awaiting);
    if let (true, Some(id), true) = (is_delete, &session, response.status().is_success()) {
        front.unpin(id);
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // A GET's event stream may last as long as its session: it ends when the daemon is
    // updated in place (the client opens it again), so its connection can be handed over.
    let events = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let cut = (is_get && events).then(|| Box::pin(front.freezing.clone().cancelled_owned()));
    let reuse = Some(Reuse { front: front.clone(), socket: route.socket.clone(), sender });
    let tracked = Tracked { inner: body, _done: done, reuse, cut, at_boundary: true, ended: false };
    Ok(Response::from_parts(parts, tracked.boxed()))
}

/// A request body as it goes to a generation: the client's, cut at `max_body`.
type UpBody = Limited<Incoming>;

/// A keep-alive connection to a generation's private socket.
pub(crate) type Upstream = hyper::client::conn::http1::SendRequest<UpBody>;

/// Why a request did not get an answer from its generation.
#[derive(Debug)]
enum SendError {
    Connect(String),
    Http(hyper::Error),
}

impl SendError {
    /// Whether the client's body went past `max_body` on its way.
    fn too_large(&self) -> bool {
        let SendError::Http(e) = self else { return false };
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            if cause.is::<http_body_util::LengthLimitError>() {
                return true;
            }
            source = cause.source();
        }
        false
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => f.write_str(e),
            SendError::Http(e) => write!(f, "{e}"),
        }
    }
}

/// Sends on an idle pooled connection to `socket` when one is ready, else on a new one.
async fn send(
    front: &Front,
    socket: &std::path::Path,
    request: Request<UpBody>,
) -> Result<(Response<Incoming>, Upstream), SendError> {
    let mut sender = match front.take_idle(socket) {
        Some(sender) => sender,
        None => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| SendError::Connect(format!("connect to {}: {e}", socket.display())))?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(SendError::Http)?;
            tokio::spawn(crate::boxed(async move {
                let _ = conn.await;
            }));
            let mut sender = sender;
            sender.ready().await.map_err(SendError::Http)?;
            sender
        }
    };
    let response = sender.send_request(request).await.map_err(SendError::Http)?;
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
    /// Ends the body when the front freezes (a GET's stream).
    cut: Option<Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>>,
    /// The data so far ends between two events (an SSE stream can take a `retry:` field).
    at_boundary: bool,
    /// Cut: the hint was sent; the body ends.
    ended: bool,
}

/// The last thing a GET's event stream carries when the daemon is updated in place: clients
/// open the stream again after this long (the TypeScript SDK does on a clean end).
const RETRY_HINT: &[u8] = b"retry: 250\n\n";

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(cut) = &mut self.cut {
            if cut.as_mut().poll(cx).is_ready() {
                // The upstream connection is dropped mid-stream: never pooled.
                self.reuse = None;
                self.cut = None;
                self.ended = true;
                // Between events, a retry hint first; inside one, the event is cut (the
                // client drops an event that never ended).
                if self.at_boundary {
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(RETRY_HINT)))));
                }
                return Poll::Ready(None);
            }
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                self.at_boundary = data.ends_with(b"\n\n") || data.ends_with(b"\r\n\r\n");
            }
        }
        if let Poll::Ready(None) = polled {
            if let Some(r) = self.reuse.take() {
                r.front.put_idle(r.socket, r.sender);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
