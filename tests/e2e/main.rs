//! End-to-end tests: the real `mcpd` binary, a real daemon in a temporary MCPD_HOME, and
//! real child processes.

mod common;
mod config_checks;
mod control;
mod deploy;
mod events;
mod examples;
mod front;
mod health;
mod isolation;
mod lifecycle;
mod load;
mod logs;
mod mcp;
mod monit;
mod processes;
mod readiness;
mod recipes;
mod reload;
mod restarts;
mod secrets;
mod service;
mod signals;
mod wedge;
