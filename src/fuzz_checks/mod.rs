//! The checks behind the fuzz targets in `fuzz/`: one function per parser of outside bytes,
//! each asserting what must hold of its input beyond "no panic" (what decodes re-encodes to
//! the same thing). The fuzz targets call these; `replay` runs every file of `fuzz/corpus/`
//! through them on the stable toolchain, so a finding checked in stays fixed.

mod config;

pub use config::{config, config_values, dotenv};

use crate::protocol::frame::{self, MAX_FRAME_BYTES};
use crate::protocol::{Hello, HelloReply, Request, Response};
use bytes::BytesMut;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use tokio_util::codec::{Decoder, Encoder};

/// Control-socket bytes: every frame the codec cuts re-encodes to the bytes it was cut from,
/// and every payload that decodes as a message re-encodes to one that decodes the same.
pub fn frame(data: &[u8]) {
    let mut codec = frame::codec();
    let mut buf = BytesMut::from(data);
    let mut offset = 0;
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(payload)) => {
                let consumed = before - buf.len();
                assert!(payload.len() <= MAX_FRAME_BYTES, "a frame over the limit passed");
                let mut again = BytesMut::new();
                frame::codec().encode(payload.clone().freeze(), &mut again).expect("a frame re-encodes");
                assert_eq!(&again[..], &data[offset..offset + consumed], "a frame re-encodes to its bytes");
                offset += consumed;
                message_round_trip::<Hello>(&payload);
                message_round_trip::<Request>(&payload);
                message_round_trip::<HelloReply>(&payload);
                message_round_trip::<Response>(&payload);
            }
            Ok(None) => {
                // Only an incomplete frame is left.
                let rest = &data[offset..];
                if rest.len() >= 4 {
                    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    assert!(len > rest.len() - 4, "a whole frame was left undecoded");
                }
                return;
            }
            Err(_) => {
                let rest = &data[offset..];
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                assert!(len > MAX_FRAME_BYTES, "a frame within the limit was refused");
                return;
            }
        }
    }
}

/// A payload that decodes as `T` re-encodes to bytes that decode to the same message, and
/// encoding is stable (what the daemon logs or saves does not drift).
fn message_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(payload: &[u8]) {
    let Ok(message) = frame::decode::<T>(payload) else { return };
    let bytes = frame::encode(&message);
    let back: T = frame::decode(&bytes).expect("an encoded message decodes");
    assert_eq!(back, message, "a message changed across encode and decode");
    assert_eq!(frame::encode(&back), bytes, "encoding is not stable");
}

/// `dump.json`: a dump that loads saves (as `mcpd save` writes it) to one that loads the same.
pub fn dump(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(saved) = crate::persist::parse(text) else { return };
    assert!(saved.version <= crate::persist::FORMAT_VERSION, "a dump from a newer mcpd loaded");
    let written = serde_json::to_string_pretty(&saved).expect("a dump serializes");
    let back = crate::persist::parse(&written).expect("a saved dump loads");
    assert_eq!(back, saved, "a dump changed across save and load");
}

/// An MCP reply body, read both as JSON and as SSE: the SSE events re-encode to a stream that
/// parses to the same events; the result picked for an id is that of the first message with
/// it; the tools hash ignores the order of tools.
#[cfg(feature = "probe")]
pub fn mcp_reply(data: &[u8]) {
    use crate::mcp::{reply, tools_hash, ProbeError};
    use serde_json::Value;
    if let Ok(text) = std::str::from_utf8(data) {
        let events = reply::sse_events(text);
        let mut encoded = String::new();
        for (event, data) in &events {
            encoded.push_str(&format!("event: {event}\r\n"));
            for line in data.split('\n') {
                encoded.push_str(&format!("data: {line}\r\n"));
            }
            encoded.push_str("\r\n");
        }
        assert_eq!(reply::sse_events(&encoded), events, "SSE events changed across encode and parse");
    }
    for content_type in ["application/json", "text/event-stream"] {
        let Ok(messages) = reply::messages(content_type, data) else { continue };
        for message in &messages {
            let Some(id) = message.get("id").and_then(Value::as_u64) else { continue };
            let first = messages.iter().find(|m| m.get("id").and_then(Value::as_u64) == Some(id)).expect("found");
            match (reply::result_of(&messages, id), first.get("error"), first.get("result")) {
                (Err(ProbeError::Protocol(_)), Some(_), _) => {}
                (Ok(result), None, Some(want)) => {
                    assert_eq!(&result, want, "result_of picked another result");
                    if let Some(tools) = result.get("tools").and_then(Value::as_array) {
                        let reversed: Vec<Value> = tools.iter().rev().cloned().collect();
                        assert_eq!(tools_hash(tools), tools_hash(&reversed), "the tools hash depends on order");
                    }
                }
                (Err(ProbeError::NotMcp(_)), None, None) => {}
                (got, error, result) => panic!("result_of({id}) = {got:?} for error {error:?}, result {result:?}"),
            }
        }
    }
}

mod replay;
pub use replay::replay;
