//! End-to-end tests: the real `mcpd` binary, a real daemon in a temporary MCPD_HOME, and
//! real child processes.

mod bounds;
mod cgroups;
mod common;
mod config_checks;
mod control;
mod deploy;
mod events;
mod examples;
mod exhaustion;
mod front;
mod front_bounds;
mod health;
mod home;
mod isolation;
mod lifecycle;
mod load;
mod logfaults;
mod logs;
mod mcp;
mod monit;
mod pm2;
mod processes;
mod readiness;
mod recipes;
mod reload;
mod restarts;
mod rlimits;
mod secrets;
mod service;
mod signals;
mod stdio;
mod update;
mod wedge;
