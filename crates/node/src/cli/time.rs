//! Times and durations on the command line: RFC 3339 timestamps, `15m ago`, `now`, and
//! durations such as `10s` or `1h 30m` (jiff's friendly format), all to ms since the epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::exit;

/// The accepted forms, for error messages.
pub(crate) const TIME_FORMS: &str =
    "an RFC 3339 time (2026-11-25T10:00:00Z), a duration ago (\"15m ago\", \"2h ago\") or \"now\"";

/// Milliseconds since the Unix epoch now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Parses a time given by the user into ms since the epoch.
///
/// # Errors
/// A usage error naming the accepted forms.
pub(crate) fn parse_time(text: &str) -> anyhow::Result<u64> {
    let trimmed = text.trim();
    let bad = |why: String| exit::usage(format!("bad time {text:?}: {why}; expected {TIME_FORMS}"));
    if trimmed.eq_ignore_ascii_case("now") {
        return Ok(now_ms());
    }
    if let Some(ago) = trimmed.strip_suffix("ago") {
        let duration = parse_duration(ago.trim()).map_err(|error| bad(error.to_string()))?;
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        return Ok(now_ms().saturating_sub(ms));
    }
    let timestamp: jiff::Timestamp = trimmed.parse().map_err(|e: jiff::Error| {
        // jiff's detail helps with a mistyped timestamp, not with a word like "yesterday".
        if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
            bad(e.to_string())
        } else {
            exit::usage(format!("bad time {text:?}: expected {TIME_FORMS}"))
        }
    })?;
    u64::try_from(timestamp.as_millisecond())
        .map_err(|_| bad("it is before 1970-01-01T00:00:00Z".into()))
}

/// Parses a duration: `500ms`, `10s`, `15m`, `2h`, `1h 30m`, `3d` (a day is 24 hours).
///
/// # Errors
/// What is wrong with it.
pub(crate) fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    // A plain number of days is the one unit jiff's signed durations refuse (days vary in
    // length in calendars); here a day is 24 hours.
    if let Some(days) = text.strip_suffix('d') {
        if let Ok(days) = days.trim().parse::<u64>() {
            return Ok(Duration::from_secs(days.saturating_mul(86_400)));
        }
    }
    let duration: jiff::SignedDuration = text
        .parse()
        .map_err(|error: jiff::Error| anyhow::anyhow!("bad duration {text:?}: {error}"))?;
    Duration::try_from(duration)
        .map_err(|_| anyhow::anyhow!("bad duration {text:?}: it must not be negative"))
}

/// A time in RFC 3339 (UTC, millisecond precision).
pub(crate) fn format_time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| ms.to_string(), |t| format!("{t:.3}"))
}

/// A duration for people: `850ms`, `12.5s`, `3m 4s`, `2h 3m`, `4d 2h`.
pub(crate) fn human_ms(ms: u64) -> String {
    let seconds = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {}s", seconds / 60, seconds % 60),
        3_600_000..86_400_000 => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_zone_or_offset() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(parse_time("1970-01-01T01:00:01+01:00").unwrap(), 1000);
        assert_eq!(
            parse_time("2026-11-25T10:00:00.250Z").unwrap(),
            1_795_600_800_250
        );
    }

    #[test]
    fn durations_ago() {
        let before = now_ms();
        let t = parse_time("15m ago").unwrap();
        assert!(t <= before - 15 * 60_000 + 5_000 && t + 15 * 60_000 >= before);
        assert!(parse_time("2h ago").unwrap() < before - 7_000_000);
        assert!(parse_time("1d ago").unwrap() < before - 86_000_000);
        assert!(parse_time("now").unwrap() >= before);
    }

    #[test]
    fn bad_times_are_usage_errors() {
        for bad in ["yesterday", "15 parsecs ago", "2026-13-01T00:00:00Z", ""] {
            let error = parse_time(bad).unwrap_err();
            let failure = error.downcast_ref::<exit::Failure>().unwrap();
            assert_eq!(failure.code, exit::USAGE, "{bad}");
        }
    }

    #[test]
    fn durations_and_formats() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(format_time(1000), "1970-01-01T00:00:01.000Z");
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(184_000), "3m 4s");
    }
}
