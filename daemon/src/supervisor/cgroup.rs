//! cgroup v2 tracking, where the machine allows it: a cgroup per generation, so a process
//! that leaves its process group (`setsid`) is still the generation's, `cgroup.kill` ends
//! every one of them, and "the generation is gone" is `populated 0` in `cgroup.events`,
//! told by inotify rather than found by polling.
//!
//! The layout, under the cgroup the daemon started in (`D`, found from `/proc/self/cgroup`
//! and `/proc/self/mountinfo`, never a fixed path):
//!
//! ```text
//! D/mcpd-HASH/            one tree per home (HASH of the home's path), kept across daemons
//!     daemon/             the daemon and its guard (the "no internal processes" rule)
//!     app-NAME/gSEQ/      one cgroup per generation
//! ```
//!
//! A daemon that starts finds the cgroups its predecessor left (it died with apps running)
//! and kills what is in them before it starts anything. Without a writable cgroup v2
//! hierarchy the daemon keeps process groups and says so.
//!
//! cgroupfs is kernel memory: its reads and writes never wait on a disk, so they are done on
//! the runtime's threads like `kill` and `fork`.

use mcpd_core::config::Limits;
use mcpd_core::signal::Signal;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The controllers mcpd enables for its apps where the hierarchy offers them.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The daemon's own leaf.
const DAEMON_LEAF: &str = "daemon";

/// How apps' cgroups are named under the tree.
const APP_PREFIX: &str = "app-";

/// How long a starting daemon waits for a predecessor's killed cgroup to empty.
const ORPHAN_WAIT: Duration = Duration::from_secs(5);

/// How the daemon knows which processes are an app's.
#[derive(Debug)]
pub(crate) enum Tracking {
    /// A cgroup per generation.
    Cgroup(Tree),
    /// Process groups: what the daemon does without a writable cgroup v2 hierarchy (why).
    ProcessGroup(String),
}

impl Tracking {
    /// One line for the daemon log and `describe`.
    pub fn describe(&self) -> String {
        match self {
            Tracking::Cgroup(tree) => {
                let controllers =
                    if tree.controllers.is_empty() { "none".to_string() } else { tree.controllers.join(" ") };
                let v1: Vec<&str> = tree.v1.iter().map(|h| h.controller).collect();
                let v1 = if v1.is_empty() { String::new() } else { format!("; from cgroup v1: {}", v1.join(" ")) };
                format!("cgroup {} (controllers: {controllers}{v1})", tree.root.display())
            }
            Tracking::ProcessGroup(why) => format!("process group ({why})"),
        }
    }

    /// `cgroup` or `process group`.
    pub fn kind(&self) -> &'static str {
        match self {
            Tracking::Cgroup(_) => "cgroup",
            Tracking::ProcessGroup(_) => "process group",
        }
    }

    /// Whether `limits` can be applied here: an error names the key and what is missing.
    pub fn check_limits(&self, limits: &Limits) -> Result<(), String> {
        match self {
            Tracking::Cgroup(tree) => tree.check(limits),
            Tracking::ProcessGroup(why) => match wanted(limits).first() {
                Some((key, _)) => Err(format!(
                    "{key}: needs a cgroup per generation, and this daemon tracks process groups ({why}): run mcpd as root or with systemd's Delegate=yes on a cgroup v2 machine, or remove {key}"
                )),
                None => Ok(()),
            },
        }
    }

    pub fn tree(&self) -> Option<&Tree> {
        match self {
            Tracking::Cgroup(tree) => Some(tree),
            Tracking::ProcessGroup(_) => None,
        }
    }
}

/// What a starting daemon found left by a dead predecessor in one app's cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Orphans {
    /// The app's name.
    pub app: String,
    /// The pids that were still running, all sent SIGKILL (through `cgroup.kill`).
    pub pids: Vec<u32>,
}

/// The home's cgroup tree.
#[derive(Debug)]
pub(crate) struct Tree {
    root: PathBuf,
    /// The controllers enabled for generations.
    controllers: Vec<String>,
    /// Where the v2 hierarchy lacks a controller that a cgroup v1 hierarchy has (a "hybrid"
    /// machine, as systemd calls it): this home's tree in that hierarchy.
    v1: Vec<V1>,
    seq: AtomicU64,
}

/// This home's tree in a cgroup v1 hierarchy of one controller.
#[derive(Debug)]
struct V1 {
    controller: &'static str,
    root: PathBuf,
}

/// The cgroup limits of an app (`memory_max`, `memory_high`, `tasks_max`, `cpu_quota`).
fn wanted(limits: &Limits) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if limits.memory_max.is_some() {
        out.push(("memory_max", "memory"));
    }
    if limits.memory_high.is_some() {
        out.push(("memory_high", "memory"));
    }
    if limits.tasks_max.is_some() {
        out.push(("tasks_max", "pids"));
    }
    if limits.cpu_quota.is_some() {
        out.push(("cpu_quota", "cpu"));
    }
    out
}

