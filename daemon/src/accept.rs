//! Accepting connections without being overrun: a limit on open connections (taken before
//! `accept`, so extra clients wait in the kernel's backlog instead of costing the daemon
//! memory), a growing pause after an accept error such as EMFILE (instead of spinning), and
//! errors logged at most once a second with a count of those not logged.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The first pause after an accept error, and the longest.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// One listener's bounds.
#[derive(Debug)]
pub(crate) struct Gate {
    what: &'static str,
    open: Arc<Semaphore>,
    pause: Duration,
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl Gate {
    /// At most `limit` connections open at once on the listener named `what`.
    pub fn new(what: &'static str, limit: usize) -> Gate {
        Gate { what, open: Arc::new(Semaphore::new(limit)), pause: FIRST_PAUSE, logged_at: None, unlogged: 0 }
    }

    /// Waits until one more connection may be open; the permit is held as long as it is.
    pub async fn permit(&self) -> OwnedSemaphorePermit {
        self.open.clone().acquire_owned().await.expect("the gate's semaphore is never closed")
    }

    /// A connection was accepted: accept errors are over.
    pub fn accepted(&mut self) {
        self.pause = FIRST_PAUSE;
    }

    /// An accept failed: logs it (rate-limited) and returns how long to pause.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        let now = Instant::now();
        if self.logged_at.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
            tracing::warn!(listener = self.what, %error, not_logged = self.unlogged, "accept failed; pausing");
            self.logged_at = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        pause
    }
}

/// Raises the soft limit on open files to the hard limit (a daemon with many apps, fronts and
/// clients needs more than the usual 1024); returns the soft limit it found, which spawned
/// apps get back.
pub(crate) fn raise_nofile_limit() -> Option<libc::rlim_t> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let found = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return None;
        }
    }
    Some(found)
}
