//! `mcpd daemon`: the supervisor in the foreground.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

/// Runs the daemon until SIGTERM, SIGINT or `mcpd kill`: by exec'ing the `mcpd-daemon` binary
/// beside this one (same pid, so systemd and scripts see no difference; the resident daemon
/// then maps none of the CLI's code), else in this process.
pub fn run(start: Option<&std::path::Path>) -> ExitCode {
    let sibling = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("mcpd-daemon")));
    if let Some(daemon) = sibling.filter(|p| p.is_file()) {
        let mut command = std::process::Command::new(&daemon);
        if let Some(file) = start {
            command.arg("--start").arg(file);
        }
        let error = command.exec();
        eprintln!("mcpd: cannot run {} ({error}); running the daemon in this process", daemon.display());
    }
    mcpd_daemon::daemon_main(start)
}
