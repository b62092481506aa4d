//! Log files that misbehave: deleted by hand, on a full disk, or impossible to rotate.

use crate::common::{wait_for, Home};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Prints "tick N" every 50 ms.
const TICKER: &str =
    "import sys, time\nn = 0\nwhile True:\n    print(f'tick {n}', flush=True)\n    n += 1\n    time.sleep(0.05)\n";

/// Mounts `args` on `target`; false (with a note) where mounting is not possible.
fn mount(args: &[&str], target: &Path) -> bool {
    let ok = Command::new("mount").args(args).arg(target).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("cannot mount here (not root?); skipping this case");
    }
    ok
}

/// Unmounts on drop.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[test]
fn a_live_log_file_deleted_by_hand_is_opened_again() {
    let home = Home::new();
    home.write("ticker.py", TICKER);
    home.ok(&["start", "--name", "ticker", "--", "python3", "ticker.py"]);
    let log = home.path().join("logs/ticker.out.log");
    wait_for("the first ticks in the log", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).map_err(|e| e.to_string()).and_then(|t| {
            if t.contains("tick 3") {
                Ok(())
            } else {
                Err(t)
            }
        })
    });
    std::fs::remove_file(&log).unwrap();
    let text = wait_for("a new log file with new ticks", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).map_err(|e| e.to_string()).and_then(|t| {
            if t.lines().count() >= 3 {
                Ok(t)
            } else {
                Err(t)
            }
        })
    });
    assert!(!text.contains("tick 0\n"), "the new file holds new lines only: {text}");
    let out = home.ok(&["logs", "ticker", "--lines", "3"]);
    assert!(out.contains("tick"), "mcpd logs reads the new file: {out}");
    home.ok(&["stop", "ticker"]);
}

