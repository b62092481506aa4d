//! `rlimits`: a real app starts with the limits its config gives (read back from
//! /proc/PID/limits); a bad `rlimits` is refused with file, line, app and key and changes
//! nothing; a hard limit no process can be given is refused at `start`, naming the resource.

use crate::common::{wait_for, Home};
use std::time::Duration;

/// (soft, hard) of one row of /proc/PID/limits, e.g. "Max open files".
fn limit(pid: u32, row: &str) -> Result<(String, String), String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).map_err(|e| e.to_string())?;
    let line = text.lines().find(|l| l.starts_with(row)).ok_or_else(|| format!("no {row:?} in {text}"))?;
    let mut fields = line[row.len()..].split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(soft), Some(hard)) => Ok((soft.to_string(), hard.to_string())),
        _ => Err(format!("unreadable line {line:?}")),
    }
}

/// Waits until `pid` runs `program` (it has exec'd, so its limits are the final ones).
fn wait_exec(pid: u32, program: &str) {
    wait_for(&format!("pid {pid} to exec {program}"), Duration::from_secs(10), || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).map_err(|e| e.to_string())?;
        if comm.trim() == program {
            Ok(())
        } else {
            Err(comm)
        }
    });
}

#[test]
fn an_app_runs_with_the_limits_its_config_gives() {
    let home = Home::new();
    let file = home.write(
        "limits.toml",
        "[apps.limited]\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         rlimits = { nofile = \"800:1000\", core = 0, fsize = 1073741824 }\n\n\
         [apps.plain]\ncommand = \"sleep\"\nargs = [\"1001\"]\n",
    );
    home.ok(&["start", file.to_str().unwrap()]);
    let row = home.wait_app("limited", "online with a pid", |r| r["status"] == "online" && r["pid"].is_u64());
    let pid = row["pid"].as_u64().unwrap() as u32;
    wait_exec(pid, "sleep");
    let want = [
        ("Max open files", ("800", "1000")),
        ("Max core file size", ("0", "0")),
        ("Max file size", ("1073741824", "1073741824")),
    ];
    for (row, (soft, hard)) in want {
        let got = limit(pid, row).unwrap();
        assert_eq!((got.0.as_str(), got.1.as_str()), (soft, hard), "{row} of the app (pid {pid})");
    }
    // An app without rlimits keeps the daemon's limits: its open files are not the 800 above.
    let plain = home.wait_app("plain", "online with a pid", |r| r["status"] == "online" && r["pid"].is_u64());
    let plain_pid = plain["pid"].as_u64().unwrap() as u32;
    wait_exec(plain_pid, "sleep");
    let (soft, _) = limit(plain_pid, "Max open files").unwrap();
    assert_ne!(soft, "800", "rlimits are per app");
    // The limits cross to the daemon and back as they were written.
    let config = &home.describe("limited")["config"];
    assert_eq!(config["rlimits"]["nofile"], serde_json::json!({ "soft": 800, "hard": 1000 }), "{config}");
    assert_eq!(config["rlimits"]["core"], serde_json::json!({ "soft": 0, "hard": 0 }), "{config}");
    // A new generation gets them too.
    home.ok(&["restart", "limited"]);
    let row = home.wait_app("limited", "a new pid", |r| r["status"] == "online" && r["pid"] != pid);
    let again = row["pid"].as_u64().unwrap() as u32;
    wait_exec(again, "sleep");
    assert_eq!(limit(again, "Max open files").unwrap(), ("800".to_string(), "1000".to_string()));
}

