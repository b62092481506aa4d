//! Samples memory and CPU of every app's generation about once a second, with one pass over
//! /proc for all apps. A generation is its cgroup's processes where the daemon tracks by
//! cgroup (memory is then what its memory controller counts, CPU its `cpu.stat`), else its
//! process group's.

use super::Ctx;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often groups are sampled unless an app asks for more often (`memory_check_interval`).
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One group's last sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// RSS summed over the group's processes.
    pub rss_bytes: u64,
    /// CPU use since the previous sample, in percent of one core.
    pub cpu_percent: f32,
    /// CPU time used so far, in microseconds.
    cpu_us: u64,
    at: Instant,
}

impl Sample {
    /// A sample of `rss_bytes` taken now (the app task's tests set memory with it).
    #[cfg(test)]
    pub fn of_rss(rss_bytes: u64) -> Sample {
        Sample { rss_bytes, cpu_percent: 0.0, cpu_us: 0, at: Instant::now() }
    }
}

/// Takes one sample of every leader's group, walking `/proc` once (so it runs on a blocking
/// thread), and reaps zombie children of the daemon that left their group on the way (the
/// reaper looks only in groups).
pub(crate) fn sample(ctx: &Ctx) {
    // A guard that stopped reading gets what it missed once it reads again.
    ctx.guard.flush();
    let leaders: HashSet<u32> = ctx.leaders.lock().expect("leaders lock").iter().copied().collect();
    let me = std::process::id() as i32;
    let page = procfs::page_size();
    let tps = procfs::ticks_per_second().max(1);
    let mut sums: HashMap<u32, (u64, u64)> = leaders.iter().map(|&p| (p, (0, 0))).collect();
    let cgroups: Vec<_> = ctx.cgroups.lock().expect("cgroups lock").iter().map(|(&l, c)| (l, c.clone())).collect();
    let mut member_of: HashMap<i32, u32> = HashMap::new();
    let mut memory_current: HashMap<u32, u64> = HashMap::new();
    let mut cpu_usage: HashMap<u32, u64> = HashMap::new();
    for (leader, cgroup) in &cgroups {
        if let Some(bytes) = cgroup.memory_current() {
            memory_current.insert(*leader, bytes);
        }
        if let Some(us) = cgroup.cpu_usage_us() {
            cpu_usage.insert(*leader, us);
        }
        member_of.extend(cgroup.pids().into_iter().map(|pid| (pid as i32, *leader)));
    }
    let by_cgroup: HashSet<u32> = cgroups.iter().map(|(l, _)| *l).collect();
    if let Ok(all) = procfs::process::all_processes() {
        for process in all.flatten() {
            let Ok(stat) = process.stat() else { continue };
            // The leaders are asked again under their lock: one spawned since the snapshot
            // above is a leader too, and its exit is its app task's to collect.
            if stat.ppid == me
                && stat.state == 'Z'
                && !ctx.leaders.lock().expect("leaders lock").contains(&(stat.pid as u32))
            {
                let _ = waitpid(Pid::from_raw(stat.pid), Some(WaitPidFlag::WNOHANG));
                continue;
            }
            let pgrp = stat.pgrp as u32;
            let owner = member_of.get(&stat.pid).copied().or((!by_cgroup.contains(&pgrp)).then_some(pgrp));
            if let Some(sum) = owner.and_then(|o| sums.get_mut(&o)) {
                sum.0 += stat.rss * page;
                sum.1 += stat.utime + stat.stime;
            }
        }
    }
    let now = Instant::now();
    let mut samples = ctx.samples.lock().expect("samples lock");
    let previous = std::mem::take(&mut *samples);
    for (pgid, (rss, ticks)) in sums {
        let rss_bytes = memory_current.get(&pgid).copied().unwrap_or(rss);
        // cpu.stat also counts the members that have already exited.
        let cpu_us = cpu_usage.get(&pgid).copied().unwrap_or(ticks.saturating_mul(1_000_000) / tps);
        let cpu_percent = previous.get(&pgid).map_or(0.0, |p| {
            let us = now.duration_since(p.at).as_secs_f64().max(1e-3) * 1e6;
            (cpu_us.saturating_sub(p.cpu_us) as f64 / us * 100.0) as f32
        });
        samples.insert(pgid, Sample { rss_bytes, cpu_percent, cpu_us, at: now });
    }
}

/// Samples every [`SAMPLE_INTERVAL`] until shutdown.
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut next = tokio::time::Instant::now();
    loop {
        next += Duration::from_millis(ctx.sample_every_ms.load(std::sync::atomic::Ordering::Relaxed));
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                let c = ctx.clone();
                let _ = tokio::task::spawn_blocking(move || sample(&c)).await;
                ctx.samples_tick.send_modify(|n| *n += 1);
                // A slow pass never makes the next samples come in a burst.
                next = next.max(tokio::time::Instant::now());
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
