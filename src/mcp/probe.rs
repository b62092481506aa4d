//! The probe's three ways in, newest first.

use super::http::{self, EventStream, Target};
use super::reply::{messages, result_of};
use super::ProbeError;
use crate::config::parse_http_url;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// The stateless revision.
const STATELESS: &str = "2026-07-28";
/// The newest handshake revision.
const HANDSHAKE: &str = "2025-11-25";

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ProbeReport {
    /// The URL probed.
    pub url: String,
    /// The protocol revision the server speaks.
    pub revision: String,
    /// `streamable-http` or `http+sse` (deprecated).
    pub transport: String,
    /// `serverInfo.name`.
    pub server_name: String,
    /// `serverInfo.version`.
    pub server_version: String,
    /// How many tools `tools/list` returned.
    pub tool_count: usize,
    /// sha256 over the tools sorted by name, with their schemas.
    pub tools_hash: String,
    /// Wall time of the whole probe.
    pub latency_ms: f64,
}

/// sha256 (hex) over each tool's canonical JSON (keys sorted), tools sorted by name, then
/// (tools without a name or with the same one) by that JSON, so the order never counts.
pub fn tools_hash(tools: &[Value]) -> String {
    // serde_json's Value keeps object keys sorted, so this is canonical.
    let mut sorted: Vec<(&str, Vec<u8>)> = tools
        .iter()
        .map(|t| (t.get("name").and_then(Value::as_str).unwrap_or(""), serde_json::to_vec(t).expect("JSON")))
        .collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (_, json) in sorted {
        hasher.update(json);
        hasher.update(b"\n");
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn client_info() -> Value {
    json!({ "name": "mcpd-probe", "version": env!("CARGO_PKG_VERSION") })
}

struct Found {
    revision: String,
    transport: &'static str,
    server: Value,
    tools: Vec<Value>,
}

/// Probes `url` within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<ProbeReport, ProbeError> {
    probe_via(url, None, timeout).await
}

/// Probes `url`'s path through `unix` (a generation's private socket) when given.
pub async fn probe_via(
    url: &str,
    unix: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<ProbeReport, ProbeError> {
    let started = Instant::now();
    let target =
        Target { url: parse_http_url(url).map_err(ProbeError::NotMcp)?, unix: unix.map(std::path::Path::to_path_buf) };
    let found = tokio::time::timeout(timeout, find(&target)).await.map_err(|_| {
        ProbeError::Unreachable(format!("no complete answer within {}", humantime::format_duration(timeout)))
    })??;
    let tools = found.tools;
    Ok(ProbeReport {
        url: url.to_string(),
        revision: found.revision,
        transport: found.transport.to_string(),
        server_name: found.server.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
        server_version: found.server.get("version").and_then(Value::as_str).unwrap_or("").to_string(),
        tool_count: tools.len(),
        tools_hash: tools_hash(&tools),
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

async fn find(url: &Target) -> Result<Found, ProbeError> {
    match stateless(url).await {
        Ok(found) => return Ok(found),
        Err(e @ ProbeError::Unreachable(_)) => return Err(e),
        Err(_) => {}
    }
    match handshake(url).await {
        Ok(found) => Ok(found),
        Err(e @ ProbeError::Unreachable(_)) => Err(e),
        Err(e) => http_sse(url).await.map_err(|_| e),
    }
}

fn tools_of(result: &Value) -> Result<Vec<Value>, ProbeError> {
    result
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| ProbeError::Protocol("tools/list returned no tools array".into()))
}

fn expect_ok(reply: &http::Reply, what: &str) -> Result<Vec<Value>, ProbeError> {
    if !(200..300).contains(&reply.status) {
        return Err(ProbeError::NotMcp(format!("{what} answered HTTP {}", reply.status)));
    }
    messages(&reply.content_type, &reply.body)
}

/// 2026-07-28: `server/discover`, then `tools/list`, each self-describing.
async fn stateless(url: &Target) -> Result<Found, ProbeError> {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS,
        "io.modelcontextprotocol/clientInfo": client_info(),
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let headers =
        |method: &str| vec![("mcp-protocol-version", STATELESS.to_string()), ("mcp-method", method.to_string())];
    let discover = json!({ "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": { "_meta": meta } });
    let reply = http::post(url, &url.url.path, &headers("server/discover"), &discover, Some(1)).await?;
    let result = result_of(&expect_ok(&reply, "server/discover")?, 1)?;
    let versions: Vec<&str> = result
        .get("supportedVersions")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !versions.contains(&STATELESS) {
        return Err(ProbeError::NotMcp(format!("server/discover offers {versions:?}, not {STATELESS}")));
    }
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": { "_meta": meta } });
    let reply = http::post(url, &url.url.path, &headers("tools/list"), &list, Some(2)).await?;
    let tools = tools_of(&result_of(&expect_ok(&reply, "tools/list")?, 2)?)?;
    // The revision's servers put serverInfo in the result or in its `_meta`.
    let server = result
        .get("serverInfo")
        .or_else(|| result.pointer("/_meta/io.modelcontextprotocol~1serverInfo"))
        .cloned()
        .unwrap_or_default();
    Ok(Found { revision: STATELESS.into(), transport: "streamable-http", server, tools })
}

/// Up to 2025-11-25: `initialize`, `notifications/initialized`, `tools/list`, `ping`, `DELETE`.
async fn handshake(url: &Target) -> Result<Found, ProbeError> {
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": client_info() } });
    let reply = http::post(url, &url.url.path, &[], &init, Some(1)).await?;
    let result = result_of(&expect_ok(&reply, "initialize")?, 1)?;
    let revision = result.get("protocolVersion").and_then(Value::as_str).unwrap_or(HANDSHAKE).to_string();
    let mut headers = vec![("mcp-protocol-version", revision.clone())];
    if let Some(session) = &reply.session {
        headers.push(("mcp-session-id", session.clone()));
    }
    let outcome = async {
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let ack = http::post(url, &url.url.path, &headers, &initialized, None).await?;
        if !(200..300).contains(&ack.status) {
            return Err(ProbeError::Protocol(format!("notifications/initialized answered HTTP {}", ack.status)));
        }
        let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {} });
        let reply = http::post(url, &url.url.path, &headers, &list, Some(2)).await?;
        let tools = tools_of(&result_of(&expect_ok(&reply, "tools/list")?, 2)?)?;
        let ping = json!({ "jsonrpc": "2.0", "id": 3, "method": "ping" });
        let reply = http::post(url, &url.url.path, &headers, &ping, Some(3)).await?;
        result_of(&expect_ok(&reply, "ping")?, 3)?;
        Ok(tools)
    }
    .await;
    // Never leave a session behind on the server, whatever happened.
    if reply.session.is_some() {
        let _ = http::delete(url, &headers).await;
    }
    Ok(Found {
        revision,
        transport: "streamable-http",
        server: result.get("serverInfo").cloned().unwrap_or_default(),
        tools: outcome?,
    })
}

/// The deprecated HTTP+SSE transport: `GET /sse` names a POST endpoint; answers come on the stream.
async fn http_sse(url: &Target) -> Result<Found, ProbeError> {
    let sse_path =
        if url.url.path.trim_end_matches('/').ends_with("/sse") { url.url.path.clone() } else { "/sse".to_string() };
    let mut stream = EventStream::open(url, &sse_path).await?;
    let endpoint = loop {
        let (event, data) = stream.next().await?;
        if event == "endpoint" {
            break data;
        }
    };
    let post_path = if endpoint.starts_with('/') {
        endpoint
    } else {
        parse_http_url(&endpoint).map(|u| u.path).unwrap_or(endpoint)
    };
    let call = |id: Option<u64>, method: &str, params: Value| {
        let mut message = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        if let Some(id) = id {
            message["id"] = json!(id);
        }
        let path = post_path.clone();
        async move { http::post(url, &path, &[], &message, None).await }
    };
    call(
        Some(1),
        "initialize",
        json!({ "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": client_info() }),
    )
    .await?;
    let result = answer(&mut stream, 1).await?;
    call(None, "notifications/initialized", json!({})).await?;
    call(Some(2), "tools/list", json!({})).await?;
    let tools = tools_of(&answer(&mut stream, 2).await?)?;
    let revision = result.get("protocolVersion").and_then(Value::as_str).unwrap_or("2024-11-05").to_string();
    Ok(Found { revision, transport: "http+sse", server: result.get("serverInfo").cloned().unwrap_or_default(), tools })
}

/// Reads the stream until the response to `id`.
async fn answer(stream: &mut EventStream, id: u64) -> Result<Value, ProbeError> {
    loop {
        let (_, data) = stream.next().await?;
        if let Ok(message) = serde_json::from_str::<Value>(&data) {
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                return result_of(&[message], id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_hash_ignores_order_but_not_schemas() {
        let a = json!({"name": "add", "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}}}});
        let b = json!({"name": "echo", "inputSchema": {"type": "object"}});
        let b2 = json!({"inputSchema": {"type": "object"}, "name": "echo"});
        assert_eq!(tools_hash(&[a.clone(), b.clone()]), tools_hash(&[b2, a.clone()]));
        let changed =
            json!({"name": "add", "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}}}});
        assert_ne!(tools_hash(&[a, b.clone()]), tools_hash(&[changed, b]));
        assert_eq!(tools_hash(&[]).len(), 64);
        // Found by fuzzing: tools without a name (or with the same one) hashed in list order.
        let (x, y) = (json!({"title": "x"}), json!({"title": "y"}));
        assert_eq!(tools_hash(&[x.clone(), y.clone()]), tools_hash(&[y, x]));
    }
}
