//! The guard: a small process forked before the daemon starts its runtime, which ends every
//! app group if the daemon dies without stopping them (kill -9, OOM, a crash).
//!
//! The daemon tells it, over a pipe, which process groups are running ("+PGID" / "-PGID"
//! lines), which generations' cgroups ("G+PATH" / "G-PATH"), and the home's cgroup tree
//! ("CPATH"). When the pipe reaches end-of-file, the daemon is gone: the guard SIGKILLs every
//! group and cgroup still listed (what left its group with `setsid` is in the cgroup), leaves
//! the tree and removes it, then exits. A daemon that exits cleanly has stopped every app
//! first and says so ("Q"): then the guard kills nothing. This holds for grandchildren too (`sh -c`, `npm start`), which
//! a parent-death signal on the leader alone would miss.

use nix::sys::signal::{killpg, signal, SigHandler, Signal};
use nix::unistd::{fork, ForkResult, Pid};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// The daemon's end of the pipe to the guard, and what the guard was told, to tell a new one
/// if the guard dies (killed by hand, or by the OOM killer).
#[derive(Debug)]
pub struct Guard {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pipe: Option<std::fs::File>,
    pid: Option<u32>,
    /// The fd a guard must not keep (the home's lock, when `mcpd daemon` handed it over).
    close: Option<std::os::fd::RawFd>,
    /// Bounded by the live generations: each is added at spawn and removed when it is gone.
    groups: BTreeSet<u32>,
    cgroups: BTreeSet<std::path::PathBuf>,
    /// The home's trees: one, plus one per cgroup v1 hierarchy.
    trees: Vec<std::path::PathBuf>,
    /// The daemon exits cleanly: a guard gone now is not replaced.
    quit: bool,
    /// When the last replacement started, and how many in a row died within a second.
    replaced_at: Option<std::time::Instant>,
    quick_deaths: u32,
    /// The guard was told it is behind (logged once per episode).
    behind: bool,
    /// The size of the whole state queued at the last reset ("R"), 0 once it is read.
    reset_len: usize,
    /// What the guard has not read yet: the pipe is non-blocking, so a guard that stops
    /// reading (SIGSTOP, a debugger) never blocks the daemon. Bounded by [`MAX_PENDING`]:
    /// past it, the lines give way to the whole state (bounded by the live generations).
    pending: Vec<u8>,
}

/// Bytes kept for a guard that does not read, beyond its pipe's own buffer (1 MiB where the
/// kernel allows).
const MAX_PENDING: usize = if cfg!(test) { 4096 } else { 1 << 20 };

