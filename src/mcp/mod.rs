//! The MCP probe: does an HTTP endpoint speak MCP, which revision, which tools?
//!
//! It tries the 2026-07-28 stateless revision (`server/discover`, then `tools/list`), then the
//! handshake revisions up to 2025-11-25 (`initialize`, `notifications/initialized`,
//! `tools/list`, `ping`, then `DELETE` of the session so probes never leak sessions), then the
//! deprecated HTTP+SSE transport (`GET /sse`, `event: endpoint`, POSTs answered on the stream).

pub mod http;
mod probe;
pub mod reply;

pub use http::Target;
pub use probe::{probe, probe_via, tools_hash, ProbeReport};

/// Why a probe failed; `mcpd probe` exits with a different code for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Nothing answered (connect refused, timeout, broken connection).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Something answered, but not MCP.
    #[error("not MCP: {0}")]
    NotMcp(String),
    /// It speaks MCP but a request failed.
    #[error("MCP protocol error: {0}")]
    Protocol(String),
}
