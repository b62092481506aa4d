//! A cgroup per generation (issue 17): what leaves its process group is still the app's.
//! These tests need a writable cgroup v2 hierarchy (found as the daemon finds it); without
//! one they say so and pass.

use crate::common::{alive, signal, wait_for, Home};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// 20 children, each in a session of its own (`setsid`), ignoring SIGTERM; their pids go to
/// kids.txt, one per line, once all are running.
const SETSID_APP: &str = r#"
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
kids = []
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        while True:
            time.sleep(3600)
    kids.append(pid)
with open("kids.tmp", "w") as f:
    f.write("".join(f"{k}\n" for k in kids))
os.rename("kids.tmp", "kids.txt")
signal.signal(signal.SIGTERM, signal.SIG_DFL)
while True:
    time.sleep(3600)
"#;

const KILL_TIMEOUT: Duration = Duration::from_secs(2);

/// The directory of this process's cgroup v2, if it can create a cgroup there.
fn writable_cgroup_v2() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|l| {
        let (fields, tail) = l.split_once(" - ")?;
        let fields: Vec<&str> = fields.split(' ').collect();
        (tail.starts_with("cgroup2 ") && fields.get(3) == Some(&"/")).then(|| fields[4].to_string())
    })?;
    let dir = PathBuf::from(mount).join(path.trim_start_matches('/'));
    static PROBES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!("mcpd-e2e-probe-{}-{n}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    std::fs::remove_dir(&probe).ok()?;
    Some(dir)
}

fn skip_without_cgroups(test: &str) -> bool {
    if writable_cgroup_v2().is_none() {
        eprintln!("{test}: skipped: no writable cgroup v2 hierarchy on this machine");
        return true;
    }
    false
}

