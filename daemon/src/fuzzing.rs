//! The checks behind the daemon's fuzz targets in `fuzz/` (the parsers of outside bytes that
//! live in the daemon), shared with the replay test that runs `fuzz/corpus/` on stable.

use crate::front::{session_id, strip_hop_by_hop, Front, Miss, Settings, HOP_BY_HOP};
use crate::supervisor::{notices, Notice};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An sd_notify datagram: its notices, written back one per line, parse to the same notices.
pub fn notify(data: &[u8]) {
    let parsed = notices(data);
    assert!(parsed.len() <= data.split(|b| *b == b'\n').count(), "more notices than lines");
    let written: String = parsed
        .iter()
        .map(|n| match n {
            Notice::Ready => "READY=1\r\n".to_string(),
            Notice::Watchdog => "WATCHDOG=1\r\n".to_string(),
            Notice::Stopping => "STOPPING=1\r\n".to_string(),
            Notice::Status(text) => {
                assert!(!text.contains('\n'), "a status holds a newline");
                format!("STATUS={text}\r\n")
            }
        })
        .collect();
    assert_eq!(notices(written.as_bytes()), parsed, "notices changed across write and parse: {written:?}");
}

/// Reads the fuzzer's bytes as a script.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    /// A length byte, then that many bytes (fewer at the end).
    fn chunk(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte().unwrap_or(0) % 64).min(self.0.len());
        let (chunk, rest) = self.0.split_at(len);
        self.0 = rest;
        chunk
    }

    fn pid(&mut self) -> u32 {
        u32::from(self.byte().unwrap_or(0) % 4) + 1
    }
}

/// The session an `Mcp-Session-Id` header of these bytes names, as the front reads it.
fn session_of(bytes: &[u8]) -> Option<String> {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(bytes) {
        headers.insert("mcp-session-id", value);
    }
    let session = session_id(&headers);
    let visible = bytes.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    assert_eq!(session.is_some(), visible, "{bytes:?} read as session {session:?}");
    session
}

fn socket(pid: u32) -> PathBuf {
    PathBuf::from(format!("/run/mcpd/g{pid}.sock"))
}

/// The front's session routing driven by a script of generations coming and going, requests
/// with arbitrary `Mcp-Session-Id` headers, sessions minted, deleted and expired, checked
/// against a model: a session's requests go to the generation that minted it while it lives;
/// an unknown session gets 404, a session-less request a primary (or 503); expiry takes the
/// idlest sessions first; the session counts match. Also strips hop-by-hop headers from
/// arbitrary header lists.
pub fn front_routing(data: &[u8]) {
    let front = Front::new(Settings::default());
    let idle = front.settings().session_idle;
    let mut script = Script(data);
    let mut upstreams = BTreeSet::new();
    let mut primaries: BTreeMap<u32, u32> = BTreeMap::new();
    // Pinned sessions, least recently used first (every request here ends before the next).
    let mut pins: Vec<(String, u32)> = Vec::new();
    let touch = |pins: &mut Vec<(String, u32)>, session: &str, pid: u32| {
        pins.retain(|(s, _)| s != session);
        pins.push((session.to_string(), pid));
    };
    for _ in 0..512 {
        let Some(op) = script.byte() else { break };
        match op % 8 {
            0 => {
                let pid = script.pid();
                front.add(pid, socket(pid));
                upstreams.insert(pid);
            }
            1 => {
                let pid = script.pid();
                front.remove(pid);
                upstreams.remove(&pid);
                pins.retain(|(_, p)| *p != pid);
                primaries.retain(|_, p| *p != pid);
            }
            2 => {
                let b = script.byte().unwrap_or(0);
                let (instance, pid) = (u32::from(b & 1), (b & 2 != 0).then(|| u32::from(b >> 2) % 4 + 1));
                front.set_primary(instance, pid);
                match pid.filter(|p| upstreams.contains(p)) {
                    Some(pid) => primaries.insert(instance, pid),
                    None => primaries.remove(&instance),
                };
            }
            3 => {
                let session = session_of(script.chunk());
                let got = front.route(session.as_deref());
                match session {
                    Some(s) => {
                        let want = pins.iter().find(|(p, _)| *p == s).map(|(_, pid)| *pid);
                        match (want.filter(|p| upstreams.contains(p)), got) {
                            (Some(pid), Ok(route)) => {
                                assert_eq!((route.pid, &route.socket, route.fresh), (pid, &socket(pid), false));
                                front.done(&s);
                                touch(&mut pins, &s, pid);
                            }
                            (None, Err(Miss::UnknownSession)) => {}
                            (want, got) => panic!("session {s:?}: want {want:?}, got {got:?}"),
                        }
                    }
                    None => match got {
                        Ok(route) => {
                            assert!(primaries.values().any(|p| *p == route.pid), "{route:?} is no primary");
                            assert!(route.fresh && route.socket == socket(route.pid));
                            front.answered(&route);
                        }
                        Err(miss) => assert!(primaries.is_empty() && miss == Miss::NotReady, "{miss:?}"),
                    },
                }
            }
            4 => {
                let pid = script.pid();
                if let Some(s) = session_of(script.chunk()) {
                    front.pin(&s, pid);
                    front.done(&s);
                    touch(&mut pins, &s, pid);
                }
            }
            5 => {
                if let Some(s) = session_of(script.chunk()) {
                    front.unpin(&s);
                    pins.retain(|(p, _)| *p != s);
                }
            }
            6 => {
                let max = usize::from(script.byte().unwrap_or(0) % 8);
                let (removed, more) = front.expire(Instant::now() + idle * 2 + Duration::from_secs(1), max);
                assert_eq!((removed, more), (max.min(pins.len()), pins.len() > max), "expire({max})");
                pins.drain(..removed);
            }
            _ => hop_by_hop(script.chunk()),
        }
        let mut want: BTreeMap<u32, usize> = upstreams.iter().map(|p| (*p, 0)).collect();
        for (_, pid) in &pins {
            if let Some(n) = want.get_mut(pid) {
                *n += 1;
            }
        }
        assert_eq!(front.sessions(), want.into_iter().collect::<Vec<_>>(), "session counts");
    }
}

/// Header lines `name: value` (those that are valid headers): after stripping, no hop-by-hop
/// header and none named in `Connection` is left, and every other header is kept.
fn hop_by_hop(bytes: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in bytes.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let named: BTreeSet<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    let before = headers.clone();
    strip_hop_by_hop(&mut headers);
    for name in before.keys() {
        let gone = HOP_BY_HOP.contains(&name.as_str()) || named.contains(name.as_str());
        let kept: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
        if gone {
            assert!(kept.is_empty(), "{name} was passed on");
        } else {
            assert_eq!(kept, before.get_all(name).iter().collect::<Vec<_>>(), "{name} was changed");
        }
    }
    assert!(headers.keys().all(|name| before.contains_key(name)), "a header appeared");
}

#[cfg(test)]
mod replay {
    use std::path::Path;

    fn replay(target: &str, check: fn(&[u8])) {
        mcpd_core::fuzz_checks::replay(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."), target, check);
    }

    #[test]
    fn notify_corpus() {
        replay("notify", super::notify);
    }

    #[test]
    fn front_routing_corpus() {
        replay("front_routing", super::front_routing);
    }
}
