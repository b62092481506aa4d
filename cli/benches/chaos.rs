//! The chaos soak: a realistic fleet under one daemon, random faults from a seeded schedule,
//! and invariants checked throughout and at the end. It exits 1 on any violation.
//!
//! ```sh
//! cargo build --release && cargo bench -p mcpd-cli --bench chaos -- --seconds 60 --seed 1
//! ```
//!
//! The fleet: two HTTP apps with `listen`, the Node MCP example behind a front with live SDK
//! sessions (`examples/mcp-node/chaos-client.js`), a crash-looper, a log flooder writing
//! numbered lines to a small tmpfs with rotation, an app logging to a FIFO read slowly, an app
//! whose child leaks past `max_memory_restart`, and a shell with grandchildren (one `setsid`).
//! Every app carries `CHAOS_RUN=<id>` in its environment, so the soak finds each of their
//! processes in /proc. The faults and invariants are listed in `Kind` and `check_*` below and in
//! the README ("What mcpd survives").
//!
//! Disk faults need root (a private mount namespace with a tmpfs); without it they are skipped
//! and the report says so. Needs `python3`, `node` and `examples/mcp-node/node_modules`.

#[path = "chaos/fleet.rs"]
mod fleet;

use fleet::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let opts = Options::from_args();
    // Before any thread: a private mount namespace for the tmpfs the disk faults use.
    let disk = Disk::private_namespace();
    let run = Run::new(opts, disk);
    let code = soak(run);
    std::process::exit(code);
}

/// `--seconds N --seed S` (or CHAOS_SECONDS, CHAOS_SEED); cargo's own `--bench` is ignored.
struct Options {
    seconds: u64,
    seed: u64,
}

impl Options {
    fn from_args() -> Options {
        let mut seconds = std::env::var("CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
        let mut seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
        let args: Vec<String> = std::env::args().collect();
        let mut i = 1;
        while i < args.len() {
            let value = args.get(i + 1).and_then(|v| v.parse().ok());
            match (args[i].as_str(), value) {
                ("--seconds", Some(v)) => (seconds, i) = (v, i + 1),
                ("--seed", Some(v)) => (seed, i) = (v, i + 1),
                ("--seconds" | "--seed", None) => panic!("{} needs a whole number", args[i]),
                _ => {}
            }
            i += 1;
        }
        Options { seconds, seed }
    }
}

/// The kinds of fault, each with its weight in the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    KillLeader,
    KillChild,
    StopCont,
    Reload,
    Restart,
    StopStart,
    ConcurrentOps,
    KillDaemon,
    KillGuardThenDaemon,
    StopGuard,
    CtlGarbage,
    CtlOversized,
    CtlHalfOpen,
    FrontMalformed,
    FrontAbandoned,
    LogReadOnly,
    DiskFull,
    SlowLog,
    Update,
}

const KINDS: [(Kind, u32); 19] = [
    (Kind::KillLeader, 10),
    (Kind::KillChild, 8),
    (Kind::StopCont, 8),
    (Kind::Reload, 10),
    (Kind::Restart, 5),
    (Kind::StopStart, 5),
    (Kind::ConcurrentOps, 4),
    (Kind::KillDaemon, 2),
    (Kind::KillGuardThenDaemon, 1),
    (Kind::StopGuard, 2),
    (Kind::CtlGarbage, 6),
    (Kind::CtlOversized, 4),
    (Kind::CtlHalfOpen, 4),
    (Kind::FrontMalformed, 6),
    (Kind::FrontAbandoned, 6),
    (Kind::LogReadOnly, 4),
    (Kind::DiskFull, 4),
    (Kind::SlowLog, 4),
    (Kind::Update, 3),
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::KillLeader => "SIGKILL an app's leader",
            Kind::KillChild => "SIGKILL a grandchild",
            Kind::StopCont => "SIGSTOP, later SIGCONT, a process",
            Kind::Reload => "mcpd reload",
            Kind::Restart => "mcpd restart",
            Kind::StopStart => "mcpd stop (timed), then start",
            Kind::ConcurrentOps => "reload + restart + reload at once",
            Kind::KillDaemon => "kill -9 the daemon, start a new one",
            Kind::KillGuardThenDaemon => "kill -9 the guard, 0.2-2 s later the daemon",
            Kind::StopGuard => "SIGSTOP the guard for 1-5 s",
            Kind::CtlGarbage => "garbage frames on the control socket",
            Kind::CtlOversized => "oversized frames on the control socket",
            Kind::CtlHalfOpen => "half-open control connections (20)",
            Kind::FrontMalformed => "malformed HTTP to the front",
            Kind::FrontAbandoned => "abandoned MCP sessions and GET streams",
            Kind::LogReadOnly => "log directory read-only",
            Kind::DiskFull => "log disk full",
            Kind::SlowLog => "log FIFO reader stalls",
            Kind::Update => "mcpd update (the daemon executes itself in place)",
        }
    }

    /// Whether the fault may make the calls to its target app fail (and the front, for a
    /// daemon fault): a failure is explained only by such a fault on the same target.
    fn disrupts(self) -> bool {
        matches!(
            self,
            Kind::KillLeader
                | Kind::KillChild
                | Kind::StopCont
                | Kind::Restart
                | Kind::StopStart
                | Kind::ConcurrentOps
                | Kind::KillDaemon
                | Kind::KillGuardThenDaemon
        )
    }
}

/// A fault as injected: on which app (or "daemon"), from when to when (seconds into the run).
#[derive(Clone, Debug)]
struct Fault {
    kind: Kind,
    target: String,
    start: f64,
    end: f64,
}

