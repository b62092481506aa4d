//! The restart decision after a generation ends: policy, `stop_exit_codes`, fixed delay or
//! exponential backoff (PM2's: first delay = base, each next ×1.5, capped at 15 s, reset after
//! 30 s of uptime), and the crash-loop cutoff. Pure; tested by tables below.

use mcpd_core::config::{RestartConfig, RestartMode};
use std::time::Duration;

/// Counters that live across generations; reset when the user starts or restarts the app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Unstable restarts in a row (exits before `min_uptime`).
    pub unstable: u32,
    /// Which backoff delay comes next (0: the base).
    pub step: u32,
}

/// How a generation ended, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitFacts {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// How long it ran.
    pub uptime: Duration,
}

/// What to do after an exit.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start again after `delay`.
    Restart { delay: Duration },
    /// Stay stopped: the exit was expected.
    Stop { why: String },
    /// Stay down and say why: a failure the policy does not restart, or a crash loop.
    GiveUp { reason: String },
}

/// The n-th backoff delay (n from 0): `base × factor^n`, at most `max`.
pub fn backoff_delay(config: &RestartConfig, base: Duration, n: u32) -> Duration {
    let ms = base.as_millis() as f64 * config.exp_backoff_factor.powi(n.min(1000) as i32);
    Duration::from_millis(ms.min(config.exp_backoff_max.as_millis() as f64) as u64)
}

/// Decides what follows an exit (or a failure to get ready, with `code: None`), updating the
/// counters. `restart_delay` is the fixed delay used without backoff.
pub fn decide(
    config: &RestartConfig,
    restart_delay: Duration,
    counters: &mut Counters,
    exit: ExitFacts,
    how: &str,
) -> Decision {
    let clean = exit.code == Some(0);
    if let Some(code) = exit.code.filter(|c| config.stop_exit_codes.contains(c)) {
        return Decision::Stop { why: format!("exit code {code} is in stop_exit_codes") };
    }
    match config.restart {
        RestartMode::Never if clean => return Decision::Stop { why: "exited cleanly; restart = \"never\"".into() },
        RestartMode::Never => return Decision::GiveUp { reason: format!("{how}; restart = \"never\"") },
        RestartMode::OnFailure if clean => {
            return Decision::Stop { why: "exited cleanly; restart = \"on-failure\"".into() }
        }
        _ => {}
    }
    if exit.uptime < config.min_uptime {
        if counters.unstable >= config.max_restarts {
            return Decision::GiveUp {
                reason: format!(
                    "crash loop: {} restarts in a row each ended within min_uptime ({}), last: {how}; fix the app, then `mcpd restart` it",
                    counters.unstable,
                    humantime::format_duration(config.min_uptime)
                ),
            };
        }
        counters.unstable += 1;
    } else {
        counters.unstable = 0;
    }
    let delay = match config.exp_backoff_restart_delay {
        Some(base) => {
            if exit.uptime >= config.exp_backoff_reset {
                counters.step = 0;
            }
            let delay = backoff_delay(config, base, counters.step);
            counters.step += 1;
            delay
        }
        None => restart_delay,
    };
    Decision::Restart { delay }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn backoff() -> RestartConfig {
        RestartConfig { exp_backoff_restart_delay: Some(ms(100)), max_restarts: 100, ..RestartConfig::default() }
    }

    #[test]
    fn backoff_follows_pm2_and_is_capped() {
        let config = backoff();
        let mut counters = Counters::default();
        let want = [100, 150, 225, 337, 506, 759, 1139, 1708, 2562, 3844, 5766, 8649, 12974, 15000, 15000];
        for (i, want) in want.iter().enumerate() {
            let exit = ExitFacts { code: Some(1), uptime: ms(10) };
            assert_eq!(
                decide(&config, ms(999), &mut counters, exit, "exit code 1"),
                Decision::Restart { delay: ms(*want) },
                "restart {i}"
            );
        }
    }

    #[test]
    fn backoff_resets_after_stable_uptime() {
        let config = backoff();
        let mut counters = Counters::default();
        let steps = [(ms(10), 100), (ms(10), 150), (ms(29_999), 225), (Duration::from_secs(30), 100), (ms(10), 150)];
        for (i, (uptime, want)) in steps.into_iter().enumerate() {
            let d = decide(&config, ms(999), &mut counters, ExitFacts { code: Some(1), uptime }, "exit code 1");
            assert_eq!(d, Decision::Restart { delay: ms(want) }, "exit {i} after {uptime:?}");
        }
    }

    #[test]
    fn crash_loop_cutoff_counts_unstable_restarts_in_a_row() {
        let config = RestartConfig { max_restarts: 3, ..RestartConfig::default() };
        let mut counters = Counters::default();
        let fast = ExitFacts { code: Some(1), uptime: ms(200) };
        let slow = ExitFacts { code: Some(1), uptime: ms(5000) };
        // (exit, restarts?) — a stable run resets the count.
        let table = [(fast, true), (fast, true), (slow, true), (fast, true), (fast, true), (fast, true), (fast, false)];
        for (i, (exit, restarts)) in table.into_iter().enumerate() {
            let d = decide(&config, ms(100), &mut counters, exit, "exit code 1");
            match (restarts, &d) {
                (true, Decision::Restart { delay }) => assert_eq!(*delay, ms(100), "exit {i}"),
                (false, Decision::GiveUp { reason }) => {
                    assert!(reason.starts_with("crash loop: 3 restarts in a row"), "{reason}")
                }
                _ => panic!("exit {i}: {d:?}"),
            }
        }
    }

    #[test]
    fn policies_and_stop_exit_codes() {
        let with = |restart, codes: &[i32]| RestartConfig {
            restart,
            stop_exit_codes: codes.to_vec(),
            ..RestartConfig::default()
        };
        let restart = |d: &Decision| matches!(d, Decision::Restart { .. });
        let stop = |d: &Decision| matches!(d, Decision::Stop { .. });
        let give_up = |d: &Decision| matches!(d, Decision::GiveUp { .. });
        type Check = fn(&Decision) -> bool;
        let cases: Vec<(RestartConfig, Option<i32>, Check)> = vec![
            (with(RestartMode::Always, &[]), Some(0), restart),
            (with(RestartMode::Always, &[]), Some(3), restart),
            (with(RestartMode::Always, &[]), None, restart),
            (with(RestartMode::Always, &[0, 3]), Some(3), stop),
            (with(RestartMode::Always, &[0, 3]), Some(4), restart),
            (with(RestartMode::OnFailure, &[]), Some(0), stop),
            (with(RestartMode::OnFailure, &[]), Some(1), restart),
            (with(RestartMode::OnFailure, &[]), None, restart),
            (with(RestartMode::OnFailure, &[2]), Some(2), stop),
            (with(RestartMode::Never, &[]), Some(0), stop),
            (with(RestartMode::Never, &[]), Some(1), give_up),
            (with(RestartMode::Never, &[1]), Some(1), stop),
        ];
        for (i, (config, code, check)) in cases.into_iter().enumerate() {
            let d = decide(&config, ms(100), &mut Counters::default(), ExitFacts { code, uptime: ms(5000) }, "x");
            assert!(check(&d), "case {i}: {:?} code {code:?} gave {d:?}", config.restart);
        }
    }
}
