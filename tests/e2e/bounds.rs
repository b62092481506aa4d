//! Numbers a config may give are bounded, and a crash loop with no delay costs little.

use crate::common::{wait_for, Home};
use std::time::{Duration, Instant};

#[test]
fn a_crash_loop_with_no_delay_restarts_at_most_ten_times_a_second() {
    let home = Home::new();
    let config = home.write(
        "loop.toml",
        "[apps.loop]\ncommand = \"sh\"\nargs = [\"-c\", \"exit 1\"]\nrestart_delay = \"0ms\"\nmin_uptime = \"0ms\"\nmax_restarts = 1000000\n",
    );
    home.ok(&["start", config.to_str().unwrap(), "--no-wait"]);
    let started = Instant::now();
    let first = wait_for("a few restarts", Duration::from_secs(10), || {
        let restarts = home.app("loop").and_then(|r| r["restarts"].as_u64()).unwrap_or(0);
        if restarts >= 3 {
            Ok(restarts)
        } else {
            Err(format!("{restarts} restarts"))
        }
    });
    wait_for("two seconds of the loop", Duration::from_secs(5), || {
        if started.elapsed() >= Duration::from_secs(2) {
            Ok(())
        } else {
            Err(format!("{:?}", started.elapsed()))
        }
    });
    let restarts = home.app("loop").unwrap()["restarts"].as_u64().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    // 10 a second at most, with room for the start and the polling.
    assert!((restarts as f64) <= 10.0 * elapsed + 5.0, "{restarts} restarts in {elapsed:.1} s (first seen: {first})");
    home.ok(&["stop", "loop"]);
}

#[test]
fn absurd_durations_sizes_and_intervals_are_config_errors() {
    let home = Home::new();
    let cases = [
        ("kill_timeout = \"10000000000000000000s\"", "kill_timeout", "longer than the limit of 365 days"),
        ("max_memory_restart = \"1e99M\"", "max_memory_restart", "invalid size"),
        ("max_memory_restart = \"infK\"", "max_memory_restart", "invalid size"),
        ("health = { tcp = \"127.0.0.1:9\", interval = \"0ms\" }", "interval", "at least 100ms"),
        ("out_file = \"/nonexistent-dir/a.log\"", "out_file", "does not exist"),
    ];
    for (line, key, why) in cases {
        let file = home.write("bad.toml", &format!("[apps.a]\ncommand = \"sleep\"\nargs = [\"1\"]\n{line}\n"));
        let err = home.fails(&["check", file.to_str().unwrap()]);
        assert!(err.contains("bad.toml:4:") && err.contains(key) && err.contains(why), "{line}: {err}");
        let err = home.fails(&["start", file.to_str().unwrap()]);
        assert!(err.contains(why), "start of {line}: {err}");
        assert!(home.app("a").is_none(), "{line}: a config error starts nothing");
    }
}