/// A failed call, request or probe, to be explained by a fault.
#[derive(Clone, Debug)]
struct Failure {
    what: &'static str,
    target: String,
    start: f64,
    end: f64,
    detail: String,
}

/// Everything the soak observed.
#[derive(Default)]
struct Record {
    faults: Vec<Fault>,
    skipped: BTreeMap<&'static str, String>,
    violations: Vec<String>,
    failures: Vec<Failure>,
    /// Windows when the flooder's log could not be written (disk full).
    unwritable: Vec<(f64, f64)>,
    rss_kib: Vec<u64>,
    fds: Vec<u64>,
    control_ms: Vec<f64>,
    front_ms: Vec<f64>,
    http_ok: u64,
    mcp: (u64, u64, u64),
    cli_outcomes: BTreeMap<String, u32>,
    /// The flooder's lines found in its log, and those dropped while its disk was full.
    log_lines: (u64, u64),
    daemon_deaths_ms: Vec<f64>,
    stop_ms: Vec<f64>,
    orphan_checks: u64,
}

/// Seeded splitmix64: the schedule is the same for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::from_secs_f64(lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len() as u64) as usize])
    }
    fn kind(&mut self) -> Kind {
        let total: u32 = KINDS.iter().map(|k| k.1).sum();
        let mut at = self.below(total as u64) as u32;
        for (kind, weight) in KINDS {
            if at < weight {
                return kind;
            }
            at -= weight;
        }
        unreachable!()
    }
}

/// The soak's shared state.
struct Run {
    opts: Options,
    fleet: Fleet,
    disk: Option<Disk>,
    t0: Instant,
    unix0_ms: f64,
    record: Mutex<Record>,
    /// Set while the daemon is down on purpose: probes skip, the orphan check waits.
    daemon_down: AtomicBool,
    /// Set when the schedule ends: background threads finish.
    done: AtomicBool,
    /// Set while the FIFO reader must stall.
    fifo_stalled: AtomicBool,
    /// A disk fault at a time: the read-only bind mount and the filler file exclude each other.
    disk_busy: AtomicBool,
    /// Processes stopped with SIGSTOP and not yet continued.
    stopped: Mutex<HashSet<u32>>,
}

impl Run {
    fn new(opts: Options, disk: Result<Disk, String>) -> Arc<Run> {
        let fleet = Fleet::new(disk.as_ref().ok().map(|d| d.dir.clone()));
        let unix0_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() * 1e3;
        let run = Run {
            opts,
            fleet,
            disk: disk.as_ref().ok().cloned(),
            t0: Instant::now(),
            unix0_ms,
            record: Mutex::new(Record::default()),
            daemon_down: AtomicBool::new(false),
            done: AtomicBool::new(false),
            fifo_stalled: AtomicBool::new(false),
            disk_busy: AtomicBool::new(false),
            stopped: Mutex::new(HashSet::new()),
        };
        if let Err(why) = disk {
            let mut r = run.record.lock().unwrap();
            for kind in [Kind::LogReadOnly, Kind::DiskFull] {
                r.skipped.insert(kind.name(), why.clone());
            }
        }
        Arc::new(run)
    }

    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn violation(&self, what: String) {
        println!("[{:7.1}s] VIOLATION: {what}", self.now());
        self.record.lock().unwrap().violations.push(what);
    }

    fn fault(&self, kind: Kind, target: &str, start: f64) {
        let end = self.now();
        self.record.lock().unwrap().faults.push(Fault { kind, target: target.to_string(), start, end });
    }

    fn failure(&self, what: &'static str, target: &str, start: f64, detail: String) {
        let end = self.now();
        self.record.lock().unwrap().failures.push(Failure { what, target: target.to_string(), start, end, detail });
    }
}

fn soak(run: Arc<Run>) -> i32 {
    println!("chaos soak: {} s, seed {}, fleet in {}", run.opts.seconds, run.opts.seed, run.fleet.dir.path().display());
    run.fleet.start_daemon();
    let tracking = run.fleet.tracking();
    println!("process tracking: {tracking}");
    let threads = [
        spawn(&run, "monitor", monitor),
        spawn(&run, "probes", probes),
        spawn(&run, "http load", http_load),
        spawn(&run, "log collector", collect_logs),
        spawn(&run, "fifo reader", read_fifo),
    ];
    let client = McpClient::start(&run);

    schedule(&run);

    run.done.store(true, Ordering::SeqCst);
    let (calls, failed, sessions) = client.stop(&run);
    run.record.lock().unwrap().mcp = (calls, failed, sessions);
    for thread in threads {
        let _ = thread.join();
    }
    finish(&run);
    report(&run)
}

fn spawn(run: &Arc<Run>, name: &str, body: fn(&Run)) -> std::thread::JoinHandle<()> {
    let run = Arc::clone(run);
    std::thread::Builder::new().name(name.into()).spawn(move || body(&run)).expect("spawn thread")
}

