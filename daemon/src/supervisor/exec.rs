//! How a generation's process is exec'd: its environment, the handed-over fds (listen sockets
//! at 3, 4, ..., then the IPC channel), and `LISTEN_PID`, which must be the child's own pid
//! and so can only be written after fork.
//!
//! Everything is prepared before fork; in the child, [`ExecPlan::exec`] only moves fds
//! (fcntl, dup2), writes the pid digits into a buffer it owns, and calls execve: all
//! async-signal-safe, no allocation.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Variables a generation must never inherit from the daemon's own environment (they belong
/// to the daemon's manager, e.g. systemd).
const NOT_INHERITED: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NODE_CHANNEL_FD",
    "NODE_CHANNEL_SERIALIZATION_MODE",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "MCPD_HOME",
    "MCPD_DAEMON_BACKGROUND",
    "MCPD_LOG",
    "MCPD_HTTP",
    "MCPD_LOCK_FD",
    "MCPD_CGROUPS",
    "MCPD_HANDOVER_FD",
    "MCPD_STDIO_BRIDGE",
];

const PID_DIGITS: usize = 10;

/// The soft open-files limit apps get (the one the daemon found before raising its own; 0:
/// leave it).
pub(crate) static APPS_NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A prepared execve.
#[derive(Debug)]
pub(crate) struct ExecPlan {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env: Vec<Vec<u8>>,
    env_ptrs: Vec<*const libc::c_char>,
    /// Where in `env` the `LISTEN_PID=` buffer is, if fds are handed over.
    listen_pid: Option<usize>,
    /// (source fd in the daemon, target fd in the child)
    fds: Vec<(RawFd, RawFd)>,
    temps: Vec<RawFd>,
    ids: Option<Ids>,
    /// `cgroup.procs` of the v1 cgroups the child must be in before it runs (a limit needs
    /// them), which it writes itself into before anything else (before its fds are moved,
    /// which could overwrite these).
    cgroup_procs: Vec<RawFd>,
    /// The tracking cgroup's `cgroup.procs`, for a kernel that cannot clone into it.
    tracking_procs: Option<RawFd>,
    /// The working directory, entered in the child.
    cwd: CString,
    /// Where the child reports its errno if it cannot exec.
    report: RawFd,
    /// `rlimits`, as setrlimit takes them: (resource, limits), checked before fork.
    rlimits: Vec<(libc::c_int, libc::rlimit)>,
}

// SAFETY: the raw pointers point into buffers owned by the plan itself, which is moved into
// the pre_exec closure and used only in the forked child.
unsafe impl Send for ExecPlan {}
// SAFETY: as above; the parent never reads through the pointers.
unsafe impl Sync for ExecPlan {}

/// What a generation is handed besides its config.
#[derive(Debug, Default)]
pub(crate) struct Handover {
    /// Listening sockets (become fds 3, 4, ...), with the name for `LISTEN_FDNAMES`.
    pub listen: Vec<RawFd>,
    pub listen_name: String,
    /// The child's end of the IPC channel (becomes the fd after the sockets).
    pub ipc: Option<RawFd>,
    /// The notify socket path.
    pub notify_socket: Option<PathBuf>,
    /// The watchdog interval (`WATCHDOG_USEC`).
    pub watchdog: Option<std::time::Duration>,
    /// The identity to switch to (root only).
    pub ids: Option<Ids>,
}

/// A user to run as: uid, primary gid, supplementary groups, and its home for `HOME`.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    pub name: String,
    pub home: PathBuf,
}

/// Resolves `user`/`group` (names or numbers); an error says what to fix.
pub(crate) fn resolve_ids(user: Option<&str>, group: Option<&str>) -> Result<Option<Ids>, String> {
    use nix::unistd::{Gid, Group, Uid, User};
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    if !Uid::effective().is_root() {
        return Err("user/group need the daemon to run as root (it drops privileges per app)".into());
    }
    let found = match user {
        Some(u) => match u.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(u),
        }
        .map_err(|e| format!("cannot look up user {u:?}: {e}"))?
        .ok_or_else(|| format!("no user {u:?} on this system"))?,
        None => User::from_uid(Uid::current()).ok().flatten().ok_or("cannot look up the daemon's own user")?,
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => Gid::from_raw(gid),
            Err(_) => {
                Group::from_name(g)
                    .map_err(|e| format!("cannot look up group {g:?}: {e}"))?
                    .ok_or_else(|| format!("no group {g:?} on this system"))?
                    .gid
            }
        },
        None => found.gid,
    };
    let name = std::ffi::CString::new(found.name.clone()).map_err(|_| "bad user name")?;
    let groups =
        nix::unistd::getgrouplist(&name, gid).map_err(|e| format!("cannot list the groups of {}: {e}", found.name))?;
    Ok(Some(Ids {
        uid: found.uid.as_raw(),
        gid: gid.as_raw(),
        groups: groups.iter().map(|g| g.as_raw()).collect(),
        name: found.name,
        home: found.dir,
    }))
}

