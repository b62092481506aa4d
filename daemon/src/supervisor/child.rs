//! Starting a generation's leader with `clone3`, and waiting for it through a pidfd.
//!
//! `clone3` does what fork does, plus two things `std::process::Command` cannot ask for:
//! `CLONE_INTO_CGROUP` starts the child inside its generation's cgroup (no write to
//! `cgroup.procs`, which waits for an RCU grace period, 5–13 ms, when it is the first such
//! write in a while), and `CLONE_PIDFD` hands back a pidfd, which becomes readable when the
//! leader exits, so its exit is awaited on the runtime's reactor like a socket. A pidfd names
//! one process, so the leader's exit is collected by pid only after the pidfd said it exited,
//! while it is still a zombie only the daemon may reap (the reapers leave leaders alone).
//!
//! The child runs [`ExecPlan::exec`] (async-signal-safe, no allocation) and, if that fails,
//! writes the errno to a close-on-exec pipe, which the parent reads: end of file means the
//! execve happened.

use super::exec::ExecPlan;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitStatus;
use tokio::net::unix::pipe::Receiver;

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of the kernel, up to its `cgroup` field (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A started leader: its pid and a pidfd for it.
#[derive(Debug)]
pub(crate) struct Child {
    pub pid: u32,
    pidfd: OwnedFd,
}

impl Child {
    /// A copy of its pidfd (close-on-exec), to signal it while another task waits for it.
    pub fn pidfd_copy(&self) -> io::Result<OwnedFd> {
        self.pidfd.try_clone()
    }
}

/// A new child's standard streams: stdin `/dev/null`, stdout and stderr pipes whose read
/// ends are registered with the runtime (made on it, before the child exists, so nothing can
/// fail after it runs).
pub(crate) struct Pipes {
    pub stdout: Receiver,
    pub stderr: Receiver,
    pub ends: ChildEnds,
}

/// The child's ends of its standard streams, closed here once it has its copies.
#[derive(Debug)]
pub(crate) struct ChildEnds {
    null: std::fs::File,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Makes a child's standard streams. On the runtime.
pub(crate) fn pipes() -> io::Result<Pipes> {
    let null = std::fs::File::open("/dev/null")?;
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    Ok(Pipes {
        stdout: Receiver::from_owned_fd(out_read)?,
        stderr: Receiver::from_owned_fd(err_read)?,
        ends: ChildEnds { null, stdout: out_write, stderr: err_write },
    })
}

/// Starts `plan` as a new process with the streams of `ends`, inside the cgroup directory
/// `cgroup` when given. Blocks until the child has exec'd or failed to, as `Command::spawn`
/// does; any thread may call it.
pub(crate) fn start(plan: &mut ExecPlan, ends: ChildEnds, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Child> {
    start_with(plan, ends, cgroup, Syscall::Clone3)
}

/// Which system call starts the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syscall {
    /// clone3, falling back to clone where it is missing or refused.
    Clone3,
    /// clone (what the fallback uses), for its test.
    #[cfg_attr(not(test), allow(dead_code))]
    Legacy,
}

fn start_with(plan: &mut ExecPlan, ends: ChildEnds, cgroup: Option<BorrowedFd<'_>>, how: Syscall) -> io::Result<Child> {
    let (report_read, report_write) = pipe()?;
    plan.set_stdio([ends.null.as_raw_fd(), ends.stdout.as_raw_fd(), ends.stderr.as_raw_fd()], report_write.as_raw_fd());
    let child = match clone_and_exec(plan, cgroup, how) {
        Err(e)
            if cgroup.is_some()
                && matches!(e.raw_os_error(), Some(libc::E2BIG | libc::EINVAL | libc::ENOSYS | libc::EPERM)) =>
        {
            // A kernel before 5.7 has no CLONE_INTO_CGROUP (or no clone3, or a seccomp
            // profile refuses it): the child moves itself, by the `cgroup.procs` the plan was
            // given for this case.
            plan.enter_tracking_cgroup_itself();
            clone_and_exec(plan, None, how)?
        }
        other => other?,
    };
    // The child has its copies; ours would keep the pipes open after it exits.
    drop((ends, report_write));
    let mut errno = [0u8; 4];
    let mut got = 0;
    // Bounded: each read returns data or end of file (EINTR retries are not a loop the
    // child can keep going).
    while got < errno.len() {
        // SAFETY: reads into the unfilled part of a buffer on our stack.
        let n = unsafe { libc::read(report_read.as_raw_fd(), errno[got..].as_mut_ptr().cast(), errno.len() - got) };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => break,
        }
    }
    if got == 0 {
        return Ok(child);
    }
    // The child failed before execve and exits at once; collect it so it leaves no zombie.
    let mut status = 0;
    // SAFETY: waitpid of our own child, into an int on our stack.
    unsafe { libc::waitpid(child.pid as i32, &mut status, 0) };
    Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
}

/// clone3, then in the child: [`ExecPlan::exec`], and on failure its errno to the report pipe.
fn clone_and_exec(plan: &mut ExecPlan, cgroup: Option<BorrowedFd<'_>>, how: Syscall) -> io::Result<Child> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: CLONE_PIDFD,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(dir) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = dir.as_raw_fd() as u64;
    }
    // Signals are blocked across clone3, so the daemon's handlers (which write to the
    // runtime's signal pipe) never run in the child; the child resets every disposition
    // before it unblocks them (ExecPlan::exec).
    // SAFETY: a sigset_t is plain data, for which all zeroes is a valid (empty) value;
    // sigfillset and pthread_sigmask work on sets on our stack.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut before = all;
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
    }
    // SAFETY: clone3 without CLONE_VM duplicates this process as fork does. In the child
    // only async-signal-safe system calls run (ExecPlan::exec, write, _exit), on memory the
    // plan owns; no lock, no allocation, no glibc per-thread state.
    let (mut rc, mut error) = match how {
        Syscall::Clone3 => (
            unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) },
            io::Error::last_os_error(),
        ),
        Syscall::Legacy => (-1, io::Error::from_raw_os_error(libc::ENOSYS)),
    };
    if rc < 0 && cgroup.is_none() && matches!(error.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
        // No clone3 (a kernel before 5.3, or a container's seccomp profile, which answers
        // ENOSYS or EPERM so that libc falls back): clone with a pidfd (Linux 5.2), which
        // puts the pidfd where the parent's tid would go (the third argument on every arch).
        // SAFETY: as above; no stack is given, so the child runs on a copy of this one.
        rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (CLONE_PIDFD as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong,
                0usize,
                &mut pidfd as *mut RawFd,
                0usize,
                0usize,
            )
        };
        error = io::Error::last_os_error();
    }
    if rc != 0 {
        // SAFETY: restores this thread's mask from a set on our stack.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    }
    if rc < 0 {
        return Err(error);
    }
    if rc == 0 {
        let error = plan.exec();
        let errno = error.raw_os_error().unwrap_or(libc::EINVAL).to_ne_bytes();
        // SAFETY: write of a buffer on the stack, then _exit: both async-signal-safe.
        unsafe {
            libc::write(plan.report_fd(), errno.as_ptr().cast(), errno.len());
            libc::_exit(127);
        }
    }
    // SAFETY: the kernel wrote a new pidfd, which nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Child { pid: rc as u32, pidfd })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Child {
    /// A leader this process started before it re-executed itself (`mcpd update`): still its
    /// child, so its pid cannot be reused before it is reaped and `pidfd_open` names it.
    pub fn adopt(pid: u32) -> io::Result<Child> {
        Ok(Child { pid, pidfd: crate::pidfd::open(pid)? })
    }

    /// Waits for the leader to exit and collects its status. Must run on the runtime.
    pub async fn wait(self) -> io::Result<ExitStatus> {
        crate::pidfd::wait(self.pid, self.pidfd).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn plan(program: &str, args: &[&str], cwd: &str) -> ExecPlan {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env = BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]);
        ExecPlan::new(Path::new(program), Path::new(cwd), &args, &env, &Default::default()).unwrap()
    }

    #[tokio::test]
    async fn a_child_runs_in_its_cwd_with_its_output_piped_and_its_exit_collected() {
        use tokio::io::AsyncReadExt;
        let mut plan = plan("/bin/sh", &["-c", "pwd; echo oops >&2; exit 3"], "/tmp");
        let Pipes { mut stdout, mut stderr, ends } = pipes().unwrap();
        let child = start(&mut plan, ends, None).unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        stdout.read_to_string(&mut out).await.unwrap();
        stderr.read_to_string(&mut err).await.unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!((out.as_str(), err.as_str(), status.code()), ("/tmp\n", "oops\n", Some(3)));
    }

    #[tokio::test]
    async fn where_clone3_is_refused_clone_with_a_pidfd_starts_the_child() {
        let mut plan = plan("/bin/sh", &["-c", "exit 7"], "/");
        let child = start_with(&mut plan, pipes().unwrap().ends, None, Syscall::Legacy).unwrap();
        assert_eq!(child.wait().await.unwrap().code(), Some(7));
    }

    #[tokio::test]
    async fn a_failed_exec_or_chdir_is_an_error_with_its_errno() {
        for (program, cwd, errno) in
            [("/nonexistent/program", "/", libc::ENOENT), ("/bin/true", "/nonexistent-dir", libc::ENOENT)]
        {
            let mut plan = plan(program, &[], cwd);
            let Err(error) = start(&mut plan, pipes().unwrap().ends, None) else {
                panic!("{program} in {cwd} started")
            };
            assert_eq!(error.raw_os_error(), Some(errno), "{program} in {cwd}: {error}");
        }
    }
}