/// The seeded schedule: a fault every 0.3-2.5 s until the time is up.
fn schedule(run: &Arc<Run>) {
    let mut rng = Rng(run.opts.seed);
    let end = Duration::from_secs(run.opts.seconds);
    let mut background = Vec::new();
    while run.t0.elapsed() < end {
        std::thread::sleep(rng.secs(0.3, 2.5));
        if run.t0.elapsed() >= end {
            break;
        }
        let kind = rng.kind();
        let seed = rng.next();
        if run.record.lock().unwrap().skipped.contains_key(kind.name()) {
            continue;
        }
        match kind {
            // These block the schedule: the fleet is down meanwhile.
            Kind::KillDaemon | Kind::KillGuardThenDaemon => kill_daemon(run, kind, &mut Rng(seed)),
            _ => {
                let run = Arc::clone(run);
                background.push(std::thread::spawn(move || inject(&run, kind, &mut Rng(seed))));
            }
        }
        background.retain(|t: &std::thread::JoinHandle<()>| !t.is_finished());
    }
    for thread in background {
        let _ = thread.join();
    }
}

/// Injects one fault (on a thread of its own: faults overlap).
fn inject(run: &Run, kind: Kind, rng: &mut Rng) {
    let start = run.now();
    match kind {
        Kind::KillLeader => {
            let rows = run.fleet.rows();
            let live: Vec<_> = rows.iter().filter_map(|r| Some((r.name.clone(), r.pid?))).collect();
            if let Some((app, pid)) = rng.pick(&live) {
                signal(*pid, libc::SIGKILL);
                run.fault(kind, app, start);
            }
        }
        Kind::KillChild => {
            let procs = run.fleet.processes();
            let children: Vec<_> = procs.iter().filter(|p| p.pid != p.pgid).collect();
            if let Some(p) = rng.pick(&children) {
                signal(p.pid, libc::SIGKILL);
                run.fault(kind, &run.fleet.app_of(p), start);
            }
        }
        Kind::StopCont => {
            let procs = run.fleet.processes();
            if let Some(p) = rng.pick(&procs) {
                let app = run.fleet.app_of(p);
                run.stopped.lock().unwrap().insert(p.pid);
                signal(p.pid, libc::SIGSTOP);
                std::thread::sleep(rng.secs(0.2, 3.0));
                signal(p.pid, libc::SIGCONT);
                run.stopped.lock().unwrap().remove(&p.pid);
                run.fault(kind, &app, start);
            }
        }
        Kind::StopGuard => {
            // The daemon must keep serving (it never waits for its guard); a daemon kill
            // meanwhile continues the guard first (`kill_daemon`).
            let Some(guard) = run.fleet.daemon_pid().and_then(guard_pid) else { return };
            run.stopped.lock().unwrap().insert(guard);
            signal(guard, libc::SIGSTOP);
            std::thread::sleep(rng.secs(1.0, 5.0));
            if run.stopped.lock().unwrap().remove(&guard) {
                signal(guard, libc::SIGCONT);
            }
            run.fault(kind, "daemon", start);
        }
        Kind::Reload | Kind::Restart => {
            let app = *rng.pick(&APPS).unwrap();
            let verb = if kind == Kind::Reload { "reload" } else { "restart" };
            cli_op(run, verb, app, kind);
        }
        Kind::Update => {
            // The daemon re-executes itself with every app, pipe and session handed over; the
            // invariants checked all along (no orphan, every numbered log line once, the web
            // app answering) hold across it. It may refuse (a stuck log, one already running)
            // but never hang, and when it says it updated, it is the same pid.
            let before = run.fleet.daemon_pid();
            match run.fleet.mcpd_timed(&["update"], Duration::from_secs(60)) {
                Some(out) => {
                    let said = String::from_utf8_lossy(&out.stdout).to_string();
                    if out.status.success() && said.contains("updated in place") {
                        if let Some(pid) = before.filter(|p| !said.contains(&format!("(pid {p})"))) {
                            run.violation(format!("`mcpd update` said {said:?}, but the daemon was pid {pid}"));
                        }
                    }
                    outcome(run, "update", &out);
                }
                None => run.violation("`mcpd update` hung for 60 s".into()),
            }
            run.fault(kind, "daemon", start);
        }
        Kind::ConcurrentOps => {
            let app = *rng.pick(&APPS).unwrap();
            std::thread::scope(|s| {
                for verb in ["reload", "restart", "reload"] {
                    s.spawn(move || cli_op(run, verb, app, kind));
                }
            });
        }
        Kind::StopStart => {
            let app = *rng.pick(&APPS).unwrap();
            let t = Instant::now();
            let out = run.fleet.mcpd_timed(&["stop", app], Duration::from_secs(60));
            let took = t.elapsed().as_secs_f64();
            let bound = kill_timeout(app) + 1.0;
            run.record.lock().unwrap().stop_ms.push(took * 1e3);
            match out {
                Some(out) if out.status.success() && took > bound => {
                    run.violation(format!("`mcpd stop {app}` took {took:.2} s (kill_timeout + 1 s: {bound:.1} s)"))
                }
                Some(out) => outcome(run, "stop", &out),
                None => run.violation(format!("`mcpd stop {app}` hung for 60 s")),
            }
            std::thread::sleep(rng.secs(0.0, 1.0));
            if let Some(out) = run.fleet.mcpd_timed(&["start", app], Duration::from_secs(60)) {
                outcome(run, "start", &out);
            }
            run.fault(kind, app, start);
        }
        Kind::CtlGarbage => {
            for _ in 0..5 {
                let len = rng.below(200) as usize;
                let mut frame = (len as u32).to_be_bytes().to_vec();
                frame.extend((0..len).map(|_| rng.next() as u8));
                if rng.below(3) == 0 {
                    frame = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                }
                control_exchange(run, &frame, Duration::from_secs(3));
            }
            run.fault(kind, "daemon", start);
        }
        Kind::CtlOversized => {
            let mut frame = (u32::MAX - rng.below(1 << 20) as u32).to_be_bytes().to_vec();
            frame.extend(std::iter::repeat_n(b'{', 64 * 1024));
            control_exchange(run, &frame, Duration::from_secs(3));
            let mut frame = ((4 << 20) as u32 + 1).to_be_bytes().to_vec();
            frame.extend(std::iter::repeat_n(b' ', 1024));
            control_exchange(run, &frame, Duration::from_secs(3));
            run.fault(kind, "daemon", start);
        }
        Kind::CtlHalfOpen => {
            let held: Vec<_> = (0..20)
                .filter_map(|i| {
                    let mut s = std::os::unix::net::UnixStream::connect(run.fleet.socket()).ok()?;
                    if i % 2 == 0 {
                        let _ = s.write_all(&[0, 0]);
                    }
                    Some(s)
                })
                .collect();
            std::thread::sleep(rng.secs(1.0, 6.0));
            drop(held);
            run.fault(kind, "daemon", start);
        }
        Kind::FrontMalformed => {
            let junk: Vec<u8> = (0..rng.below(512)).map(|_| rng.next() as u8).collect();
            let long = format!("POST /mcp HTTP/1.1\r\nhost: x\r\nx-long: {}\r\n\r\n", "a".repeat(70_000));
            let requests: [&[u8]; 5] = [
                &junk,
                b"GET / HTTP/9.9\r\n\r\n",
                b"POST /mcp HTTP/1.1\r\nno colon here\r\n\r\n",
                b"POST /mcp HTTP/1.1\r\ncontent-length: 99999999999999999999\r\n\r\n",
                long.as_bytes(),
            ];
            for request in requests {
                front_exchange(run, request);
            }
            run.fault(kind, "mcp", start);
        }
        Kind::FrontAbandoned => {
            let mut held = Vec::new();
            for _ in 0..3 {
                if let Some(session) = initialize_raw(run.fleet.front_port) {
                    // A GET stream nobody reads, then gone without a DELETE.
                    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", run.fleet.front_port)) {
                        let get = format!(
                            "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\nmcp-session-id: {session}\r\nmcp-protocol-version: 2025-06-18\r\n\r\n"
                        );
                        let _ = s.write_all(get.as_bytes());
                        held.push(s);
                    }
                }
            }
            std::thread::sleep(rng.secs(0.5, 4.0));
            drop(held);
            run.fault(kind, "mcp", start);
        }
        Kind::LogReadOnly | Kind::DiskFull => {
            let Some(disk) = &run.disk else { return };
            if run.disk_busy.swap(true, Ordering::SeqCst) {
                return;
            }
            let hold = rng.secs(1.0, 4.0);
            if kind == Kind::LogReadOnly {
                if let Err(e) = disk.read_only(hold) {
                    run.violation(format!("the read-only fault could not be made: {e}"));
                }
            } else {
                let (from, to) = disk.fill(hold, || run.now());
                run.record.lock().unwrap().unwritable.push((from, to));
            }
            run.disk_busy.store(false, Ordering::SeqCst);
            run.fault(kind, "flood", start);
        }
        Kind::SlowLog => {
            run.fifo_stalled.store(true, Ordering::SeqCst);
            std::thread::sleep(rng.secs(2.0, 6.0));
            run.fifo_stalled.store(false, Ordering::SeqCst);
            run.fault(kind, "slowlog", start);
        }
        Kind::KillDaemon | Kind::KillGuardThenDaemon => unreachable!("run on the schedule's thread"),
    }
}

