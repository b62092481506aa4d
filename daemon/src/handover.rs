//! What crosses an update in place (`mcpd update`, see `update.rs`) besides the apps' state:
//! descriptors kept open across `execve` under the same numbers, the values that describe
//! them, and `Instant`s as `CLOCK_MONOTONIC` time (the clock both daemons read).

use serde::{Deserialize, Serialize};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The guard process and the daemon's end of its pipe.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GuardState {
    pub pid: u32,
    pub pipe: RawFd,
}

/// A generation's output pipe: its read end (-1 once every writer closed it), the line it was
/// in the middle of, and whole lines read but not yet in the file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PipeState {
    pub fd: RawFd,
    #[serde(default)]
    pub partial: Vec<u8>,
    /// Formatted as the app's log format says, written first by the next capture.
    #[serde(default)]
    pub formatted: Vec<u8>,
    #[serde(default)]
    pub lines: u64,
    /// The file took everything the old capture queued (not handed over: the old daemon
    /// refuses to go on without it).
    #[serde(skip)]
    pub flushed: bool,
}

impl PipeState {
    /// No pipe.
    pub fn none() -> PipeState {
        PipeState { fd: -1, flushed: true, ..PipeState::default() }
    }
}

/// A generation's cgroups.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CgroupState {
    pub dir: PathBuf,
    /// v1 cgroups by controller.
    pub v1: Vec<(String, PathBuf)>,
}

/// An app's front.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FrontState {
    pub app: String,
    /// The public socket (listening).
    pub public: RawFd,
    /// Sessions and the generation (pid) that holds each.
    pub sessions: Vec<(String, u32)>,
    /// Client connections between requests, and the bytes already read from each.
    pub connections: Vec<ConnState>,
}

/// A client connection of a front, handed over between two requests.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConnState {
    pub fd: RawFd,
    pub tcp: bool,
    pub peer: Option<String>,
    #[serde(default)]
    pub read: Vec<u8>,
}

/// Sets or clears close-on-exec.
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor number; an invalid one is EBADF.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Duplicates `fd` (close-on-exec) so the copy outlives its owner.
pub(crate) fn dup(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor; an invalid `fd` is EBADF.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` was just made and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Takes ownership of an fd named by the hand-over (once: the caller takes each number once),
/// making it close-on-exec again so no app inherits it.
pub(crate) fn take(fd: RawFd) -> std::io::Result<OwnedFd> {
    set_cloexec(fd, true)?;
    // SAFETY: the hand-over names each fd once, and it was open across the exec for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock `Instant` reads, shared by the old and the
/// new daemon.
fn monotonic_ns() -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// An `Instant` as `CLOCK_MONOTONIC` nanoseconds.
pub(crate) fn instant_to_ns(at: Instant) -> u64 {
    let (now, ns) = (Instant::now(), monotonic_ns());
    let value = if at >= now { ns + (at - now).as_nanos() } else { ns.saturating_sub((now - at).as_nanos()) };
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// The `Instant` of `CLOCK_MONOTONIC` nanoseconds (a far future one is capped at a year).
pub(crate) fn ns_to_instant(value: u64) -> Instant {
    let (now, ns) = (Instant::now(), monotonic_ns());
    let value = u128::from(value);
    if value >= ns {
        let ahead = Duration::from_nanos(u64::try_from(value - ns).unwrap_or(u64::MAX));
        now + ahead.min(Duration::from_secs(365 * 24 * 3600))
    } else {
        let behind = Duration::from_nanos(u64::try_from(ns - value).unwrap_or(u64::MAX));
        now.checked_sub(behind).unwrap_or(now)
    }
}

/// Serde for an `Instant` across the exec.
pub(crate) mod mono {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Instant;

    pub fn serialize<S: Serializer>(at: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::instant_to_ns(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        u64::deserialize(d).map(super::ns_to_instant)
    }
}

/// Serde for an `Option<Instant>` across the exec.
pub(crate) mod mono_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Instant;

    pub fn serialize<S: Serializer>(at: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_some(&super::instant_to_ns(*at)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Option::<u64>::deserialize(d).map(|v| v.map(super::ns_to_instant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_survive_the_round_trip_within_a_millisecond() {
        let now = Instant::now();
        for at in [now, now + Duration::from_secs(5), now.checked_sub(Duration::from_secs(3)).unwrap_or(now)] {
            let back = ns_to_instant(instant_to_ns(at));
            let diff = if back > at { back - at } else { at - back };
            assert!(diff < Duration::from_millis(1), "{diff:?}");
        }
    }
}
