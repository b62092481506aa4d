//! Readiness watchers: one task per generation that tells the app task when the generation is
//! ready (and relays what it reports). Each ends when its generation is dropped.

use mcpd_core::config::{parse_http_url, Probe, Ready};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixDatagram;
use tokio::sync::mpsc::Sender;

/// What a watcher reports to its app task.
#[derive(Debug)]
pub(crate) enum Report {
    /// The generation is ready.
    Ready { pid: u32 },
    /// `STATUS=` text (or "stopping" for `STOPPING=1`).
    Status { pid: u32, text: String },
    /// `WATCHDOG=1`.
    Watchdog { pid: u32 },
    /// A health probe's result.
    Health { pid: u32, result: Result<(), String> },
    /// The tools hashes of the old and the new generation of a reload (or why they are unknown).
    /// (Boxed: every variant is then at most 32 bytes, and each app's channel of reports holds
    /// a block of 32 from the start.)
    Tools { pid: u32, hashes: Box<Result<(String, String), String>> },
}

/// One liveness probe: a 2xx answer, or a connect.
/// One probe: a 2xx answer, a connect, or an MCP handshake; through `via` (a generation's
/// private socket behind a front) when given, else to the probe's own address.
pub(crate) async fn probe_once(probe: &Probe, via: Option<&std::path::Path>) -> Result<(), String> {
    match probe {
        Probe::Http { url } => {
            let target = mcpd_core::mcp::Target { url: parse_http_url(url)?, unix: via.map(Into::into) };
            match mcpd_core::mcp::http::get_status(&target).await.map_err(|e| e.to_string())? {
                200..=299 => Ok(()),
                status => Err(format!("GET {} answered {status}", target.url.path)),
            }
        }
        Probe::Tcp { addr } => match via {
            Some(path) => tokio::net::UnixStream::connect(path)
                .await
                .map(drop)
                .map_err(|e| format!("connect to {}: {e}", path.display())),
            None => tokio::net::TcpStream::connect(addr).await.map(drop).map_err(|e| format!("connect to {addr}: {e}")),
        },
        Probe::Mcp { url } => {
            mcpd_core::mcp::probe_via(url, via, PROBE_TIMEOUT).await.map(drop).map_err(|e| e.to_string())
        }
    }
}

/// How often the HTTP and TCP probes try again until the ready deadline.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// How long one probe attempt may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Watches one generation; `notify` and `ipc` carry the daemon's ends of its channels.
pub(crate) async fn watch(
    pid: u32,
    ready: Ready,
    via: Option<std::path::PathBuf>,
    notify: Option<UnixDatagram>,
    ipc: Option<OwnedReadHalf>,
    tx: Sender<Report>,
) {
    let via = via.as_deref();
    if let Some(probe) = ready.probe() {
        while !matches!(tokio::time::timeout(PROBE_TIMEOUT, probe_once(&probe, via)).await, Ok(Ok(()))) {
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        let _ = tx.send(Report::Ready { pid }).await;
    }
    // Notify and IPC channels stay open for the generation's life (STATUS= updates, messages).
    tokio::join!(
        async {
            if let Some(socket) = notify {
                notify_loop(pid, socket, &tx).await;
            }
        },
        async {
            if let Some(read) = ipc {
                ipc_loop(pid, read, ready == Ready::Ipc, &tx).await;
            }
        }
    );
}

/// The longest IPC message kept whole: `"ready"` fits; a longer message cannot be it and is
/// skipped to its end, so an app sending large messages (PM2 apps `process.send` freely)
/// costs the daemon nothing.
const IPC_KEPT: usize = 32;

/// Reads `NODE_CHANNEL_SERIALIZATION_MODE=json` messages (one JSON value per line) for as long
/// as the channel is open, so the app's `process.send` never blocks; with `report_ready`, the
/// message `'ready'` makes the generation ready. Every other message is dropped.
async fn ipc_loop(pid: u32, mut read: OwnedReadHalf, report_ready: bool, tx: &Sender<Report>) {
    let mut chunk = vec![0u8; 4096];
    let mut line = MessageStart::default();
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for message in line.feed(&chunk[..n]) {
            if report_ready && serde_json::from_slice::<serde_json::Value>(&message).ok() == Some("ready".into()) {
                let _ = tx.send(Report::Ready { pid }).await;
            }
        }
    }
}

/// Splits a byte stream into lines, keeping only lines of at most [`IPC_KEPT`] bytes.
#[derive(Default)]
struct MessageStart {
    kept: Vec<u8>,
    too_long: bool,
}

