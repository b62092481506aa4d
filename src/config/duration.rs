//! Durations as users write them: `"250ms"`, `"10s"`, `"1m"`, or a bare number of milliseconds.

use std::time::Duration;

/// The longest duration a config may give: arithmetic on durations (deadlines, backoff)
/// then never overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a duration string; bare digits are milliseconds (as PM2 reads them). At most
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let too_long = || format!("duration {text:?} is longer than the limit of 365 days");
    let d = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>().map(Duration::from_millis).map_err(|_| too_long())?
    } else {
        humantime::parse_duration(t).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => too_long(),
            _ => {
                format!("invalid duration {text:?}: write e.g. \"250ms\", \"10s\", \"1m\" or a number of milliseconds")
            }
        })?
    };
    if d > MAX_DURATION {
        return Err(too_long());
    }
    // Durations cross the control socket and `dump.json` as whole milliseconds: a fraction
    // would be lost on the way, so the app would run with another value than its config says.
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!("duration {text:?} has a fraction of a millisecond: mcpd counts whole milliseconds"));
    }
    Ok(d)
}

/// Serde for a `Duration` as whole milliseconds, so JSON shows `"kill_timeout": 5000`.
pub mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Reads milliseconds, at most [`super::MAX_DURATION`] (a client other than the CLI, or an
    /// edited `dump.json`, must not hand the daemon a duration whose deadline overflows).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        checked(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    /// `ms` milliseconds, or why not.
    pub fn checked(ms: u64) -> Result<Duration, String> {
        let d = Duration::from_millis(ms);
        if d > super::MAX_DURATION {
            return Err(format!("a duration of {ms} ms is longer than the limit of 365 days"));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_milliseconds_are_bounded_like_written_ones() {
        let year = MAX_DURATION.as_millis() as u64;
        assert_eq!(duration_ms::checked(year), Ok(MAX_DURATION));
        for ms in [year + 1, u64::MAX] {
            let error = duration_ms::checked(ms).unwrap_err();
            assert!(error.contains("longer than the limit of 365 days"), "{error}");
        }
    }

    #[test]
    fn durations() {
        let cases: [(&str, Option<u64>); 15] = [
            ("250ms", Some(250)),
            ("10s", Some(10_000)),
            ("1m", Some(60_000)),
            ("1m 30s", Some(90_000)),
            ("1500", Some(1500)),
            ("0", Some(0)),
            ("5x", None),
            ("", None),
            ("-1s", None),
            ("365days", Some(365 * 24 * 3600 * 1000)),
            ("366days", None),
            ("10000000000000000000s", None),
            ("99999999999999999999999", None),
            ("1.5s", Some(1500)),
            ("1500us", None),
        ];
        for (text, want) in cases {
            let got = parse_duration(text).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, want, "parsing {text:?}");
        }
    }
}