fn start_setsid_app(home: &Home) -> Vec<u32> {
    home.write("kids.py", SETSID_APP);
    let config = home.write(
        "kids.toml",
        &format!(
            "[apps.kids]\ncommand = \"python3\"\nargs = [\"kids.py\"]\nkill_timeout = \"{}s\"\n",
            KILL_TIMEOUT.as_secs()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let kids: Vec<u32> = wait_for("20 pids in kids.txt", Duration::from_secs(15), || {
        let text = std::fs::read_to_string(home.file("kids.txt")).map_err(|e| e.to_string())?;
        let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
        if pids.len() == 20 {
            Ok(pids)
        } else {
            Err(format!("{pids:?}"))
        }
    });
    assert!(kids.iter().all(|&k| alive(k)), "every child runs");
    kids
}

/// Starts `config`, whose app sets the cgroup limit `key`; false (the test skips, saying so)
/// where the daemon has no `controller` for it.
fn start_with_limit(home: &Home, config: &std::path::Path, test: &str, key: &str, controller: &str) -> bool {
    let out = home.run(&["start", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if stderr.contains(&format!("{key}: needs the {controller} controller")) {
        eprintln!("{test}: skipped: no {controller} controller for mcpd here: {stderr}");
        return false;
    }
    assert!(out.status.success(), "start: {stderr}");
    true
}

fn still_alive(pids: &[u32]) -> Vec<u32> {
    pids.iter().copied().filter(|&p| alive(p)).collect()
}

#[test]
fn stop_ends_children_that_left_the_process_group() {
    if skip_without_cgroups("stop_ends_children_that_left_the_process_group") {
        return;
    }
    let home = Home::new();
    let kids = start_setsid_app(&home);
    let detail = home.describe("kids");
    let tracking = detail["tracking"].as_str().unwrap_or_default().to_string();
    assert!(tracking.starts_with("cgroup "), "describe shows cgroup tracking: {detail}");
    let text = home.ok(&["describe", "kids"]);
    assert!(text.contains("tracking") && text.contains("cgroup"), "{text}");

    let began = Instant::now();
    home.ok(&["stop", "kids"]);
    let took = began.elapsed();
    assert!(took <= KILL_TIMEOUT + Duration::from_secs(1), "stop took {took:?}");
    // The daemon reaps its adopted children (SIGKILLed by then) within its next sample.
    wait_for("every setsid child gone", Duration::from_secs(3), || {
        let left = still_alive(&kids);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} of 20 alive: {left:?}", left.len()))
        }
    });
    let app_dir =
        std::path::Path::new(tracking.trim_start_matches("cgroup ").split(" (").next().unwrap()).join("app-kids");
    wait_for("the app's cgroups removed", Duration::from_secs(3), || {
        if app_dir.exists() {
            Err(format!("{} exists", app_dir.display()))
        } else {
            Ok(())
        }
    });
}

#[test]
fn a_new_daemon_kills_what_a_dead_daemon_and_guard_left() {
    if skip_without_cgroups("a_new_daemon_kills_what_a_dead_daemon_and_guard_left") {
        return;
    }
    let home = Home::new();
    let kids = start_setsid_app(&home);
    let leader = home.pid("kids");
    let daemon = home.daemon_pid().expect("daemon pid");
    let guard: u32 = std::fs::read_to_string(format!("/proc/{daemon}/task/{daemon}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p: &u32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "mcpd-guard"))
        .expect("the guard process");
    // The daemon stopped first: a running one would start a new guard at once.
    signal(daemon, libc::SIGSTOP);
    signal(guard, libc::SIGKILL);
    wait_for("the guard gone", Duration::from_secs(5), || if alive(guard) { Err("alive".into()) } else { Ok(()) });
    signal(daemon, libc::SIGKILL);
    wait_for("the daemon gone", Duration::from_secs(5), || if alive(daemon) { Err("alive".into()) } else { Ok(()) });
    let orphaned = still_alive(&kids);
    assert_eq!(orphaned.len(), 20, "with guard and daemon dead, the apps run on unsupervised");

    // Any verb starts a new daemon in this home.
    home.ok(&["list"]);
    wait_for("every process of the dead daemon's app gone", Duration::from_secs(5), || {
        let mut left = still_alive(&kids);
        if alive(leader) {
            left.push(leader);
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} alive: {left:?}", left.len()))
        }
    });
    // The history of the app, once it is defined again, says what happened.
    let config = home.file("kids.toml");
    home.ok(&["start", config.to_str().unwrap()]);
    let detail = home.describe("kids");
    let exits = detail["last_exits"].as_array().cloned().unwrap_or_default();
    let orphan = exits.iter().find(|e| e["reason"].as_str().is_some_and(|r| r.starts_with("orphaned")));
    let orphan = orphan.unwrap_or_else(|| panic!("an orphaned entry in the history: {detail}"));
    assert!(orphan["reason"].as_str().unwrap().contains("21 process(es)"), "{orphan}");
}

/// Forks until the kernel refuses, then writes how many processes it had and why it stopped.
const FORK_BOMB: &str = r#"
import os, time
n = 1
why = "limit not reached"
for _ in range(500):
    try:
        pid = os.fork()
    except OSError as e:
        why = e.strerror
        break
    if pid == 0:
        while True:
            time.sleep(3600)
    n += 1
with open("bomb.tmp", "w") as f:
    f.write(f"{n} {why}\n")
os.rename("bomb.tmp", "bomb.txt")
while True:
    time.sleep(3600)
"#;

#[test]
fn tasks_max_stops_a_fork_bomb() {
    if skip_without_cgroups("tasks_max_stops_a_fork_bomb") {
        return;
    }
    let home = Home::new();
    home.write("bomb.py", FORK_BOMB);
    let config = home.write(
        "bomb.toml",
        "[apps.bomb]\ncommand = \"python3\"\nargs = [\"bomb.py\"]\ntasks_max = 20\nkill_timeout = \"2s\"\n",
    );
    if !start_with_limit(&home, &config, "tasks_max_stops_a_fork_bomb", "tasks_max", "pids") {
        return;
    }
    let report = wait_for("the fork bomb's report", Duration::from_secs(20), || {
        std::fs::read_to_string(home.file("bomb.txt")).map_err(|e| e.to_string())
    });
    let (count, why) = report.trim().split_once(' ').expect("N WHY");
    let count: u32 = count.parse().expect("a count");
    assert!(count <= 20, "at most tasks_max processes: {report}");
    assert!(why.contains("Resource temporarily unavailable"), "fork failed with EAGAIN: {report}");
    let started = Instant::now();
    home.ok(&["stop", "bomb"]);
    assert!(started.elapsed() <= Duration::from_secs(3), "stop took {:?}", started.elapsed());
}

/// Allocates (and touches) 16 MiB at a time until it is killed.
const GREEDY: &str = r#"
import time
hoard = []
while True:
    hoard.append(bytearray(16 << 20))
    time.sleep(0.01)
"#;

#[test]
fn memory_max_is_enforced_by_the_kernel_and_recorded_as_oom_kill() {
    if skip_without_cgroups("memory_max_is_enforced_by_the_kernel_and_recorded_as_oom_kill") {
        return;
    }
    let home = Home::new();
    home.write("greedy.py", GREEDY);
    let config = home.write(
        "greedy.toml",
        "[apps.greedy]\ncommand = \"python3\"\nargs = [\"greedy.py\"]\nmemory_max = \"64M\"\nrestart_delay = \"5s\"\n",
    );
    if !start_with_limit(
        &home,
        &config,
        "memory_max_is_enforced_by_the_kernel_and_recorded_as_oom_kill",
        "memory_max",
        "memory",
    ) {
        return;
    }
    let detail = wait_for("an oom-kill in the history", Duration::from_secs(20), || {
        let detail = home.describe("greedy");
        let found = detail["last_exits"]
            .as_array()
            .is_some_and(|exits| exits.iter().any(|e| e["reason"] == "oom-kill" && e["signal"] == libc::SIGKILL));
        if found {
            Ok(detail)
        } else {
            Err(detail.to_string())
        }
    });
    let memory = detail["info"]["memory_bytes"].as_u64().unwrap_or(0);
    assert!(memory <= 80 << 20, "the app never held much more than memory_max: {memory} bytes");
}

#[test]
fn cpu_quota_holds_a_busy_loop_to_its_share() {
    if skip_without_cgroups("cpu_quota_holds_a_busy_loop_to_its_share") {
        return;
    }
    let home = Home::new();
    let config = home.write(
        "busy.toml",
        "[apps.busy]\ncommand = \"python3\"\nargs = [\"-c\", \"while True: pass\"]\ncpu_quota = \"20%\"\n",
    );
    if !start_with_limit(&home, &config, "cpu_quota_holds_a_busy_loop_to_its_share", "cpu_quota", "cpu") {
        return;
    }
    // Three samples a second apart after the first: each is the share of the last second.
    let mut seen = Vec::new();
    wait_for("three CPU samples", Duration::from_secs(10), || {
        let row = home.app("busy").unwrap_or_default();
        if let Some(cpu) = row["cpu_percent"].as_f64().filter(|c| *c > 0.0) {
            if seen.last() != Some(&cpu) {
                seen.push(cpu);
            }
        }
        if seen.len() >= 3 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
    let last = seen[seen.len() - 1];
    assert!(last <= 30.0, "a busy loop held to about 20% of a CPU: samples {seen:?}");
}

#[test]
fn cgroup_limits_without_cgroups_are_refused_and_change_nothing() {
    let home = Home::new();
    let config = home.write("t.toml", "[apps.t]\ncommand = \"sleep\"\nargs = [\"1000\"]\ntasks_max = 10\n");
    let out =
        home.command(&["start", config.to_str().unwrap()]).env("MCPD_CGROUPS", "0").output().expect("run mcpd start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("app \"t\": tasks_max: needs a cgroup per generation")
            && stderr.contains("nothing was started"),
        "{stderr}"
    );
    assert!(home.app("t").is_none(), "no app was defined");
}

/// The file a process's memory controller counts it in: v2 `memory.current`, or v1
/// `memory.usage_in_bytes`, from /proc/PID/cgroup (None without a memory controller).
fn memory_counter(pid: u32) -> Option<PathBuf> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (fstype, file) = if names.is_empty() {
            ("cgroup2", "memory.current")
        } else if names.split(',').any(|n| n == "memory") {
            ("cgroup", "memory.usage_in_bytes")
        } else {
            continue;
        };
        let mount = mountinfo.lines().find_map(|l| {
            let (fields, tail) = l.split_once(" - ")?;
            let mut tail = tail.split(' ');
            let (t, _, options) = (tail.next()?, tail.next()?, tail.next()?);
            let fields: Vec<&str> = fields.split(' ').collect();
            let fits = t == fstype && (fstype == "cgroup2" || options.split(',').any(|o| o == "memory"));
            (fits && fields.get(3) == Some(&"/")).then(|| fields[4].to_string())
        })?;
        let counter = PathBuf::from(mount).join(path.trim_start_matches('/')).join(file);
        if counter.exists() {
            return Some(counter);
        }
    }
    None
}

#[test]
fn memory_of_200_idle_children_is_what_the_memory_controller_counts() {
    if skip_without_cgroups("memory_of_200_idle_children_is_what_the_memory_controller_counts") {
        return;
    }
    let home = Home::new();
    let config = home.write(
        "sleepy.toml",
        "[apps.sleepy]\ncommand = \"sh\"\nargs = [\"-c\", \"for i in $(seq 200); do sleep 1000 & done; echo started > started.txt; wait\"]\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    wait_for("200 children started", Duration::from_secs(20), || {
        std::fs::read_to_string(home.file("started.txt")).map_err(|e| e.to_string())
    });
    let leader = home.pid("sleepy");
    let Some(counter) = memory_counter(leader) else {
        eprintln!("memory_of_200_idle_children...: skipped: no memory controller counts the app here");
        return;
    };
    let rss_sum: u64 = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')').next().and_then(|r| r.split_whitespace().nth(2)) == Some(&leader.to_string())
            })
        })
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let kib: u64 =
                status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
            Some(kib * 1024)
        })
        .sum();
    // Two samples after the children started, so the row has a whole second of them.
    let reported = wait_for("a memory figure for the app", Duration::from_secs(10), || {
        let row = home.app("sleepy").unwrap_or_default();
        let counted: u64 = std::fs::read_to_string(&counter).map_err(|e| e.to_string())?.trim().parse().unwrap_or(0);
        match row["memory_bytes"].as_u64() {
            Some(m) if m.abs_diff(counted) * 5 <= counted => Ok((m, counted)),
            other => Err(format!("reported {other:?}, the controller counts {counted}")),
        }
    });
    eprintln!(
        "200 idle children: reported {:.1} MiB, the memory controller counts {:.1} MiB, summed RSS {:.1} MiB",
        reported.0 as f64 / 1048576.0,
        reported.1 as f64 / 1048576.0,
        rss_sum as f64 / 1048576.0
    );
}

