//! An app's launcher: a thread that waits inside the v1 cgroups of the app's next generation,
//! so that the generation's leader, cloned from it, starts in them with no write on its way.
//!
//! Where the memory controller is in cgroup v1 only (a hybrid machine), a generation must be
//! in its v1 memory cgroup before it runs (v1 cannot move pages charged earlier), and the
//! first write to a `cgroup.procs` or `tasks` in a while waits for an RCU grace period
//! (5–15 ms here), which would be on every respawn's way. A forked child inherits the cgroups
//! of the thread that forked it, so the launcher pays that wait ahead: after each spawn it
//! goes back to the daemon's own cgroups, makes the next generation's directories (from
//! there, so the kernel memory they take is not charged to a generation) and enters them,
//! all on its own thread. A spawn that comes before it is ready (or with other controllers)
//! takes the ordinary path, where the child writes itself in, and so does a generation with
//! a limit in a v1 cgroup (the thread would count against `pids.max`, or be a candidate of
//! the cgroup's OOM killer, while it is inside).
//!
//! Only the thread moves (its `tasks`), never the daemon's other threads; the memory it
//! allocates is charged to the daemon's cgroup (the owner of its address space). A
//! generation's v1 directories are removed by the launcher after it left them. An app gets a
//! launcher when its first generation exits (idle apps cost no thread).