impl Guard {
    /// Forks the guard. Must run before any thread is started (before the tokio runtime).
    /// `close` is an fd the guard must not keep (the home's lock).
    pub fn start(close: Option<std::os::fd::RawFd>) -> std::io::Result<Guard> {
        let (read, write) = nix::unistd::pipe()?;
        // SAFETY: called while the process is single-threaded (checked by the caller's order:
        // before the runtime is built), so the child may run ordinary code.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(write);
                if let Some(fd) = close {
                    // SAFETY: closing an fd of this (forked, single-threaded) process.
                    unsafe { libc::close(fd) };
                }
                run_guard(read)
            }
            ForkResult::Parent { child } => {
                drop(read);
                let file = std::fs::File::from(write);
                set_cloexec(&file);
                prepare_pipe(&file);
                let inner = Inner { pipe: Some(file), pid: Some(child.as_raw() as u32), close, ..Inner::default() };
                Ok(Guard { inner: Mutex::new(inner) })
            }
        }
    }

    /// The guard and the daemon's end of its pipe, to hand over to the next daemon
    /// (`mcpd update`): the pipe stays open across the exec, so the guard never sees its end.
    pub(crate) fn handover_state(&self) -> Option<crate::handover::GuardState> {
        use std::os::fd::AsRawFd;
        let inner = self.inner.lock().expect("guard lock");
        Some(crate::handover::GuardState { pid: inner.pid?, pipe: inner.pipe.as_ref()?.as_raw_fd() })
    }

    /// The guard the previous daemon handed over. It is told the whole state once the apps
    /// are adopted ([`Guard::resync`]).
    pub(crate) fn adopt(
        state: &crate::handover::GuardState,
        close: Option<std::os::fd::RawFd>,
    ) -> std::io::Result<Guard> {
        let file = std::fs::File::from(crate::handover::take(state.pipe)?);
        prepare_pipe(&file);
        let inner = Inner { pipe: Some(file), pid: Some(state.pid), close, ..Inner::default() };
        Ok(Guard { inner: Mutex::new(inner) })
    }

    /// Tells the guard to forget what it knows and the whole state instead. A line the
    /// previous daemon left half-written is ended first.
    pub(crate) fn resync(&self) {
        let mut inner = self.inner.lock().expect("guard lock");
        let told = format!("\nR\n{}", state(&inner));
        inner.pending.clear();
        write_to(&mut inner, &told);
    }

    /// A new guard started by exec (`mcpd-daemon --guard`), so it keeps none of this process's
    /// descriptors (a daemon taking over from one that had no guard holds the apps' sockets).
    pub(crate) fn start_by_exec(close: Option<std::os::fd::RawFd>) -> std::io::Result<Guard> {
        let (pid, pipe) = spawn_guard(close)?;
        let inner = Inner { pipe: Some(pipe), pid: Some(pid), close, ..Inner::default() };
        Ok(Guard { inner: Mutex::new(inner) })
    }

    /// A guard that watches nothing (tests of the engine in-process).
    pub fn disabled() -> Guard {
        Guard { inner: Mutex::new(Inner::default()) }
    }

    /// The guard's pid (none for a disabled guard).
    pub fn pid(&self) -> Option<u32> {
        self.inner.lock().expect("guard lock").pid
    }

    /// Called on SIGCHLD: if the guard has died, starts a new one (`mcpd-daemon --guard`, the
    /// same binary, which may be spawned from a threaded process) and tells it everything the
    /// old one knew, so apps still end with the daemon. A guard that keeps dying within a
    /// second of its start is given up after three tries, and that is logged.
    pub fn replace_if_gone(&self) {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let mut inner = self.inner.lock().expect("guard lock");
        let Some(pid) = inner.pid else { return };
        if inner.quit {
            return;
        }
        // The guard is this process's child: ECHILD means it was reaped already.
        if let Ok(WaitStatus::StillAlive) = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
            return;
        }
        inner.pipe = None;
        inner.pid = None;
        inner.pending.clear();
        inner.reset_len = 0;
        if inner.replaced_at.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1)) {
            inner.quick_deaths += 1;
        } else {
            inner.quick_deaths = 0;
        }
        if inner.quick_deaths >= 3 {
            tracing::error!("the guard process keeps dying at start; apps will not be ended if the daemon dies");
            return;
        }
        match spawn_guard(inner.close) {
            Ok((new, pipe)) => {
                tracing::warn!(old = pid, new, "the guard process died; a new one took its place");
                inner.pid = Some(new);
                inner.pipe = Some(pipe);
                inner.replaced_at = Some(std::time::Instant::now());
                let told = state(&inner);
                write_to(&mut inner, &told);
            }
            Err(e) => {
                tracing::error!(error = %e, "the guard process died and no new one could be started; apps will not be ended if the daemon dies")
            }
        }
    }

    /// The home's cgroup tree, which the guard removes when it exits.
    pub fn watch_tree(&self, tree: &std::path::Path) {
        self.inner.lock().expect("guard lock").trees.push(tree.to_path_buf());
        self.send(format!("C{}\n", tree.display()));
    }

    /// Adds a generation's cgroup: killed through `cgroup.kill` if the daemon dies (what left
    /// its process group with `setsid` is still in it).
    pub fn watch_cgroup(&self, dir: &std::path::Path) {
        self.inner.lock().expect("guard lock").cgroups.insert(dir.to_path_buf());
        self.send(format!("G+{}\n", dir.display()));
    }

    /// Removes a generation's cgroup from the guard's list once it is gone.
    pub fn forget_cgroup(&self, dir: &std::path::Path) {
        self.inner.lock().expect("guard lock").cgroups.remove(dir);
        self.send(format!("G-{}\n", dir.display()));
    }

    /// The daemon stopped every app and exits: the guard kills nothing (a daemon started
    /// meanwhile for the same home may already have apps in the tree).
    pub fn clean_exit(&self) {
        self.inner.lock().expect("guard lock").quit = true;
        self.send("Q\n".to_string());
        // The daemon exits next: what the guard has not read yet ("Q" last) gets a second
        // to go (a guard that does not read by then ends what it still knows of).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let mut inner = self.inner.lock().expect("guard lock");
            flush(&mut inner);
            let Some(file) = inner.pipe.as_ref().filter(|_| !inner.pending.is_empty()) else { return };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            use std::os::fd::AsRawFd;
            let mut poll = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            drop(inner);
            // SAFETY: poll on one pollfd on our stack. Bounded by the deadline.
            unsafe { libc::poll(&mut poll, 1, left.as_millis().min(1000) as libc::c_int) };
        }
    }

    /// Adds a group to the guard's list.
    pub fn watch(&self, pgid: u32) {
        self.inner.lock().expect("guard lock").groups.insert(pgid);
        self.send(format!("+{pgid}\n"));
    }

    /// Removes a group from the guard's list once it is gone.
    pub fn forget(&self, pgid: u32) {
        self.inner.lock().expect("guard lock").groups.remove(&pgid);
        self.send(format!("-{pgid}\n"));
    }

    fn send(&self, line: String) {
        write_to(&mut self.inner.lock().expect("guard lock"), &line);
    }

    /// Writes what the guard has not read yet, if it reads again (called with each sample,
    /// once a second, on a blocking thread).
    pub fn flush(&self) {
        flush(&mut self.inner.lock().expect("guard lock"));
    }
}

