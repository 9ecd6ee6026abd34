//! RFC 3339 timestamps (`2024-01-15T10:30:00.5Z`) to and from Unix nanoseconds, and Go-style
//! durations (`2h15m30s`), as the original's HTTP JSON used them. No calendar crate needed: the
//! proleptic Gregorian conversions below are Howard Hinnant's `days_from_civil` algorithms.

use std::time::Duration;

const NS_PER_SEC: i64 = 1_000_000_000;

/// Why a timestamp did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
pub struct ParseError {
    input: String,
    reason: &'static str,
}

/// Formats Unix nanoseconds as RFC 3339 in UTC, with the fraction trimmed of trailing zeros
/// (Go's `RFC3339Nano`).
pub fn format_unix_ns(ns: i64) -> String {
    let secs = ns.div_euclid(NS_PER_SEC);
    let nanos = ns.rem_euclid(NS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parses an RFC 3339 timestamp (`T` or space separator, optional fraction up to 9 digits, `Z`
/// or a `±HH:MM` offset) into Unix nanoseconds.
///
/// # Errors
/// A [`ParseError`] naming what is wrong; never panics on any input.
pub fn parse_unix_ns(input: &str) -> Result<i64, ParseError> {
    let err = |reason| ParseError {
        input: input.chars().take(64).collect(),
        reason,
    };
    let b = input.as_bytes();
    if b.len() < 20 {
        return Err(err("too short"));
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, ParseError> {
        let digits = &b[range];
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(err("expected digits"));
        }
        Ok(digits
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return Err(err("no such date"));
    }
    if h > 23 || mi > 59 || s > 60 {
        return Err(err("no such time of day"));
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start || end - start > 9 {
            return Err(err("a fraction needs 1 to 9 digits"));
        }
        nanos = num(start..end)? * 10i64.pow(9 - (end - start) as u32);
        i = end;
    }
    let offset_secs = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err(err("no such UTC offset"));
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return Err(err("expected Z or a ±HH:MM offset at the end")),
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s.min(59) - offset_secs;
    i64::try_from(i128::from(secs) * i128::from(NS_PER_SEC) + i128::from(nanos))
        .map_err(|_| err("out of the range of Unix nanoseconds (years 1678 to 2262)"))
}

/// Formats a duration as Go does (`2h15m30.5s`, `1m0s`, `250ms`), to millisecond precision.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let (s, frac) = (ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        out.push('.');
        out.push_str(format!("{frac:03}").trim_end_matches('0'));
    }
    out.push('s');
    out
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(format_unix_ns(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_ns(-1), "1969-12-31T23:59:59.999999999Z");
        let ns = 1_705_314_600_500_000_000;
        assert_eq!(format_unix_ns(ns), "2024-01-15T10:30:00.5Z");
        assert_eq!(parse_unix_ns("2024-01-15T10:30:00.5Z"), Ok(ns));
        assert_eq!(parse_unix_ns("2024-01-15T11:30:00.500+01:00"), Ok(ns));
        assert_eq!(
            parse_unix_ns("2024-02-29T00:00:00Z")
                .map(format_unix_ns)
                .as_deref(),
            Ok("2024-02-29T00:00:00Z")
        );
        for t in [0i64, 1, -1, 951_782_400_123_456_789, i64::MAX, i64::MIN + 1] {
            assert_eq!(parse_unix_ns(&format_unix_ns(t)), Ok(t), "{t}");
        }
    }

    #[test]
    fn rejects_without_panicking() {
        for bad in [
            "",
            "2024-01-15",
            "2024-01-15T10:30:00",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:30:00.Z",
            "2024-01-15T10:30:00.1234567890Z",
            "2024-01-15T10:30:00+1:00",
            "2024-01-15T10:30:00+01:00x",
            "９９９９-01-15T10:30:00Z",
            "2024-01-15T10:30:00ééZ",
            "9999-12-31T23:59:59Z",
        ] {
            assert!(parse_unix_ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(
            format_duration(Duration::from_millis(8_130_500)),
            "2h15m30.5s"
        );
    }
}
