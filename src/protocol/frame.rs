//! Framing: a 4-byte big-endian length, then that many bytes of JSON.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// The largest frame either side accepts; a longer one closes the connection.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// The codec both sides use.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(4).max_frame_length(MAX_FRAME_BYTES).new_codec()
}

/// A frame's payload that is not the message expected.
#[derive(Debug, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

/// Serializes a message into a frame payload.
pub fn encode<T: Serialize>(message: &T) -> Bytes {
    // Our messages are plain data; serializing them cannot fail.
    Bytes::from(serde_json::to_vec(message).expect("protocol messages serialize"))
}

/// Parses a frame payload.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    // From a `str`, as every other JSON mcpd reads (`dump.json`, probe replies, log lines): one
    // serde_json reader type compiled into the daemon, not one for bytes and one for text.
    let text = std::str::from_utf8(payload).map_err(<serde_json::Error as serde::de::Error>::custom)?;
    Ok(serde_json::from_str(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Hello, Request, Response};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_decode_or_fail_cleanly() {
        enum Want {
            Frame(&'static str),
            NeedMore,
            TooLong,
        }
        let oversized = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
        let cases: Vec<(&str, Vec<u8>, Want)> = vec![
            ("whole frame", frame(br#"{"verb":"ping"}"#), Want::Frame(r#"{"verb":"ping"}"#)),
            ("half a length", vec![0, 0], Want::NeedMore),
            ("length but short body", vec![0, 0, 0, 10, b'{'], Want::NeedMore),
            ("oversized length", oversized, Want::TooLong),
            ("garbage as length", b"GET / HTTP/1.1\r\n".to_vec(), Want::TooLong),
        ];
        for (name, bytes, want) in cases {
            let mut buf = BytesMut::from(&bytes[..]);
            let got = codec().decode(&mut buf);
            match (want, got) {
                (Want::Frame(text), Ok(Some(f))) => assert_eq!(&f[..], text.as_bytes(), "{name}"),
                (Want::NeedMore, Ok(None)) => {}
                (Want::TooLong, Err(_)) => {}
                (_, got) => panic!("{name}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn messages_round_trip_and_reject_garbage() {
        let hello = Hello::current();
        assert_eq!(decode::<Hello>(&encode(&hello)).unwrap(), hello);
        assert_eq!(decode::<Request>(br#"{"verb":"list"}"#).unwrap(), Request::List);
        for bad in [&b"not json"[..], br#"{"verb":"explode"}"#, br#"{"protocol":"one"}"#, b""] {
            assert!(decode::<Request>(bad).is_err(), "accepted {:?}", String::from_utf8_lossy(bad));
        }
        let err = Response::Error(crate::protocol::ProtoError::new(crate::protocol::ErrorKind::UnknownApp, "no app x"));
        assert_eq!(decode::<Response>(&encode(&err)).unwrap(), err);
        // An app's config crosses as JSON: every setting comes back, resource limits included.
        use crate::config::{AppConfig, Resource, Rlimit, RlimitValue};
        let mut app = AppConfig::new(crate::model::AppName::new("web").unwrap(), "node".into(), vec![], "/srv".into());
        app.rlimits.insert(Resource::Nofile, Rlimit { soft: RlimitValue::Limited(1024), hard: RlimitValue::Infinity });
        app.rlimits.insert(Resource::Core, Rlimit::both(RlimitValue::Limited(0)));
        let start: Request = crate::protocol::StartRequest { apps: vec![app], names: vec![], wait: true }.into();
        assert_eq!(decode::<Request>(&encode(&start)).unwrap(), start);
    }
}