#[test]
fn a_bad_rlimits_is_refused_with_file_line_app_and_key_and_changes_nothing() {
    let home = Home::new();
    let good = home
        .write("web.toml", "[apps.web]\ncommand = \"sleep\"\nargs = [\"1000\"]\nrlimits = { nofile = \"900:1000\" }\n");
    home.ok(&["start", good.to_str().unwrap()]);
    let pid = home.wait_app("web", "online with a pid", |r| r["status"] == "online" && r["pid"].is_u64())["pid"]
        .as_u64()
        .unwrap();
    let bad = home.write(
        "bad.toml",
        "[apps.web]\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         rlimits = { nofile = \"4096:1024\" }\n\n\
         [apps.api]\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         [apps.api.rlimits]\ncores = 0\nstack = -1\ncpu = 1.5\n",
    );
    let want = [
        "bad.toml:4:22: apps.web.rlimits.nofile: the soft limit 4096 is above the hard limit 1024: write \"SOFT:HARD\" with SOFT at most HARD",
        "bad.toml:10:1: apps.api.rlimits.cores: unknown resource \"cores\"; use one of cpu, fsize",
        "bad.toml:11:9: apps.api.rlimits.stack: -1 is negative: write a whole number of at least 0, or \"infinity\"",
        "bad.toml:12:7: apps.api.rlimits.cpu: expected a whole number, \"infinity\" or \"SOFT:HARD\"",
    ];
    let check = home.fails(&["check", bad.to_str().unwrap()]);
    let start = home.fails(&["start", bad.to_str().unwrap()]);
    let reload = home.fails(&["reload", "web", "--config", bad.to_str().unwrap()]);
    for (verb, stderr) in [("check", &check), ("start", &start), ("reload", &reload)] {
        for line in want {
            assert!(stderr.contains(line), "`{verb}` should say {line:?}; it said:\n{stderr}");
        }
    }
    // Nothing changed: api was not defined, web runs the same process with the same limits.
    let names: Vec<String> = home.list().iter().map(|r| r["name"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(names, ["web"], "api was not defined");
    assert_eq!(home.pid("web") as u64, pid, "web was not reloaded");
    let config = &home.describe("web")["config"];
    assert_eq!(config["rlimits"]["nofile"], serde_json::json!({ "soft": 900, "hard": 1000 }), "{config}");
}

#[test]
fn a_hard_limit_no_process_can_be_given_is_refused_at_start_naming_the_resource() {
    let home = Home::new();
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap().trim().parse().unwrap();
    let file = home.write(
        "huge.toml",
        &format!("[apps.huge]\ncommand = \"sleep\"\nargs = [\"1000\"]\nrlimits = {{ nofile = {} }}\n", nr_open + 1),
    );
    let err = home.fails(&["start", file.to_str().unwrap()]);
    assert!(
        err.contains("huge")
            && err.contains(&format!(
                "rlimits.nofile: {} open files is above the kernel's most per process",
                nr_open + 1
            ))
            && err.contains("fs.nr_open")
            && err.contains("nothing was started"),
        "{err}"
    );
    assert!(home.list().is_empty(), "no errored app left behind: {:?}", home.list());
}

/// Apps get the open-files limit the daemon started with (64 here), which the daemon raised
/// for itself: a daemon holding more fds than that must still start apps (the child lowers
/// the limit only after its fds are in place; before, every move of an fd failed with EMFILE).
#[test]
fn a_daemon_holding_more_fds_than_the_apps_limit_still_starts_apps() {
    use std::os::unix::process::CommandExt;
    let home = Home::new();
    let mut ping = home.command(&["ping"]);
    // SAFETY: getrlimit and setrlimit change only the new process's own limit.
    unsafe {
        ping.pre_exec(|| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = 64;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
    let out = ping.output().unwrap();
    assert!(out.status.success(), "the daemon started: {}", String::from_utf8_lossy(&out.stderr));
    let daemon = home.daemon_pid().expect("the daemon's pid");
    // 100 idle control connections: the daemon holds an fd for each (until its hello timeout).
    let held: Vec<std::os::unix::net::UnixStream> =
        (0..100).map(|_| std::os::unix::net::UnixStream::connect(home.path().join("mcpd.sock")).unwrap()).collect();
    wait_for("the daemon to hold more than 100 fds", Duration::from_secs(5), || {
        let fds = std::fs::read_dir(format!("/proc/{daemon}/fd")).map_err(|e| e.to_string())?.count();
        if fds > 100 {
            Ok(fds)
        } else {
            Err(format!("{fds} fds"))
        }
    });
    home.ok(&["start", "--name", "low", "--", "sleep", "infinity"]);
    let pid = home.pid("low");
    wait_exec(pid, "sleep");
    assert_eq!(limit(pid, "Max open files").map(|(soft, _)| soft), Ok("64".to_string()), "the limit it started with");
    drop(held);
    home.ok(&["delete", "low"]);
}
