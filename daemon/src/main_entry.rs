//! The daemon's process entry: the `mcpd-daemon` binary's main (`mcpd daemon` execs it).

use mcpd_core::paths::Paths;
use std::process::ExitCode;

pub use mcpd_core::paths::{BACKGROUND_ENV, HTTP_ENV};

/// Loads `start` (if given), opens the daemon log, and runs the daemon until it stops.
/// Must be called from `main` before any thread exists.
pub fn daemon_main(start: Option<&std::path::Path>) -> ExitCode {
    let mut boot = match start.map(mcpd_core::config::load_checked).transpose() {
        Ok(config) => config.unwrap_or_else(|| mcpd_core::config::ConfigFile {
            path: Default::default(),
            apps: Vec::new(),
            daemon: Default::default(),
            warnings: Vec::new(),
        }),
        // An update in place takes its apps over from the previous daemon: the boot file is
        // not started again, and a mistake made in it since must not end every app.
        Err(e) if std::env::var_os(crate::update::FD_ENV).is_some() => {
            eprintln!("{e}\nmcpd: {} error(s) in the boot file, ignored by this update in place", e.0.len());
            mcpd_core::config::ConfigFile {
                path: Default::default(),
                apps: Vec::new(),
                daemon: Default::default(),
                warnings: Vec::new(),
            }
        }
        Err(e) => {
            eprintln!("{e}\nmcpd: {} error(s); the daemon did not start", e.0.len());
            return ExitCode::FAILURE;
        }
    };
    for warning in &boot.warnings {
        eprintln!("{warning}");
    }
    if let (None, Some(addr)) = (&boot.daemon.http, std::env::var_os(HTTP_ENV)) {
        let addr = addr.to_string_lossy();
        match mcpd_core::config::ListenAddr::parse_public(&addr, std::path::Path::new("/")) {
            Ok(addr) => boot.daemon.http = Some(addr),
            Err(e) => {
                eprintln!("mcpd: {HTTP_ENV}={addr}: {e}; the daemon did not start");
                return ExitCode::FAILURE;
            }
        }
    }
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
