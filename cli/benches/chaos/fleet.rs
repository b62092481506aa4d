//! The chaos soak's fleet (its config, the `mcpd` calls, the app processes found in /proc)
//! and its disk (a small tmpfs in a private mount namespace).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `mcpd` under test: the one cargo built, or CHAOS_MCPD (a copy, for a long run while
/// the tree is rebuilt).
fn mcpd() -> PathBuf {
    std::env::var_os("CHAOS_MCPD").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mcpd")), PathBuf::from)
}

/// Sends a signal to one pid.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) touches no memory of ours.
    unsafe { libc::kill(pid as i32, sig) };
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process of one of the fleet's apps (found by `CHAOS_RUN` in its environment).
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: u32,
    pub pgid: u32,
    /// Start time in clock ticks: with the pid, names the process across pid reuse.
    pub start: u64,
    pub comm: String,
    pub app: String,
    /// Its cgroup v2 path, when it is in one of mcpd's generation cgroups.
    pub cgroup: Option<String>,
}

/// An app's row of `mcpd list --json`.
pub struct Row {
    pub name: String,
    pub pid: Option<u32>,
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub examples: PathBuf,
    pub front_port: u16,
    pub web_ports: [u16; 2],
    run_id: String,
    config: PathBuf,
}

impl Fleet {
    /// Writes the fleet's config; `log_dir` is the tmpfs for the flooder's log, if there is one.
    pub fn new(log_dir: Option<PathBuf>) -> Fleet {
        let daemon = mcpd().with_file_name("mcpd-daemon");
        assert!(daemon.is_file(), "{} is not built: run `cargo build --release` first", daemon.display());
        let dir = tempfile::Builder::new().prefix("mcpd-chaos").tempdir().expect("tempdir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let examples = root.join("examples").canonicalize().expect("examples/");
        let fixtures = root.join("cli/benches/chaos").canonicalize().expect("cli/benches/chaos/");
        assert!(
            examples.join("mcp-node/node_modules").is_dir(),
            "the soak runs the Node MCP example: npm ci --prefix examples/mcp-node"
        );
        let run_id = format!("{}-{}", std::process::id(), dir.path().file_name().unwrap().to_string_lossy());
        let front_port = free_port();
        let web_ports = [free_port(), free_port()];
        let fifo = dir.path().join("slow.fifo");
        let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0, "mkfifo {}", fifo.display());
        let flood_log = log_dir.unwrap_or_else(|| dir.path().to_path_buf()).join("flood.out.log");
        // The daemon first (`ping` starts it), to learn how it tracks processes.
        let cli = |args: &[&str]| {
            let out =
                Command::new(mcpd()).args(args).env("MCPD_HOME", dir.path().join("home")).output().expect("run mcpd");
            assert!(out.status.success(), "mcpd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        cli(&["ping"]);
        let cgroups = cli(&["logs", "--daemon", "--lines", "100"]).contains("process tracking: cgroup");
        // A child that leaves the process group: only where a cgroup still holds it.
        let family = if cgroups {
            "sleep 100000 & sleep 100000 & setsid sleep 100000 & wait"
        } else {
            "sleep 100000 & sleep 100000 & wait"
        };
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        let py = |name: &str| q(&fixtures.join(name));
        let mut config = String::new();
        let mut app = |name: &str, body: String| {
            config.push_str(&format!(
                "[apps.{name}]\n{body}\nenv = {{ CHAOS_RUN = \"{run_id}\", CHAOS_APP = \"{name}\" }}\n\n"
            ));
        };
        for (i, port) in web_ports.iter().enumerate() {
            app(
                &format!("web{}", i + 1),
                format!(
                    "command = \"python3\"\nargs = [{}]\nlisten = [\"tcp://127.0.0.1:{port}\"]\nkill_timeout = \"2s\"",
                    py("web.py")
                ),
            );
        }
        app(
            "mcp",
            format!(
                "command = \"node\"\nargs = [\"server.js\"]\ncwd = {}\nkill_timeout = \"3s\"\n\
                 front = {{ listen = \"127.0.0.1:{front_port}\", session_idle_timeout = \"5s\", drain_deadline = \"30s\" }}\n\
                 ready = {{ mcp = \"http://127.0.0.1:{front_port}/mcp\" }}",
                q(&examples.join("mcp-node"))
            ),
        );
        app(
            "crashy",
            "command = \"sh\"\nargs = [\"-c\", \"sleep 0.4; exit 3\"]\nkill_timeout = \"2s\"\n\
             exp_backoff_restart_delay = \"100ms\"\nexp_backoff_max = \"2s\"\nmin_uptime = \"200ms\""
                .into(),
        );
        app(
            "flood",
            format!(
                "command = \"python3\"\nargs = [{}, \"500\"]\nout_file = {}\nlog_date_format = \"none\"\n\
                 log_max_size = \"64K\"\nlog_retain = 10\nkill_timeout = \"2s\"",
                py("numbered.py"),
                q(&flood_log)
            ),
        );
        app(
            "slowlog",
            format!(
                "command = \"python3\"\nargs = [{}, \"200\"]\nout_file = {}\nlog_date_format = \"none\"\nkill_timeout = \"2s\"",
                py("numbered.py"),
                q(&fifo)
            ),
        );
        app(
            "leaky",
            format!(
                "command = \"python3\"\nargs = [{}]\nmax_memory_restart = \"64M\"\nmemory_check_interval = \"250ms\"\nkill_timeout = \"2s\"",
                py("leaky.py")
            ),
        );
        app("family", format!("command = \"sh\"\nargs = [\"-c\", {family:?}]\nkill_timeout = \"2s\""));
        let config_path = dir.path().join("fleet.toml");
        std::fs::write(&config_path, config).unwrap();
        Fleet { dir, examples, front_port, web_ports, run_id, config: config_path }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn socket(&self) -> PathBuf {
        self.home().join("mcpd.sock")
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.path().join("slow.fifo")
    }

    /// Where the collector appends the flooder's rotated files.
    pub fn collected(&self) -> PathBuf {
        self.dir.path().join("flood.collected")
    }

    /// `mcpd ARGS`, killed after `timeout` (then None).
    pub fn mcpd_timed(&self, args: &[&str], timeout: Duration) -> Option<Output> {
        let mut child = Command::new(mcpd())
            .args(args)
            .env("MCPD_HOME", self.home())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mcpd");
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let readers = std::thread::spawn(move || {
            let (mut o, mut e) = (Vec::new(), Vec::new());
            let err_reader = std::thread::spawn(move || {
                let _ = err.read_to_end(&mut e);
                e
            });
            let _ = out.read_to_end(&mut o);
            (o, err_reader.join().unwrap_or_default())
        });
        let t = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let (stdout, stderr) = readers.join().unwrap_or_default();
                return Some(Output { status, stdout, stderr });
            }
            if t.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts (or restarts after a kill -9) the daemon with the whole fleet.
    pub fn start_daemon(&self) {
        let config = self.config.display().to_string();
        match self.mcpd_timed(&["start", &config], Duration::from_secs(90)) {
            Some(out) if out.status.success() => {}
            Some(out) => println!("note: `mcpd start` said: {}", String::from_utf8_lossy(&out.stderr).trim()),
            None => panic!("`mcpd start {config}` hung for 90 s"),
        }
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.home().join("daemon.lock")).ok()?.trim().parse().ok()
    }

    /// How the daemon tracks processes (`describe`'s `tracking`).
    pub fn tracking(&self) -> String {
        self.mcpd_timed(&["describe", "web1", "--json"], Duration::from_secs(10))
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["tracking"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }

    fn list(&self) -> Option<Vec<serde_json::Value>> {
        let out = self.mcpd_timed(&["list", "--json"], Duration::from_secs(10))?;
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    pub fn rows(&self) -> Vec<Row> {
        self.list()
            .unwrap_or_default()
            .iter()
            .map(|r| Row {
                name: r["name"].as_str().unwrap_or("").to_string(),
                pid: r["pid"].as_u64().map(|p| p as u32),
            })
            .collect()
    }

    /// Every generation pid the daemon lists: the running one, both of a reload, and each
    /// draining one that still holds sessions.
    pub fn known_pids(&self) -> Option<HashSet<u32>> {
        let mut known = HashSet::new();
        for row in self.list()? {
            let pids = [&row["pid"], &row["reload"]["old_pid"], &row["reload"]["new_pid"]];
            known.extend(pids.iter().filter_map(|p| p.as_u64()).map(|p| p as u32));
            for s in row["sessions"].as_array().into_iter().flatten() {
                known.extend(s["pid"].as_u64().map(|p| p as u32));
            }
        }
        Some(known)
    }

    /// Every live process of the fleet's apps.
    pub fn processes(&self) -> Vec<Proc> {
        let marker = format!("CHAOS_RUN={}", self.run_id);
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
            let mut app = None;
            let mut ours = false;
            for var in environ.split(|&b| b == 0) {
                let var = String::from_utf8_lossy(var);
                if var == marker {
                    ours = true;
                } else if let Some(name) = var.strip_prefix("CHAOS_APP=") {
                    app = Some(name.to_string());
                }
            }
            if !ours {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some((head, rest)) = stat.rsplit_once(')') else { continue };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // Zombies are the daemon's to reap, not processes left running.
            if fields.first() == Some(&"Z") {
                continue;
            }
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|c| c.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string)))
                .filter(|c| c.contains("/mcpd-"));
            found.push(Proc {
                pid,
                pgid: fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0),
                start: fields.get(19).and_then(|f| f.parse().ok()).unwrap_or(0),
                comm: head.split_once('(').map(|h| h.1.to_string()).unwrap_or_default(),
                app: app.unwrap_or_default(),
                cgroup,
            });
        }
        found
    }

