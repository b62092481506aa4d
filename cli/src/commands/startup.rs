//! `startup systemd [--user] [--install]`: a `Type=notify` unit for the daemon.

use crate::connect;
use anyhow::Context;
use mcpd_core::client::Client;
use mcpd_core::paths::Paths;
use mcpd_core::protocol::{DescribeRequest, Request, Response};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Added to the longest drain so systemd never SIGKILLs a drain in progress.
const STOP_MARGIN: Duration = Duration::from_secs(10);
/// The shortest `TimeoutStopSec` written.
const MIN_STOP: Duration = Duration::from_secs(30);

/// The unit for the binary at `exe`, the daemon home `home`, and the longest app drain.
pub fn unit(exe: &Path, home: &Path, longest_drain: Duration, user: bool) -> String {
    let stop = (longest_drain + STOP_MARGIN).max(MIN_STOP).as_secs();
    // The packaged home is created by systemd; ReadWritePaths needs it to exist.
    let state = if home == Path::new("/var/lib/mcpd") { "StateDirectory=mcpd\nStateDirectoryMode=0700\n" } else { "" };
    let (exe, home) = (exe.display(), home.display());
    let hardening = if user {
        "# Hardening that a user manager can apply.\nNoNewPrivileges=yes\n".to_string()
    } else {
        format!(
            "# Hardening. Apps write only below MCPD_HOME and /tmp (private): add the paths your apps\n\
             # write to ReadWritePaths=. NoNewPrivileges keeps `user =` in mcpd.toml working (it drops\n\
             # privileges; it never gains any).\n\
             NoNewPrivileges=yes\nProtectSystem=strict\n{state}ReadWritePaths={home}\nPrivateTmp=yes\n\
             ProtectKernelTunables=yes\nProtectKernelModules=yes\n\
             RestrictSUIDSGID=yes\nLockPersonality=yes\n"
        )
    };
    let wanted_by = if user { "default.target" } else { "multi-user.target" };
    format!(
        "# mcpd as a systemd service; written by `mcpd startup systemd{flag}`.\n\
         [Unit]\n\
         Description=mcpd process supervisor for MCP and other long-lived servers\n\
         Documentation=man:mcpd(1)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         # mcpd says READY=1 once its socket is up and the saved apps are ready, keeps STATUS=\n\
         # current, and pings the watchdog. Only mcpd itself may notify; apps get their own socket.\n\
         Type=notify\n\
         NotifyAccess=main\n\
         Environment=MCPD_HOME={home}\n\
         ExecStart={exe} daemon\n\
         ExecReload={exe} reload all\n\
         # Upgrading mcpd itself: install the new binary, then `mcpd update` (the package does): the\n\
         # daemon executes it in place, same MAINPID, every app and session kept. A restart of this\n\
         # unit would drain and restart every app.\n\
         # KillMode=mixed: on stop, SIGTERM goes to mcpd alone, which drains every app in parallel,\n\
         # each with its own kill_signal and kill_timeout; whatever is still alive when\n\
         # TimeoutStopSec runs out is SIGKILLed, the whole cgroup. (control-group would SIGTERM every\n\
         # app at once, ignoring their kill_signal; process would leave them behind.)\n\
         KillMode=mixed\n\
         # Delegate=yes: systemd hands the cgroup subtree below this unit's cgroup to mcpd, which\n\
         # makes a cgroup per app generation there (to track, kill and measure each app whole).\n\
         # Hence no ProtectControlGroups= below: it would make /sys/fs/cgroup read-only.\n\
         Delegate=yes\n\
         # {why}\n\
         # Run `mcpd startup systemd` again after raising a kill_timeout.\n\
         TimeoutStopSec={stop}s\n\
         Restart=on-failure\n\
         RestartSec=2s\n\
         WatchdogSec=30s\n\
         {hardening}\n\
         [Install]\n\
         WantedBy={wanted_by}\n",
        flag = if user { " --user" } else { "" },
        why = if longest_drain.is_zero() {
            format!(
                "No app is known yet: {stop}s lets apps drain up to {}s (kill_timeout) before SIGKILL.",
                stop - STOP_MARGIN.as_secs()
            )
        } else {
            format!(
                "The longest kill_timeout of the apps ({}s) plus {}s: systemd must never SIGKILL a drain.",
                longest_drain.as_secs(),
                STOP_MARGIN.as_secs()
            )
        },
    )
}

/// The longest drain time of the apps: from the running daemon, else from the saved list.
async fn longest_drain(paths: &Paths) -> Duration {
    if let Ok(mut client) = Client::connect(paths).await {
        if let Ok(Response::List { apps }) = client.call(Request::List).await {
            let mut longest = Duration::ZERO;
            for app in apps {
                if let Ok(Response::Describe(d)) = client.call(DescribeRequest { name: app.name }).await {
                    longest = longest.max(d.config.kill_timeout);
                }
            }
            return longest;
        }
    }
    match mcpd_core::persist::load(paths) {
        Ok(Some(saved)) => saved.apps.iter().map(|a| a.config.kill_timeout).max().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// Prints, or installs and enables, the unit.
pub async fn run(user: bool, install: bool) -> anyhow::Result<ExitCode> {
    let paths = connect::paths()?;
    let exe = std::env::current_exe().and_then(|p| p.canonicalize()).context("cannot find the mcpd executable")?;
    let text = unit(&exe, paths.home(), longest_drain(&paths).await, user);
    if !install {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let dir = if user {
        PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config/systemd/user")
    } else {
        PathBuf::from("/etc/systemd/system")
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // ReadWritePaths= needs the home to exist when the service starts.
    paths.create_dirs().with_context(|| format!("cannot create {}", paths.home().display()))?;
    let path = dir.join("mcpd.service");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    let scope: &[&str] = if user { &["--user"] } else { &[] };
    for args in [&["daemon-reload"][..], &["enable", "--now", "mcpd.service"][..]] {
        let status = std::process::Command::new("systemctl").args(scope).args(args).status();
        match status {
            Ok(s) if s.success() => println!("systemctl {} {}: ok", scope.join(" "), args.join(" ")),
            Ok(s) => anyhow::bail!("systemctl {} failed ({s}); the unit is in {}", args.join(" "), path.display()),
            Err(e) => anyhow::bail!("cannot run systemctl ({e}); the unit is in {}", path.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_stop_covers_the_longest_drain() {
        let cases = [(Duration::ZERO, "TimeoutStopSec=30s"), (Duration::from_secs(45), "TimeoutStopSec=55s")];
        for (drain, want) in cases {
            let text = unit(Path::new("/usr/bin/mcpd"), Path::new("/var/lib/mcpd"), drain, false);
            assert!(text.contains(want), "{drain:?}: {text}");
            assert!(
                text.contains("Type=notify")
                    && text.contains("KillMode=mixed")
                    && text.contains("ReadWritePaths=/var/lib/mcpd")
            );
            // mcpd makes a cgroup per generation below its own: delegated, and writable.
            assert!(text.contains("\nDelegate=yes\n") && !text.contains("ProtectControlGroups=yes"), "{text}");
        }
        let user = unit(Path::new("/usr/bin/mcpd"), Path::new("/home/u/.mcpd"), Duration::ZERO, true);
        assert!(user.contains("WantedBy=default.target") && !user.contains("ProtectSystem"));
        assert!(user.contains("\nDelegate=yes\n"), "a user manager delegates too: {user}");
    }
}
