//! Times on the command line: a point in time (RFC 3339, or a bare date) and a duration
//! (`500ms`, `10s`). RFC 3339 itself is [`crate::rfc3339`]'s, shared with the HTTP API.

use crate::rfc3339;

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time such as `2026-01-01T00:00:00Z` into
/// Unix nanoseconds.
///
/// # Errors
/// A message naming what is wrong and the expected shape.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let parsed = if s.len() == 10 {
        rfc3339::parse_unix_ns(&format!("{s}T00:00:00Z"))
    } else {
        rfc3339::parse_unix_ns(s)
    };
    parsed.map_err(|e| format!("{e} (expected a time like 2026-01-01T00:00:00Z, or a date)"))
}

/// Formats Unix nanoseconds as RFC 3339 in UTC.
pub fn format_rfc3339(ns: i64) -> String {
    rfc3339::format_unix_ns(ns)
}

/// Parses a duration like `500ms`, `10s`, `2m`, `1h` or a bare number of seconds.
///
/// # Errors
/// A message naming the accepted units.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 10s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1_000_000_000;

    #[test]
    fn dates_and_times() {
        assert_eq!(parse_rfc3339("2026-01-01"), Ok(1_767_225_600 * NS));
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00.5+01:00"),
            Ok(1_767_225_600 * NS + NS / 2)
        );
        for s in [
            "",
            "2026",
            "2026-13-01",
            "2025-02-29",
            "2026-01-01T00:00:00",
        ] {
            let err = parse_rfc3339(s).unwrap_err();
            assert!(err.contains("2026-01-01T00:00:00Z"), "{s}: {err}");
        }
        assert_eq!(
            format_rfc3339(1_700_000_000_123_000_000),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("10s").unwrap().as_secs(), 10);
        assert_eq!(parse_duration("2").unwrap().as_secs(), 2);
        assert_eq!(parse_duration("1.5m").unwrap().as_secs(), 90);
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }
}