/// The directory of this process's cgroup in the v1 hierarchy of `controller`.
pub(crate) fn own_v1_dir(mountinfo: &str, self_cgroup: &str, controller: &str) -> Option<PathBuf> {
    let path = self_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        names.split(',').any(|n| n == controller).then_some(path)
    })?;
    mountinfo.lines().find_map(|line| {
        let (fields, tail) = line.split_once(" - ")?;
        let mut tail = tail.split(' ');
        let (fstype, _source, options) = (tail.next()?, tail.next()?, tail.next()?);
        if fstype != "cgroup" || !options.split(',').any(|o| o == controller) {
            return None;
        }
        let fields: Vec<&str> = fields.split(' ').collect();
        let (root, mount) = (unescape(fields.get(3)?), unescape(fields.get(4)?));
        let rest = if root == "/" {
            Some(path)
        } else {
            path.strip_prefix(root.as_str()).filter(|r| r.is_empty() || r.starts_with('/'))
        }?;
        (!rest.split('/').any(|c| c == "..")).then(|| Path::new(&mount).join(rest.trim_start_matches('/')))
    })
}

/// The directory of the cgroup v2 hierarchy this process is in, from the texts of
/// `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub(crate) fn own_dir(mountinfo: &str, self_cgroup: &str) -> Option<PathBuf> {
    let path = self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim_end();
    if path.ends_with(" (deleted)") || path.split('/').any(|c| c == "..") {
        return None;
    }
    for line in mountinfo.lines() {
        let (fields, tail) = line.split_once(" - ")?;
        if tail.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = fields.split(' ').collect();
        let (Some(root), Some(mount)) = (fields.get(3), fields.get(4)) else { continue };
        let (root, mount) = (unescape(root), unescape(mount));
        let rest = if root == "/" {
            Some(path)
        } else {
            path.strip_prefix(root.as_str()).filter(|r| r.is_empty() || r.starts_with('/'))
        };
        if let Some(rest) = rest {
            return Some(Path::new(&mount).join(rest.trim_start_matches('/')));
        }
    }
    None
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &field[i + 1..i + 4];
            if let Ok(b) = u8::from_str_radix(digits, 8) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether systemd delegated the cgroup at `dir` (`Delegate=yes` sets an extended attribute).
fn delegated(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    [c"trusted.delegate", c"user.delegate"].iter().any(|name| {
        // SAFETY: getxattr with a null buffer and size 0 only asks for the value's size.
        unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
    })
}

/// A stable name for a home's tree (FNV-1a of its path: the same home gets the same tree
/// from one daemon to the next).
fn tree_name(home: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in home.as_os_str().as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("mcpd-{hash:016x}")
}

fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(path)?.write_all(text.as_bytes())
}

