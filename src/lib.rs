//! mcpd-core: what the mcpd daemon and its clients must agree on.
//!
//! The config schema and its validation, the control protocol (messages and framing), the
//! model of an app's state as clients see it, the on-disk layout of `MCPD_HOME`, and a client
//! for the control socket, the saved app list (`dump.json`), and (feature `probe`) the MCP
//! probe client. Nothing here spawns or signals a process.

pub mod client;
pub mod config;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod lock;
#[cfg(feature = "probe")]
pub mod mcp;
pub mod model;
pub mod paths;
pub mod persist;
pub mod protocol;
pub mod signal;