fn kill_timeout(app: &str) -> f64 {
    if app == "mcp" {
        3.0
    } else {
        2.0
    }
}

/// `mcpd VERB APP`: any outcome but a hang is the daemon's to choose (busy, interrupted, ...).
fn cli_op(run: &Run, verb: &str, app: &str, kind: Kind) {
    let start = run.now();
    match run.fleet.mcpd_timed(&[verb, app], Duration::from_secs(90)) {
        Some(out) => outcome(run, verb, &out),
        None => run.violation(format!("`mcpd {verb} {app}` hung for 90 s")),
    }
    run.fault(kind, app, start);
}

fn outcome(run: &Run, verb: &str, out: &std::process::Output) {
    let text = String::from_utf8_lossy(&out.stderr);
    let why = if out.status.success() {
        "ok".to_string()
    } else if let Some(kind) = text.rfind('[').and_then(|i| text[i..].split(']').next()) {
        format!("{kind}]")
    } else if text.contains("daemon") {
        "daemon unreachable".to_string()
    } else {
        // The first line of what it said (the timeline keeps them all).
        let said: String = text.lines().next().unwrap_or("").chars().take(100).collect();
        println!("[{:7.1}s] `mcpd {verb}` exited {:?}: {said}", run.now(), out.status.code());
        format!("exit {:?}: {said}", out.status.code())
    };
    *run.record.lock().unwrap().cli_outcomes.entry(format!("{verb}: {why}")).or_default() += 1;
}

/// Sends bytes to the control socket and waits for the daemon to answer or close; the
/// control probes check it keeps serving others.
fn control_exchange(run: &Run, bytes: &[u8], wait: Duration) {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(run.fleet.socket()) else { return };
    let _ = s.set_write_timeout(Some(wait));
    let _ = s.set_read_timeout(Some(wait));
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    while let Ok(n) = s.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

fn front_exchange(run: &Run, bytes: &[u8]) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", run.fleet.front_port)) else { return };
    let _ = s.set_write_timeout(Some(Duration::from_secs(3)));
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(bytes);
    let mut sink = [0u8; 4096];
    while let Ok(n) = s.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

/// An `initialize` through the front with raw HTTP; the session id, if one was made.
fn initialize_raw(port: u16) -> Option<String> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"chaos-abandoned","version":"0"}}}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut head = String::new();
    let mut reader = BufReader::new(s);
    while reader.read_line(&mut head).ok()? > 2 && !head.ends_with("\r\n\r\n") {}
    head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("mcp-session-id:").map(|v| v.trim().to_string()))
}