fn read_file(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

fn mkdir(path: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Whether `cgroup.events` of `dir` says a live process is in it or below (a cgroup already
/// removed is empty).
fn populated(dir: &Path) -> bool {
    read_file(&dir.join("cgroup.events")).map(|t| t.lines().any(|l| l.trim() == "populated 1")).unwrap_or(false)
}

/// The pids in `dir` itself.
fn pids(dir: &Path) -> Vec<u32> {
    read_file(&dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// SIGKILLs everything in `dir` and below: `cgroup.kill`, or each pid where the kernel has
/// no `cgroup.kill` (before 5.14).
fn kill_all(dir: &Path) {
    if write_file(&dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let mut stack = vec![dir.to_path_buf()];
    // Bounded by the depth and breadth of the tree (mcpd's is two levels).
    while let Some(d) = stack.pop() {
        signal_pids(&d, Signal::KILL, None);
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
    }
}

/// Signals the processes of the cgroup at `dir`, but for those in process group `skip`
/// (signalled as a group by the caller): those that left it with `setsid` get it once.
fn signal_pids(dir: &Path, signal: Signal, skip: Option<u32>) {
    let sig = nix::sys::signal::Signal::try_from(signal.number()).expect("known signal");
    for pid in pids(dir) {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        if skip.is_some_and(|pgid| nix::unistd::getpgid(Some(pid)).is_ok_and(|g| g.as_raw() as u32 == pgid)) {
            continue;
        }
        let _ = nix::sys::signal::kill(pid, sig);
    }
}

/// After every app has stopped: moves the daemon back to the cgroup it started in and removes
/// the home's tree at `root` (unless the guard is still in it), so a daemon leaves nothing
/// behind. Where that
/// cgroup takes no processes (it delegates controllers), the tree stays for the next daemon
/// (and systemd removes a unit's cgroup itself).
pub(crate) fn leave(root: &Path, v1_roots: &[PathBuf]) {
    for v1 in v1_roots {
        let _ = std::fs::remove_dir(v1);
    }
    let Some(parent) = root.parent() else { return };
    // The guard moves itself when it exits (its pid may be gone, or reused, by now).
    let _ = write_file(&parent.join("cgroup.procs"), &std::process::id().to_string());
    let _ = std::fs::remove_dir(root.join(DAEMON_LEAF));
    let _ = std::fs::remove_dir(root);
}

impl Tree {
    /// Finds the cgroup v2 hierarchy, makes this home's tree in it, moves the daemon (this
    /// process) and `guard` into its leaf, enables the controllers it can, and kills what a
    /// dead predecessor left; with `use_v1`, also takes from v1 hierarchies the controllers v2
    /// lacks. Blocking: call it before the runtime starts.
    /// `adopting`: the previous daemon handed its apps over (an update in place); what is in
    /// the tree is theirs, not leftovers.
    pub fn setup(
        home: &Path,
        guard: Option<u32>,
        use_v1: bool,
        adopting: bool,
    ) -> Result<(Tree, Vec<Orphans>), String> {
        // Bytes, read leniently: a mount point that is not UTF-8 (any user can make one with
        // FUSE) must not turn tracking off.
        let lossy = |path: &str| {
            std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).map_err(|e| format!("{path}: {e}"))
        };
        let mountinfo = lossy("/proc/self/mountinfo")?;
        let own = lossy("/proc/self/cgroup")?;
        let dir = own_dir(&mountinfo, &own).ok_or("no cgroup v2 hierarchy holds the daemon")?;
        // The same home however it is spelled (relative, a trailing slash, a symlink); two
        // homes never share a tree.
        let home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
        let name = tree_name(&home);
        // A daemon started from inside a tree's daemon leaf (an upgrade in place) uses that tree.
        let root = match (dir.file_name(), dir.parent()) {
            (Some(leaf), Some(parent))
                if leaf == DAEMON_LEAF && parent.file_name().is_some_and(|n| n.to_string_lossy() == name) =>
            {
                parent.to_path_buf()
            }
            _ => dir.join(&name),
        };
        let parent = root.parent().unwrap_or(&root).to_path_buf();
        // Only a cgroup handed to mcpd is changed: the namespace's root (a container's PID 1,
        // or root on a machine without systemd) or one systemd delegated (Delegate=yes marks it
        // with the trusted.delegate or user.delegate attribute). Elsewhere (a root shell in
        // a session scope) the daemon stays where it is and apps get what `parent` gives.
        let ours =
            own.lines().find_map(|l| l.strip_prefix("0::")).is_some_and(|p| p.trim() == "/") || delegated(&parent);
        mkdir(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let leaf = root.join(DAEMON_LEAF);
        mkdir(&leaf).map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
        if ours {
            // The daemon first: a guard moved without it would be in a tree it is never told of.
            for pid in [std::process::id()].into_iter().chain(guard) {
                write_file(&leaf.join("cgroup.procs"), &pid.to_string())
                    .map_err(|e| format!("cannot move pid {pid} into {}: {e}", leaf.display()))?;
            }
        }
        let offered = read_file(&parent.join("cgroup.controllers")).unwrap_or_default();
        for c in CONTROLLERS.iter().filter(|c| offered.split_whitespace().any(|o| o == **c)) {
            // Each may fail (the parent has other processes): then that controller is not
            // offered to apps, which `describe` shows.
            if ours {
                let _ = write_file(&parent.join("cgroup.subtree_control"), &format!("+{c}"));
            }
            let _ = write_file(&root.join("cgroup.subtree_control"), &format!("+{c}"));
        }
        let enabled = read_file(&root.join("cgroup.subtree_control")).unwrap_or_default();
        let controllers = CONTROLLERS
            .iter()
            .filter(|c| enabled.split_whitespace().any(|e| e == **c))
            .map(|c| c.to_string())
            .collect();
        let controllers: Vec<String> = controllers;
        let name = root.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let v1 = CONTROLLERS
            .iter()
            .filter(|c| use_v1 && !controllers.iter().any(|e| e == **c))
            .filter_map(|&controller| {
                let root = own_v1_dir(&mountinfo, &own, controller)?.join(&name);
                mkdir(&root).ok()?;
                Some(V1 { controller, root })
            })
            .collect();
        let tree = Tree { root, controllers, v1, seq: AtomicU64::new(1) };
        let orphans = if adopting { Vec::new() } else { tree.kill_leftovers() };
        Ok((tree, orphans))
    }

    /// The tree's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its directories in cgroup v1 hierarchies.
    pub fn v1_roots(&self) -> Vec<PathBuf> {
        self.v1.iter().map(|h| h.root.clone()).collect()
    }

    /// The v1 controllers a generation with `limits` is placed under: memory (always
    /// counted where a controller can), and each one a limit needs that v2 lacks.
    pub fn v1_controllers(&self, limits: &Limits) -> Vec<&'static str> {
        let needed: Vec<&str> = wanted(limits).into_iter().map(|(_, c)| c).collect();
        self.v1.iter().map(|h| h.controller).filter(|c| *c == "memory" || needed.contains(c)).collect()
    }

    /// The v1 controllers a launcher may prepare for a generation with `limits`: only the
    /// memory one, and only to count memory. With a v1 limit its thread would count against
    /// it meanwhile (a task in `pids.max`), or be a candidate of the cgroup's OOM killer.
    pub fn v1_launchable(&self, limits: &Limits) -> Vec<&'static str> {
        let controllers = self.v1_controllers(limits);
        let limited = wanted(limits).iter().any(|(_, c)| controllers.contains(c));
        if limited {
            Vec::new()
        } else {
            controllers
        }
    }

    /// Paths for the next generation of `app` in the v1 hierarchies of `controllers` (made
    /// by whoever prepares them).
    pub fn next_v1_dirs(&self, app: &str, controllers: &[&'static str]) -> Vec<(&'static str, PathBuf)> {
        let name = format!("g{}-{}", std::process::id(), self.seq.fetch_add(1, Ordering::Relaxed));
        let app_name = format!("{APP_PREFIX}{app}");
        self.v1
            .iter()
            .filter(|h| controllers.contains(&h.controller))
            .map(|h| (h.controller, h.root.join(&app_name).join(&name)))
            .collect()
    }

    /// The daemon's own cgroup in each v1 hierarchy the tree uses, by controller.
    pub fn v1_homes(&self) -> Vec<(&'static str, PathBuf)> {
        self.v1.iter().filter_map(|h| Some((h.controller, h.root.parent()?.to_path_buf()))).collect()
    }

    /// Kills and removes every app cgroup under the tree (a dead daemon's), returning what
    /// was running in each.
    fn kill_leftovers(&self) -> Vec<Orphans> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else { return found };
        // (app, its directory, its generations' directories)
        let mut left = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(app) = name.strip_prefix(APP_PREFIX) else { continue };
            let dir = entry.path();
            let gens: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|e| e.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
                .unwrap_or_default();
            let running: Vec<u32> = gens.iter().flat_map(|g| pids(g)).collect();
            if populated(&dir) {
                kill_all(&dir);
            }
            if !running.is_empty() {
                found.push(Orphans { app: app.to_string(), pids: running });
            }
            left.push((dir, gens));
        }
        // One wait for all of them, bounded by the deadline; before the runtime starts, so a
        // short sleep is fine. Without cgroup.kill (before 5.14), what forked meanwhile gets
        // SIGKILL on the next pass.
        let deadline = Instant::now() + ORPHAN_WAIT;
        while left.iter().any(|(dir, _)| populated(dir)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            for (dir, _) in left.iter().filter(|(dir, _)| populated(dir)) {
                if !dir.join("cgroup.kill").exists() {
                    kill_all(dir);
                }
            }
        }
        for (dir, gens) in &left {
            if populated(dir) {
                tracing::error!(cgroup = %dir.display(), "processes left by a previous daemon survive SIGKILL");
            }
            for g in gens {
                let _ = std::fs::remove_dir(g);
            }
            let _ = std::fs::remove_dir(dir);
        }
        // Their v1 cgroups are empty now (every process is in the v2 tree too).
        for h in &self.v1 {
            for app in std::fs::read_dir(&h.root).into_iter().flatten().flatten().map(|e| e.path()) {
                for generation in std::fs::read_dir(&app).into_iter().flatten().flatten().map(|e| e.path()) {
                    if generation.is_dir() {
                        let _ = std::fs::remove_dir(generation);
                    }
                }
                let _ = std::fs::remove_dir(app);
            }
        }
        found
    }

    /// Whether this tree can apply `limits`: an error names the key and what is missing.
    pub fn check(&self, limits: &Limits) -> Result<(), String> {
        for (key, controller) in wanted(limits) {
            let v2 = self.controllers.iter().any(|c| c == controller);
            let v1 = self.v1.iter().any(|h| h.controller == controller);
            if v2 || (v1 && key != "memory_high") {
                continue;
            }
            return Err(if v1 {
                format!("{key}: needs the cgroup v2 memory controller; this machine has memory in cgroup v1 only, which has no memory.high: use memory_max")
            } else {
                format!(
                    "{key}: needs the {controller} controller, which {} does not offer to mcpd (enabled: {}): run mcpd where it is delegated (systemd: Delegate=yes), or remove {key}",
                    self.root.display(),
                    if self.controllers.is_empty() { "none".to_string() } else { self.controllers.join(" ") }
                )
            });
        }
        Ok(())
    }

    /// A new, empty cgroup for one generation of `app`, with `limits` written (and a v1
    /// cgroup for each limit whose controller only v1 has, and for memory accounting).
    pub fn create(&self, app: &str, limits: &Limits, prepared: Option<Prepared>) -> Result<GenCgroup, String> {
        let fail = |what: &Path, e: std::io::Error| format!("cannot set up the cgroup {}: {e}", what.display());
        let app_name = format!("{APP_PREFIX}{app}");
        let app_dir = self.root.join(&app_name);
        mkdir(&app_dir).map_err(|e| fail(&app_dir, e))?;
        for c in &self.controllers {
            let _ = write_file(&app_dir.join("cgroup.subtree_control"), &format!("+{c}"));
        }
        // Bounded: a name is taken only if a predecessor's cgroup could not be removed.
        let mut made = None;
        for _ in 0..1000 {
            // The daemon's pid in the name: a guard cleaning up after its dead daemon never
            // takes a generation of the next daemon for one of its own.
            let name = format!("g{}-{}", std::process::id(), self.seq.fetch_add(1, Ordering::Relaxed));
            let dir = app_dir.join(&name);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    made = Some((name, dir));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                // The last generation of the app was just removed with its app directory
                // (its drop may run on the sampler's thread): make the directory again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    mkdir(&app_dir).map_err(|e| fail(&app_dir, e))?;
                    for c in &self.controllers {
                        let _ = write_file(&app_dir.join("cgroup.subtree_control"), &format!("+{c}"));
                    }
                }
                Err(e) => return Err(fail(&dir, e)),
            }
        }
        let (name, dir) = made.ok_or_else(|| format!("no free generation name under {}", app_dir.display()))?;
        let mut cgroup = GenCgroup {
            dir_fd: open_dir(&dir).map_err(|e| fail(&dir, e))?,
            tracking_procs: open_procs(&dir).map_err(|e| fail(&dir, e))?,
            dir,
            v1_procs: Vec::new(),
            v1: Vec::new(),
            memory: None,
            remover: None,
            handed: std::sync::atomic::AtomicBool::new(false),
        };
        let v2 = |c: &str| self.controllers.iter().any(|e| e == c);
        let needed: Vec<&str> = wanted(limits).into_iter().map(|(_, c)| c).collect();
        if let Some(mut prepared) = prepared {
            // Made and entered ahead by the app's launcher thread, which the child is cloned
            // from: it starts in them with no write on its way (see launcher.rs).
            for (controller, dir) in prepared.dirs.drain(..) {
                if controller == "memory" {
                    cgroup.memory = Some((dir.clone(), Version::V1));
                }
                cgroup.v1.push((controller, dir));
            }
            cgroup.remover = prepared.remover.take();
        }
        for h in &self.v1 {
            // Memory is always counted where a controller can (the v1 one here).
            if (!needed.contains(&h.controller) && h.controller != "memory")
                || cgroup.v1.iter().any(|(c, _)| *c == h.controller)
            {
                continue;
            }
            let app_v1 = h.root.join(&app_name);
            let dir = app_v1.join(&name);
            // Again if a generation's drop removed the app directory in between (bounded).
            let mut made = mkdir(&app_v1).and_then(|()| std::fs::create_dir(&dir));
            for _ in 0..3 {
                match &made {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        made = mkdir(&app_v1).and_then(|()| std::fs::create_dir(&dir));
                    }
                    _ => break,
                }
            }
            made.map_err(|e| fail(&dir, e))?;
            // Entered by the child before it executes, memory too: v1 cannot move the pages a
            // process was charged for into a cgroup it enters later, so a later move would
            // leave its early memory uncounted.
            cgroup.v1_procs.push(open_procs(&dir).map_err(|e| fail(&dir, e))?);
            if h.controller == "memory" {
                cgroup.memory = Some((dir.clone(), Version::V1));
            }
            cgroup.v1.push((h.controller, dir));
        }
        if v2("memory") {
            cgroup.memory = Some((cgroup.dir.clone(), Version::V2));
        }
        let set = |controller: &str, v2_file: &str, v1_file: &str, value: String| -> Result<(), String> {
            let path = if v2(controller) {
                cgroup.dir.join(v2_file)
            } else {
                let dir = cgroup.v1.iter().find(|(c, _)| *c == controller).map(|(_, d)| d.clone());
                dir.ok_or_else(|| format!("no {controller} controller for this generation"))?.join(v1_file)
            };
            write_file(&path, &value).map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))
        };
        if let Some(bytes) = limits.memory_max {
            set("memory", "memory.max", "memory.limit_in_bytes", bytes.to_string())?;
            // A hard limit means memory, not swap: without this a generation past memory_max
            // would swap where the machine has swap (and swap accounting) instead of being
            // OOM-killed.
            if v2("memory") {
                let _ = write_file(&cgroup.dir.join("memory.swap.max"), "0");
            } else if let Some((_, dir)) = cgroup.v1.iter().find(|(c, _)| *c == "memory") {
                let _ = write_file(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string());
            }
        }
        if let Some(bytes) = limits.memory_high {
            set("memory", "memory.high", "memory.high", bytes.to_string())?;
        }
        if let Some(n) = limits.tasks_max {
            set("pids", "pids.max", "pids.max", n.to_string())?;
        }
        if let Some(percent) = limits.cpu_quota {
            let quota = u64::from(percent) * 1000;
            if v2("cpu") {
                set("cpu", "cpu.max", "", format!("{quota} 100000"))?;
            } else {
                set("cpu", "", "cpu.cfs_period_us", "100000".into())?;
                set("cpu", "", "cpu.cfs_quota_us", quota.to_string())?;
            }
        }
        Ok(cgroup)
    }
}