#[test]
fn a_full_disk_leaves_no_torn_line_and_says_so() {
    let home = Home::new();
    let disk = home.file("small");
    std::fs::create_dir_all(&disk).unwrap();
    if !mount(&["-t", "tmpfs", "-o", "size=64k", "tmpfs"], &disk) {
        return;
    }
    let _mounted = Mounted(&disk);
    let out_file = disk.join("flood.log");
    // Numbered lines of 100 characters, as fast as it can.
    home.write(
        "flood.py",
        "import sys\nw = sys.stdout.buffer\nn = 0\nwhile True:\n    w.write(b'L%07d ' % n + b'x' * 91 + b'\\n')\n    n += 1\n",
    );
    let config = home.write(
        "flood.toml",
        &format!(
            "[apps.flood]\ncommand = \"python3\"\nargs = [\"flood.py\"]\nout_file = {:?}\nlog_date_format = \"none\"\n",
            out_file.display()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let row = home.wait_app("flood", "its log error", |r| r["log_error"].is_string());
    let error = row["log_error"].as_str().unwrap();
    assert!(error.contains("flood.log") && error.contains("lost"), "{error}");
    home.ok(&["stop", "flood"]);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(text.len() > 10_000, "the disk filled: {} bytes", text.len());
    for (i, line) in text.lines().enumerate() {
        let whole = line.len() == 100 && line.starts_with('L') && line[1..8].bytes().all(|b| b.is_ascii_digit());
        assert!(whole, "line {i} is torn: {line:?}");
    }
    assert!(text.ends_with('\n'), "the file ends with a whole line");
}

#[test]
fn a_rotation_that_fails_is_shown_and_not_retried_every_batch() {
    let home = Home::new();
    home.write("ticker.py", TICKER);
    let out_file = home.file("pinned.log");
    std::fs::write(&out_file, "").unwrap();
    let pin = home.file("pin");
    std::fs::write(&pin, "").unwrap();
    // A file that is a mount point cannot be renamed (EBUSY): rotation fails.
    if !mount(&["--bind", pin.to_str().unwrap()], &out_file) {
        return;
    }
    let _mounted = Mounted(&out_file);
    let config = home.write(
        "ticker.toml",
        &format!(
            "[apps.ticker]\ncommand = \"python3\"\nargs = [\"ticker.py\"]\nout_file = {:?}\nlog_max_size = \"1K\"\n",
            out_file.display()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let row =
        home.wait_app("ticker", "a rotation error", |r| r["log_error"].as_str().is_some_and(|e| e.contains("rotate")));
    assert!(row["log_error"].as_str().unwrap().contains("pinned.log"), "{row}");
    // Lines keep going to the file meanwhile, and the failure is logged once, not per batch.
    wait_for("more lines in the pinned file", Duration::from_secs(10), || {
        let n = std::fs::read_to_string(&out_file).unwrap_or_default().lines().count();
        if n >= 20 {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    });
    let daemon_log = home.ok(&["logs", "--daemon", "--lines", "200"]);
    let warnings = daemon_log.matches("cannot rotate a log file").count();
    assert_eq!(warnings, 1, "{daemon_log}");
    home.ok(&["stop", "ticker"]);
}

/// Writes "N" lines, 500 a second, one write(2) each, and its count to `progress` every 50.
const COUNTER: &str = "import os, time\nn = 0\nwhile True:\n    os.write(1, b'%d\\n' % n)\n    n += 1\n    if n % 50 == 0:\n        with open('progress.tmp', 'w') as f:\n            f.write(str(n))\n        os.replace('progress.tmp', 'progress')\n    time.sleep(0.002)\n";

/// Found by the chaos soak: a rotation that failed closed the live file first, then could not
/// open it again in a read-only directory, and every line was lost until the directory was
/// writable again, although the open file could still be written.
#[test]
fn a_log_directory_made_read_only_loses_no_line() {
    let home = Home::new();
    home.write("counter.py", COUNTER);
    let dir = home.file("logdir");
    std::fs::create_dir(&dir).unwrap();
    if !mount(&["-t", "tmpfs", "-o", "size=8m", "tmpfs"], &dir) {
        return;
    }
    let _tmpfs = Mounted(&dir);
    let config = home.write(
        "counter.toml",
        &format!(
            "[apps.counter]\ncommand = \"python3\"\nargs = [\"counter.py\"]\nout_file = {:?}\nlog_date_format = \"none\"\nlog_max_size = \"4K\"\nlog_retain = 1000\n",
            dir.join("counter.out.log").display()
        ),
    );
    home.ok(&["start", config.to_str().unwrap()]);
    let progress =
        || std::fs::read_to_string(home.file("progress")).ok().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let rotated =
        || std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().len() > "counter.out.log".len()).count();
    wait_for("a first rotation", Duration::from_secs(15), || {
        if rotated() > 0 {
            Ok(())
        } else {
            Err(format!("{} lines written", progress()))
        }
    });
    // The directory read-only (a read-only bind mount over it): renames and new files fail,
    // the file already open can still be written.
    if !mount(&["--bind", dir.to_str().unwrap()], &dir) {
        return;
    }
    let read_only = Mounted(&dir);
    assert!(mount(&["-o", "remount,bind,ro"], &dir), "remount the bind mount read-only");
    home.wait_app("counter", "a rotation error", |r| r["log_error"].as_str().is_some_and(|e| e.contains("rotate")));
    let from = progress();
    wait_for("a second of lines while read-only", Duration::from_secs(15), || {
        let n = progress();
        if n >= from + 500 {
            Ok(())
        } else {
            Err(format!("{n} lines written"))
        }
    });
    drop(read_only);
    let until = progress();
    home.wait_app("counter", "log_error gone after a rotation", |r| r["log_error"].is_null());
    wait_for("lines written after it", Duration::from_secs(15), || {
        let n = progress();
        if n >= until + 250 {
            Ok(())
        } else {
            Err(format!("{n} lines written"))
        }
    });
    home.ok(&["stop", "counter"]);
    let mut numbers: Vec<u64> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        numbers.extend(text.lines().map(|l| l.parse::<u64>().unwrap_or_else(|_| panic!("a torn line {l:?}"))));
    }
    numbers.sort_unstable();
    let missing: Vec<u64> = numbers.windows(2).filter(|w| w[1] != w[0] + 1).map(|w| w[0] + 1).collect();
    assert!(
        missing.is_empty() && numbers.first() == Some(&0),
        "{} lines written ({from}..{until} while read-only); {} in the files; gaps start at {:?}",
        numbers.last().map_or(0, |n| n + 1),
        numbers.len(),
        &missing[..missing.len().min(10)]
    );
}