/// Everything the guard must know, as lines (for a new guard, or one that fell behind).
fn state(inner: &Inner) -> String {
    let mut told = String::new();
    inner.trees.iter().for_each(|t| told.push_str(&format!("C{}\n", t.display())));
    inner.cgroups.iter().for_each(|c| told.push_str(&format!("G+{}\n", c.display())));
    inner.groups.iter().for_each(|g| told.push_str(&format!("+{g}\n")));
    if inner.quit {
        told.push_str("Q\n");
    }
    told
}

/// Queues `lines` for the guard and writes what the pipe takes now.
fn write_to(inner: &mut Inner, lines: &str) {
    if inner.pipe.is_none() {
        return;
    }
    if inner.pending.len() + lines.len() > MAX_PENDING + inner.reset_len {
        // The guard fell too far behind: it is told to forget, then the whole state (which
        // already holds `lines`). Rebuilt only after another MAX_PENDING bytes of changes.
        let told = format!("R\n{}", state(inner));
        inner.reset_len = told.len();
        inner.pending = told.into_bytes();
    } else {
        inner.pending.extend_from_slice(lines.as_bytes());
    }
    flush(inner);
}

/// Writes what the pipe takes of the pending lines, never blocking.
fn flush(inner: &mut Inner) {
    let Some(file) = inner.pipe.as_mut() else { return };
    // Bounded: each pass writes some bytes or stops.
    while !inner.pending.is_empty() {
        match file.write(&inner.pending) {
            Ok(0) => break,
            Ok(n) => {
                inner.pending.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                tracing::error!(error = %e, "cannot reach the guard process; a new one starts when it is gone");
                inner.pipe = None;
                inner.pending.clear();
                return;
            }
        }
    }
    if !inner.pending.is_empty() && !inner.behind {
        inner.behind = true;
        tracing::warn!(
            bytes = inner.pending.len(),
            "the guard process is not reading its pipe (stopped?); the daemon keeps what it must tell it"
        );
    }
    if inner.pending.is_empty() {
        inner.reset_len = 0;
    }
    if inner.pending.is_empty() && inner.behind {
        inner.behind = false;
        tracing::info!("the guard process caught up");
    }
}

