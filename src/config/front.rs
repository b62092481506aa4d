//! `front = { listen = ADDR, ... }`: mcpd's own HTTP front routing MCP sessions to the
//! generation that owns them.

use super::{duration_ms, ListenAddr};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a reload does when the new generation's tools differ from the old one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnToolsChange {
    /// Go ahead.
    #[default]
    Allow,
    /// Go ahead, and say so in the reload's answer and the log.
    Warn,
    /// Roll back: kill the new generation, keep the old one serving.
    Refuse,
}

/// Default bound on the client connections a front holds open at once.
pub const DEFAULT_FRONT_MAX_CONNECTIONS: usize = 1024;
/// Default time a client has to send a request's headers (from connecting, or from the end of
/// its previous response on a kept-alive connection).
pub const DEFAULT_FRONT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on a request body (a JSON-RPC message or batch).
pub const DEFAULT_FRONT_MAX_BODY: u64 = 4 << 20;

/// The front of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontConfig {
    /// The public socket mcpd owns (`127.0.0.1:3000`, `tcp://...`, `unix:/path`).
    pub listen: ListenAddr,
    /// A session idle this long (no request in flight, no open stream) is forgotten, and an
    /// old generation is stopped once each of its sessions has been idle this long.
    #[serde(with = "duration_ms")]
    pub session_idle_timeout: Duration,
    /// ...or at the latest this long after the reload.
    #[serde(with = "duration_ms")]
    pub drain_deadline: Duration,
    /// Client connections held open at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time to send a request's headers, and the idle time allowed between two requests.
    #[serde(with = "duration_ms", default = "default_header_timeout")]
    pub header_timeout: Duration,
    /// Largest request body accepted (413 above it).
    #[serde(default = "default_max_body")]
    pub max_body: u64,
}

fn default_max_connections() -> usize {
    DEFAULT_FRONT_MAX_CONNECTIONS
}

fn default_header_timeout() -> Duration {
    DEFAULT_FRONT_HEADER_TIMEOUT
}

fn default_max_body() -> u64 {
    DEFAULT_FRONT_MAX_BODY
}

impl FrontConfig {
    /// A front on `listen` with the default timeouts (30 s idle, 10 min deadline) and bounds.
    pub fn new(listen: ListenAddr) -> FrontConfig {
        FrontConfig {
            listen,
            session_idle_timeout: Duration::from_secs(30),
            drain_deadline: Duration::from_secs(600),
            max_connections: DEFAULT_FRONT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_FRONT_HEADER_TIMEOUT,
            max_body: DEFAULT_FRONT_MAX_BODY,
        }
    }
}