/// kill -9 of the daemon (after its guard, for the second kind), then a new daemon.
fn kill_daemon(run: &Arc<Run>, kind: Kind, rng: &mut Rng) {
    let start = run.now();
    let Some(daemon) = run.fleet.daemon_pid() else { return };
    run.daemon_down.store(true, Ordering::SeqCst);
    let before: HashSet<u32> = run.fleet.processes().iter().map(|p| p.pid).collect();
    if let Some(guard) = guard_pid(daemon).filter(|g| run.stopped.lock().unwrap().remove(g)) {
        // A guard held stopped by a StopGuard fault reads again first: the daemon's death
        // must find it reading.
        signal(guard, libc::SIGCONT);
    }
    if kind == Kind::KillGuardThenDaemon {
        let Some(guard) = guard_pid(daemon) else {
            run.violation("the daemon has no mcpd-guard child".into());
            run.daemon_down.store(false, Ordering::SeqCst);
            return;
        };
        signal(guard, libc::SIGKILL);
        std::thread::sleep(rng.secs(0.2, 2.0));
    }
    signal(daemon, libc::SIGKILL);
    let died = Instant::now();
    // With its guard alive (or replaced, after the guard's death), every app process is gone
    // within 1 s of the daemon's death.
    let deadline = Duration::from_secs(1);
    let mut left = Vec::new();
    while died.elapsed() < Duration::from_secs(3) {
        left = run.fleet.processes().into_iter().filter(|p| before.contains(&p.pid)).collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone_in = died.elapsed();
    if left.is_empty() && gone_in <= deadline {
        run.record.lock().unwrap().daemon_deaths_ms.push(gone_in.as_secs_f64() * 1e3);
    } else {
        run.violation(format!(
            "{} app process(es) still alive {:.2} s after the daemon's death: {:?}",
            left.len(),
            gone_in.as_secs_f64(),
            left.iter().map(|p| p.pid).take(10).collect::<Vec<_>>()
        ));
    }
    wait_gone(daemon);
    // A new daemon: the CLI starts one; nothing of the old daemon's apps may be left then.
    let t = Instant::now();
    run.fleet.start_daemon();
    let survivors: Vec<u32> = run.fleet.processes().iter().map(|p| p.pid).filter(|p| before.contains(p)).collect();
    if !survivors.is_empty() {
        run.violation(format!(
            "{} process(es) of the killed daemon's apps still alive after a new daemon started ({:.1} s): {:?}",
            survivors.len(),
            t.elapsed().as_secs_f64(),
            &survivors[..survivors.len().min(10)]
        ));
    }
    run.daemon_down.store(false, Ordering::SeqCst);
    run.fault(kind, "daemon", start);
}

fn wait_gone(pid: u32) {
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn guard_pid(daemon: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{daemon}/task/{daemon}/children"))
        .ok()?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "mcpd-guard"))
}

/// Every 250 ms: no orphan (a process of an app that no live generation owns must be gone
/// within the app's kill_timeout + 1 s), daemon RSS and fd count within bounds.
fn monitor(run: &Run) {
    let mut unowned: HashMap<(u32, u64), (f64, String)> = HashMap::new();
    while !run.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(250));
        if run.daemon_down.load(Ordering::SeqCst) {
            unowned.clear();
            continue;
        }
        let Some(daemon) = run.fleet.daemon_pid() else { continue };
        if let Some((rss, fds)) = daemon_usage(daemon) {
            let mut r = run.record.lock().unwrap();
            r.rss_kib.push(rss);
            r.fds.push(fds);
            drop(r);
            if rss > RSS_BOUND_KIB {
                run.violation(format!("daemon RSS {rss} KiB above {RSS_BOUND_KIB} KiB"));
            }
            if fds > FD_BOUND {
                run.violation(format!("daemon holds {fds} fds, above {FD_BOUND}"));
            }
        }
        let Some(known) = run.fleet.known_pids() else { continue };
        let procs = run.fleet.processes();
        // Cgroups whose leader the daemon knows: what left the group with setsid is still owned.
        let owned_cgroups: HashSet<&str> =
            procs.iter().filter(|p| known.contains(&p.pid)).filter_map(|p| p.cgroup.as_deref()).collect();
        let now = run.now();
        let mut seen = HashSet::new();
        let stopped = run.stopped.lock().unwrap().clone();
        for p in &procs {
            let owned = known.contains(&p.pgid) || p.cgroup.as_deref().is_some_and(|c| owned_cgroups.contains(c));
            if owned {
                continue;
            }
            let key = (p.pid, p.start);
            seen.insert(key);
            let app = run.fleet.app_of(p);
            let (since, _) = unowned.entry(key).or_insert((now, app.clone()));
            // A process we hold stopped cannot act on the daemon's kill_signal until continued.
            let grace = kill_timeout(&app) + 1.0 + if stopped.contains(&p.pid) { 3.0 } else { 0.0 };
            if now - *since > grace {
                run.violation(format!(
                    "orphan: pid {} ({}, app {app}) owned by no generation the daemon lists for {:.1} s",
                    p.pid,
                    p.comm,
                    now - *since
                ));
                *since = f64::INFINITY;
            }
        }
        unowned.retain(|k, _| seen.contains(k));
        run.record.lock().unwrap().orphan_checks += 1;
    }
}