impl MessageStart {
    /// The short lines completed by `bytes`.
    fn feed(&mut self, mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut done = Vec::new();
        loop {
            let (part, end) = match memchr::memchr(b'\n', bytes) {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            if !self.too_long {
                if self.kept.len() + part.len() > IPC_KEPT {
                    self.kept.clear();
                    self.too_long = true;
                } else {
                    self.kept.extend_from_slice(part);
                }
            }
            if !end {
                return done;
            }
            if !std::mem::take(&mut self.too_long) {
                done.push(std::mem::take(&mut self.kept));
            }
            bytes = &bytes[part.len() + 1..];
        }
    }
}

/// Reads sd_notify datagrams; a message counts when its sender is in the generation's group
/// (or already gone: a short-lived helper such as `systemd-notify`).
async fn notify_loop(pgid: u32, socket: UnixDatagram, tx: &Sender<Report>) {
    let mut buf = vec![0u8; 4096];
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let received = socket.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!(libc::ucred, [std::os::fd::RawFd; 8]);
            let msg = recvmsg::<UnixAddr>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            let mut sender = None;
            let mut fds = Vec::new();
            for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
                match cmsg {
                    ControlMessageOwned::ScmCredentials(cred) => sender = Some(cred.pid()),
                    // SAFETY: the kernel just gave us these fds; we own them now.
                    ControlMessageOwned::ScmRights(received) => {
                        fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }))
                    }
                    _ => {}
                }
            }
            Ok((msg.bytes, sender, fds))
        });
        let (len, sender, barrier_fds) = match received {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        if let Some(sender) = sender.filter(|&p| !from_group(p, pgid)) {
            tracing::warn!(pgid, sender, "ignoring a notify message from a process outside the app's group");
            continue;
        }
        for notice in notices(&buf[..len]) {
            let report = match notice {
                Notice::Ready => Report::Ready { pid: pgid },
                Notice::Status(text) => Report::Status { pid: pgid, text },
                Notice::Watchdog => Report::Watchdog { pid: pgid },
                Notice::Stopping => Report::Status { pid: pgid, text: "stopping".into() },
            };
            let _ = tx.send(report).await;
        }
        // BARRIER=1 senders wait until their fd is closed: we have processed everything before it.
        drop(barrier_fds);
    }
}

/// One line of an sd_notify datagram that mcpd acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `READY=1`.
    Ready,
    /// `STATUS=text`.
    Status(String),
    /// `WATCHDOG=1`.
    Watchdog,
    /// `STOPPING=1`.
    Stopping,
}

/// The notices of one datagram, in order: one per line mcpd knows, other lines ignored.
pub(crate) fn notices(datagram: &[u8]) -> Vec<Notice> {
    String::from_utf8_lossy(datagram)
        .lines()
        .filter_map(|line| match line {
            "READY=1" => Some(Notice::Ready),
            "WATCHDOG=1" => Some(Notice::Watchdog),
            "STOPPING=1" => Some(Notice::Stopping),
            _ => line.strip_prefix("STATUS=").map(|text| Notice::Status(text.to_string())),
        })
        .collect()
}

/// Whether `pid` is in process group `pgid`; a pid that is gone cannot be checked and counts.
fn from_group(pid: i32, pgid: u32) -> bool {
    match nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))) {
        Ok(group) => group.as_raw() as u32 == pgid,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::{MessageStart, IPC_KEPT};

    #[test]
    fn ipc_messages_are_split_at_newlines_and_long_ones_skipped_whole() {
        let long = format!("{{\"data\":\"{}\"}}", "x".repeat(10 * IPC_KEPT));
        let cases: &[(&[&str], &[&str])] = &[
            (&["\"ready\"\n"], &["\"ready\""]),
            (&["\"rea", "dy\"\n\"x\"\n"], &["\"ready\"", "\"x\""]),
            (&[&format!("{long}\n\"ready\"\n")], &["\"ready\""]),
            (&[&long[..50], &long[50..], "\n", "\"ready\"", "\n"], &["\"ready\""]),
            (&["\"ready\""], &[]),
            (&["\n\n"], &["", ""]),
        ];
        for (chunks, want) in cases {
            let mut start = MessageStart::default();
            let got: Vec<String> =
                chunks.iter().flat_map(|c| start.feed(c.as_bytes())).map(|m| String::from_utf8(m).unwrap()).collect();
            assert_eq!(got, *want, "{chunks:?}");
            assert!(start.kept.len() <= IPC_KEPT);
        }
    }
}
