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

    /// Gives up the sockets to the next daemon (`mcpd update`): their fds are the caller's,
    /// and the socket files stay.
    pub fn hand_over(&mut self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::IntoRawFd;
        self.addrs.clear();
        self.fds.drain(..).map(IntoRawFd::into_raw_fd).collect()
    }

    /// The sockets the previous daemon bound for `addrs` (in the same order).
    pub fn adopt(addrs: &[ListenAddr], fds: &[std::os::fd::RawFd]) -> Result<Listeners, String> {
        if fds.is_empty() {
            // Closed (the app was stopped): bound again at its next start.
            return Ok(Listeners::default());
        }
        if addrs.len() != fds.len() {
            return Err(format!("{} listen sockets handed over for {} addresses", fds.len(), addrs.len()));
        }
        let mut owned = Vec::new();
        for &fd in fds {
            owned.push(crate::handover::take(fd).map_err(|e| format!("cannot take over listen socket fd {fd}: {e}"))?);
        }
        Ok(Listeners { addrs: addrs.to_vec(), fds: owned })
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
