//! `--start-at`: parsed (RFC 3339 or Unix seconds) and checked against the clock when the config
//! is validated; the wait for it is `engine::start`'s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Error;

/// The furthest ahead `--start-at` may lie: beyond this it is almost certainly a typo (a
/// millisecond timestamp, a wrong year) and loadgen would otherwise sit idle holding connections.
pub const START_AT_MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// How far in the past `--start-at` may lie and still mean "now": worker processes are started
/// a moment after the parent checked the time, and hosts' clocks differ by a little.
pub const START_AT_PAST_SLACK: Duration = Duration::from_secs(5);

/// Parses `--start-at`: RFC 3339 (`2026-11-27T10:00:00Z`) or Unix seconds (`1795000000`, `.5`
/// fractions allowed).
pub fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(format!("--start-at {s:?} is not a time"));
        }
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    humantime::parse_rfc3339_weak(t).map_err(|e| {
        format!("--start-at {s:?} is neither RFC 3339 (2026-11-27T10:00:00Z) nor Unix seconds: {e}")
    })
}

/// Refuses a start time well in the past or absurdly far ahead of `now`.
pub fn check_start_at(start_at: SystemTime, now: SystemTime) -> Result<(), Error> {
    let shown = humantime::format_rfc3339_millis(start_at);
    if let Ok(past) = now.duration_since(start_at) {
        if past > START_AT_PAST_SLACK {
            return Err(Error::Config(format!(
                "--start-at {shown} is {:.1}s in the past; give a time after every loadgen has \
                 started (e.g. now + 30s)",
                past.as_secs_f64()
            )));
        }
    } else if let Ok(ahead) = start_at.duration_since(now) {
        if ahead > START_AT_MAX_AHEAD {
            return Err(Error::Config(format!(
                "--start-at {shown} is {:.0}s ahead, more than the {}h loadgen waits at most \
                 (a millisecond timestamp or a wrong date?)",
                ahead.as_secs_f64(),
                START_AT_MAX_AHEAD.as_secs() / 3600
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_at_parses_rfc3339_and_unix_seconds() {
        let rfc = parse_start_at("2026-11-27T10:00:00Z").unwrap();
        let unix = parse_start_at("1795773600").unwrap();
        assert_eq!(rfc, unix);
        assert_eq!(
            parse_start_at("1795773600.5").unwrap(),
            unix + Duration::from_millis(500)
        );
        assert!(parse_start_at("tomorrow").unwrap_err().contains("RFC 3339"));
        assert!(parse_start_at("-3").is_err());
    }

    #[test]
    fn start_at_refuses_the_past_and_the_far_future() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(check_start_at(now + Duration::from_secs(60), now).is_ok());
        assert!(check_start_at(now - Duration::from_secs(2), now).is_ok());
        let past = check_start_at(now - Duration::from_secs(3600), now).unwrap_err();
        assert!(past.to_string().contains("3600.0s in the past"), "{past}");
        let far = check_start_at(now + Duration::from_secs(48 * 3600), now).unwrap_err();
        assert!(far.to_string().contains("24h"), "{far}");
    }
}
