//! A child's exit awaited on the runtime's reactor: a pidfd becomes readable when the process
//! exits, and the exit is then collected by pid, while the zombie is still there for only its
//! parent to reap (the daemon's reapers leave the pids they are told of alone).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// A pidfd for `pid`, a child of this process (so the pid cannot be reused before it is
/// reaped). Close-on-exec.
pub(crate) fn open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open makes a new fd (or fails); no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel made this fd for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits for child `pid` (whose pidfd this is) to exit and collects its status. On the runtime.
pub(crate) async fn wait(pid: u32, pidfd: OwnedFd) -> io::Result<ExitStatus> {
    // SAFETY: the AsyncFd owns the pidfd, so the fd stays open and the same for as long as it
    // is registered.
    let pidfd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?;
    // Bounded: a pidfd is readable from the exit on, so the second pass finds the zombie (the
    // first can only miss it on a spurious wakeup).
    loop {
        let mut ready = pidfd.readable().await?;
        let mut status = 0;
        // SAFETY: waitpid of our own child, into an int on our stack.
        match unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) } {
            0 => ready.clear_ready(),
            p if p > 0 => return Ok(ExitStatus::from_raw(status)),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
