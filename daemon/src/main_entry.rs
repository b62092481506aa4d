//! The daemon's process entry, shared by the `mcpd-daemon` binary and `mcpd daemon` (which runs
//! it in-process when no `mcpd-daemon` binary sits beside it).

use mcpd_core::paths::Paths;
use std::process::ExitCode;

/// Set for a daemon that a CLI verb started in the background (its log then goes only to the
/// file, not to stderr).
pub const BACKGROUND_ENV: &str = "MCPD_DAEMON_BACKGROUND";

/// Loads `start` (if given), opens the daemon log, and runs the daemon until it stops.
/// Must be called from `main` before any thread exists.
pub fn daemon_main(start: Option<&std::path::Path>) -> ExitCode {
    let boot = match start.map(mcpd_core::config::load).transpose() {
        Ok(config) => config.map(|c| c.apps).unwrap_or_default(),
        Err(e) => {
            eprintln!("{e}\nmcpd: {} error(s); the daemon did not start", e.0.len());
            return ExitCode::FAILURE;
        }
    };
    let paths = match Paths::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mcpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Started in the background by another verb: the log file is enough. In the foreground
    // (a terminal, systemd, a container) the log also goes to stderr.
    let foreground = std::env::var_os(BACKGROUND_ENV).is_none();
    if let Err(e) = crate::logs::init_daemon_log(&paths, foreground) {
        eprintln!("mcpd: cannot open the daemon log in {}: {e}", paths.logs_dir().display());
        return ExitCode::FAILURE;
    }
    match crate::run(paths, boot) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mcpd: {e}");
            ExitCode::FAILURE
        }
    }
}