/// The directory itself, for `clone3`'s `CLONE_INTO_CGROUP` (O_PATH will not do).
fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC).open(dir)?;
    Ok(file.into())
}

fn open_procs(dir: &Path) -> std::io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(dir.join("cgroup.procs"))?;
    Ok(file.into())
}

/// Which cgroup version a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// One generation's cgroup. Removed (when empty) on drop.
#[derive(Debug)]
pub(crate) struct GenCgroup {
    dir: PathBuf,
    /// Its directory, which the child is cloned into.
    dir_fd: OwnedFd,
    /// Its `cgroup.procs`, for a kernel that cannot clone into a cgroup (the child writes
    /// itself into it).
    tracking_procs: OwnedFd,
    /// `cgroup.procs` of its v1 cgroups, open for the child to write itself into before it
    /// executes.
    v1_procs: Vec<OwnedFd>,
    /// Its cgroups in v1 hierarchies, by controller.
    v1: Vec<(&'static str, PathBuf)>,
    /// The cgroup whose memory controller counts it.
    memory: Option<(PathBuf, Version)>,
    /// The launcher whose thread made its v1 cgroups and may still be in them: it removes
    /// them once it has left.
    remover: Option<Remover>,
    /// Handed over to the next daemon (an update in place): never removed by this one.
    handed: std::sync::atomic::AtomicBool,
}

/// A generation's v1 cgroups made and entered ahead by a launcher thread; given back to it
/// for removal if dropped unused.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub dirs: Vec<(&'static str, PathBuf)>,
    pub remover: Option<Remover>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(remover) = self.remover.take() {
            let dirs: Vec<PathBuf> = self.dirs.drain(..).map(|(_, d)| d).collect();
            remove_dirs(&(remover.0)(dirs).err().unwrap_or_default());
        }
    }
}