/// The child's environment: the daemon's (minus the manager's variables), then `env_file`,
/// then `env`, then what mcpd hands over.
pub(crate) fn environment(configured: BTreeMap<String, String>, handover: &Handover) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> =
        std::env::vars_os().filter(|(k, _)| !NOT_INHERITED.iter().any(|n| OsStr::new(n) == k)).collect();
    env.extend(configured.into_iter().map(|(k, v)| (k.into(), v.into())));
    if !handover.listen.is_empty() {
        env.insert("LISTEN_FDS".into(), handover.listen.len().to_string().into());
        let names = vec![handover.listen_name.as_str(); handover.listen.len()].join(":");
        env.insert("LISTEN_FDNAMES".into(), names.into());
    }
    if handover.ipc.is_some() {
        let fd = 3 + handover.listen.len();
        env.insert("NODE_CHANNEL_FD".into(), fd.to_string().into());
        env.insert("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into());
    }
    if let Some(path) = &handover.notify_socket {
        env.insert("NOTIFY_SOCKET".into(), path.clone().into());
    }
    if let Some(ids) = &handover.ids {
        for (key, value) in [("USER", ids.name.as_str()), ("LOGNAME", ids.name.as_str())] {
            env.entry(key.into()).or_insert_with(|| value.into());
        }
        env.insert("HOME".into(), ids.home.clone().into());
    }
    if let Some(watchdog) = handover.watchdog {
        env.insert("WATCHDOG_USEC".into(), watchdog.as_micros().to_string().into());
    }
    env
}

