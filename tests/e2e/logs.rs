//! Log capture end to end: files and stamps, rotation without loss, `logs`, `--follow` (long
//! lines at full speed, a follower that falls behind, a daemon that goes away), and an
//! unwritable log directory.

use crate::common::{alive, signal, wait_for, Home};
use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn log_dir(home: &Home) -> std::path::PathBuf {
    home.path().join("logs")
}

#[test]
fn stdout_and_stderr_land_in_their_files_with_timestamps() {
    let home = Home::new();
    home.ok(&[
        "start",
        "--name",
        "talk",
        "--",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; printf no-newline; exec sleep infinity",
    ]);
    let out = wait_for("the out file", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(log_dir(&home).join("talk.out.log")).map_err(|e| e.to_string())?;
        if text.lines().count() >= 1 {
            Ok(text)
        } else {
            Err(text)
        }
    });
    let first = out.lines().next().unwrap();
    let (stamp, message) = first.split_once(' ').unwrap();
    assert!(humantime::parse_rfc3339(stamp).is_ok() && stamp.len() == 24, "RFC 3339 with milliseconds: {first}");
    assert_eq!(message, "to-out");
    let err = wait_for("the err file", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(log_dir(&home).join("talk.err.log")).map_err(|e| e.to_string())?;
        if text.ends_with('\n') {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(err.trim_end().ends_with(" to-err") && !err.contains("to-out"), "{err}");
    home.ok(&["stop", "talk"]);
    let out = std::fs::read_to_string(log_dir(&home).join("talk.out.log")).unwrap();
    assert!(out.lines().last().unwrap().ends_with(" no-newline"), "a partial last line is still written: {out}");
}

#[test]
fn rotation_under_a_fast_writer_loses_and_splits_no_line() {
    const LINES: usize = 60_000;
    let home = Home::new();
    let config = home.write(
        "rot.toml",
        &format!(
            "[apps.flood]\ncommand = \"python3\"\nargs = [\"-c\", \"import sys\\nfor i in range({LINES}): sys.stdout.write(f'line {{i:06}} ' + 'x' * 40 + '\\\\n')\\n\"]\n\
             restart = \"never\"\nlog_max_size = \"64K\"\nlog_retain = 1000\nlog_compress = true\n"
        ),
    );
    home.ok(&["start", "--no-wait", config.to_str().unwrap()]);
    home.wait_app("flood", "stopped after writing everything", |r| r["status"] == "stopped");
    // Compression runs off the write path: wait until every rotated file is gzipped.
    let files = wait_for("every rotated file to be compressed", Duration::from_secs(20), || {
        let names: Vec<String> = std::fs::read_dir(log_dir(&home))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("flood.out.log"))
            .collect();
        if names.iter().any(|n| n != "flood.out.log" && !n.ends_with(".gz")) {
            Err(format!("{names:?}"))
        } else {
            Ok(names)
        }
    });
    assert!(files.len() > 10, "rotation happened: {files:?}");
    let mut seen = BTreeSet::new();
    for name in &files {
        let path = log_dir(&home).join(name);
        let mut text = String::new();
        if name.ends_with(".gz") {
            flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_string(&mut text).unwrap();
        } else {
            text = std::fs::read_to_string(&path).unwrap();
        }
        for line in text.lines() {
            let (_, message) = line.split_once(' ').unwrap_or_else(|| panic!("unstamped line in {name}: {line:?}"));
            let number: usize = message
                .strip_prefix("line ")
                .and_then(|m| m.get(..6))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("split line in {name}: {line:?}"));
            assert_eq!(message.len(), 12 + 40, "line {number} intact in {name}");
            assert!(seen.insert(number), "line {number} twice");
        }
    }
    assert_eq!(
        seen.len(),
        LINES,
        "every line is in exactly one file; missing e.g. {:?}",
        (0..LINES).find(|i| !seen.contains(i))
    );
}

