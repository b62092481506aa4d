//! `mcpd-stdio-bridge`: a generation of a stdio MCP app, started by the daemon (see the
//! `stdio` module of the daemon crate); not meant to be run by hand.

fn main() -> std::process::ExitCode {
    mcpd_daemon::stdio::bridge_main()
}
