//! `rlimits = { nofile = 65536, core = 0 }`: the resource limits an app is started with,
//! systemd's `LimitNOFILE=`, `LimitCORE=`, ... under `ulimit`'s lower-case names.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A resource `setrlimit(2)` limits, named as systemd's `Limit*=` keys in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// CPU time, in seconds (`LimitCPU=`).
    Cpu,
    /// The largest file the app may write, in bytes (`LimitFSIZE=`).
    Fsize,
    /// The data segment, in bytes (`LimitDATA=`).
    Data,
    /// The stack, in bytes (`LimitSTACK=`).
    Stack,
    /// Core dumps, in bytes; 0 means none (`LimitCORE=`).
    Core,
    /// Resident memory, in bytes; Linux ignores it (`LimitRSS=`).
    Rss,
    /// Open files (`LimitNOFILE=`).
    Nofile,
    /// Address space, in bytes (`LimitAS=`).
    As,
    /// Processes of the app's user (`LimitNPROC=`).
    Nproc,
    /// Locked memory, in bytes (`LimitMEMLOCK=`).
    Memlock,
    /// File locks; Linux ignores it (`LimitLOCKS=`).
    Locks,
    /// Queued signals (`LimitSIGPENDING=`).
    Sigpending,
    /// POSIX message queues, in bytes (`LimitMSGQUEUE=`).
    Msgqueue,
    /// The nice ceiling as setrlimit takes it, 20 - nice: 0 to 40 (`LimitNICE=`).
    Nice,
    /// The real-time priority ceiling, 0 to 99 (`LimitRTPRIO=`).
    Rtprio,
    /// Real-time CPU time without a blocking call, in microseconds (`LimitRTTIME=`).
    Rttime,
}

impl Resource {
    /// Every resource, in the order of `ulimit -a`'s man page.
    pub const ALL: [Resource; 16] = [
        Resource::Cpu,
        Resource::Fsize,
        Resource::Data,
        Resource::Stack,
        Resource::Core,
        Resource::Rss,
        Resource::Nofile,
        Resource::As,
        Resource::Nproc,
        Resource::Memlock,
        Resource::Locks,
        Resource::Sigpending,
        Resource::Msgqueue,
        Resource::Nice,
        Resource::Rtprio,
        Resource::Rttime,
    ];

    /// The name written in the config: `nofile`, `core`, ...
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Fsize => "fsize",
            Resource::Data => "data",
            Resource::Stack => "stack",
            Resource::Core => "core",
            Resource::Rss => "rss",
            Resource::Nofile => "nofile",
            Resource::As => "as",
            Resource::Nproc => "nproc",
            Resource::Memlock => "memlock",
            Resource::Locks => "locks",
            Resource::Sigpending => "sigpending",
            Resource::Msgqueue => "msgqueue",
            Resource::Nice => "nice",
            Resource::Rtprio => "rtprio",
            Resource::Rttime => "rttime",
        }
    }

    /// Parses a name as written in the config; the error lists the known ones.
    pub fn parse(name: &str) -> Result<Resource, String> {
        Resource::ALL.into_iter().find(|r| r.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Resource::ALL.iter().map(|r| r.name()).collect();
            format!(
                "unknown resource {name:?}; use one of {} (systemd's Limit*= names in lower case)",
                known.join(", ")
            )
        })
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One side of a limit: a number (in the resource's unit) or no limit. A number is below
/// `infinity`, so `soft <= hard` compares as setrlimit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RlimitValue {
    /// At most this many (seconds, bytes, files, ...).
    Limited(u64),
    /// No limit (`RLIM_INFINITY`).
    Infinity,
}

impl RlimitValue {
    /// Parses `"infinity"` or a whole number.
    pub fn parse(text: &str) -> Result<RlimitValue, String> {
        let t = text.trim();
        if t == "infinity" {
            return Ok(RlimitValue::Infinity);
        }
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text:?} is not a limit: write a whole number of at least 0, or \"infinity\""));
        }
        t.parse()
            .map(RlimitValue::Limited)
            .map_err(|_| format!("{text:?} is too large: write \"infinity\" for no limit"))
    }
}

impl fmt::Display for RlimitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RlimitValue::Limited(n) => write!(f, "{n}"),
            RlimitValue::Infinity => f.write_str("infinity"),
        }
    }
}

/// Written as a number or `"infinity"`, in JSON as in the config.
impl Serialize for RlimitValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RlimitValue::Limited(n) => s.serialize_u64(*n),
            RlimitValue::Infinity => s.serialize_str("infinity"),
        }
    }
}

impl<'de> Deserialize<'de> for RlimitValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RlimitValue, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(RlimitValue::Limited(n)),
            Raw::Text(t) if t == "infinity" => Ok(RlimitValue::Infinity),
            Raw::Text(t) => Err(serde::de::Error::custom(format!("{t:?} is not a limit: a number or \"infinity\""))),
        }
    }
}

