//! The sockets an app asks mcpd to bind (`listen = [...]`): bound once, kept while the app is
//! defined, and handed to every generation.

use mcpd_core::config::ListenAddr;
use std::os::fd::OwnedFd;

/// Bound listening sockets and the addresses they were bound for.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    addrs: Vec<ListenAddr>,
    fds: Vec<OwnedFd>,
}

impl Listeners {
    /// Makes sure exactly `addrs` are bound, binding what is missing.
    pub fn ensure(&mut self, addrs: &[ListenAddr]) -> Result<(), String> {
        if self.addrs == addrs {
            return Ok(());
        }
        self.close();
        let mut fds = Vec::with_capacity(addrs.len());
        for addr in addrs {
            fds.push(bind(addr)?);
        }
        self.addrs = addrs.to_vec();
        self.fds = fds;
        Ok(())
    }

    /// Whether these are the addresses bound.
    pub fn matches(&self, addrs: &[ListenAddr]) -> bool {
        self.addrs == addrs
    }

    /// The bound fds, in config order.
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.fds.iter().map(|f| f.as_raw_fd()).collect()
    }

    /// Closes the sockets (and removes Unix socket files).
    pub fn close(&mut self) {
        self.fds.clear();
        for addr in self.addrs.drain(..) {
            if let ListenAddr::Unix(path) = addr {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.close();
    }
}

fn bind(addr: &ListenAddr) -> Result<OwnedFd, String> {
    match addr {
        ListenAddr::Tcp(a) => std::net::TcpListener::bind(a)
            .map(OwnedFd::from)
            .map_err(|e| format!("cannot bind {addr}: {e} (is another process listening there?)")),
        ListenAddr::Unix(path) => {
            if path.exists() {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(format!("cannot bind {addr}: a live process listens on it"));
                }
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
            }
            std::os::unix::net::UnixListener::bind(path)
                .map(OwnedFd::from)
                .map_err(|e| format!("cannot bind {addr}: {e}"))
        }
    }
}