#[test]
fn logs_prints_the_last_lines_and_follows_across_rotation_and_restart() {
    let home = Home::new();
    let config = home.write(
        "tick.toml",
        "[apps.tick]\ncommand = \"sh\"\nargs = [\"-c\", \"for i in $(seq 1 30); do echo early-$i; done; i=0; while :; do i=$((i+1)); echo \\\"tick $$ $i\\\"; sleep 0.01; done\"]\nlog_max_size = \"4K\"\nlog_retain = 100\n",
    );
    home.ok(&["start", config.to_str().unwrap()]);
    wait_for("30 early lines", Duration::from_secs(10), || {
        let out = home.ok(&["logs", "tick", "--lines", "200", "--out"]);
        if out.contains("early-30") {
            Ok(())
        } else {
            Err(out)
        }
    });
    let five = home.ok(&["logs", "tick", "--lines", "5", "--out"]);
    assert_eq!(five.lines().count(), 5, "{five}");
    assert!(five.lines().all(|l| l.starts_with("tick | ")), "{five}");

    let mut follower = home
        .command(&["logs", "tick", "--follow", "--lines", "0", "--out"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Collect what the follower prints as it prints it.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let (seen, stdout) = (seen.clone(), follower.stdout.take().unwrap());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        })
    };
    let first_pid = home.pid("tick");
    // Rotation happens every few dozen lines (4K); let the follower see a few, then restart.
    wait_for("a few rotations", Duration::from_secs(20), || {
        let rotated = std::fs::read_dir(log_dir(&home))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("tick.out.log."))
            .count();
        if rotated >= 3 {
            Ok(())
        } else {
            Err(format!("{rotated} rotated"))
        }
    });
    home.ok(&["restart", "tick"]);
    let second_pid = home.pid("tick");
    let wanted = format!("tick | tick {second_pid} 20");
    wait_for("the follower to show the new generation's 20th line", Duration::from_secs(10), || {
        let lines = seen.lock().unwrap();
        if lines.iter().any(|l| l == &wanted) {
            Ok(())
        } else {
            Err(format!("{} lines so far", lines.len()))
        }
    });
    signal(follower.id(), libc::SIGINT);
    follower.wait().unwrap();
    reader.join().unwrap();
    let lines = seen.lock().unwrap().clone();
    let numbers = |pid: u32| -> Vec<u64> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("tick | tick {pid} ")))
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    let (old, new) = (numbers(first_pid), numbers(second_pid));
    assert!(old.len() > 100, "the follower saw the first generation across rotations: {} lines", old.len());
    assert!(new.len() >= 20, "the follower kept following after the restart: {} lines", new.len());
    for seq in [&old, &new] {
        assert!(
            seq.windows(2).all(|w| w[1] == w[0] + 1),
            "no line skipped while following: {:?}",
            seq.windows(2).find(|w| w[1] != w[0] + 1)
        );
    }
}

#[test]
fn an_unwritable_log_path_leaves_the_app_running_and_says_so() {
    let home = Home::new();
    let dir = home.file("logdir");
    std::fs::create_dir(&dir).unwrap();
    let config = home.write(
        "w.toml",
        &format!("[apps.w]\ncommand = \"sh\"\nargs = [\"-c\", \"while :; do echo alive; sleep 0.05; done\"]\nout_file = \"{}/w.log\"\n", dir.display()),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let log = dir.join("w.log");
    wait_for("the first lines", Duration::from_secs(10), || {
        std::fs::metadata(&log).map(drop).map_err(|e| e.to_string())
    });
    // The directory goes away and a file takes its place: the log cannot be opened again.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "a file where the log directory should be").unwrap();
    let row = home.wait_app("w", "the log error shown", |r| r["log_error"].is_string());
    assert_eq!(row["status"], "online");
    assert!(row["log_error"].as_str().unwrap().contains("cannot open"), "{row}");
    let pid = home.pid("w");
    assert!(alive(pid));
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    home.wait_app("w", "the error cleared once the path works", |r| r["log_error"].is_null());
    let text = wait_for("lines in the log once writable", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).map_err(|e| e.to_string()).and_then(|t| {
            if t.contains("alive") {
                Ok(t)
            } else {
                Err(t)
            }
        })
    });
    assert!(text.contains(" alive"));
    assert_eq!(home.pid("w"), pid, "the app was never restarted");
}

