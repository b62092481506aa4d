//! `mcpd daemon`: the supervisor in the foreground.

use mcpd_core::lock::{HomeLock, LOCK_FD_ENV};
use mcpd_core::paths::Paths;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// The `mcpd-daemon` binary: beside this one, else in PATH.
fn daemon_binary() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("mcpd-daemon")));
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).map(|d| d.join("mcpd-daemon")).collect::<Vec<_>>());
    beside.into_iter().chain(in_path).find(|p| p.is_file())
}

/// Runs the daemon until SIGTERM, SIGINT or `mcpd kill` by exec'ing `mcpd-daemon` (same pid,
/// so systemd and scripts see no difference; the resident daemon maps none of the CLI's code).
/// The home's lock is taken first and handed over, so a verb run meanwhile waits for this
/// daemon instead of starting another.
pub fn run(start: Option<&std::path::Path>) -> ExitCode {
    let Some(daemon) = daemon_binary() else {
        eprintln!("mcpd: cannot find the mcpd-daemon binary beside mcpd or in PATH; reinstall mcpd (both binaries ship together)");
        return ExitCode::FAILURE;
    };
    let paths = match Paths::from_env() {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("mcpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = paths.create_dirs() {
        eprintln!("mcpd: cannot create {}: {e}", paths.home().display());
        return ExitCode::FAILURE;
    }
    let lock = match HomeLock::acquire(&paths) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("mcpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fd = match lock.keep_across_exec() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("mcpd: cannot hand the lock over to mcpd-daemon: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut command = std::process::Command::new(&daemon);
    command.env(LOCK_FD_ENV, fd.to_string());
    if let Some(file) = start {
        command.arg("--start").arg(file);
    }
    let error = command.exec();
    eprintln!("mcpd: cannot run {}: {error}", daemon.display());
    ExitCode::FAILURE
}
