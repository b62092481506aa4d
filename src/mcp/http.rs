//! A small HTTP/1.1 client for the probe (hyper): one connection per request, bodies read
//! frame by frame so a reply stream can be cut as soon as the awaited message arrived.

use super::reply;
use super::ProbeError;
use crate::config::HttpUrl;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use serde_json::Value;

/// A reply: status, content type, the session header, and the body read so far.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub session: Option<String>,
    pub body: Vec<u8>,
}

/// Where requests go: the URL's host and port, or a Unix socket (a generation's private
/// socket behind a front) with the URL's path and host header.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: HttpUrl,
    pub unix: Option<std::path::PathBuf>,
}

type Request = hyper::Request<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>;

async fn exchange<IO>(io: IO, request: Request, what: &str) -> Result<hyper::Response<Incoming>, ProbeError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| ProbeError::Unreachable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(request).await.map_err(|e| ProbeError::Unreachable(format!("{what}: {e}")))
}

async fn send(target: &Target, request: Request) -> Result<hyper::Response<Incoming>, ProbeError> {
    match &target.unix {
        Some(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| ProbeError::Unreachable(format!("connect to {}: {e}", path.display())))?;
            exchange(stream, request, &path.display().to_string()).await
        }
        None => {
            let authority = &target.url.authority;
            let stream = tokio::net::TcpStream::connect(authority)
                .await
                .map_err(|e| ProbeError::Unreachable(format!("connect to {authority}: {e}")))?;
            exchange(stream, request, authority).await
        }
    }
}

fn builder(method: &str, url: &Target, path: &str, headers: &[(&str, String)]) -> hyper::http::request::Builder {
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, url.url.authority.as_str())
        .header(hyper::header::USER_AGENT, concat!("mcpd-probe/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b
}

fn head(response: &hyper::Response<Incoming>) -> (u16, String, Option<String>) {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    (response.status().as_u16(), header("content-type").unwrap_or_default(), header("mcp-session-id"))
}

/// POSTs a JSON-RPC message; for a request (`wait_for = Some(id)`) reads until its response.
pub async fn post(
    url: &Target,
    path: &str,
    headers: &[(&str, String)],
    message: &Value,
    wait_for: Option<u64>,
) -> Result<Reply, ProbeError> {
    let body = Full::new(Bytes::from(serde_json::to_vec(message).expect("JSON"))).boxed();
    let request = builder("POST", url, path, headers)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .map_err(|e| ProbeError::NotMcp(e.to_string()))?;
    let mut response = send(url, request).await?;
    let (status, content_type, session) = head(&response);
    let mut body = Vec::new();
    while let Some(frame) = response.body_mut().frame().await {
        let frame = frame.map_err(|e| ProbeError::Unreachable(format!("the reply broke off: {e}")))?;
        if let Some(data) = frame.data_ref() {
            body.extend_from_slice(data);
        }
        // An SSE reply may stay open after the response: stop once it is there.
        if let (Some(id), true) = (wait_for, content_type.starts_with("text/event-stream")) {
            if reply::messages(&content_type, &body)
                .is_ok_and(|m| reply::result_of(&m, id).is_ok() || m.iter().any(|v| v["id"] == id))
            {
                break;
            }
        }
    }
    Ok(Reply { status, content_type, session, body })
}

/// The status of `GET url` (a readiness or health URL).
pub async fn get_status(url: &Target) -> Result<u16, ProbeError> {
    let request = builder("GET", url, &url.url.path, &[])
        .body(Empty::new().boxed())
        .map_err(|e| ProbeError::NotMcp(e.to_string()))?;
    Ok(send(url, request).await?.status().as_u16())
}

/// DELETEs a session (best effort).
pub async fn delete(url: &Target, headers: &[(&str, String)]) -> Result<u16, ProbeError> {
    let request = builder("DELETE", url, &url.url.path, headers)
        .body(Empty::new().boxed())
        .map_err(|e| ProbeError::NotMcp(e.to_string()))?;
    Ok(send(url, request).await?.status().as_u16())
}

/// An open SSE stream (the deprecated HTTP+SSE transport's GET).
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    buf: String,
}

impl EventStream {
    /// Opens `GET path` as an event stream.
    pub async fn open(url: &Target, path: &str) -> Result<EventStream, ProbeError> {
        let request = builder("GET", url, path, &[("accept", "text/event-stream".into())])
            .body(Empty::new().boxed())
            .map_err(|e| ProbeError::NotMcp(e.to_string()))?;
        let response = send(url, request).await?;
        let (status, content_type, _) = head(&response);
        if status != 200 || !content_type.starts_with("text/event-stream") {
            return Err(ProbeError::NotMcp(format!("GET {path} answered {status} {content_type}")));
        }
        Ok(EventStream { body: response.into_body(), buf: String::new() })
    }

    /// The next complete event.
    pub async fn next(&mut self) -> Result<(String, String), ProbeError> {
        loop {
            if let Some(end) = self.buf.find("\n\n").or_else(|| self.buf.find("\r\n\r\n")) {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(event) = reply::sse_events(&block).into_iter().next() {
                    return Ok(event);
                }
                continue;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.buf.push_str(&String::from_utf8_lossy(data));
                    }
                }
                Some(Err(e)) => return Err(ProbeError::Unreachable(format!("the event stream broke off: {e}"))),
                None => return Err(ProbeError::NotMcp("the event stream ended".into())),
            }
        }
    }
}