const RSS_BOUND_KIB: u64 = 48 * 1024;
const FD_BOUND: u64 = 400;

fn daemon_usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// Every 250 ms: the control socket answers `mcpd ping` and the front answers a request for
/// an unknown session (404, from the front itself) within their bounds, unless the daemon is
/// down on purpose.
fn probes(run: &Run) {
    const CONTROL_BOUND: f64 = 3.0;
    const FRONT_BOUND: f64 = 2.0;
    while !run.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(250));
        if run.daemon_down.load(Ordering::SeqCst) {
            continue;
        }
        let start = run.now();
        let t = Instant::now();
        let ok = run.fleet.mcpd_timed(&["ping"], Duration::from_secs(10)).is_some_and(|o| o.status.success());
        let took = t.elapsed().as_secs_f64();
        if run.daemon_down.load(Ordering::SeqCst) {
            continue;
        }
        run.record.lock().unwrap().control_ms.push(took * 1e3);
        if !ok || took > CONTROL_BOUND {
            run.failure("control", "daemon", start, format!("ping ok={ok} in {took:.2} s"));
        }
        let start = run.now();
        let t = Instant::now();
        let request = "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-session-id: chaos-probe-unknown\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
        let status = http_status(run.fleet.front_port, request, Duration::from_secs(5));
        let took = t.elapsed().as_secs_f64();
        if run.daemon_down.load(Ordering::SeqCst) {
            continue;
        }
        run.record.lock().unwrap().front_ms.push(took * 1e3);
        if status != Some(404) || took > FRONT_BOUND {
            run.failure("front", "mcp", start, format!("status {status:?} in {took:.2} s"));
        }
    }
}

fn http_status(port: u16, request: &str, timeout: Duration) -> Option<u16> {
    let mut s = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut text = Vec::new();
    s.read_to_end(&mut text).ok()?;
    std::str::from_utf8(text.get(9..12)?).ok()?.parse().ok()
}

/// A request to each web app every 100 ms.
fn http_load(run: &Run) {
    while !run.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        for (app, port) in [("web1", run.fleet.web_ports[0]), ("web2", run.fleet.web_ports[1])] {
            if run.daemon_down.load(Ordering::SeqCst) {
                continue;
            }
            let start = run.now();
            let status = http_status(
                port,
                "GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
                Duration::from_secs(5),
            );
            if run.daemon_down.load(Ordering::SeqCst) {
                continue;
            }
            if status == Some(200) {
                run.record.lock().unwrap().http_ok += 1;
            } else {
                run.failure("http", app, start, format!("status {status:?}"));
            }
        }
    }
}