use super::cgroup::{remove_dirs, Prepared, Remover};
use super::child::{self, Child, ChildEnds};
use super::exec::ExecPlan;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// One generation's v1 cgroups, by controller.
type Dirs = Vec<(&'static str, PathBuf)>;

enum Job {
    /// Make these and wait inside them.
    Prepare(Dirs),
    /// Clone a child from inside the prepared cgroups.
    Spawn { plan: Box<ExecPlan>, ends: ChildEnds, into: Option<RawFd>, reply: mpsc::SyncSender<std::io::Result<Child>> },
    /// Leave these if inside, and remove them.
    Remove(Vec<PathBuf>),
}

/// The handle an app task keeps. The thread ends when this and every generation it started
/// are dropped (after it left and removed what it prepared).
#[derive(Debug)]
pub(crate) struct Launcher {
    /// Unbounded, yet short: a spawn waits for its reply, and each spawn adds one
    /// `Prepare` and, when its generation ends, one `Remove`.
    jobs: mpsc::Sender<Job>,
    slot: Arc<Mutex<Slot>>,
}

/// What the thread has for the next generation.
#[derive(Debug)]
enum Slot {
    /// Nothing: the next spawn takes the ordinary path, and asks for a set.
    Idle,
    /// A set is being made and entered.
    Preparing,
    /// The thread waits inside this set.
    Ready(Dirs),
}

/// Launcher threads, joined when the daemon exits (after its runtime), so none is still
/// inside a directory the daemon's exit removes.
static THREADS: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

impl Launcher {
    /// Starts the thread; `homes` are the daemon's own v1 cgroups, by controller, where it
    /// goes back to.
    pub fn start(app: &str, homes: Dirs) -> std::io::Result<Launcher> {
        let (jobs, rx) = mpsc::channel();
        let slot = Arc::new(Mutex::new(Slot::Idle));
        let thread_slot = slot.clone();
        let handle = std::thread::Builder::new()
            .name(format!("launch-{app}"))
            .stack_size(64 * 1024)
            .spawn(move || run(rx, thread_slot, homes))?;
        let mut threads = THREADS.lock().expect("launcher threads lock");
        // Finished threads (of removed apps) are let go, so the list stays as long as the apps.
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
        Ok(Launcher { jobs, slot })
    }

    /// Unless it has a set or is making one: asks the thread to make and enter the set
    /// `dirs` names (on its own time).
    pub fn prepare(&self, dirs: impl FnOnce() -> Dirs) {
        let mut slot = self.slot.lock().expect("launcher lock");
        if matches!(*slot, Slot::Idle) && self.jobs.send(Job::Prepare(dirs())).is_ok() {
            *slot = Slot::Preparing;
        }
    }

    /// The prepared set, if the thread is inside it and it is for exactly `controllers`;
    /// taken, so the next spawn must be [`Launcher::spawn`]. A set for other controllers is
    /// dropped.
    pub fn take(&self, controllers: &[&'static str]) -> Option<Prepared> {
        let dirs = {
            let mut slot = self.slot.lock().expect("launcher lock");
            match std::mem::replace(&mut *slot, Slot::Idle) {
                Slot::Ready(dirs) => dirs,
                other => {
                    *slot = other;
                    return None;
                }
            }
        };
        let fits = dirs.len() == controllers.len() && dirs.iter().all(|(c, _)| controllers.contains(c));
        if !fits {
            let _ = self.jobs.send(Job::Remove(dirs.into_iter().map(|(_, d)| d).collect()));
            return None;
        }
        let jobs = self.jobs.clone();
        let remover = Remover(Box::new(move |dirs| {
            jobs.send(Job::Remove(dirs)).map_err(|e| match e.0 {
                Job::Remove(dirs) => dirs,
                _ => Vec::new(),
            })
        }));
        Some(Prepared { dirs, remover: Some(remover) })
    }

    /// Clones `plan`'s child on the thread, into the v2 cgroup `into` and the taken set's v1
    /// cgroups. Blocks until it exec'd or failed, as [`child::start`] does.
    pub fn spawn(&self, plan: ExecPlan, ends: ChildEnds, into: Option<BorrowedFd<'_>>) -> std::io::Result<Child> {
        use std::os::fd::AsRawFd;
        let (reply, answer) = mpsc::sync_channel(1);
        let job = Job::Spawn { plan: Box::new(plan), ends, into: into.map(|fd| fd.as_raw_fd()), reply };
        self.jobs.send(job).map_err(|_| std::io::Error::other("the app's launcher thread is gone"))?;
        answer.recv().map_err(|_| std::io::Error::other("the app's launcher thread is gone"))?
    }
}

/// Waits for every launcher thread to end (when the daemon exits, after its runtime is
/// gone: a thread ends once its app's launcher and generations are dropped), for at most
/// two seconds.
pub(crate) fn join_all() {
    let threads = std::mem::take(&mut *THREADS.lock().expect("launcher threads lock"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    // Bounded by the deadline; each thread has only to leave its cgroups (a grace period).
    while threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for thread in threads.into_iter().filter(|t| t.is_finished()) {
        let _ = thread.join();
    }
}

fn write(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new().write(true).open(path)?.write_all(text.as_bytes())
}

/// Moves this thread (only) into `dir`.
fn enter(dir: &std::path::Path) -> std::io::Result<()> {
    write(&dir.join("tasks"), "0")
}

fn run(jobs: mpsc::Receiver<Job>, slot: Arc<Mutex<Slot>>, homes: Dirs) {
    // Where the thread is away from home, by controller: the set it last entered (a prepared
    // set, or a generation's once a child was cloned from it), until it goes home.
    let mut inside: Dirs = Vec::new();
    // Back to the daemon's cgroup of each hierarchy the thread left; what cannot be left
    // stays listed (and its directory is not removed).
    let go_home = |inside: &mut Dirs| {
        inside.retain(|(controller, _)| {
            let Some((_, home)) = homes.iter().find(|(c, _)| c == controller) else { return true };
            match enter(home) {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(cgroup = %home.display(), error = %e, "launcher: cannot go back to the daemon's cgroup");
                    true
                }
            }
        });
    };
    let is_inside = |inside: &Dirs, dir: &PathBuf| inside.iter().any(|(_, d)| d == dir);
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Prepare(dirs) => {
                go_home(&mut inside);
                let paths: Vec<PathBuf> = dirs.iter().map(|(_, d)| d.clone()).collect();
                if !inside.is_empty() {
                    // Stuck away from home: prepare nothing (spawns take the ordinary path).
                    *slot.lock().expect("launcher lock") = Slot::Idle;
                    continue;
                }
                let made = dirs.iter().try_for_each(|(_, dir)| {
                    if let Some(app) = dir.parent() {
                        match std::fs::create_dir(app) {
                            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                            _ => {}
                        }
                    }
                    std::fs::create_dir(dir)
                });
                let entered = made.and_then(|()| {
                    dirs.iter().try_for_each(|(controller, dir)| {
                        enter(dir)?;
                        inside.push((controller, dir.clone()));
                        Ok(())
                    })
                });
                match entered {
                    Ok(()) => *slot.lock().expect("launcher lock") = Slot::Ready(dirs),
                    Err(e) => {
                        tracing::debug!(error = %e, "launcher: cannot prepare the next generation's cgroups");
                        go_home(&mut inside);
                        let free: Vec<PathBuf> = paths.into_iter().filter(|d| !is_inside(&inside, d)).collect();
                        remove_dirs(&free);
                        *slot.lock().expect("launcher lock") = Slot::Idle;
                    }
                }
            }
            Job::Spawn { mut plan, ends, into, reply } => {
                // SAFETY: the fd is the generation's cgroup directory, kept open by the caller,
                // which waits for this reply.
                let into = into.map(|fd| unsafe { BorrowedFd::borrow_raw(fd) });
                let _ = reply.send(child::start(&mut plan, ends, into));
            }
            Job::Remove(dirs) => {
                if dirs.iter().any(|d| is_inside(&inside, d)) {
                    go_home(&mut inside);
                }
                let free: Vec<PathBuf> = dirs.into_iter().filter(|d| !is_inside(&inside, d)).collect();
                remove_dirs(&free);
            }
        }
    }
    // The app is gone: leave, and remove a set prepared for a generation that never came.
    go_home(&mut inside);
    if let Slot::Ready(dirs) = std::mem::replace(&mut *slot.lock().expect("launcher lock"), Slot::Idle) {
        let free: Vec<PathBuf> = dirs.into_iter().map(|(_, d)| d).filter(|d| !is_inside(&inside, d)).collect();
        remove_dirs(&free);
    }
}