/// The daemon's end of the pipe to a guard: non-blocking, and as large as the kernel lets
/// an unprivileged pipe be, so a burst of spawns fits while the guard is busy.
fn prepare_pipe(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on an fd this file owns.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Starts a guard from a threaded daemon: `mcpd-daemon --guard` reading the pipe on stdin.
fn spawn_guard(close: Option<std::os::fd::RawFd>) -> std::io::Result<(u32, std::fs::File)> {
    use std::os::unix::process::CommandExt;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut command = std::process::Command::new("/proc/self/exe");
    command
        .arg("--guard")
        .stdin(std::process::Stdio::from(read))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(fd) = close {
        // SAFETY: close(2) is async-signal-safe and touches no memory.
        unsafe {
            command.pre_exec(move || {
                libc::close(fd);
                Ok(())
            });
        }
    }
    let child = command.spawn()?;
    // Not waited for here: `replace_if_gone` reaps it when it exits.
    let file = std::fs::File::from(write);
    prepare_pipe(&file);
    Ok((child.id(), file))
}

/// `mcpd-daemon --guard`: a replacement guard, reading the daemon's pipe on stdin.
pub fn run_replacement() -> ! {
    use std::os::fd::FromRawFd;
    // SAFETY: fd 0 is the pipe the daemon set up as stdin, owned by nothing else here.
    run_guard(unsafe { OwnedFd::from_raw_fd(0) })
}

fn set_cloexec(file: &std::fs::File) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let _ = fcntl(file, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

fn run_guard(read: OwnedFd) -> ! {
    // Signals meant for the daemon's terminal or session, or sent to every process named
    // mcpd (`pkill -USR1 mcpd`), must not end the guard first.
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        // SAFETY: setting a signal to SIG_IGN installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let name = c"mcpd-guard";
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    let mut groups = BTreeSet::new();
    let mut trees = Vec::new();
    // Bounded like the groups: one entry per live generation.
    let mut cgroups = BTreeSet::new();
    let mut clean = false;
    for line in BufReader::new(std::fs::File::from(read)).lines() {
        let Ok(line) = line else { break };
        if let Some(tree) = line.strip_prefix('C') {
            trees.push(std::path::PathBuf::from(tree));
            continue;
        }
        if let Some(dir) = line.strip_prefix("G+") {
            cgroups.insert(std::path::PathBuf::from(dir));
            continue;
        }
        if let Some(dir) = line.strip_prefix("G-") {
            cgroups.remove(std::path::Path::new(dir));
            continue;
        }
        if line == "Q" {
            clean = true;
            continue;
        }
        if line == "R" {
            // The daemon fell behind telling this guard: the whole state follows.
            groups.clear();
            cgroups.clear();
            trees.clear();
            clean = false;
            continue;
        }
        let (op, pgid) = line.split_at(1.min(line.len()));
        match (op, pgid.parse::<i32>()) {
            ("+", Ok(p)) if p > 1 => {
                groups.insert(p);
            }
            ("-", Ok(p)) => {
                groups.remove(&p);
            }
            _ => {}
        }
    }
    if !clean {
        for pgid in groups {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        end_cgroups(&cgroups);
    }
    for tree in &trees {
        leave_tree(tree);
    }
    std::process::exit(0)
}

/// Kills the generations' cgroups of a dead daemon and removes them once empty (bounded in
/// time), with their app directories when nothing else is in them.
fn end_cgroups(cgroups: &BTreeSet<std::path::PathBuf>) {
    for dir in cgroups {
        let _ = write(&dir.join("cgroup.kill"), "1");
    }
    let populated = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|t| t.lines().any(|l| l == "populated 1"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cgroups.iter().any(|d| populated(d)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for dir in cgroups {
        let _ = std::fs::remove_dir(dir);
        if let Some(app) = dir.parent() {
            let _ = std::fs::remove_dir(app);
        }
    }
}

/// Writes to an existing (cgroupfs) file: never creates one.
fn write(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(path)?.write_all(text.as_bytes())
}

/// Leaves the daemon's leaf of `tree` and removes the leaf and the tree where nothing else is
/// in them (a daemon started meanwhile keeps its own).
fn leave_tree(tree: &std::path::Path) {
    if let Some(parent) = tree.parent() {
        if write(&parent.join("cgroup.procs"), &std::process::id().to_string()).is_ok() {
            let _ = std::fs::remove_dir(tree.join("daemon"));
            let _ = std::fs::remove_dir(tree);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A guard that does not read: the daemon's writes never block, what waits is bounded,
    /// and once the guard reads it gets "R" and the whole state, ending with the newest.
    #[test]
    fn a_guard_that_does_not_read_never_blocks_and_is_told_the_whole_state_later() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let file = std::fs::File::from(write);
        prepare_pipe(&file);
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on an fd this test owns: the smallest pipe, to fill it quickly.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
        let mut inner = Inner { pipe: Some(file), ..Inner::default() };
        for pgid in 2..20_000u32 {
            inner.groups.insert(pgid);
            write_to(&mut inner, &format!("+{pgid}\n"));
            if pgid % 2 == 0 {
                inner.groups.remove(&pgid);
                write_to(&mut inner, &format!("-{pgid}\n"));
            }
            assert!(inner.pending.len() <= MAX_PENDING + inner.reset_len + 16, "bounded: {}", inner.pending.len());
        }
        assert!(inner.behind, "the daemon noticed");
        let mut reader = std::fs::File::from(read);
        // SAFETY: fcntl on an fd this test owns.
        unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let mut got = Vec::new();
        // Bounded: each pass moves at least one pipe's worth, and what waits is bounded.
        for _ in 0..10_000 {
            let mut buf = [0u8; 8192];
            match reader.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => {
                    flush(&mut inner);
                    if inner.pending.is_empty() {
                        let _ = reader.read_to_end(&mut got);
                        break;
                    }
                }
            }
        }
        assert!(inner.pending.is_empty() && !inner.behind, "caught up");
        let text = String::from_utf8(got).unwrap();
        let after_reset = &text[text.rfind("R\n").expect("a reset") + 2..];
        // Replaying after the last reset gives the daemon's state.
        let mut replayed = BTreeSet::new();
        for line in after_reset.lines() {
            match line.split_at(1) {
                ("+", p) => replayed.insert(p.parse::<u32>().unwrap()),
                ("-", p) => replayed.remove(&p.parse::<u32>().unwrap()),
                _ => true,
            };
        }
        assert_eq!(replayed, inner.groups, "the guard knows every live group, and no other");
    }
}
