//! `stdio = { sessions = "per-session", warm = 1, max_sessions = 100 }`: the app is an MCP
//! server that speaks only stdio (newline-delimited JSON-RPC on stdin/stdout); mcpd's front
//! serves it over Streamable HTTP, with a child process per session or one shared child.

use serde::{Deserialize, Serialize};

/// How sessions map to children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StdioSessions {
    /// Each MCP session gets a child of its own (the default): any stdio server works.
    #[default]
    PerSession,
    /// One child for every session, JSON-RPC ids rewritten per session: for stateless
    /// servers, or those that tolerate one client.
    Shared,
}

impl StdioSessions {
    /// The word the config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            StdioSessions::PerSession => "per-session",
            StdioSessions::Shared => "shared",
        }
    }
}

/// Default children started ahead of sessions.
pub const DEFAULT_STDIO_WARM: u32 = 1;
/// Default bound on the sessions (children) of one generation.
pub const DEFAULT_STDIO_MAX_SESSIONS: u32 = 100;
/// The most children a generation may hold ready ahead.
pub const MAX_STDIO_WARM: u32 = 64;

/// A stdio MCP server's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioConfig {
    #[serde(default)]
    pub sessions: StdioSessions,
    /// Children started ahead (not initialized: a session's `initialize` carries the
    /// client's capabilities, which the server may act on), so a new session does not wait
    /// for the program's start-up (`npx`, `uvx`).
    #[serde(default = "default_warm")]
    pub warm: u32,
    /// Sessions at once (per-session: children); more get 503 with Retry-After.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u32,
}

fn default_warm() -> u32 {
    DEFAULT_STDIO_WARM
}

fn default_max_sessions() -> u32 {
    DEFAULT_STDIO_MAX_SESSIONS
}

impl Default for StdioConfig {
    fn default() -> StdioConfig {
        StdioConfig {
            sessions: StdioSessions::PerSession,
            warm: DEFAULT_STDIO_WARM,
            max_sessions: DEFAULT_STDIO_MAX_SESSIONS,
        }
    }
}
