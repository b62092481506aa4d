//! The guard: a small process forked before the daemon starts its runtime, which ends every
//! app group if the daemon dies without stopping them (kill -9, OOM, a crash).
//!
//! The daemon tells it, over a pipe, which process groups are running ("+PGID" / "-PGID"
//! lines) and which cgroup tree its apps' generations are in ("CPATH"). When the pipe reaches
//! end-of-file, the daemon is gone: the guard SIGKILLs every group still listed and every app
//! cgroup of the tree (what left its group with `setsid` too), removes the tree, then exits. A daemon that exits cleanly has stopped every app first,
//! so the list is empty then. This holds for grandchildren too (`sh -c`, `npm start`), which
//! a parent-death signal on the leader alone would miss.

use nix::sys::signal::{killpg, signal, SigHandler, Signal};
use nix::unistd::{fork, ForkResult, Pid};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// The daemon's end of the pipe to the guard.
#[derive(Debug)]
pub struct Guard {
    pipe: Mutex<Option<std::fs::File>>,
    pid: Option<u32>,
}

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
                Ok(Guard { pipe: Mutex::new(Some(file)), pid: Some(child.as_raw() as u32) })
            }
        }
    }

    /// A guard that watches nothing (tests of the engine in-process).
    pub fn disabled() -> Guard {
        Guard { pipe: Mutex::new(None), pid: None }
    }

    /// The guard's pid (none for a disabled guard).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Has the guard also kill every app cgroup under `tree` if the daemon dies: what left
    /// its process group (`setsid`) is still there.
    pub fn watch_tree(&self, tree: &std::path::Path) {
        self.send(format!("C{}\n", tree.display()));
    }

    /// Adds a group to the guard's list.
    pub fn watch(&self, pgid: u32) {
        self.send(format!("+{pgid}\n"));
    }

    /// Removes a group from the guard's list once it is gone.
    pub fn forget(&self, pgid: u32) {
        self.send(format!("-{pgid}\n"));
    }

    fn send(&self, line: String) {
        let mut pipe = self.pipe.lock().expect("guard lock");
        if let Some(file) = pipe.as_mut() {
            if let Err(e) = file.write_all(line.as_bytes()) {
                tracing::error!(error = %e, "the guard process is gone: apps will not be ended if the daemon dies");
                *pipe = None;
            }
        }
    }
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
    for line in BufReader::new(std::fs::File::from(read)).lines() {
        let Ok(line) = line else { break };
        if let Some(tree) = line.strip_prefix('C') {
            trees.push(std::path::PathBuf::from(tree));
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
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    for tree in &trees {
        end_tree(tree);
    }
    std::process::exit(0)
}

/// Kills every app cgroup of a dead daemon's `tree`, then removes the tree (the guard leaves
/// it first), so nothing of the home is left running or behind. Bounded in time.
fn end_tree(tree: &std::path::Path) {
    let apps: Vec<std::path::PathBuf> = std::fs::read_dir(tree)
        .map(|d| {
            d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("app-")).map(|e| e.path()).collect()
        })
        .unwrap_or_default();
    for app in &apps {
        let _ = std::fs::write(app.join("cgroup.kill"), "1");
    }
    let populated = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|t| t.lines().any(|l| l == "populated 1"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while apps.iter().any(|a| populated(a)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for app in &apps {
        if let Ok(gens) = std::fs::read_dir(app) {
            for generation in gens.flatten().filter(|e| e.path().is_dir()) {
                let _ = std::fs::remove_dir(generation.path());
            }
        }
        let _ = std::fs::remove_dir(app);
    }
    if let Some(parent) = tree.parent() {
        if std::fs::write(parent.join("cgroup.procs"), std::process::id().to_string()).is_ok() {
            let _ = std::fs::remove_dir(tree.join("daemon"));
            let _ = std::fs::remove_dir(tree);
        }
    }
}
