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

/// The front of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontConfig {
    /// The public socket mcpd owns (`127.0.0.1:3000`, `tcp://...`, `unix:/path`).
    pub listen: ListenAddr,
    /// An old generation is stopped once each of its sessions has been idle this long.
    #[serde(with = "duration_ms")]
    pub session_idle_timeout: Duration,
    /// ...or at the latest this long after the reload.
    #[serde(with = "duration_ms")]
    pub drain_deadline: Duration,
}

impl FrontConfig {
    /// A front on `listen` with the default timeouts (30 s idle, 10 min deadline).
    pub fn new(listen: ListenAddr) -> FrontConfig {
        FrontConfig { listen, session_idle_timeout: Duration::from_secs(30), drain_deadline: Duration::from_secs(600) }
    }
}
