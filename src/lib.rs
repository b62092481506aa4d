//! mcpd-core: what the mcpd daemon and its clients must agree on.
//!
//! The config schema and its validation, the control protocol (messages and framing), the
//! model of an app's state as clients see it, the on-disk layout of `MCPD_HOME`, and a client
//! for the control socket. Nothing here spawns or signals a process.

pub mod client;
pub mod config;
pub mod model;
pub mod paths;
pub mod protocol;
pub mod signal;
