//! Readiness kinds (`ready = ...`) and handed-over sockets (`listen = [...]`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How mcpd learns that a new generation is ready to serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ready {
    /// Ready once spawned.
    #[default]
    None,
    /// systemd's notify protocol: `READY=1` on `$NOTIFY_SOCKET`.
    Notify,
    /// PM2's: `process.send('ready')` over a Node IPC channel (`NODE_CHANNEL_FD`).
    Ipc,
    /// A GET of this URL answers 2xx.
    Http {
        /// An `http://host:port/path` URL.
        url: String,
    },
    /// A TCP connect to this address succeeds.
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// An MCP probe of this URL succeeds (the protocol handshake and `tools/list`).
    Mcp {
        /// The MCP endpoint, `http://host:port/mcp`.
        url: String,
    },
}

impl Ready {
    /// Parses the string form (`"none"`, `"notify"`, `"ipc"`).
    pub fn parse_word(word: &str) -> Result<Ready, String> {
        match word {
            "none" => Ok(Ready::None),
            "notify" => Ok(Ready::Notify),
            "ipc" => Ok(Ready::Ipc),
            other => Err(format!(
                "unknown readiness {other:?}; use \"none\", \"notify\", \"ipc\", {{ http = \"http://127.0.0.1:3000/health\" }}, {{ tcp = \"127.0.0.1:3000\" }} or {{ mcp = \"http://127.0.0.1:3000/mcp\" }}"
            )),
        }
    }

    /// Checks an HTTP probe URL.
    pub fn http(url: &str) -> Result<Ready, String> {
        parse_http_url(url)?;
        Ok(Ready::Http { url: url.to_string() })
    }

    /// The probe that decides readiness, for the kinds mcpd polls (http, tcp, mcp).
    pub fn probe(&self) -> Option<super::Probe> {
        match self {
            Ready::Http { url } => Some(super::Probe::Http { url: url.clone() }),
            Ready::Tcp { addr } => Some(super::Probe::Tcp { addr: addr.clone() }),
            Ready::Mcp { url } => Some(super::Probe::Mcp { url: url.clone() }),
            Ready::None | Ready::Notify | Ready::Ipc => None,
        }
    }

    /// Checks an MCP endpoint URL.
    pub fn mcp(url: &str) -> Result<Ready, String> {
        parse_http_url(url)?;
        Ok(Ready::Mcp { url: url.to_string() })
    }

    /// Checks a TCP probe address.
    pub fn tcp(addr: &str) -> Result<Ready, String> {
        split_host_port(addr).map_err(|e| format!("tcp probe address {addr:?}: {e}"))?;
        Ok(Ready::Tcp { addr: addr.to_string() })
    }
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::None => f.write_str("none"),
            Ready::Notify => f.write_str("notify"),
            Ready::Ipc => f.write_str("ipc"),
            Ready::Http { url } => write!(f, "http {url}"),
            Ready::Tcp { addr } => write!(f, "tcp {addr}"),
            Ready::Mcp { url } => write!(f, "mcp {url}"),
        }
    }
}

/// An `http://host:port/path` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` to connect to.
    pub authority: String,
    /// The path and query, at least `/`.
    pub path: String,
}

/// Splits an `http://` URL; https is not supported for local probes.
pub fn parse_http_url(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("URL {url:?} must start with http:// (probes talk to the app on this host)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    split_host_port(&authority).map_err(|e| format!("URL {url:?}: {e}"))?;
    Ok(HttpUrl { authority, path: path.to_string() })
}

fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    let (host, port) = addr.rsplit_once(':').ok_or("expected host:port, e.g. 127.0.0.1:3000")?;
    let port: u16 = port.parse().map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?;
    if host.is_empty() || port == 0 {
        return Err("expected host:port, e.g. 127.0.0.1:3000".into());
    }
    Ok((host, port))
}

/// A socket mcpd binds once and hands to every generation (systemd socket activation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenAddr {
    /// `tcp://IP:PORT`.
    Tcp(SocketAddr),
    /// `unix:/path`.
    Unix(PathBuf),
}

impl ListenAddr {
    /// Like [`ListenAddr::parse`], and a bare `IP:PORT` means TCP (`127.0.0.1:3000`).
    pub fn parse_public(text: &str, base: &Path) -> Result<ListenAddr, String> {
        if text.starts_with("tcp://") || text.starts_with("unix:") {
            ListenAddr::parse(text, base)
        } else {
            ListenAddr::parse(&format!("tcp://{text}"), base)
        }
    }

    /// Parses `tcp://127.0.0.1:3000` or `unix:/run/app.sock` (relative paths from `base`).
    pub fn parse(text: &str, base: &Path) -> Result<ListenAddr, String> {
        if let Some(addr) = text.strip_prefix("tcp://") {
            return addr.parse().map(ListenAddr::Tcp).map_err(|_| {
                format!("listen address {text:?}: expected tcp://IP:PORT with a numeric IP, e.g. tcp://127.0.0.1:3000")
            });
        }
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("listen address {text:?}: give a path after unix:"));
            }
            return Ok(ListenAddr::Unix(base.join(path)));
        }
        Err(format!("listen address {text:?}: expected tcp://IP:PORT or unix:/path"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp://{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ListenAddr::parse(&value, Path::new("/"))
    }
}

impl From<ListenAddr> for String {
    fn from(a: ListenAddr) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let base = Path::new("/srv");
        let cases = [
            ("tcp://127.0.0.1:3000", Ok("tcp://127.0.0.1:3000")),
            ("tcp://[::1]:80", Ok("tcp://[::1]:80")),
            ("unix:/run/app.sock", Ok("unix:/run/app.sock")),
            ("unix:app.sock", Ok("unix:/srv/app.sock")),
            ("tcp://localhost:3000", Err("numeric IP")),
            ("unix:", Err("give a path")),
            ("127.0.0.1:3000", Err("expected tcp://")),
        ];
        for (text, want) in cases {
            let got = ListenAddr::parse(text, base).map(|a| a.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{text}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{text}: {g}"),
                (g, w) => panic!("{text}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn probe_targets() {
        let ok = parse_http_url("http://127.0.0.1:3000/health?x=1").unwrap();
        assert_eq!((ok.authority.as_str(), ok.path.as_str()), ("127.0.0.1:3000", "/health?x=1"));
        assert_eq!(parse_http_url("http://localhost").unwrap().authority, "localhost:80");
        for bad in ["https://x:1/", "127.0.0.1:3000", "http://:3000/", "http://x:notaport/"] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
        assert!(Ready::tcp("127.0.0.1:3000").is_ok());
        for bad in ["127.0.0.1", "x:0", ":1"] {
            assert!(Ready::tcp(bad).is_err(), "{bad}");
        }
        assert!(Ready::parse_word("sometimes").unwrap_err().contains("\"notify\""));
    }
}
