//! `mcpd daemon`: the supervisor in the foreground.

use std::process::ExitCode;

/// Runs the daemon until SIGTERM, SIGINT or `mcpd kill`.
pub fn run() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MCPD_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let paths = match mcpd_core::paths::Paths::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mcpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    match mcpd_daemon::run(paths) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mcpd: {e}");
            ExitCode::FAILURE
        }
    }
}
