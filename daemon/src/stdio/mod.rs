//! stdio MCP servers behind the front: each generation of a `stdio = { ... }` app is a bridge
//! (`mcpd-stdio-bridge`, installed beside `mcpd-daemon`) that serves Streamable HTTP on the
//! generation's private socket and speaks newline-delimited JSON-RPC to children of the app's
//! program: one per MCP session (`per-session`), or one for all (`shared`).
//!
//! The bridge is an ordinary generation to the daemon: readiness (it says `READY=1` once a
//! child answered `initialize` and `tools/list`), reloads (the front keeps each session on the
//! bridge that minted it), stop (its children share its process group and cgroup), logs (each
//! child's stderr, tagged with its session, on the bridge's stderr), memory (per child, in the
//! bridge). See `bridge.rs` for what ends a session.

mod bridge;
mod child;

pub use bridge::main as bridge_main;

use mcpd_core::config::{AppConfig, StdioSessions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Carries the bridge's [`Settings`] (JSON) in its environment.
pub const ENV: &str = "MCPD_STDIO_BRIDGE";
/// The bridge's binary, beside the daemon's.
pub const BINARY: &str = "mcpd-stdio-bridge";

/// What a bridge needs to know of its app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub app: String,
    /// The app's program (resolved by the daemon) and arguments.
    pub program: PathBuf,
    pub args: Vec<String>,
    pub sessions: StdioSessions,
    pub warm: u32,
    pub max_sessions: u32,
    /// A session with nothing in flight and no open stream ends after this long.
    pub idle_ms: u64,
    /// Signal and time a child is given once its stdin is closed.
    pub kill_signal: i32,
    pub kill_timeout_ms: u64,
    /// `max_memory_restart`, per child.
    pub memory_max: Option<u64>,
    /// How long a child has to answer `initialize` (the app's `ready_timeout`, at least 60 s).
    #[serde(default = "default_init_ms")]
    pub init_timeout_ms: u64,
}

fn default_init_ms() -> u64 {
    30_000
}

impl Settings {
    pub fn kill_timeout(&self) -> Duration {
        Duration::from_millis(self.kill_timeout_ms)
    }

    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }

    pub fn init_timeout(&self) -> Duration {
        Duration::from_millis(self.init_timeout_ms)
    }
}

/// A program, its arguments and its environment.
pub(crate) type Plan = (PathBuf, Vec<String>, BTreeMap<OsString, OsString>);

/// What the daemon executes for a generation of a stdio app: the bridge (beside the daemon's
/// binary), with the app's program in the bridge's settings. Returns the program, its
/// arguments, and the environment with the settings added.
pub(crate) fn plan(
    config: &AppConfig,
    program: PathBuf,
    mut env: BTreeMap<OsString, OsString>,
) -> Result<Plan, String> {
    let stdio = config.stdio.unwrap_or_default();
    let settings = Settings {
        app: config.name.to_string(),
        program,
        args: config.args.clone(),
        sessions: stdio.sessions,
        warm: stdio.warm,
        max_sessions: stdio.max_sessions,
        idle_ms: config
            .front
            .as_ref()
            .map_or(30_000, |f| u64::try_from(f.session_idle_timeout.as_millis()).unwrap_or(u64::MAX)),
        kill_signal: config.kill_signal.number(),
        kill_timeout_ms: u64::try_from(config.kill_timeout.as_millis()).unwrap_or(u64::MAX),
        memory_max: config.limits.max_memory_restart,
        // The app's ready_timeout, and at least a minute: a child's first start may download
        // its package (`npx`, `uvx`) or meet a busy machine.
        init_timeout_ms: u64::try_from(config.ready_timeout.max(Duration::from_secs(60)).as_millis())
            .unwrap_or(u64::MAX),
    };
    let json = serde_json::to_string(&settings).map_err(|e| e.to_string())?;
    env.insert(ENV.into(), json.into());
    let bridge = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(BINARY)))
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            format!("cannot find {BINARY} beside the daemon's binary; reinstall mcpd (the binaries ship together)")
        })?;
    Ok((bridge, Vec::new(), env))
}
