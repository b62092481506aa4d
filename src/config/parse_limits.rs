//! The keys of the restart policy, memory limit, watchdog, health check and resource limits.

use super::{type_name, Walker};
use crate::config::{parse_size, AppConfig, HealthCheck, Probe, Ready, RestartMode, Rlimit, RlimitValue, Rlimits};
use std::ops::Range;
use std::time::Duration;
use toml_edit::{Item, Value};

/// A value as the config has it, for an error message.
fn value_text(v: &Item) -> String {
    match (v.as_str(), v.as_integer()) {
        (Some(s), _) => format!("{s:?}"),
        (_, Some(n)) => n.to_string(),
        _ => type_name(v).to_string(),
    }
}

impl Walker<'_> {
    /// Parses `key` into `cfg` if it is one of these keys; false if it is not.
    pub(super) fn limit_key(
        &mut self,
        key: &str,
        value: &Item,
        kpath: &str,
        span: Range<usize>,
        cfg: &mut AppConfig,
    ) -> bool {
        let r = &mut cfg.restarts;
        match key {
            "restart" => {
                if let Some(text) = self.string(value, kpath, span.clone()) {
                    match RestartMode::parse(&text) {
                        Ok(mode) => r.restart = mode,
                        Err(e) => self.error(span, kpath, e),
                    }
                }
            }
            "stop_exit_codes" => r.stop_exit_codes = self.exit_codes(value, kpath, span),
            "exp_backoff_restart_delay" => r.exp_backoff_restart_delay = self.duration(value, kpath, span),
            "exp_backoff_factor" => {
                let factor = value.as_float().or_else(|| value.as_integer().map(|i| i as f64));
                match factor {
                    Some(f) if (1.0..=10.0).contains(&f) => r.exp_backoff_factor = f,
                    _ => self.error(span, kpath, "expected a number from 1 to 10, e.g. 1.5".into()),
                }
            }
            "exp_backoff_max" => r.exp_backoff_max = self.duration(value, kpath, span).unwrap_or(r.exp_backoff_max),
            "exp_backoff_reset" => {
                r.exp_backoff_reset = self.duration(value, kpath, span).unwrap_or(r.exp_backoff_reset)
            }
            "min_uptime" => r.min_uptime = self.duration(value, kpath, span).unwrap_or(r.min_uptime),
            "max_restarts" => match value.as_integer().and_then(|i| u32::try_from(i).ok()) {
                Some(n) => r.max_restarts = n,
                None => {
                    self.error(span, kpath, format!("expected a whole number of restarts, found {}", type_name(value)))
                }
            },
            "max_memory_restart" => {
                if let Some(bytes) = self.size(value, kpath, span) {
                    cfg.limits.max_memory_restart = Some(bytes);
                }
            }
            "memory_check_interval" => match self.duration(value, kpath, span.clone()) {
                Some(d) if d >= Duration::from_millis(100) => cfg.limits.memory_check_interval = d,
                Some(_) => self.error(span, kpath, "must be at least 100ms".into()),
                None => {}
            },
            "watchdog" => match self.duration(value, kpath, span.clone()) {
                Some(d) if d >= Duration::from_millis(100) => cfg.limits.watchdog = Some(d),
                Some(_) => self.error(span, kpath, "must be at least 100ms".into()),
                None => {}
            },
            "health" => cfg.limits.health = self.health(value, kpath, span),
            "memory_max" => cfg.limits.memory_max = self.size(value, kpath, span),
            "memory_high" => cfg.limits.memory_high = self.size(value, kpath, span),
            "tasks_max" => match value.as_integer().and_then(|i| u64::try_from(i).ok()).filter(|&n| n >= 1) {
                Some(n) => cfg.limits.tasks_max = Some(n),
                None => self.error(
                    span,
                    kpath,
                    format!("expected a whole number of processes of at least 1, found {}", type_name(value)),
                ),
            },
            "cpu_quota" => {
                let percent =
                    value.as_str().and_then(|t| t.trim().strip_suffix('%')).and_then(|n| n.trim().parse::<u32>().ok());
                match percent {
                    Some(p) if (1..=100_000).contains(&p) => cfg.limits.cpu_quota = Some(p),
                    _ => self.error(
                        span,
                        kpath,
                        "expected a percentage of one CPU as a string, e.g. \"50%\" (half a CPU) or \"200%\" (two)"
                            .into(),
                    ),
                }
            }
            "rlimits" => cfg.rlimits = self.rlimits(value, kpath, span),
            _ => return false,
        }
        true
    }

    pub(super) fn front(
        &mut self,
        item: &Item,
        key: &str,
        span: Range<usize>,
        base: &std::path::Path,
    ) -> Option<crate::config::FrontConfig> {
        let Some(table) = item.as_table_like() else {
            self.error(span, key, "expected a table like { listen = \"127.0.0.1:3000\" }".into());
            return None;
        };
        let mut listen = None;
        let (mut idle, mut deadline, mut header_timeout) = (None, None, None);
        let (mut max_connections, mut max_body) = (None, None);
        for (k, v) in table.iter() {
            let kpath = format!("{key}.{k}");
            let vspan = v.span().unwrap_or(span.clone());
            match k {
                "listen" => {
                    let Some(text) = self.string(v, &kpath, vspan.clone()) else { continue };
                    match crate::config::ListenAddr::parse_public(&text, base) {
                        Ok(addr) => listen = Some(addr),
                        Err(e) => self.error(vspan, &kpath, e),
                    }
                }
                "session_idle_timeout" => idle = self.duration(v, &kpath, vspan),
                "drain_deadline" => deadline = self.duration(v, &kpath, vspan),
                "header_timeout" => match self.duration(v, &kpath, vspan.clone()) {
                    Some(d) if d >= Duration::from_millis(100) => header_timeout = Some(d),
                    Some(_) => self.error(vspan, &kpath, "must be at least 100ms".into()),
                    None => {}
                },
                "max_connections" => match v.as_integer().and_then(|n| usize::try_from(n).ok()).filter(|n| *n > 0) {
                    Some(n) => max_connections = Some(n),
                    None => self.error(
                        vspan,
                        &kpath,
                        format!("expected a whole number of connections above 0, found {}", type_name(v)),
                    ),
                },
                "max_body" => max_body = self.size(v, &kpath, vspan),
                other => self.error(
                    vspan,
                    &kpath,
                    format!(
                        "unknown key {other:?}; use listen, session_idle_timeout, drain_deadline, max_connections, header_timeout, max_body"
                    ),
                ),
            }
        }
        let Some(listen) = listen else {
            self.error(span, key, "needs listen = \"127.0.0.1:PORT\" (the public socket)".into());
            return None;
        };
        let mut front = crate::config::FrontConfig::new(listen);
        front.session_idle_timeout = idle.unwrap_or(front.session_idle_timeout);
        front.drain_deadline = deadline.unwrap_or(front.drain_deadline);
        front.header_timeout = header_timeout.unwrap_or(front.header_timeout);
        front.max_connections = max_connections.unwrap_or(front.max_connections);
        front.max_body = max_body.unwrap_or(front.max_body);
        Some(front)
    }

    /// `stdio = { sessions = "per-session", warm = 1, max_sessions = 100 }`.
    pub(super) fn stdio(&mut self, item: &Item, key: &str, span: Range<usize>) -> Option<crate::config::StdioConfig> {
        use crate::config::{StdioConfig, StdioSessions, MAX_STDIO_WARM};
        let Some(table) = item.as_table_like() else {
            self.error(span, key, "expected a table like { sessions = \"per-session\", warm = 1 }".into());
            return None;
        };
        let mut stdio = StdioConfig::default();
        let mut ok = true;
        for (k, v) in table.iter() {
            let kpath = format!("{key}.{k}");
            let vspan = v.span().unwrap_or(span.clone());
            let count = |v: &Item| v.as_integer().and_then(|n| u32::try_from(n).ok());
            match k {
                "sessions" => match v.as_str() {
                    Some("per-session") => stdio.sessions = StdioSessions::PerSession,
                    Some("shared") => stdio.sessions = StdioSessions::Shared,
                    _ => {
                        ok = false;
                        self.error(
                            vspan,
                            &kpath,
                            format!("expected \"per-session\" or \"shared\", found {}", value_text(v)),
                        );
                    }
                },
                "warm" => match count(v).filter(|n| *n <= MAX_STDIO_WARM) {
                    Some(n) => stdio.warm = n,
                    None => {
                        ok = false;
                        self.error(
                            vspan,
                            &kpath,
                            format!(
                                "expected a number of children from 0 to {MAX_STDIO_WARM}, found {}",
                                value_text(v)
                            ),
                        );
                    }
                },
                "max_sessions" => match count(v).filter(|n| (1..=100_000).contains(n)) {
                    Some(n) => stdio.max_sessions = n,
                    None => {
                        ok = false;
                        self.error(
                            vspan,
                            &kpath,
                            format!("expected a number of sessions from 1 to 100000, found {}", value_text(v)),
                        );
                    }
                },
                other => {
                    ok = false;
                    let kspan = table.key(other).and_then(|k| k.span()).unwrap_or(vspan);
                    self.error(kspan, &kpath, format!("unknown key {other:?}; use sessions, warm, max_sessions"));
                }
            }
        }
        ok.then_some(stdio)
    }

    /// A size above 0: bytes, or text like `"512M"`.
    fn size(&mut self, item: &Item, key: &str, span: Range<usize>) -> Option<u64> {
        let size = match item.as_integer() {
            // Bytes, held to the same limit as text.
            Some(bytes) => u64::try_from(bytes)
                .map_err(|_| "a size must not be negative".to_string())
                .and_then(|n| parse_size(&n.to_string())),
            None => match item.as_str() {
                Some(text) => parse_size(text),
                None => Err(format!("expected a size like \"512M\", found {}", type_name(item))),
            },
        };
        match size {
            Ok(0) => self.error(span, key, "must be above 0".into()),
            Ok(bytes) => return Some(bytes),
            Err(e) => self.error(span, key, e),
        }
        None
    }

    /// `{ nofile = 65536, core = 0, stack = "8388608:infinity" }`. Whether soft <= hard is
    /// checked with the values no process can be given (`checks::value_problems`).
    fn rlimits(&mut self, item: &Item, key: &str, span: Range<usize>) -> Rlimits {
        let mut out = Rlimits::new();
        let Some(table) = item.as_table_like() else {
            let found = type_name(item);
            self.error(span, key, format!("expected a table like {{ nofile = 65536, core = 0 }}, found {found}"));
            return out;
        };
        for (name, value) in table.iter() {
            let kpath = format!("{key}.{name}");
            let vspan = value.span().unwrap_or(span.clone());
            let resource = match crate::config::Resource::parse(name) {
                Ok(resource) => resource,
                Err(e) => {
                    let kspan = table.key(name).and_then(|k| k.span()).unwrap_or(vspan);
                    self.error(kspan, &kpath, e);
                    continue;
                }
            };
            let limit = match value.as_value() {
                Some(Value::Integer(n)) => {
                    u64::try_from(*n.value()).map(|n| Rlimit::both(RlimitValue::Limited(n))).map_err(|_| {
                        format!("{} is negative: write a whole number of at least 0, or \"infinity\"", n.value())
                    })
                }
                Some(Value::String(text)) => Rlimit::parse(text.value()),
                _ => Err(format!(
                    "expected a whole number, \"infinity\" or \"SOFT:HARD\" (e.g. \"1024:65536\"), found {}",
                    type_name(value)
                )),
            };
            match limit {
                Ok(limit) => {
                    out.insert(resource, limit);
                }
                Err(e) => self.error(vspan, &kpath, e),
            }
        }
        out
    }

    fn exit_codes(&mut self, item: &Item, key: &str, span: Range<usize>) -> Vec<i32> {
        let Some(array) = item.as_array() else {
            self.error(span, key, format!("expected an array of exit codes like [0, 3], found {}", type_name(item)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in array.iter().enumerate() {
            match v.as_integer().and_then(|c| u8::try_from(c).ok()) {
                Some(code) => out.push(i32::from(code)),
                None => self.error(
                    v.span().unwrap_or(span.clone()),
                    &format!("{key}[{i}]"),
                    "expected an exit code from 0 to 255".into(),
                ),
            }
        }
        out
    }

    fn health(&mut self, item: &Item, key: &str, span: Range<usize>) -> Option<HealthCheck> {
        let Some(table) = item.as_table_like() else {
            self.error(
                span,
                key,
                "expected a table like { http = \"http://127.0.0.1:3000/health\", interval = \"10s\" }".into(),
            );
            return None;
        };
        let mut check = HealthCheck {
            probe: Probe::Tcp { addr: String::new() },
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            failures: 3,
        };
        let mut probe = None;
        for (k, v) in table.iter() {
            let kpath = format!("{key}.{k}");
            let vspan = v.span().unwrap_or(span.clone());
            match k {
                "http" | "tcp" | "mcp" => {
                    let Some(text) = self.string(v, &kpath, vspan.clone()) else { continue };
                    let parsed = match k {
                        "http" => Ready::http(&text),
                        "tcp" => Ready::tcp(&text),
                        _ => Ready::mcp(&text),
                    };
                    match parsed {
                        Ok(Ready::Http { url }) if probe.is_none() => probe = Some(Probe::Http { url }),
                        Ok(Ready::Tcp { addr }) if probe.is_none() => probe = Some(Probe::Tcp { addr }),
                        Ok(Ready::Mcp { url }) if probe.is_none() => probe = Some(Probe::Mcp { url }),
                        Ok(_) => self.error(vspan, &kpath, "give only one of http or tcp".into()),
                        Err(e) => self.error(vspan, &kpath, e),
                    }
                }
                "interval" => match self.duration(v, &kpath, vspan.clone()) {
                    Some(d) if d >= Duration::from_millis(100) => check.interval = d,
                    Some(_) => self.error(vspan, &kpath, "must be at least 100ms".into()),
                    None => {}
                },
                "timeout" => match self.duration(v, &kpath, vspan.clone()) {
                    Some(d) if d >= Duration::from_millis(1) => check.timeout = d,
                    Some(_) => self.error(vspan, &kpath, "must be more than 0ms".into()),
                    None => {}
                },
                "failures" => match v.as_integer().and_then(|n| u32::try_from(n).ok()).filter(|n| *n >= 1) {
                    Some(n) => check.failures = n,
                    None => self.error(vspan, &kpath, "expected a whole number of at least 1".into()),
                },
                other => self.error(
                    vspan,
                    &kpath,
                    format!("unknown key {other:?}; use http or tcp, interval, timeout, failures"),
                ),
            }
        }
        match probe {
            Some(p) => {
                check.probe = p;
                Some(check)
            }
            None => {
                self.error(span, key, "needs http = URL or tcp = ADDR".into());
                None
            }
        }
    }
}
