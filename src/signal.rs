//! Signal names as users write them in config (`"SIGTERM"`, `"INT"`), checked once.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The signals an app may ask to be stopped with, and `mcpd signal` may send.
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGTERM", libc::SIGTERM),
    ("SIGWINCH", libc::SIGWINCH),
    // For `mcpd signal`; as a kill_signal they would not end a process (SIGKILL would).
    ("SIGALRM", libc::SIGALRM),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGPWR", libc::SIGPWR),
];

/// Signals that freeze or resume a process rather than ask it to end.
const NOT_STOPPING: &[i32] = &[libc::SIGSTOP, libc::SIGCONT, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// A validated signal; serialized by its canonical name (`"SIGTERM"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Signal {
    name: &'static str,
    number: i32,
}

impl Signal {
    /// SIGTERM, the default stop signal (as systemd).
    pub const TERM: Signal = Signal { name: "SIGTERM", number: libc::SIGTERM };
    /// SIGKILL, sent to the whole group once the drain time is over.
    pub const KILL: Signal = Signal { name: "SIGKILL", number: libc::SIGKILL };

    /// Parses `SIGTERM`, `TERM` or `sigterm`.
    pub fn parse(text: &str) -> Option<Signal> {
        let upper = text.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
        SIGNALS.iter().find(|(name, _)| *name == full).map(|&(name, number)| Signal { name, number })
    }

    /// The names accepted, for error messages.
    pub fn known_names() -> String {
        SIGNALS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }

    /// Whether it asks a program to end (a `kill_signal` may be only such a one): not
    /// SIGSTOP, SIGCONT and the terminal stops, which would freeze a drain until SIGKILL.
    pub fn asks_to_stop(&self) -> bool {
        !NOT_STOPPING.contains(&self.number)
    }

    /// The names a `kill_signal` may take, for error messages.
    pub fn stop_names() -> String {
        SIGNALS.iter().filter(|(_, n)| !NOT_STOPPING.contains(n)).map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }

    /// The canonical name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The number to pass to kill(2).
    pub fn number(&self) -> i32 {
        self.number
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl TryFrom<String> for Signal {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Signal::parse(&value).ok_or_else(|| format!("unknown signal {value:?}; use one of {}", Signal::known_names()))
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Signal::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl From<Signal> for String {
    fn from(s: Signal) -> String {
        s.name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_in_any_spelling() {
        let cases = [
            ("SIGTERM", Some(libc::SIGTERM)),
            ("TERM", Some(libc::SIGTERM)),
            ("sigint", Some(libc::SIGINT)),
            (" SIGUSR2 ", Some(libc::SIGUSR2)),
            ("SIGFOO", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(Signal::parse(text).map(|s| s.number()), want, "parsing {text:?}");
        }
    }
}