/// A soft and a hard limit: the app may raise its soft limit up to the hard one, never past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// The limit in force.
    pub soft: RlimitValue,
    /// The ceiling of the soft limit.
    pub hard: RlimitValue,
}

impl Rlimit {
    /// The same soft and hard limit.
    pub fn both(value: RlimitValue) -> Rlimit {
        Rlimit { soft: value, hard: value }
    }

    /// Parses `"VALUE"` (soft and hard) or systemd's `"SOFT:HARD"`. `soft <= hard` is not
    /// checked here (see [`Rlimit::problem`]).
    pub fn parse(text: &str) -> Result<Rlimit, String> {
        match text.split_once(':') {
            None => RlimitValue::parse(text).map(Rlimit::both),
            Some((soft, hard)) => Ok(Rlimit { soft: RlimitValue::parse(soft)?, hard: RlimitValue::parse(hard)? }),
        }
    }

    /// What no process can be given: a soft limit above the hard one.
    pub fn problem(&self) -> Option<String> {
        (self.soft > self.hard).then(|| {
            format!(
                "the soft limit {} is above the hard limit {}: write \"SOFT:HARD\" with SOFT at most HARD, e.g. \"{}:{}\"",
                self.soft, self.hard, self.hard, self.soft
            )
        })
    }
}

/// Shown as written: `VALUE`, or `SOFT:HARD` when they differ.
impl fmt::Display for Rlimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.soft == self.hard {
            write!(f, "{}", self.soft)
        } else {
            write!(f, "{}:{}", self.soft, self.hard)
        }
    }
}

/// An app's resource limits; resources not named keep the daemon's (inherited) limits.
pub type Rlimits = BTreeMap<Resource, Rlimit>;

#[cfg(test)]
mod tests {
    use super::*;
    use RlimitValue::{Infinity, Limited};

    #[test]
    fn values_and_soft_hard_pairs() {
        let cases: &[(&str, Option<(RlimitValue, RlimitValue)>)] = &[
            ("65536", Some((Limited(65536), Limited(65536)))),
            ("0", Some((Limited(0), Limited(0)))),
            ("infinity", Some((Infinity, Infinity))),
            ("1024:4096", Some((Limited(1024), Limited(4096)))),
            ("1024:infinity", Some((Limited(1024), Infinity))),
            (" 8 : 9 ", Some((Limited(8), Limited(9)))),
            ("4096:1024", Some((Limited(4096), Limited(1024)))),
            ("-1", None),
            ("1.5", None),
            ("1e3", None),
            ("unlimited", None),
            ("", None),
            ("1024:", None),
            (":1024", None),
            ("1:2:3", None),
            ("99999999999999999999", None),
        ];
        for (text, want) in cases {
            let got = Rlimit::parse(text).ok().map(|l| (l.soft, l.hard));
            assert_eq!(got, *want, "{text:?}");
        }
        assert!(Rlimit::parse("4096:1024").unwrap().problem().unwrap().contains("soft limit 4096 is above"));
        assert!(Rlimit::parse("1024:infinity").unwrap().problem().is_none());
        assert!(Rlimit::parse("infinity:1024").unwrap().problem().is_some());
        assert_eq!(Rlimit::parse("1024:4096").unwrap().to_string(), "1024:4096");
        assert_eq!(Rlimit::parse("infinity").unwrap().to_string(), "infinity");
    }

    #[test]
    fn names_are_systemds_in_lower_case() {
        for r in Resource::ALL {
            assert_eq!(Resource::parse(r.name()), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.name(), "JSON uses the config's names");
        }
        let err = Resource::parse("NOFILE").unwrap_err();
        assert!(err.contains("unknown resource \"NOFILE\"") && err.contains("nofile, as, nproc"), "{err}");
    }

    #[test]
    fn json_round_trip() {
        let limits = Rlimits::from([
            (Resource::Nofile, Rlimit { soft: Limited(1024), hard: Infinity }),
            (Resource::Core, Rlimit::both(Limited(0))),
        ]);
        let json = serde_json::to_string(&limits).unwrap();
        assert_eq!(json, r#"{"core":{"soft":0,"hard":0},"nofile":{"soft":1024,"hard":"infinity"}}"#);
        assert_eq!(serde_json::from_str::<Rlimits>(&json).unwrap(), limits);
        assert!(serde_json::from_str::<Rlimits>(r#"{"nofiles":{"soft":1,"hard":1}}"#).is_err());
        assert!(serde_json::from_str::<Rlimits>(r#"{"core":{"soft":-1,"hard":1}}"#).is_err());
        assert!(serde_json::from_str::<Rlimits>(r#"{"core":{"soft":"lots","hard":1}}"#).is_err());
    }
}
