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
