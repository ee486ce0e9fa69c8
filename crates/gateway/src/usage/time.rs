//! Wall-clock time as unix milliseconds (the unit every usage table stores), and the two text
//! forms the uni-api endpoints speak: ISO 8601 / unix-timestamp input and Python's
//! `datetime.isoformat(timespec="seconds")` output for UTC (`2024-05-01T12:00:00+00:00`).

use std::time::{SystemTime, UNIX_EPOCH};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
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

/// `2024-05-01T12:00:00+00:00`: what Python prints for an aware UTC datetime with
/// `timespec="seconds"`, so clients parsing uni-api's answers read ours unchanged.
pub fn format_iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A parsed point in time; `date_only` tells `2024-05-01` from `2024-05-01T00:00:00`, because
/// an end bound given as a bare date means "through the end of that day".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub ms: i64,
    pub date_only: bool,
}

/// A unix timestamp in seconds (`1714564800`, `1714564800.5`) or ISO 8601 (`2024-05-01`,
/// `2024-05-01T12:00`, `2024-05-01 12:00:00.25Z`, `...+08:00`); no zone means UTC. These are
/// the inputs uni-api's `parse_datetime_input` accepts.
pub fn parse_datetime(input: &str) -> Result<Parsed, String> {
    let s = input.trim();
    let invalid = || {
        format!(
            "Invalid datetime format: {input}. Use ISO 8601 (YYYY-MM-DDTHH:MM:SSZ) or Unix timestamp."
        )
    };
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 1e13 {
            return Err(invalid());
        }
        // In range by the check above, so the cast is exact enough (milliseconds).
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Parsed {
            ms: (secs * 1000.0).round() as i64,
            date_only: false,
        });
    }
    parse_iso(s).ok_or_else(invalid)
}

fn parse_iso(s: &str) -> Option<Parsed> {
    let b = s.as_bytes();
    let mut i = 0usize;
    let num = |i: &mut usize, min: usize, max: usize| -> Option<i64> {
        let start = *i;
        while *i < b.len() && *i - start < max && b.get(*i)?.is_ascii_digit() {
            *i += 1;
        }
        if *i - start < min {
            return None;
        }
        s.get(start..*i)?.parse().ok()
    };
    let eat = |i: &mut usize, c: u8| -> bool {
        if b.get(*i) == Some(&c) {
            *i += 1;
            true
        } else {
            false
        }
    };
    let year = num(&mut i, 4, 4)?;
    if !eat(&mut i, b'-') {
        return None;
    }
    let month = num(&mut i, 2, 2)?;
    if !eat(&mut i, b'-') {
        return None;
    }
    let day = num(&mut i, 2, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * DAY_MS;
    if i == b.len() {
        return Some(Parsed {
            ms,
            date_only: true,
        });
    }
    if !(eat(&mut i, b'T') || eat(&mut i, b't') || eat(&mut i, b' ')) {
        return None;
    }
    let hour = num(&mut i, 2, 2)?;
    let (mut minute, mut second, mut frac_ms) = (0, 0, 0);
    if eat(&mut i, b':') {
        minute = num(&mut i, 2, 2)?;
        if eat(&mut i, b':') {
            second = num(&mut i, 2, 2)?;
            if eat(&mut i, b'.') || eat(&mut i, b',') {
                let start = i;
                num(&mut i, 1, 9)?;
                let digits = s.get(start..i)?;
                let padded: String = digits.chars().chain("000".chars()).take(3).collect();
                frac_ms = padded.parse::<i64>().ok()?;
            }
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    ms += ((hour * 60 + minute) * 60 + second) * 1000 + frac_ms;
    while eat(&mut i, b' ') {}
    if i == b.len() || eat(&mut i, b'Z') || eat(&mut i, b'z') {
        return (i == b.len()).then_some(Parsed {
            ms,
            date_only: false,
        });
    }
    let sign = if eat(&mut i, b'+') {
        1
    } else if eat(&mut i, b'-') {
        -1
    } else {
        return None;
    };
    let oh = num(&mut i, 2, 2)?;
    eat(&mut i, b':');
    let om = if i < b.len() { num(&mut i, 2, 2)? } else { 0 };
    if i != b.len() || oh > 23 || om > 59 {
        return None;
    }
    Some(Parsed {
        ms: ms - sign * (oh * 60 + om) * 60_000,
        date_only: false,
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_isoformat() {
        assert_eq!(format_iso(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(format_iso(1_714_564_800_999), "2024-05-01T12:00:00+00:00");
        assert_eq!(format_iso(951_782_400_000), "2000-02-29T00:00:00+00:00");
        assert_eq!(format_iso(-1000), "1969-12-31T23:59:59+00:00");
    }

    #[test]
    fn parses_unix_and_iso_inputs() {
        let p = |s| parse_datetime(s).map(|p| (p.ms, p.date_only));
        assert_eq!(p("1714564800"), Ok((1_714_564_800_000, false)));
        assert_eq!(p("1714564800.25"), Ok((1_714_564_800_250, false)));
        assert_eq!(p("2024-05-01"), Ok((1_714_521_600_000, true)));
        assert_eq!(p("2024-05-01T12:00:00Z"), Ok((1_714_564_800_000, false)));
        assert_eq!(p("2024-05-01T12:00"), Ok((1_714_564_800_000, false)));
        assert_eq!(p("2024-05-01 12:00:00.5 Z"), Ok((1_714_564_800_500, false)));
        assert_eq!(
            p("2024-05-01T20:00:00+08:00"),
            Ok((1_714_564_800_000, false))
        );
        assert_eq!(
            p("2024-05-01T07:30:00-0430"),
            Ok((1_714_564_800_000, false))
        );
        for bad in [
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-05-01T25:00",
            "2024-05-01Tx",
            "2024-05-01T12:00:00+8",
            "",
        ] {
            let err = parse_datetime(bad).expect_err(bad);
            assert!(err.starts_with("Invalid datetime format"), "{err}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 59, 60, 365, 10_957, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
