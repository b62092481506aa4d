//! `cron_restart`: PM2's cron patterns (croner's, as PM2 uses): five fields, or six with
//! seconds first; evaluated in the machine's local time, as cron and PM2 do.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// Checks a pattern: it must parse, and match some time in the next ten years (`0 0 30 2 *`
/// never does).
pub fn check_cron(pattern: &str) -> Result<(), String> {
    let cron = croner::Cron::from_str(pattern).map_err(|e| {
        format!("invalid cron pattern {pattern:?} ({e}): write 5 fields (\"0 4 * * *\": 04:00 every day) or 6 with seconds first")
    })?;
    let now = chrono::Utc::now();
    match cron.find_next_occurrence(&now, false) {
        Ok(next) if next - now <= chrono::Duration::days(3660) => Ok(()),
        _ => Err(format!("cron pattern {pattern:?} never matches: check its day and month")),
    }
}

/// The first time after `after` that `pattern` matches, in the machine's local time zone.
/// Reads the time zone (`/etc/localtime`, `TZ`): call it off any async runtime.
pub fn next_cron_time(pattern: &str, after: SystemTime) -> Option<SystemTime> {
    let cron = croner::Cron::from_str(pattern).ok()?;
    let after: chrono::DateTime<chrono::Local> = after.into();
    let next = cron.find_next_occurrence(&after, false).ok()?;
    let ms = u64::try_from(next.timestamp_millis()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_checked_and_their_next_time_found() {
        for good in ["0 4 * * *", "*/5 * * * * *", "0 0 * * MON", "30 2 1 * *"] {
            assert_eq!(check_cron(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("", "invalid cron pattern"),
            ("every day", "invalid cron pattern"),
            ("61 * * * *", "invalid cron pattern"),
            ("0 0 30 2 *", "never matches"),
        ] {
            let err = check_cron(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let next = next_cron_time("*/5 * * * * *", at).unwrap();
        assert_eq!(next.duration_since(at).unwrap(), Duration::from_secs(5), "1e9 is a multiple of 5");
        let again = next_cron_time("*/5 * * * * *", next).unwrap();
        assert_eq!(again.duration_since(next).unwrap(), Duration::from_secs(5), "strictly after");
    }
}