#[test]
fn flush_empties_the_logs() {
    let home = Home::new();
    home.ok(&["start", "--name", "f", "--", "sh", "-c", "echo hello; exec sleep infinity"]);
    wait_for("a line", Duration::from_secs(10), || {
        let out = home.ok(&["logs", "f"]);
        if out.contains("hello") {
            Ok(())
        } else {
            Err(out)
        }
    });
    home.ok(&["flush", "f"]);
    assert_eq!(std::fs::metadata(log_dir(&home).join("f.out.log")).unwrap().len(), 0);
    assert!(home.ok(&["logs", "f"]).is_empty());
}

/// A running `mcpd logs ... --follow`: what it printed so far (each stdout line through `keep`,
/// which may shorten it), its stderr, and its pid. Killed when dropped if still running.
struct Follower {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn spawn(home: &Home, args: &[&str], keep: fn(String) -> String) -> Follower {
        let mut child = home
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mcpd logs --follow");
        let (out, err) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(String::new())));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let readers = vec![
            {
                let out = out.clone();
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                        out.lock().unwrap().push(keep(line));
                    }
                })
            },
            {
                let err = err.clone();
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                        let mut err = err.lock().unwrap();
                        err.push_str(&line);
                        err.push('\n');
                    }
                })
            },
        ];
        Follower { child, out, err, readers }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Fails the test if the follower has ended.
    fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the follower ended {when} ({status}); stderr: {}", self.stderr());
        }
    }

    /// Waits (bounded) for the follower to end by itself; returns its status.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let status = wait_for("the follower to exit", timeout, || {
            self.child.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "still running".to_string())
        });
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }

    /// Ends the follower as Ctrl-C would; returns its status.
    fn interrupt(mut self) -> ExitStatus {
        signal(self.pid(), libc::SIGINT);
        self.wait_exit(Duration::from_secs(10))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.pid(), libc::SIGCONT);
            signal(self.pid(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Bytes of each long line, newline included: the longest line capture keeps whole.
const LONG_LINE: usize = 64 * 1024;

/// A long line as the follower printed it (`big | L00000042 xxx…`), reduced to its number, or
/// to a description of what is wrong with it.
fn long_line_number(line: String) -> String {
    let message = line.strip_prefix("big | ").unwrap_or("");
    let whole = message.len() == LONG_LINE - 1
        && message.as_bytes()[0] == b'L'
        && message.as_bytes()[9] == b' '
        && message[10..].bytes().all(|b| b == b'x');
    match message.get(1..9).filter(|_| whole) {
        Some(number) => number.to_string(),
        None => format!("bad line of {} bytes: {:?}", line.len(), &line[..line.len().min(80)]),
    }
}

#[test]
fn follow_keeps_up_with_64k_lines_at_full_speed() {
    const WANTED: usize = 300;
    let home = Home::new();
    // Every line is 64 KiB with its newline; bounded files so the flood cannot fill the disk.
    let config = home.write(
        "big.toml",
        &format!(
            "[apps.big]\ncommand = \"python3\"\nargs = [\"-c\", \"import sys\\ni = 0\\nwhile True:\\n    sys.stdout.write(f'L{{i:08}} ' + 'x' * {} + '\\\\n')\\n    i += 1\\n\"]\n\
             log_max_size = \"4M\"\nlog_retain = 2\n",
            LONG_LINE - 11
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let mut follower = Follower::spawn(&home, &["logs", "big", "--follow", "--lines", "0", "--out"], long_line_number);
    wait_for(&format!("{WANTED} long lines through the follower"), Duration::from_secs(20), || {
        follower.assert_running("while the app flooded");
        let count = follower.out.lock().unwrap().len();
        if count >= WANTED {
            Ok(())
        } else {
            Err(format!("{count} lines"))
        }
    });
    follower.assert_running("after it received the lines");
    let stderr = follower.stderr();
    let lines = follower.lines();
    follower.interrupt();
    let mut previous: Option<u64> = None;
    for line in &lines {
        let number: u64 = line.parse().unwrap_or_else(|_| panic!("{line}"));
        if let Some(previous) = previous {
            // A gap is allowed only if the follower was told of it.
            assert!(
                number == previous + 1 || (number > previous && stderr.contains("skipped")),
                "line {number} after {previous}; stderr: {stderr}"
            );
        }
        previous = Some(number);
    }
}

#[test]
fn a_stopped_follower_is_told_what_it_skipped_and_keeps_following() {
    const FLOOD: usize = 20_000;
    let home = Home::new();
    let trigger = home.file("flood-now");
    let flooded = home.file("flooded");
    // Waits (saying so) until the trigger file exists, then writes FLOOD lines of 1 KiB, far
    // more than the daemon keeps for a follower, marks that they are all written, and ticks.
    let script = format!(
        "import os, sys, time\n\
         while not os.path.exists('{trigger}'):\n    print('waiting', flush=True)\n    time.sleep(0.02)\n\
         for i in range({FLOOD}):\n    sys.stdout.write(f'flood {{i:06}} ' + 'y' * 1000 + '\\n')\n\
         sys.stdout.flush()\n\
         open('{flooded}', 'w').close()\n\
         i = 0\n\
         while True:\n    i += 1\n    print(f'tick {{i}}', flush=True)\n    time.sleep(0.02)\n",
        trigger = trigger.display(),
        flooded = flooded.display()
    );
    let config = home.write(
        "flood.toml",
        &format!(
            "[apps.flood]\ncommand = \"python3\"\nargs = [\"-c\", {script:?}]\nlog_max_size = \"4M\"\nlog_retain = 2\n"
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let mut follower = Follower::spawn(&home, &["logs", "flood", "--follow", "--lines", "0", "--out"], |l| {
        l.chars().take(40).collect()
    });
    wait_for("the follower to be following", Duration::from_secs(10), || {
        follower.assert_running("before the flood");
        let lines = follower.lines();
        if lines.iter().any(|l| l == "flood | waiting") {
            Ok(())
        } else {
            Err(format!("{lines:?}"))
        }
    });
    signal(follower.pid(), libc::SIGSTOP);
    std::fs::write(&trigger, "").unwrap();
    wait_for("the app to have written the whole flood", Duration::from_secs(20), || {
        if flooded.exists() {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    signal(follower.pid(), libc::SIGCONT);
    wait_for("the follower to report skipped lines, then print ticks", Duration::from_secs(20), || {
        follower.assert_running("after it was resumed");
        let (stderr, lines) = (follower.stderr(), follower.lines());
        let ticks = lines.iter().filter(|l| l.starts_with("flood | tick ")).count();
        if stderr.contains("skipped") && ticks >= 5 {
            Ok(())
        } else {
            Err(format!("{ticks} ticks; stderr: {stderr}"))
        }
    });
    let stderr = follower.stderr();
    let skipped: u64 = stderr
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("a number of skipped lines: {stderr}"));
    assert!(skipped > 0 && skipped <= FLOOD as u64, "{stderr}");
    let lines = follower.lines();
    let floods = lines.iter().filter(|l| l.starts_with("flood | flood ")).count();
    assert!(floods < FLOOD, "some lines were skipped, not queued: {floods}");
    follower.assert_running("at the end");
    follower.interrupt();
}

#[test]
fn a_follower_exits_non_zero_when_the_daemon_goes_away() {
    let home = Home::new();
    let config = home.write(
        "tick.toml",
        "[apps.tick]\ncommand = \"sh\"\nargs = [\"-c\", \"while :; do echo tick; sleep 0.02; done\"]\n",
    );
    for how in ["mcpd kill", "SIGKILL"] {
        home.ok(&["start", config.to_str().unwrap()]);
        let mut follower = Follower::spawn(&home, &["logs", "tick", "--follow", "--lines", "0"], |l| l);
        wait_for("the follower to print a line", Duration::from_secs(10), || {
            follower.assert_running("before the daemon went away");
            let lines = follower.lines();
            if lines.iter().any(|l| l == "tick | tick") {
                Ok(())
            } else {
                Err(format!("{lines:?}"))
            }
        });
        let daemon = home.daemon_pid().expect("the daemon's pid");
        match how {
            "mcpd kill" => drop(home.ok(&["kill"])),
            _ => signal(daemon, libc::SIGKILL),
        }
        let status = follower.wait_exit(Duration::from_secs(5));
        let stderr = follower.stderr();
        assert_eq!(status.code(), Some(1), "after {how}: {status}; stderr: {stderr}");
        assert!(stderr.contains("daemon"), "after {how}, a message naming the daemon: {stderr}");
        wait_for("the daemon to be gone", Duration::from_secs(10), || {
            if alive(daemon) {
                Err(format!("{daemon} alive"))
            } else {
                Ok(())
            }
        });
    }
}