/// Moves the flooder's rotated files off the small tmpfs as a log shipper would (rotated files
/// are complete: rotation renames between two whole lines), so that only the filler fills it.
fn collect_logs(run: &Run) {
    let Some(disk) = &run.disk else { return };
    loop {
        let done = run.done.load(Ordering::SeqCst);
        disk.collect(&run.fleet.collected());
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads the slow app's FIFO: 8 KiB every 100 ms, nothing while stalled.
fn read_fifo(run: &Run) {
    let fifo = run.fleet.fifo();
    // Opened read-write: the FIFO always has a reader, across the daemon's restarts.
    let Ok(mut f) = std::fs::OpenOptions::new().read(true).write(true).open(&fifo) else { return };
    set_nonblocking(&f);
    let mut buf = vec![0u8; 8192];
    while !run.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if !run.fifo_stalled.load(Ordering::SeqCst) {
            let _ = f.read(&mut buf);
        }
    }
}

fn set_nonblocking(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// The live MCP sessions: `chaos-client.js`, its failures read as they come.
struct McpClient {
    child: std::process::Child,
    reader: std::thread::JoinHandle<(u64, u64, u64)>,
}

impl McpClient {
    fn start(run: &Arc<Run>) -> McpClient {
        let url = format!("http://127.0.0.1:{}/mcp", run.fleet.front_port);
        let mut child = Command::new("node")
            .arg(run.fleet.examples.join("mcp-node/chaos-client.js"))
            .args([url.as_str(), "6"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node examples/mcp-node/chaos-client.js");
        let stdout = child.stdout.take().unwrap();
        let run = Arc::clone(run);
        let reader = std::thread::spawn(move || {
            let mut last = (0, 0, 0);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                match v["event"].as_str() {
                    Some("fail") => {
                        let at = |k: &str| (v[k].as_f64().unwrap_or(0.0) - run.unix0_ms) / 1e3;
                        let failure = Failure {
                            what: "mcp",
                            target: "mcp".into(),
                            start: at("start"),
                            end: at("end"),
                            detail: v["error"].as_str().unwrap_or("").to_string(),
                        };
                        run.record.lock().unwrap().failures.push(failure);
                    }
                    Some("stats") => {
                        let n = |k: &str| v[k].as_u64().unwrap_or(0);
                        last = (n("calls"), n("failed"), n("sessions"));
                    }
                    _ => {}
                }
            }
            last
        });
        McpClient { child, reader }
    }

    /// Ends the sessions; returns (calls, failed calls, sessions opened).
    fn stop(mut self, run: &Run) -> (u64, u64, u64) {
        if let Ok(Some(status)) = self.child.try_wait() {
            run.violation(format!("the MCP clients ended before the soak did ({status}): see their stderr above"));
        }
        signal(self.child.id(), libc::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader.join().unwrap_or_default()
    }
}

/// The end: every process we stopped continued, `mcpd stop all` timed, nothing left,
/// and the flooder's lines are checked.
fn finish(run: &Run) {
    for pid in run.stopped.lock().unwrap().drain() {
        signal(pid, libc::SIGCONT);
    }
    let t = Instant::now();
    let out = run.fleet.mcpd_timed(&["stop", "all"], Duration::from_secs(60));
    let took = t.elapsed().as_secs_f64();
    match out {
        Some(out) if out.status.success() => {
            if took > 3.0 + 1.0 {
                run.violation(format!("`mcpd stop all` took {took:.2} s (the largest kill_timeout + 1 s: 4 s)"));
            }
            run.record.lock().unwrap().stop_ms.push(took * 1e3);
        }
        Some(out) => run.violation(format!("`mcpd stop all` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        None => run.violation("`mcpd stop all` hung for 60 s".into()),
    }
    let t = Instant::now();
    let mut left = run.fleet.processes();
    while !left.is_empty() && t.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(20));
        left = run.fleet.processes();
    }
    if !left.is_empty() {
        run.violation(format!(
            "after `mcpd stop all`: {} app process(es) left: {:?}",
            left.len(),
            left.iter().map(|p| (p.pid, p.comm.clone())).take(10).collect::<Vec<_>>()
        ));
    }
    if let Some(disk) = &run.disk {
        disk.collect(&run.fleet.collected());
        check_lines(run);
    }
    let _ = run.fleet.mcpd_timed(&["kill"], Duration::from_secs(30));
}

/// No line of the flooder lost while its disk was writable, none duplicated, none torn; the
/// last generation (stopped at the end) wrote "END n" after its n lines.
fn check_lines(run: &Run) {
    let mut text = String::new();
    let _ = std::fs::File::open(run.fleet.collected()).and_then(|mut f| f.read_to_string(&mut text));
    let mut live = String::new();
    if let Some(disk) = &run.disk {
        let _ = std::fs::File::open(disk.dir.join("flood.out.log")).and_then(|mut f| f.read_to_string(&mut live));
    }
    let mut by_pid: BTreeMap<u32, Vec<(u64, f64)>> = BTreeMap::new();
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    let mut torn = 0;
    for line in text.lines().chain(live.lines()) {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            [pid, "END", n] => {
                if let (Ok(pid), Ok(n)) = (pid.parse(), n.parse()) {
                    ends.insert(pid, n);
                    continue;
                }
                torn += 1;
            }
            [pid, n, ms] => match (pid.parse(), n.parse(), ms.parse::<f64>()) {
                (Ok(pid), Ok(n), Ok(ms)) => by_pid.entry(pid).or_default().push((n, (ms - run.unix0_ms) / 1e3)),
                _ => torn += 1,
            },
            _ => torn += 1,
        }
    }
    if torn > 0 {
        run.violation(format!("{torn} torn or foreign line(s) in the flooder's log"));
    }
    let unwritable = run.record.lock().unwrap().unwritable.clone();
    let (mut total, mut lost_unwritable, mut dups) = (0u64, 0u64, 0u64);
    for (pid, lines) in &mut by_pid {
        lines.sort_by_key(|l| l.0);
        total += lines.len() as u64;
        for pair in lines.windows(2) {
            let ((a, ta), (b, tb)) = (pair[0], pair[1]);
            if b == a {
                dups += 1;
            } else if b > a + 1 {
                // Lines wait in the pipe and the writer's queue for a while before they are
                // written: a gap is explained by a window the disk was full in around it.
                let explained = unwritable.iter().any(|&(w0, w1)| w0 - 5.0 <= tb && ta <= w1 + 1.0);
                if explained {
                    lost_unwritable += b - a - 1;
                } else {
                    run.violation(format!(
                        "flooder pid {pid}: lines {}..{} lost while the disk was writable ({ta:.1}-{tb:.1} s)",
                        a + 1,
                        b - 1
                    ));
                }
            }
        }
        if let Some(&n) = ends.get(pid) {
            let last = lines.last().map(|l| l.0 + 1).unwrap_or(0);
            if last != n && !unwritable.iter().any(|&(_, w1)| w1 + 5.0 > lines.last().map(|l| l.1).unwrap_or(0.0)) {
                run.violation(format!("flooder pid {pid} wrote {n} lines; the log's last is {last}"));
            }
        }
    }
    if total == 0 {
        run.violation("no line of the flooder was found in its log".into());
    }
    if dups > 0 {
        run.violation(format!("{dups} duplicated line(s) in the flooder's log"));
    }
    if ends.is_empty() {
        run.violation("the flooder's last generation wrote no END line at `mcpd stop all`".into());
    }
    let mut r = run.record.lock().unwrap();
    r.log_lines = (total, lost_unwritable);
}

/// Explains failures by faults, prints the table, returns the exit code.
fn report(run: &Run) -> i32 {
    let r = run.record.lock().unwrap();
    let mut violations = r.violations.clone();
    // A soak that measured nothing proves nothing.
    let measured = [
        ("MCP tool calls that succeeded", r.mcp.0),
        ("HTTP requests that succeeded", r.http_ok),
        ("control probes", r.control_ms.len() as u64),
        ("front probes", r.front_ms.len() as u64),
        ("orphan checks", r.orphan_checks),
        ("daemon samples", r.rss_kib.len() as u64),
    ];
    for (what, n) in measured {
        if n == 0 {
            violations.push(format!("no {what}: the soak did not measure what it checks"));
        }
    }
    const SETTLE: f64 = 10.0;
    let mut by_what: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for f in &r.failures {
        let explained = r.faults.iter().any(|fault| {
            fault.kind.disrupts()
                && (fault.target == f.target || fault.target == "daemon")
                && fault.start - 0.5 <= f.end
                && f.start <= fault.end + SETTLE
        });
        let entry = by_what.entry(f.what).or_default();
        if explained {
            entry.0 += 1;
        } else {
            entry.1 += 1;
            if entry.1 <= 5 {
                violations.push(format!(
                    "{} failure on {} at {:.1}-{:.1} s explained by no fault: {}",
                    f.what, f.target, f.start, f.end, f.detail
                ));
            }
        }
    }
    for (what, (_, unexplained)) in &by_what {
        if *unexplained > 5 {
            violations.push(format!("... {} more unexplained {what} failures", unexplained - 5));
        }
    }
    let mut counts: BTreeMap<Kind, u32> = BTreeMap::new();
    for f in &r.faults {
        *counts.entry(f.kind).or_default() += 1;
    }
    println!();
    println!("chaos soak: {:.0} s, seed {}", run.now(), run.opts.seed);
    println!();
    println!("| fault | injected |");
    println!("|---|---|");
    for (kind, _) in KINDS {
        match r.skipped.get(kind.name()) {
            Some(why) => println!("| {} | skipped: {why} |", kind.name()),
            None => println!("| {} | {} |", kind.name(), counts.get(&kind).copied().unwrap_or(0)),
        }
    }
    println!("| **total** | **{}** |", r.faults.len());
    println!();
    let range = |v: &[u64]| format!("{}-{}", v.iter().min().unwrap_or(&0), v.iter().max().unwrap_or(&0));
    let pct = |v: &[f64], p: f64| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0.0)
    };
    let rss_mib: Vec<u64> = r.rss_kib.clone();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| invariant violations | {} |", violations.len());
    println!(
        "| daemon RSS | {:.1}-{:.1} MiB (bound {} MiB) |",
        *rss_mib.iter().min().unwrap_or(&0) as f64 / 1024.0,
        *rss_mib.iter().max().unwrap_or(&0) as f64 / 1024.0,
        RSS_BOUND_KIB / 1024
    );
    println!("| daemon fds | {} (bound {FD_BOUND}) |", range(&r.fds));
    let latency = |what: &str, ms: &[f64], bound: &str| {
        let (p50, p99, max) = (pct(ms, 0.5), pct(ms, 0.99), pct(ms, 1.0));
        println!(
            "| {what} | median {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({} probes; bound {bound}) |",
            ms.len()
        );
    };
    latency("`mcpd ping`", &r.control_ms, "3 s");
    latency("front (unknown session → 404)", &r.front_ms, "2 s");
    println!(
        "| MCP tool calls (SDK, 6 live sessions) | {} ok, {} failed, all explained by a fault: {}; {} sessions opened |",
        r.mcp.0,
        r.mcp.1,
        by_what.get("mcp").is_none_or(|c| c.1 == 0),
        r.mcp.2
    );
    let http_failed = by_what.get("http").map(|c| c.0 + c.1).unwrap_or(0);
    println!("| HTTP requests to the `listen` apps | {} ok, {http_failed} failed |", r.http_ok);
    println!(
        "| app processes gone after the daemon's kill -9 | max {:.0} ms over {} kills (bound 1 s) |",
        r.daemon_deaths_ms.iter().copied().fold(0.0, f64::max),
        r.daemon_deaths_ms.len()
    );
    println!(
        "| `mcpd stop` | max {:.0} ms over {} stops (bound kill_timeout + 1 s) |",
        r.stop_ms.iter().copied().fold(0.0, f64::max),
        r.stop_ms.len()
    );
    println!("| orphan checks (every 250 ms) | {} |", r.orphan_checks);
    println!(
        "| flooder log lines | {} checked in the files; {} dropped while the disk was full (as `log_error` counts) |",
        r.log_lines.0, r.log_lines.1
    );
    println!();
    println!(
        "CLI outcomes: {}",
        r.cli_outcomes.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join("; ")
    );
    // The timeline, to read a violation against the faults around it.
    let timeline =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/chaos-timeline-seed{}.txt", run.opts.seed));
    let mut lines: Vec<(f64, String)> = r
        .faults
        .iter()
        .map(|f| (f.start, format!("{:8.2}-{:8.2}  {:<8} {}", f.start, f.end, f.target, f.kind.name())))
        .collect();
    lines.extend(r.unwritable.iter().map(|w| (w.0, format!("{:8.2}-{:8.2}  disk full", w.0, w.1))));
    lines.extend(
        r.failures.iter().map(|f| {
            (f.start, format!("{:8.2}-{:8.2}  {:<8} {} failed: {}", f.start, f.end, f.target, f.what, f.detail))
        }),
    );
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    let text: String = lines.into_iter().map(|l| l.1 + "\n").collect();
    if std::fs::write(&timeline, text).is_ok() {
        println!("timeline of faults and failures: {}", timeline.display());
    }
    if violations.is_empty() {
        println!("\n0 invariant violations");
        0
    } else {
        println!("\n{} invariant violation(s):", violations.len());
        for v in &violations {
            println!("  - {v}");
        }
        1
    }
}

/// The apps faults are aimed at by name.
const APPS: [&str; 8] = ["web1", "web2", "mcp", "crashy", "flood", "slowlog", "leaky", "family"];
