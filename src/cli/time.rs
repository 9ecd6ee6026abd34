//! Wall-clock times for people: RFC 3339 (`2026-01-01T00:00:00Z`) to Unix nanoseconds and back,
//! without a date library (proleptic Gregorian calendar, UTC).

/// Nanoseconds per second.
const NS: i64 = 1_000_000_000;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
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

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into Unix nanoseconds.
///
/// # Errors
/// A message naming the expected shape.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a time like 2026-01-01T00:00:00Z");
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = b.get(from..from + len).ok_or_else(bad)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(part)
            .map_err(|_| bad())?
            .parse()
            .map_err(|_| bad())
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, m, d) = (num(0, 4)?, num(5, 2)? as u32, num(8, 2)? as u32);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(format!("{s:?} is not a valid date"));
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    let mut nanos = 0i64;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let (hh, mm, ss) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        if hh > 23 || mm > 59 || ss > 60 {
            return Err(format!("{s:?} is not a valid time of day"));
        }
        secs += hh * 3600 + mm * 60 + ss;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let digits = &s[start..i];
            if digits.is_empty() {
                return Err(bad());
            }
            let kept: String = digits.chars().take(9).collect();
            nanos = kept.parse::<i64>().map_err(|_| bad())? * 10i64.pow(9 - kept.len() as u32);
        }
        match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => {}
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let offset = num(i + 1, 2)? * 3600 + num(i + 4, 2)? * 60;
                secs -= if *sign == b'+' { offset } else { -offset };
            }
            _ => return Err(format!("{s:?} needs a zone: Z or ±HH:MM")),
        }
    }
    secs.checked_mul(NS)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// Formats Unix nanoseconds as RFC 3339 in UTC with the fraction that is needed (none, ms, µs or
/// ns).
pub fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(NS);
    let frac = ns.rem_euclid(NS);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let fraction = if frac == 0 {
        String::new()
    } else if frac % 1_000_000 == 0 {
        format!(".{:03}", frac / 1_000_000)
    } else if frac % 1000 == 0 {
        format!(".{:06}", frac / 1000)
    } else {
        format!(".{frac:09}")
    };
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{fraction}Z")
}

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
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

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00Z"),
            Ok(1_767_225_600 * NS)
        );
        assert_eq!(parse_rfc3339("2026-01-01"), Ok(1_767_225_600 * NS));
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00.5+01:00"),
            Ok(1_767_225_600 * NS + NS / 2)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-NS));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.000000001Z"),
            Ok(1_709_208_000 * NS + 1)
        );
    }

    #[test]
    fn rejects_bad_shapes() {
        for s in [
            "",
            "2026",
            "2026-13-01",
            "2025-02-29",
            "2026-01-01T00:00:00",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "x026-01-01",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
    }

    #[test]
    fn format_round_trips() {
        for ns in [
            0,
            -1,
            1_767_225_600 * NS,
            1_709_208_000 * NS + 1,
            1_700_000_000_123_000_000,
            -86_400 * NS * 365 * 3 + 17,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Ok(ns), "{ns}");
        }
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
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