/// The cgroup paths of `pid`, one per hierarchy line of /proc/PID/cgroup.
fn cgroup_lines(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default().lines().map(str::to_string).collect()
}

/// After a crash, generations are cloned from the app's launcher thread, which waits inside
/// the next generation's v1 cgroups (on a machine with v1 controllers): each respawned
/// generation must start in cgroups of its own in every hierarchy, be counted by its own
/// memory controller, find the daemon's thread gone from them, and leave nothing behind.
#[test]
fn respawned_generations_start_in_their_own_cgroups_in_every_hierarchy() {
    if skip_without_cgroups("respawned_generations_start_in_their_own_cgroups_in_every_hierarchy") {
        return;
    }
    let home = Home::new();
    // Crashes on its first three starts, then stays up.
    let config = home.write(
        "r.toml",
        "[apps.r]\ncommand = \"sh\"\nargs = [\"-c\", \"echo x >> starts.txt; [ $(wc -l < starts.txt) -gt 3 ] || exit 1; \
         echo $$ > pid.txt; exec sleep infinity\"]\nrestart_delay = \"0ms\"\n",
    );
    home.ok(&["start", "--no-wait", config.to_str().unwrap()]);
    let pid = home.read_pid_file("pid.txt");
    let daemon = home.daemon_pid().expect("the daemon's pid");
    let lines = cgroup_lines(pid);
    for line in &lines {
        let path = line.splitn(3, ':').nth(2).unwrap_or_default();
        // Every hierarchy mcpd places generations in names the app's directory, then the
        // generation's own.
        if path.contains("/app-r/") {
            let gen = path.rsplit('/').next().unwrap_or_default();
            assert!(gen.starts_with('g'), "a generation's own cgroup: {line}");
        }
    }
    assert!(lines.iter().any(|l| l.starts_with("0::") && l.contains("/app-r/g")), "in its v2 cgroup: {lines:?}");
    let daemon_lines = cgroup_lines(daemon);
    let memory_v1 = lines.iter().find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory")));
    if let Some(memory) = memory_v1 {
        assert!(memory.contains("/app-r/g"), "counted by its own v1 memory cgroup: {memory}");
        let counter = memory_counter(pid).expect("its memory counter");
        wait_for("the daemon's launcher thread out of the generation's cgroups", Duration::from_secs(3), || {
            let procs = std::fs::read_to_string(counter.with_file_name("cgroup.procs")).map_err(|e| e.to_string())?;
            if procs.split_whitespace().any(|p| p == daemon.to_string()) {
                Err(format!("cgroup.procs: {procs:?}"))
            } else {
                Ok(())
            }
        });
        assert!(
            !daemon_lines.iter().any(|l| l.contains("/app-r/")),
            "the daemon itself stays out of the app's cgroups: {daemon_lines:?}"
        );
    } else {
        eprintln!("respawned_generations...: no v1 memory controller here; checked the v2 cgroup only");
    }
    let tracking = home.describe("r")["tracking"].as_str().unwrap_or_default().to_string();
    let mut gen_dirs =
        vec![PathBuf::from(tracking.trim_start_matches("cgroup ").split(" (").next().unwrap()).join("app-r")];
    gen_dirs.extend(memory_v1.and_then(|_| memory_counter(pid)).and_then(|c| c.parent().map(PathBuf::from)));
    home.ok(&["delete", "r"]);
    wait_for("the generation's cgroups removed", Duration::from_secs(5), || {
        match gen_dirs.iter().find(|d| d.exists()) {
            Some(d) => Err(format!("{} exists", d.display())),
            None => Ok(()),
        }
    });
}