    pub fn app_of(&self, p: &Proc) -> String {
        p.app.clone()
    }
}

/// A 2 MiB tmpfs for the flooder's log, in a mount namespace of the soak's own (so nothing
/// is left mounted if the soak dies).
#[derive(Clone)]
pub struct Disk {
    pub dir: PathBuf,
}

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn c(path: &Path) -> std::ffi::CString {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

impl Disk {
    /// Must run before the process has threads.
    pub fn private_namespace() -> Result<Disk, String> {
        // SAFETY: plain syscalls with valid C strings; single-threaded at this point.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(errno("a mount namespace (needs root)"));
            }
            let root = c(Path::new("/"));
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(errno("mount --make-rprivate /"));
            }
        }
        let dir = std::env::temp_dir().join(format!("mcpd-chaos-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let (tmpfs, options) = (c(Path::new("tmpfs")), c(Path::new("size=2m,mode=0700")));
        // SAFETY: valid C strings.
        if unsafe { libc::mount(tmpfs.as_ptr(), c(&dir).as_ptr(), tmpfs.as_ptr(), 0, options.as_ptr().cast()) } != 0 {
            return Err(errno("mount a tmpfs"));
        }
        Ok(Disk { dir })
    }

    /// The log directory read-only for `hold`: a read-only bind mount over it. What the daemon
    /// has open stays writable (as after `mount -o remount,ro` of a disk that allows it, new
    /// files, renames and rotation fail).
    pub fn read_only(&self, hold: Duration) -> Result<(), String> {
        let dir = c(&self.dir);
        // SAFETY: valid C strings.
        unsafe {
            if libc::mount(dir.as_ptr(), dir.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
                return Err(errno("bind mount"));
            }
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
            if libc::mount(std::ptr::null(), dir.as_ptr(), std::ptr::null(), flags, std::ptr::null()) != 0 {
                let e = errno("remount read-only");
                libc::umount2(dir.as_ptr(), libc::MNT_DETACH);
                return Err(e);
            }
        }
        std::thread::sleep(hold);
        // SAFETY: a valid C string.
        if unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(errno("umount the read-only bind mount"));
        }
        Ok(())
    }

    /// Fills the tmpfs for `hold`; returns when it was full (from, to) on `now`'s clock.
    pub fn fill(&self, hold: Duration, now: impl Fn() -> f64) -> (f64, f64) {
        let path = self.dir.join("filler");
        let from = now();
        if let Ok(mut f) = std::fs::File::create(&path) {
            let chunk = vec![0u8; 16 * 1024];
            while f.write_all(&chunk).is_ok() {}
            let _ = f.sync_all();
        }
        std::thread::sleep(hold);
        let _ = std::fs::remove_file(&path);
        (from, now())
    }

    /// Appends each rotated flooder file to `dest` and removes it (only once it is removed,
    /// so a file is never taken twice).
    pub fn collect(&self, dest: &Path) {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("flood.out.log.")))
            .collect();
        names.sort();
        for path in names {
            let Ok(text) = std::fs::read(&path) else { continue };
            if std::fs::remove_file(&path).is_ok() {
                let mut out = std::fs::OpenOptions::new().create(true).append(true).open(dest).expect("collected log");
                out.write_all(&text).expect("write collected log");
            }
        }
    }
}
