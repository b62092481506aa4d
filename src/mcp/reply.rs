//! Reading MCP replies: a JSON body or an SSE stream of JSON-RPC messages, and turning them
//! into the result of one request. Pure functions, tested against recorded replies.

use super::ProbeError;
use serde_json::Value;

/// The JSON-RPC messages of a reply body, whatever its content type.
pub fn messages(content_type: &str, body: &[u8]) -> Result<Vec<Value>, ProbeError> {
    let text = std::str::from_utf8(body).map_err(|_| ProbeError::NotMcp("the reply is not UTF-8".into()))?;
    if content_type.starts_with("text/event-stream") {
        return Ok(sse_events(text).into_iter().filter_map(|(_, data)| serde_json::from_str(&data).ok()).collect());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(batch)) => Ok(batch),
        Ok(one) => Ok(vec![one]),
        Err(_) => Err(ProbeError::NotMcp(format!("the reply is neither JSON nor an SSE stream: {:?}", snippet(text)))),
    }
}

/// `(event, data)` pairs of an SSE stream; multi-line data is joined with newlines.
pub fn sse_events(text: &str) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let (mut event, mut data): (Option<String>, Vec<&str>) = (None, Vec::new());
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            if !data.is_empty() {
                events.push((event.take().unwrap_or_else(|| "message".into()), data.join("\n")));
            }
            event = None;
            data.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if !data.is_empty() {
        events.push((event.unwrap_or_else(|| "message".into()), data.join("\n")));
    }
    events
}

/// The `result` of the response to request `id`, or the error it carries.
pub fn result_of(messages: &[Value], id: u64) -> Result<Value, ProbeError> {
    let response = messages
        .iter()
        .find(|m| m.get("id").and_then(Value::as_u64) == Some(id))
        .ok_or_else(|| ProbeError::NotMcp(format!("no JSON-RPC response with id {id} in the reply")))?;
    if let Some(error) = response.get("error") {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(ProbeError::Protocol(format!("error {code}: {message}")));
    }
    response
        .get("result")
        .cloned()
        .ok_or_else(|| ProbeError::NotMcp(format!("response {id} has neither result nor error")))
}

fn snippet(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT_JSON: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"demo","version":"1.2.0"}}}"#;
    const INIT_SSE: &str = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-03-26\",\"serverInfo\":{\"name\":\"py\",\"version\":\"1.0\"}}}\n\n";
    const TOOLS_SSE_CRLF: &str = "id: 7\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\r\n\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\r\ndata: \"result\":{\"tools\":[{\"name\":\"add\"}]}}\r\n\r\n";
    const DISCOVER_2026: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"2.0"}}}"#;
    const DISCOVER_META_INFO: &str = r#"data: {"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","supportedVersions":["2025-11-25","2026-07-28"],"capabilities":{"tools":{}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"rmcp","version":"3.11.0"}}}}

"#;
    const METHOD_NOT_FOUND: &str = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#;
    const UNKNOWN_SESSION: &str =
        r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#;

    #[test]
    fn recorded_replies() {
        let init = result_of(&messages("application/json", INIT_JSON.as_bytes()).unwrap(), 1).unwrap();
        assert_eq!(init["serverInfo"]["name"], "demo");
        let sse = result_of(&messages("text/event-stream", INIT_SSE.as_bytes()).unwrap(), 1).unwrap();
        assert_eq!(sse["protocolVersion"], "2025-03-26");
        let tools =
            result_of(&messages("text/event-stream; charset=utf-8", TOOLS_SSE_CRLF.as_bytes()).unwrap(), 3).unwrap();
        assert_eq!(tools["tools"][0]["name"], "add", "multi-line data and notifications before the response");
        let discover = result_of(&messages("application/json", DISCOVER_2026.as_bytes()).unwrap(), 1).unwrap();
        assert_eq!(discover["supportedVersions"][0], "2026-07-28");
        let meta = result_of(&messages("text/event-stream", DISCOVER_META_INFO.as_bytes()).unwrap(), 1).unwrap();
        assert_eq!(
            meta.pointer("/_meta/io.modelcontextprotocol~1serverInfo/name").and_then(Value::as_str),
            Some("rmcp")
        );
    }

    #[test]
    fn error_replies() {
        let err = result_of(&messages("application/json", METHOD_NOT_FOUND.as_bytes()).unwrap(), 1).unwrap_err();
        assert!(matches!(err, ProbeError::Protocol(ref m) if m.contains("-32601")), "{err:?}");
        let err = result_of(&messages("application/json", UNKNOWN_SESSION.as_bytes()).unwrap(), 2).unwrap_err();
        assert!(matches!(err, ProbeError::NotMcp(_)), "a 404 body for an unknown session answers no request: {err:?}");
        assert!(matches!(messages("text/html", b"<html>404</html>"), Err(ProbeError::NotMcp(_))));
    }

    #[test]
    fn sse_parsing() {
        let events = sse_events("event: endpoint\ndata: /messages?sessionId=abc\n\n: comment\ndata: a\ndata: b\n\n");
        assert_eq!(
            events,
            [
                ("endpoint".to_string(), "/messages?sessionId=abc".to_string()),
                ("message".to_string(), "a\nb".to_string())
            ]
        );
    }
}
