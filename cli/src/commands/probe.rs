//! `probe NAME|URL`: does it speak MCP, which revision, which tools? Exit codes tell apart
//! unreachable (3), not MCP (4), protocol error (5) and a tools hash mismatch (6).

use crate::connect;
use mcpd_core::mcp::{probe, ProbeError};
use mcpd_core::model::AppName;
use mcpd_core::protocol::{DescribeRequest, Response};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// An app whose config names an MCP URL (`ready` or `health` with `mcp = URL`), or a URL.
    #[arg(value_name = "NAME|URL")]
    target: String,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
    /// Fail (exit 6) unless the tools hash is this one.
    #[arg(long, value_name = "HASH")]
    expect_hash: Option<String>,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = mcpd_core::config::parse_duration)]
    timeout: Duration,
}

async fn url_of(target: &str) -> anyhow::Result<String> {
    if target.starts_with("http://") || target.starts_with("https://") {
        return Ok(target.to_string());
    }
    let name = AppName::new(target).map_err(anyhow::Error::msg)?;
    let detail = match connect::call(DescribeRequest { name }.into()).await? {
        Response::Describe(d) => d,
        other => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
    };
    match detail.config.mcp_url() {
        Some(url) => Ok(url.to_string()),
        None => anyhow::bail!(
            "app {target} names no MCP URL: set ready = {{ mcp = \"http://127.0.0.1:PORT/mcp\" }} (or pass a URL)"
        ),
    }
}

/// Runs `probe`.
pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let url = url_of(&args.target).await?;
    let report = match probe(&url, args.timeout).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("mcpd: {url}: {e}");
            return Ok(ExitCode::from(match e {
                ProbeError::Unreachable(_) => 3,
                ProbeError::NotMcp(_) => 4,
                ProbeError::Protocol(_) => 5,
            }));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{url}: MCP {} over {}", report.revision, report.transport);
        println!("  server      {} {}", report.server_name, report.server_version);
        println!("  tools       {}", report.tool_count);
        println!("  tools_hash  {}", report.tools_hash);
        println!("  latency     {:.1} ms", report.latency_ms);
    }
    if let Some(want) = args.expect_hash {
        if want != report.tools_hash {
            eprintln!("mcpd: tools hash mismatch: expected {want}, found {}", report.tools_hash);
            return Ok(ExitCode::from(6));
        }
    }
    Ok(ExitCode::SUCCESS)
}
