//! `mcpd monit` in a real terminal (tmux) against a real daemon.

use crate::common::{wait_for, Home, MCPD};
use std::process::Command;
use std::time::Duration;

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "monit"])
    }

    fn wait_screen(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        wait_for(what, Duration::from_secs(15), || {
            let screen = self.screen();
            if check(&screen) {
                Ok(screen)
            } else {
                Err(format!("\n{screen}"))
            }
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
    }
}

#[test]
fn monit_restarts_an_app_with_r_and_quits_cleanly() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed; skipping (CI installs it)");
        return;
    }
    let home = Home::new();
    home.ok(&["start", "--name", "svc", "--", "sleep", "infinity"]);
    let before = home.pid("svc");
    let tmux = Tmux { socket: format!("mcpd-test-{}", std::process::id()) };
    tmux.cmd(&["-f", "/dev/null", "new-session", "-d", "-s", "monit", "-x", "100", "-y", "30", "sh"]);
    let launch = format!("MCPD_HOME={} {MCPD} monit", home.path().display());
    tmux.cmd(&["send-keys", "-t", "monit", &launch, "Enter"]);
    tmux.wait_screen("the app online with its pid", |s| {
        s.contains("svc") && s.contains("online") && s.contains(&before.to_string())
    });
    tmux.cmd(&["send-keys", "-t", "monit", "r"]);
    let after = wait_for("a new pid", Duration::from_secs(15), || {
        let pid = home.pid("svc");
        if pid != before {
            Ok(pid)
        } else {
            Err(pid.to_string())
        }
    });
    let screen = tmux.wait_screen("the new pid on screen", |s| s.contains(&after.to_string()) && s.contains("online"));
    assert!(screen.contains("restart svc"), "the status line reports the outcome:\n{screen}");
    tmux.cmd(&["send-keys", "-t", "monit", "q"]);
    tmux.wait_screen("the monitor's screen gone (alternate screen left)", |s| {
        !s.contains("NAME") && s.contains("monit")
    });
    // The terminal is usable again: a command typed now runs and shows monit's exit code.
    tmux.cmd(&["send-keys", "-t", "monit", "echo monit-exited-$?", "Enter"]);
    tmux.wait_screen("the shell to run a command after quitting", |s| s.contains("monit-exited-0"));
}