/// Asks a launcher thread to remove directories once it is out of them (gives them back if
/// the thread is gone).
pub(crate) struct Remover(pub Box<RemoveFn>);

/// Takes directories to remove; gives them back if it cannot.
pub(crate) type RemoveFn = dyn Fn(Vec<PathBuf>) -> Result<(), Vec<PathBuf>> + Send + Sync;

impl std::fmt::Debug for Remover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remover")
    }
}

impl GenCgroup {
    /// What the next daemon needs to take it over (`mcpd update`).
    pub fn state(&self) -> crate::handover::CgroupState {
        crate::handover::CgroupState {
            dir: self.dir.clone(),
            v1: self.v1.iter().map(|(c, d)| (c.to_string(), d.clone())).collect(),
        }
    }

    /// A generation's cgroup the previous daemon handed over. Its directories are this
    /// daemon's from now on (removed on drop).
    pub fn adopt(state: crate::handover::CgroupState) -> std::io::Result<GenCgroup> {
        let mut v1 = Vec::new();
        let mut memory = None;
        for (controller, dir) in state.v1 {
            let Some(&known) = CONTROLLERS.iter().find(|c| **c == controller) else { continue };
            if known == "memory" {
                memory = Some((dir.clone(), Version::V1));
            }
            v1.push((known, dir));
        }
        if memory.is_none() && state.dir.join("memory.current").exists() {
            memory = Some((state.dir.clone(), Version::V2));
        }
        Ok(GenCgroup {
            dir_fd: open_dir(&state.dir)?,
            tracking_procs: open_procs(&state.dir)?,
            dir: state.dir,
            v1_procs: Vec::new(),
            v1,
            memory,
            remover: None,
            handed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Its directories belong to the next daemon from now on.
    pub fn hand_over(&self) {
        self.handed.store(true, Ordering::Relaxed);
    }

    /// The v1 `cgroup.procs` the child writes `0` to (itself) between clone and exec.
    pub fn v1_procs_fds(&self) -> Vec<RawFd> {
        self.v1_procs.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// Its `cgroup.procs`, for a kernel that cannot clone into it.
    pub fn tracking_procs_fd(&self) -> RawFd {
        self.tracking_procs.as_raw_fd()
    }

    /// Its directory, to clone the child into.
    pub fn tracking_dir_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.dir_fd.as_fd()
    }

    /// Whether the kernel's OOM killer killed a process of it (`memory.events` in v2,
    /// `memory.oom_control` in v1).
    pub fn oom_killed(&self) -> bool {
        let Some((dir, version)) = &self.memory else { return false };
        let file = match version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        read_file(&dir.join(file)).is_ok_and(|t| {
            t.lines().any(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0) > 0)
        })
    }

    /// Its cgroups: in the v2 hierarchy, then in v1 ones.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.dir.as_path()).chain(self.v1.iter().map(|(_, d)| d.as_path()))
    }

    /// Whether a live process is still in it.
    pub fn populated(&self) -> bool {
        populated(&self.dir)
    }

    /// Its processes.
    pub fn pids(&self) -> Vec<u32> {
        pids(&self.dir)
    }

    /// Sends `signal` to every process in it (SIGKILL through `cgroup.kill`).
    /// The processes of process group `pgid` are left out (but for SIGKILL): the caller
    /// signals the group itself, and a second SIGINT or SIGTERM is, to many servers, an order
    /// to give up draining and exit at once.
    pub fn signal(&self, signal: Signal, pgid: u32) {
        if signal == Signal::KILL {
            kill_all(&self.dir);
        } else {
            signal_pids(&self.dir, signal, Some(pgid));
        }
    }

    /// CPU time used by its processes, living and exited (`usage_usec` of `cpu.stat`, which
    /// every v2 cgroup has).
    pub fn cpu_usage_us(&self) -> Option<u64> {
        let text = read_file(&self.dir.join("cpu.stat")).ok()?;
        text.lines().find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
    }

    /// Its working set, where a memory controller counts it: what the controller charges
    /// (`memory.current`, or v1's `memory.usage_in_bytes`) less the inactive file cache,
    /// which the kernel reclaims first (Kubernetes' `working_set_bytes`). A generation that
    /// once read a large file is not taken for a leak (`max_memory_restart` acts on this).
    pub fn memory_current(&self) -> Option<u64> {
        let (dir, version) = self.memory.as_ref()?;
        let (file, inactive) = match version {
            Version::V2 => ("memory.current", "inactive_file "),
            Version::V1 => ("memory.usage_in_bytes", "total_inactive_file "),
        };
        let charged: u64 = read_file(&dir.join(file)).ok()?.trim().parse().ok()?;
        let stat = read_file(&dir.join("memory.stat")).unwrap_or_default();
        let cache: u64 = stat.lines().find_map(|l| l.strip_prefix(inactive)?.trim().parse().ok()).unwrap_or(0);
        Some(charged.saturating_sub(cache))
    }

    /// An inotify watch on `cgroup.events`, made before the caller looks at the file so no
    /// change between the look and the wait is missed.
    pub fn watch(&self) -> Option<Watch> {
        Watch::new(&self.dir.join("cgroup.events"))
    }
}

impl Drop for GenCgroup {
    fn drop(&mut self) {
        if self.handed.load(Ordering::Relaxed) {
            return;
        }
        let mut v1: Vec<PathBuf> = self.v1.iter().map(|(_, d)| d.clone()).collect();
        if let Some(remover) = &self.remover {
            // Removed by the launcher after it left them; here if its thread is gone.
            v1 = (remover.0)(v1).err().unwrap_or_default();
        }
        remove_dirs(std::slice::from_ref(&self.dir));
        remove_dirs(&v1);
    }
}

/// Removes generations' cgroup directories, and their app's directory once it is empty.
pub(crate) fn remove_dirs(dirs: &[PathBuf]) {
    for dir in dirs {
        if let Err(e) = std::fs::remove_dir(dir) {
            tracing::debug!(cgroup = %dir.display(), error = %e, "cannot remove a generation's cgroup");
        }
        if let Some(app) = dir.parent() {
            // Fails while another generation of the app has one: that is fine.
            let _ = std::fs::remove_dir(app);
        }
    }
}

/// The daemon's one inotify instance: a watch on the `cgroup.events` of each generation being
/// waited for, and a task that wakes the waiters of each watch descriptor. (One instance per
/// wait would use up the user's `max_user_instances`, shared with every other program of that
/// user, when many generations stop at once; and closing an instance waits for an SRCU grace
/// period, 15 ms here. This one is never closed.)
#[derive(Debug)]
struct Watcher {
    inotify: nix::sys::inotify::Inotify,
    /// Bounded by the generations being waited for (one entry per watched file).
    waiters: std::sync::Mutex<std::collections::HashMap<nix::sys::inotify::WatchDescriptor, Waiters>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Waiters {
    changes: tokio::sync::watch::Sender<u64>,
    users: usize,
    /// Tells this entry from a later one with the same (reused) watch descriptor.
    id: u64,
}

/// Its fd, for the runtime's reactor (the watcher lives as long as the process).
#[derive(Debug)]
struct WatcherFd(RawFd);

impl AsRawFd for WatcherFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

static WATCHER: std::sync::OnceLock<Option<std::sync::Arc<Watcher>>> = std::sync::OnceLock::new();

/// The watcher, started on first use (from the daemon's runtime); none if inotify fails.
fn watcher() -> Option<std::sync::Arc<Watcher>> {
    WATCHER
        .get_or_init(|| {
            use nix::sys::inotify::{InitFlags, Inotify};
            use std::os::fd::AsFd;
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
            let raw = inotify.as_fd().as_raw_fd();
            // SAFETY: the fd belongs to the watcher, which is kept in a static and never
            // dropped, so it stays open and the same for as long as the AsyncFd exists.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(WatcherFd(raw), tokio::io::Interest::READABLE)
            }
            .ok()?;
            let watcher = std::sync::Arc::new(Watcher {
                inotify,
                waiters: std::sync::Mutex::default(),
                next_id: AtomicU64::new(1),
            });
            tokio::spawn(crate::boxed(read_events(watcher.clone(), fd)));
            Some(watcher)
        })
        .clone()
}

/// Wakes the waiters of each event's watch; forgets a watch the kernel removed (its cgroup
/// was removed).
async fn read_events(watcher: std::sync::Arc<Watcher>, fd: tokio::io::unix::AsyncFd<WatcherFd>) {
    use nix::sys::inotify::AddWatchFlags;
    loop {
        let Ok(mut ready) = fd.readable().await else { return };
        match watcher.inotify.read_events() {
            Ok(events) => {
                let mut waiters = watcher.waiters.lock().expect("inotify waiters lock");
                for event in events {
                    if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                        waiters.remove(&event.wd);
                    } else if let Some(w) = waiters.get(&event.wd) {
                        w.changes.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read inotify events; cgroup waits fall back to polling");
                return;
            }
        }
    }
}

/// A wait for changes of one file, through the daemon's watcher.
#[derive(Debug)]
pub(crate) struct Watch {
    watcher: std::sync::Arc<Watcher>,
    wd: nix::sys::inotify::WatchDescriptor,
    id: u64,
    changes: tokio::sync::watch::Receiver<u64>,
}

impl Watch {
    fn new(path: &Path) -> Option<Watch> {
        use nix::sys::inotify::AddWatchFlags;
        let watcher = watcher()?;
        let mut waiters = watcher.waiters.lock().expect("inotify waiters lock");
        // Under the lock: the reader cannot drop the entry of a watch being added again.
        let wd = watcher.inotify.add_watch(path, AddWatchFlags::IN_MODIFY).ok()?;
        let entry = waiters.entry(wd).or_insert_with(|| Waiters {
            changes: tokio::sync::watch::Sender::new(0),
            users: 0,
            id: watcher.next_id.fetch_add(1, Ordering::Relaxed),
        });
        entry.users += 1;
        let (id, changes) = (entry.id, entry.changes.subscribe());
        drop(waiters);
        Some(Watch { watcher, wd, id, changes })
    }

    /// Resolves at the next change (never, once the file's watch is gone: the caller's loop
    /// has other wake-ups and a deadline).
    pub async fn wait(&mut self) {
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut waiters = self.watcher.waiters.lock().expect("inotify waiters lock");
        if let Some(entry) = waiters.get_mut(&self.wd).filter(|e| e.id == self.id) {
            entry.users -= 1;
            if entry.users == 0 {
                waiters.remove(&self.wd);
                // Cheap: the mark is freed later by the kernel's own worker.
                let _ = self.watcher.inotify.rm_watch(self.wd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "25 1 0:22 / / rw - ext4 /dev/sda1 rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";
    const NAMESPACED: &str = "30 25 0:26 /system.slice/box.service /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
    const SPACED: &str = "30 25 0:26 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_daemons_own_cgroup_directory() {
        let cases: [(&str, &str, Option<&str>); 8] = [
            (HYBRID, "4:memory:/x\n0::/\n", Some("/sys/fs/cgroup/unified")),
            (HYBRID, "0::/box/inner\n", Some("/sys/fs/cgroup/unified/box/inner")),
            (UNIFIED, "0::/system.slice/mcpd.service\n", Some("/sys/fs/cgroup/system.slice/mcpd.service")),
            (NAMESPACED, "0::/system.slice/box.service/sub\n", Some("/sys/fs/cgroup/sub")),
            (NAMESPACED, "0::/other.service\n", None),
            (SPACED, "0::/a\n", Some("/mnt/my cgroups/a")),
            // No cgroup v2 line (a v1-only machine), or no cgroup2 mount.
            (HYBRID, "4:memory:/x\n", None),
            ("25 1 0:22 / / rw - ext4 /dev/sda1 rw\n", "0::/\n", None),
        ];
        for (mountinfo, own, want) in cases {
            assert_eq!(own_dir(mountinfo, own), want.map(PathBuf::from), "{own:?} in {mountinfo:?}");
        }
        assert_eq!(own_dir(UNIFIED, "0::/gone (deleted)\n"), None);
    }

    #[test]
    fn a_home_keeps_its_tree_name() {
        let a = tree_name(Path::new("/root/.mcpd"));
        assert_eq!(a, tree_name(Path::new("/root/.mcpd")));
        assert_ne!(a, tree_name(Path::new("/home/web/.mcpd")));
        assert!(a.starts_with("mcpd-") && a.len() == 21, "{a}");
    }
}