/// Finds the program: a path with `/` is taken from `cwd`; a bare name is searched in the
/// child's PATH.
pub(crate) fn resolve_program(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<OsString, OsString>,
) -> Result<PathBuf, String> {
    if command.contains('/') {
        let path = cwd.join(command);
        return if path.is_file() { Ok(path) } else { Err(format!("program {} not found", path.display())) };
    }
    let path_var = env.get(OsStr::new("PATH")).cloned().unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path_var) {
        let candidate = cwd.join(dir).join(command);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!("program {command:?} not found in PATH ({})", path_var.to_string_lossy()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{what} contains a NUL byte"))
}

impl ExecPlan {
    /// Prepares the execve of `program` with `args` and `env`, in `cwd`.
    pub fn new(
        program: &Path,
        cwd: &Path,
        args: &[String],
        env: &BTreeMap<OsString, OsString>,
        handover: &Handover,
    ) -> Result<ExecPlan, String> {
        let program_c = cstring(program.as_os_str().as_bytes(), "the program path")?;
        let mut argv = vec![program_c.clone()];
        for arg in args {
            argv.push(cstring(arg.as_bytes(), "an argument")?);
        }
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_bufs = Vec::with_capacity(env.len() + 1);
        for (k, v) in env {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            if entry.contains(&0) {
                return Err(format!("environment variable {} contains a NUL byte", k.to_string_lossy()));
            }
            entry.push(0);
            env_bufs.push(entry);
        }
        let listen_pid = (!handover.listen.is_empty()).then(|| {
            let mut entry = b"LISTEN_PID=".to_vec();
            entry.extend_from_slice(&[b'0'; PID_DIGITS]);
            entry.push(0);
            env_bufs.push(entry);
            env_bufs.len() - 1
        });
        let mut env_ptrs: Vec<_> = env_bufs.iter().map(|e| e.as_ptr().cast()).collect();
        env_ptrs.push(std::ptr::null());
        let mut fds: Vec<(RawFd, RawFd)> =
            handover.listen.iter().enumerate().map(|(i, &fd)| (fd, 3 + i as RawFd)).collect();
        if let Some(ipc) = handover.ipc {
            fds.push((ipc, 3 + fds.len() as RawFd));
        }
        Ok(ExecPlan {
            program: program_c,
            _argv: argv,
            argv_ptrs,
            env: env_bufs,
            env_ptrs,
            listen_pid,
            temps: vec![-1; fds.len()],
            fds,
            ids: handover.ids.clone(),
            cgroup_procs: Vec::new(),
            tracking_procs: None,
            cwd: cstring(cwd.as_os_str().as_bytes(), "the working directory")?,
            report: -1,
            rlimits: Vec::new(),
        })
    }

    /// Has the child enter the cgroups whose `cgroup.procs` are open as `v1` before it runs;
    /// `tracking` is the tracking cgroup's, used only where the kernel cannot clone into it.
    pub fn enter_cgroups(&mut self, v1: Vec<RawFd>, tracking: Option<RawFd>) {
        self.cgroup_procs = v1;
        self.tracking_procs = tracking;
    }

    /// For a kernel without `CLONE_INTO_CGROUP`: the child writes itself into the tracking
    /// cgroup too.
    pub fn enter_tracking_cgroup_itself(&mut self) {
        if let Some(fd) = self.tracking_procs.take() {
            self.cgroup_procs.insert(0, fd);
        }
    }

    /// Gives the child `stdio` as fds 0, 1 and 2, and the pipe it reports a failure to.
    pub fn set_stdio(&mut self, stdio: [RawFd; 3], report: RawFd) {
        self.fds.retain(|&(_, target)| target > 2);
        for (target, source) in stdio.into_iter().enumerate().rev() {
            self.fds.insert(0, (source, target as RawFd));
        }
        self.temps = vec![-1; self.fds.len()];
        self.report = report;
    }

    /// The pipe the child reports a failure to.
    pub fn report_fd(&self) -> RawFd {
        self.report
    }

    /// In the new child: enter the cgroups, reset signals, lead a new process group, enter
    /// the working directory, place the fds, set limits and the user, write LISTEN_PID,
    /// execve. Returns only on failure. Async-signal-safe: system calls only, the user
    /// switch by raw syscall (glibc's setuid would try to reach the parent's threads).
    pub fn exec(&mut self) -> std::io::Error {
        for &fd in &self.cgroup_procs {
            // SAFETY: write of a static buffer to an fd we own; "0" moves the writer itself.
            if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
                return std::io::Error::last_os_error();
            }
        }
        // Every handler the daemon set goes back to the default (execve would do that for
        // handlers, but not for ignored signals), then the mask clone3 ran under is cleared.
        reset_signals();
        // SAFETY: setpgid and chdir are plain system calls; cwd is a NUL-terminated string
        // the plan owns.
        unsafe {
            if libc::setpgid(0, 0) != 0 || libc::chdir(self.cwd.as_ptr()) != 0 {
                return std::io::Error::last_os_error();
            }
        }
        let first_free = self.fds.iter().map(|&(_, target)| target + 1).max().unwrap_or(3).max(3);
        if self.report >= 0 && self.report < first_free {
            // Moved out of the way of the targets, so the failure report still reaches the
            // parent (still close-on-exec).
            // SAFETY: fcntl on an fd we own.
            let moved = unsafe { libc::fcntl(self.report, libc::F_DUPFD_CLOEXEC, first_free) };
            if moved < 0 {
                return std::io::Error::last_os_error();
            }
            self.report = moved;
        }
        for (i, &(source, _)) in self.fds.iter().enumerate() {
            // SAFETY: fcntl on an fd we own; F_DUPFD_CLOEXEC allocates nothing in user space.
            let temp = unsafe { libc::fcntl(source, libc::F_DUPFD_CLOEXEC, first_free) };
            if temp < 0 {
                return std::io::Error::last_os_error();
            }
            self.temps[i] = temp;
        }
        for (i, &(_, target)) in self.fds.iter().enumerate() {
            // SAFETY: dup2 between fds we own; the target loses FD_CLOEXEC, so it survives exec.
            if unsafe { libc::dup2(self.temps[i], target) } < 0 {
                return std::io::Error::last_os_error();
            }
        }
        let soft = APPS_NOFILE.load(std::sync::atomic::Ordering::Relaxed);
        if soft != 0 {
            // Apps get the open-files limit the daemon started with, not the one it raised:
            // set after the fds are placed (moving one needs a free fd under the limit, and
            // the daemon may hold more than the apps' limit).
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit and setrlimit are plain system calls on a struct on our stack.
            unsafe {
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && soft < limit.rlim_cur {
                    limit.rlim_cur = soft;
                    libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                }
            }
        }
        // After the fds are placed (a low nofile must not stop that), before the user switch
        // (raising a hard limit needs the daemon's privilege); after APPS_NOFILE, so an
        // explicit nofile wins.
        if let Err(e) = self.apply_rlimits() {
            return e;
        }
        if let Some(ids) = &self.ids {
            // SAFETY: raw setgroups, setgid and setuid system calls (this thread only, which is
            // the whole child); the group list was built before clone. Groups first: after
            // setuid we could no longer change them.
            unsafe {
                if libc::syscall(libc::SYS_setgroups, ids.groups.len(), ids.groups.as_ptr()) != 0
                    || libc::syscall(libc::SYS_setgid, ids.gid) != 0
                    || libc::syscall(libc::SYS_setuid, ids.uid) != 0
                {
                    return std::io::Error::last_os_error();
                }
            }
        }
        if let Some(slot) = self.listen_pid {
            // SAFETY: getpid is async-signal-safe.
            let mut pid = unsafe { libc::getpid() } as u64;
            let entry = &mut self.env[slot];
            let digits_at = b"LISTEN_PID=".len();
            let mut digits = [0u8; PID_DIGITS];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 || n == PID_DIGITS {
                    break;
                }
            }
            for i in 0..n {
                entry[digits_at + i] = digits[n - 1 - i];
            }
            entry[digits_at + n] = 0;
        }
        // SAFETY: program, argv and envp are NUL-terminated strings in NULL-terminated arrays
        // owned by self; the LISTEN_PID buffer was written in place above and stays
        // NUL-terminated.
        unsafe { libc::execve(self.program.as_ptr(), self.argv_ptrs.as_ptr(), self.env_ptrs.as_ptr()) };
        std::io::Error::last_os_error()
    }
}

