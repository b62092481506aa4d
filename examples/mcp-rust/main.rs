//! A sessionful MCP server on `rmcp` (Streamable HTTP), made for mcpd: it serves the socket
//! mcpd hands over (LISTEN_FDS, fd 3) or $PORT, on /mcp, and drains on SIGTERM/SIGINT (stops
//! accepting, lets open connections finish). `rmcp` also answers the 2026-07-28 stateless
//! revision. Run it under mcpd with `examples/mcp-rust.toml`.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_router};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Clone)]
struct Demo;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// First number.
    a: f64,
    /// Second number.
    b: f64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// What to echo.
    text: String,
}

#[tool_router(server_handler)]
impl Demo {
    #[tool(description = "Add two numbers")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Echo a text, saying which process answered")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        format!("{text} (pid {})", std::process::id())
    }
}

fn listener() -> std::io::Result<tokio::net::TcpListener> {
    let handed_over = std::env::var("LISTEN_PID").ok() == Some(std::process::id().to_string())
        && std::env::var("LISTEN_FDS").is_ok_and(|n| n != "0");
    let std_listener = if handed_over {
        // SAFETY: LISTEN_PID names this process, so fd 3 is the socket mcpd (or systemd) passed.
        unsafe { std::net::TcpListener::from_raw_fd(3) }
    } else {
        let port = std::env::var("PORT").unwrap_or_else(|_| "3300".into());
        std::net::TcpListener::bind(format!("127.0.0.1:{port}"))?
    };
    std_listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(std_listener)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mcp = StreamableHttpService::new(
        || Ok(Demo),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let service = TowerToHyperService::new(tower::ServiceBuilder::new().service(mcp));
    let listener = listener()?;
    println!("pid {} serving MCP", std::process::id());
    let graceful = GracefulShutdown::new();
    let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let connection = Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(stream), service.clone()).into_owned();
                tokio::spawn(graceful.watch(connection));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    println!("pid {} draining", std::process::id());
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
