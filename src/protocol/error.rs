//! Typed errors a script can branch on.

use serde::{Deserialize, Serialize};

/// The kind of a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A named app is not defined.
    UnknownApp,
    /// The request was malformed or not allowed (e.g. a bad config).
    InvalidRequest,
    /// Client and daemon speak different protocol versions.
    VersionMismatch,
    /// The app is in the middle of another operation.
    Busy,
    /// The daemon is shutting down.
    ShuttingDown,
    /// The daemon failed in a way the user cannot fix by changing the request.
    Internal,
    /// The other end is not who it must be (a socket served by another user).
    PermissionDenied,
}

/// A failed request: its kind and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ProtoError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// For the user.
    pub message: String,
}

impl ProtoError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ProtoError {
        ProtoError { kind, message: message.into() }
    }
}
