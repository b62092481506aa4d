//! A client of the daemon's control socket, used by the CLI, the TUI and tests.

use crate::paths::Paths;
use crate::protocol::frame::{self, codec};
use crate::protocol::{Hello, HelloReply, ProtoError, Request, Response, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use std::path::PathBuf;
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Why talking to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket (missing, or a stale file).
    #[error("no mcpd daemon is running on {}: {source}", socket.display())]
    NotRunning {
        /// The socket path tried.
        socket: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// The daemon speaks another protocol version.
    #[error("the running daemon refused this client: {0} (run `mcpd kill` and start again with this mcpd)")]
    Refused(ProtoError),
    /// The connection broke mid-conversation.
    #[error("lost the connection to the daemon: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon closed the connection without answering.
    #[error("the daemon closed the connection without answering")]
    Closed,
    /// The request is larger than one frame may be; nothing was sent.
    #[error(
        "the request is {bytes} bytes, over the {} bytes one control request may carry; nothing was sent: ask for less at a time",
        frame::MAX_FRAME_BYTES
    )]
    TooLarge {
        /// Its size as JSON.
        bytes: usize,
    },
    /// The daemon sent something this client cannot read.
    #[error("could not read the daemon's answer: {0}")]
    Decode(#[from] frame::DecodeError),
}

/// A connected, greeted client.
#[derive(Debug)]
pub struct Client {
    framed: Framed<UnixStream, LengthDelimitedCodec>,
    /// The daemon's pid, from its welcome.
    pub daemon_pid: u32,
}

impl Client {
    /// Connects to the daemon of `paths` and exchanges hellos.
    pub async fn connect(paths: &Paths) -> Result<Client, ClientError> {
        let socket = paths.socket();
        let stream = UnixStream::connect(&socket)
            .await
            .map_err(|source| ClientError::NotRunning { socket: socket.clone(), source })?;
        // Nothing is sent (a request may carry secrets) to a socket another user serves.
        // SAFETY: geteuid cannot fail and touches no memory.
        let me = unsafe { libc::geteuid() };
        let server = stream.peer_cred().map_err(ClientError::Io)?.uid();
        if server != 0 && server != me {
            return Err(ClientError::Refused(ProtoError::new(
                crate::protocol::ErrorKind::PermissionDenied,
                format!(
                    "{} is served by uid {server}, neither root nor you (uid {me}): not sending anything; check who can write to {}",
                    socket.display(),
                    paths.home().display()
                ),
            )));
        }
        let mut framed = Framed::new(stream, codec());
        framed.send(frame::encode(&Hello::current())).await?;
        let reply: HelloReply = match framed.next().await {
            Some(frame) => frame::decode(&frame?)?,
            None => return Err(ClientError::Closed),
        };
        match reply {
            HelloReply::Welcome { protocol, pid, .. } if protocol == PROTOCOL_VERSION => {
                Ok(Client { framed, daemon_pid: pid })
            }
            HelloReply::Welcome { protocol, daemon_version, .. } => Err(ClientError::Refused(ProtoError::new(
                crate::protocol::ErrorKind::VersionMismatch,
                format!("daemon {daemon_version} speaks protocol {protocol}, this client {PROTOCOL_VERSION}"),
            ))),
            HelloReply::Refused(e) => Err(ClientError::Refused(e)),
        }
    }

    /// The next frame of a streaming answer (`logs --follow`); `None` when the daemon closed.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        match self.framed.next().await {
            Some(frame) => Ok(Some(frame::decode(&frame?)?)),
            None => Ok(None),
        }
    }

    /// Sends one request and waits for its response.
    pub async fn call(&mut self, request: impl Into<Request>) -> Result<Response, ClientError> {
        let payload = frame::encode(&request.into());
        if payload.len() > frame::MAX_FRAME_BYTES {
            return Err(ClientError::TooLarge { bytes: payload.len() });
        }
        self.framed.send(payload).await?;
        match self.framed.next().await {
            Some(frame) => Ok(frame::decode(&frame?)?),
            None => Err(ClientError::Closed),
        }
    }
}
