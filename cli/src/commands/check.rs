//! `check FILE`: validate a config without the daemon.

use std::path::Path;
use std::process::ExitCode;

/// Prints every error with file:line:column, or a summary of the apps (and warnings about what
/// may fail where the daemon runs). Checks what `start` would: values, shared files and
/// addresses, and what the system must have (cwd, program, user, group).
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    match mcpd_core::config::load_checked(file) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("{warning}");
            }
            let names: Vec<&str> = config.apps.iter().map(|a| a.name.as_str()).collect();
            println!("{}: {} app(s) OK: {}", file.display(), names.len(), names.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("mcpd: {} error(s) in {}; nothing was changed", errors.0.len(), file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
