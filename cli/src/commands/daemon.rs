//! `mcpd daemon`: the supervisor in the foreground.

use std::process::ExitCode;

/// Runs the daemon until SIGTERM, SIGINT or `mcpd kill`.
pub fn run(start: Option<&std::path::Path>) -> ExitCode {
    let boot = match start.map(mcpd_core::config::load).transpose() {
        Ok(config) => config.map(|c| c.apps).unwrap_or_default(),
        Err(e) => {
            eprintln!("{e}\nmcpd: {} error(s); the daemon did not start", e.0.len());
            return ExitCode::FAILURE;
        }
    };
    let paths = match mcpd_core::paths::Paths::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mcpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Started in the background by another verb: the log file is enough. In the foreground
    // (a terminal, systemd, a container) the log also goes to stderr.
    let foreground = std::env::var_os(crate::connect::BACKGROUND_ENV).is_none();
    if let Err(e) = mcpd_daemon::logs::init_daemon_log(&paths, foreground) {
        eprintln!("mcpd: cannot open the daemon log in {}: {e}", paths.logs_dir().display());
        return ExitCode::FAILURE;
    }
    match mcpd_daemon::run(paths, boot) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mcpd: {e}");
            ExitCode::FAILURE
        }
    }
}
