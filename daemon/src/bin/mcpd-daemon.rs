//! `mcpd-daemon`: the supervisor alone, without the CLI and the terminal UI, so the resident
//! daemon maps only the code it runs. `mcpd daemon [--start FILE]` execs it when it sits next
//! to `mcpd`; it takes the same arguments.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let start = match (args.next(), args.next(), args.next()) {
        (None, ..) => None,
        // A replacement guard, started by the daemon when its guard died.
        (Some(flag), None, None) if flag == "--guard" => mcpd_daemon::guard::run_replacement(),
        (Some(flag), None, None) if flag == "--check-handover" => return mcpd_daemon::update::check_main(),
        (Some(flag), Some(file), None) if flag == "--start" => Some(std::path::PathBuf::from(file)),
        _ => {
            eprintln!("usage: mcpd-daemon [--start FILE]   (normally run as `mcpd daemon`)");
            return ExitCode::from(2);
        }
    };
    mcpd_daemon::daemon_main(start.as_deref())
}