/// The subdirectories of `dir`.
fn subdirs(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default()
}

/// A set of v1 cgroups the launcher prepared for the next generation is given back when the
/// next generation needs other ones (a reload adds a v1 limit): nothing is left but the
/// generations' own cgroups.
#[test]
fn a_prepared_cgroup_set_is_removed_when_a_reload_adds_a_limit() {
    if skip_without_cgroups("a_prepared_cgroup_set_is_removed_when_a_reload_adds_a_limit") {
        return;
    }
    let home = Home::new();
    let app = |limit: &str| {
        format!(
            "[apps.p]\ncommand = \"sh\"\nargs = [\"-c\", \"echo x >> starts.txt; [ $(wc -l < starts.txt) -gt 1 ] || exit 1; \
             echo $$ > pid.txt; exec sleep infinity\"]\nrestart_delay = \"0ms\"\n{limit}"
        )
    };
    let config = home.write("p.toml", &app(""));
    home.ok(&["start", "--no-wait", config.to_str().unwrap()]);
    let pid = home.read_pid_file("pid.txt");
    let Some(counter) = memory_counter(pid).filter(|c| c.to_string_lossy().contains("/app-p/")) else {
        eprintln!("a_prepared_cgroup_set...: skipped: no v1 memory controller places generations here");
        return;
    };
    let app_dir = counter.parent().and_then(|g| g.parent()).unwrap().to_path_buf();
    wait_for("the launcher's prepared set beside the generation", Duration::from_secs(5), || {
        let dirs = subdirs(&app_dir);
        if dirs.len() == 2 {
            Ok(())
        } else {
            Err(format!("{dirs:?}"))
        }
    });
    let limited = home.write("p2.toml", &app("tasks_max = 50\n"));
    home.ok(&["reload", "p", "--config", limited.to_str().unwrap()]);
    let new = home.pid("p");
    assert_ne!(new, pid, "a new generation serves");
    let own = memory_counter(new).and_then(|c| c.parent().map(PathBuf::from)).expect("its memory cgroup");
    wait_for("only the serving generation's memory cgroup left", Duration::from_secs(5), || {
        let dirs = subdirs(&app_dir);
        if dirs == [own.clone()] {
            Ok(())
        } else {
            Err(format!("{dirs:?}"))
        }
    });
    home.ok(&["delete", "p"]);
}