/// In the new child: every signal's disposition back to the default, by raw rt_sigaction
/// (glibc's sigaction refuses the two signals it keeps for itself, 32 and 33, which an
/// ignoring parent can still pass on), then an empty mask.
fn reset_signals() {
    /// The kernel's `struct sigaction` where it has `sa_restorer` (x86_64, aarch64).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    // SAFETY: rt_sigaction and sigprocmask read structs on our stack; SIGKILL and SIGSTOP,
    // which cannot be changed, are skipped.
    unsafe {
        for signal in 1..=libc::SIGRTMAX() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
                    libc::syscall(libc::SYS_rt_sigaction, signal, &default, std::ptr::null_mut::<KernelSigaction>(), 8);
                } else {
                    let mut plain: libc::sigaction = std::mem::zeroed();
                    plain.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(signal, &plain, std::ptr::null_mut());
                }
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

use mcpd_core::config::{Resource, RlimitValue, Rlimits};

/// `rlimits`: resolved and checked before fork, set in the child by [`ExecPlan::exec`].
impl ExecPlan {
    /// Sets the app's resource limits, or says which one the child could not be given.
    pub fn set_rlimits(&mut self, limits: &Rlimits) -> Result<(), String> {
        self.rlimits = prepare_rlimits(limits)?;
        Ok(())
    }

    /// In the forked child: setrlimit of each limit (async-signal-safe, no allocation).
    fn apply_rlimits(&self) -> Result<(), std::io::Error> {
        for (resource, limit) in &self.rlimits {
            // SAFETY: setrlimit is a plain system call reading a struct the plan owns.
            if unsafe { libc::setrlimit(*resource as _, limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The limits as setrlimit takes them, refusing what the child's setrlimit would (before
/// fork, where the error can name the resource): a hard limit above the daemon's own without
/// CAP_SYS_RESOURCE, and open files above `fs.nr_open`. `infinity` open files means
/// `fs.nr_open` (Linux has no unlimited open files).
pub(crate) fn prepare_rlimits(limits: &Rlimits) -> Result<Vec<(libc::c_int, libc::rlimit)>, String> {
    if limits.is_empty() {
        return Ok(Vec::new());
    }
    let can_raise = can_raise_hard_limits();
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|t| t.trim().parse::<u64>().ok());
    let mut out = Vec::with_capacity(limits.len());
    for (&resource, limit) in limits {
        let raw = raw_resource(resource);
        let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into a struct on our stack.
        if unsafe { libc::getrlimit(raw as _, &mut current) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("rlimits.{resource}: cannot read the daemon's own limit: {e}"));
        }
        let value = |v: RlimitValue| match (v, resource) {
            (RlimitValue::Limited(n), _) => n,
            (RlimitValue::Infinity, Resource::Nofile) => nr_open.unwrap_or(current.rlim_max),
            (RlimitValue::Infinity, _) => libc::RLIM_INFINITY,
        };
        let (soft, hard) = (value(limit.soft), value(limit.hard));
        let nr_open = nr_open.filter(|_| resource == Resource::Nofile);
        if let Some(why) = rlimit_refusal(resource, hard, current.rlim_max, can_raise, nr_open) {
            return Err(why);
        }
        out.push((raw, libc::rlimit { rlim_cur: soft, rlim_max: hard }));
    }
    Ok(out)
}

/// Why setrlimit would refuse a hard limit of `hard` where the current one is `current`.
fn rlimit_refusal(
    resource: Resource,
    hard: u64,
    current: u64,
    can_raise: bool,
    nr_open: Option<u64>,
) -> Option<String> {
    let shown = |n: u64| if n == libc::RLIM_INFINITY { "infinity".to_string() } else { n.to_string() };
    if let Some(most) = nr_open.filter(|most| hard > *most) {
        return Some(format!(
            "rlimits.{resource}: {} open files is above the kernel's most per process, {most} (sysctl fs.nr_open): \
             lower it, or raise fs.nr_open",
            shown(hard)
        ));
    }
    if hard > current && !can_raise {
        let unit_key = format!("Limit{}=", resource.name().to_uppercase());
        return Some(format!(
            "rlimits.{resource}: the hard limit {} is above the daemon's own, {}, and only a daemon with \
             CAP_SYS_RESOURCE (root) can raise it: lower it to at most {}, or raise the daemon's limit \
             (e.g. {unit_key} in mcpd's systemd unit)",
            shown(hard),
            shown(current),
            shown(current)
        ));
    }
    None
}

/// Whether this process may raise hard limits: CAP_SYS_RESOURCE in its effective set.
fn can_raise_hard_limits() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective =
        status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    match effective {
        Some(caps) => caps & (1 << CAP_SYS_RESOURCE) != 0,
        // SAFETY: geteuid has no preconditions.
        None => (unsafe { libc::geteuid() }) == 0,
    }
}

/// The libc constant of a resource (its type differs between libcs, hence `c_int` here).
fn raw_resource(resource: Resource) -> libc::c_int {
    let raw = match resource {
        Resource::Cpu => libc::RLIMIT_CPU,
        Resource::Fsize => libc::RLIMIT_FSIZE,
        Resource::Data => libc::RLIMIT_DATA,
        Resource::Stack => libc::RLIMIT_STACK,
        Resource::Core => libc::RLIMIT_CORE,
        Resource::Rss => libc::RLIMIT_RSS,
        Resource::Nofile => libc::RLIMIT_NOFILE,
        Resource::As => libc::RLIMIT_AS,
        Resource::Nproc => libc::RLIMIT_NPROC,
        Resource::Memlock => libc::RLIMIT_MEMLOCK,
        Resource::Locks => libc::RLIMIT_LOCKS,
        Resource::Sigpending => libc::RLIMIT_SIGPENDING,
        Resource::Msgqueue => libc::RLIMIT_MSGQUEUE,
        Resource::Nice => libc::RLIMIT_NICE,
        Resource::Rtprio => libc::RLIMIT_RTPRIO,
        Resource::Rttime => libc::RLIMIT_RTTIME,
    };
    raw as libc::c_int
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handover_variables() {
        let handover = Handover {
            listen: vec![10, 11],
            listen_name: "web".into(),
            ipc: Some(12),
            notify_socket: Some("/run/n.sock".into()),
            watchdog: Some(std::time::Duration::from_secs(30)),
            ids: None,
        };
        let env = environment(BTreeMap::from([("A".into(), "1".into())]), &handover);
        let get = |k: &str| env.get(OsStr::new(k)).map(|v| v.to_string_lossy().into_owned());
        assert_eq!(get("LISTEN_FDS").as_deref(), Some("2"));
        assert_eq!(get("LISTEN_FDNAMES").as_deref(), Some("web:web"));
        assert_eq!(get("NODE_CHANNEL_FD").as_deref(), Some("5"), "the IPC fd comes after the sockets");
        assert_eq!(get("NOTIFY_SOCKET").as_deref(), Some("/run/n.sock"));
        assert_eq!(get("WATCHDOG_USEC").as_deref(), Some("30000000"));
        assert_eq!(get("A").as_deref(), Some("1"));
        let mut plan = ExecPlan::new(Path::new("/bin/true"), Path::new("/"), &[], &env, &handover).unwrap();
        assert_eq!(plan.fds, [(10, 3), (11, 4), (12, 5)]);
        assert!(plan.listen_pid.is_some());
        plan.set_stdio([20, 21, 22], 30);
        assert_eq!(plan.fds, [(20, 0), (21, 1), (22, 2), (10, 3), (11, 4), (12, 5)], "stdio first, then the handover");
        assert_eq!((plan.temps.len(), plan.report_fd()), (6, 30));
    }

    #[test]
    fn rlimits_are_checked_before_fork() {
        use mcpd_core::config::Rlimit;
        let nofile = Resource::Nofile;
        assert_eq!(rlimit_refusal(nofile, 1024, 4096, false, Some(1 << 20)), None, "lowering needs nothing");
        assert_eq!(rlimit_refusal(nofile, 8192, 4096, true, Some(1 << 20)), None, "raising needs CAP_SYS_RESOURCE");
        let raise = rlimit_refusal(nofile, 8192, 4096, false, Some(1 << 20)).unwrap();
        assert!(
            raise.starts_with("rlimits.nofile: the hard limit 8192 is above the daemon's own, 4096")
                && raise.contains("lower it to at most 4096")
                && raise.contains("LimitNOFILE="),
            "{raise}"
        );
        let past = rlimit_refusal(nofile, (1 << 20) + 1, u64::MAX, true, Some(1 << 20)).unwrap();
        assert!(past.contains("above the kernel's most per process, 1048576 (sysctl fs.nr_open)"), "{past}");
        let core = rlimit_refusal(Resource::Core, libc::RLIM_INFINITY, 0, false, None).unwrap();
        assert!(core.contains("hard limit infinity is above the daemon's own, 0") && core.contains("LimitCORE="));

        // Lowering this process's own limits always works: what the child will be given.
        let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into a struct on our stack.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) }, 0);
        let limits = Rlimits::from([
            (Resource::Nofile, Rlimit { soft: RlimitValue::Limited(64), hard: RlimitValue::Limited(current.rlim_max) }),
            (Resource::Core, Rlimit::both(RlimitValue::Limited(0))),
        ]);
        let prepared = prepare_rlimits(&limits).unwrap();
        let nofile_raw = raw_resource(Resource::Nofile);
        let (_, set) = prepared.iter().find(|(r, _)| *r == nofile_raw).unwrap();
        assert_eq!((set.rlim_cur, set.rlim_max), (64, current.rlim_max));
        let above = Rlimits::from([(Resource::Nofile, Rlimit::both(RlimitValue::Limited(u64::MAX - 1)))]);
        assert!(prepare_rlimits(&above).unwrap_err().starts_with("rlimits.nofile: "), "past fs.nr_open");
    }

    #[test]
    fn programs_resolve_from_path_or_cwd() {
        let env = BTreeMap::from([(OsString::from("PATH"), OsString::from("/nonexistent:/bin:/usr/bin"))]);
        assert!(resolve_program("sh", Path::new("/"), &env).unwrap().ends_with("sh"));
        assert!(resolve_program("no-such-program-x", Path::new("/"), &env).unwrap_err().contains("not found in PATH"));
        assert_eq!(resolve_program("./sh", Path::new("/bin"), &env).unwrap(), Path::new("/bin/./sh"));
    }
}
