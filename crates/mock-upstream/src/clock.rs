//! Time for the limiter: a wall or virtual millisecond clock anchored to an
//! absolute origin, plus the calendar arithmetic the providers' windows need
//! (UTC civil dates, RFC 3339, midnight in America/Los_Angeles).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A virtual clock: milliseconds since the server's clock origin.
pub(crate) type ClockFn = Arc<dyn Fn() -> u64 + Send + Sync>;

pub(crate) const MINUTE_MS: u64 = 60_000;
pub(crate) const DAY_MS: u64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

pub(crate) struct Clock {
    /// Unix milliseconds that clock value 0 stands for.
    origin_unix_ms: u64,
    started: Instant,
    has_virtual: AtomicBool,
    virtual_clock: RwLock<Option<ClockFn>>,
}

impl Clock {
    pub fn new(origin: Option<SystemTime>) -> Clock {
        let origin = origin.unwrap_or_else(SystemTime::now);
        let origin_unix_ms = origin
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock {
            origin_unix_ms,
            started: Instant::now(),
            has_virtual: AtomicBool::new(false),
            virtual_clock: RwLock::new(None),
        }
    }

    pub fn set(&self, clock: Option<ClockFn>) {
        let on = clock.is_some();
        *self
            .virtual_clock
            .write()
            .unwrap_or_else(|e| e.into_inner()) = clock;
        self.has_virtual.store(on, Ordering::Release);
    }

    /// Milliseconds since the origin (virtual when set, else wall).
    pub fn now_ms(&self) -> u64 {
        if self.has_virtual.load(Ordering::Acquire) {
            let guard = self.virtual_clock.read().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = guard.as_ref() {
                return f();
            }
        }
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Unix milliseconds now.
    pub fn unix_ms(&self) -> u64 {
        self.origin_unix_ms.saturating_add(self.now_ms())
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number (inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day of the week, 0 = Sunday.
fn weekday(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

/// The `n`th (1-based) Sunday of a month, as a day number.
fn nth_sunday(y: i64, m: u32, n: i64) -> i64 {
    let first = days_from_civil(y, m, 1);
    let to_sunday = (7 - weekday(first)) % 7;
    first + to_sunday + 7 * (n - 1)
}

/// UTC offset of America/Los_Angeles at a Unix instant, in milliseconds.
/// US rules since 2007: PDT (UTC−7) from the second Sunday of March 02:00
/// PST (10:00 UTC) to the first Sunday of November 02:00 PDT (09:00 UTC);
/// PST (UTC−8) otherwise.
pub(crate) fn pacific_offset_ms(unix_ms: i64) -> i64 {
    let (year, _, _) = civil_from_days(unix_ms.div_euclid(DAY_MS as i64));
    let start = nth_sunday(year, 3, 2) * DAY_MS as i64 + 10 * HOUR_MS;
    let end = nth_sunday(year, 11, 1) * DAY_MS as i64 + 9 * HOUR_MS;
    if (start..end).contains(&unix_ms) {
        -7 * HOUR_MS
    } else {
        -8 * HOUR_MS
    }
}

/// The Pacific calendar day (days since 1970-01-01, local) containing `unix_ms`.
pub(crate) fn pacific_day(unix_ms: u64) -> u64 {
    let t = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    let local = t + pacific_offset_ms(t);
    u64::try_from(local.div_euclid(DAY_MS as i64)).unwrap_or(0)
}

/// The Unix instant of the next midnight in America/Los_Angeles after `unix_ms`.
pub(crate) fn next_pacific_midnight(unix_ms: u64) -> u64 {
    let next_day = i64::try_from(pacific_day(unix_ms)).unwrap_or(0) + 1;
    let local_midnight = next_day * DAY_MS as i64;
    // Midnight is never inside a DST transition (they happen at 02:00), so
    // exactly one of the two offsets is self-consistent.
    for offset in [-8 * HOUR_MS, -7 * HOUR_MS] {
        let utc = local_midnight - offset;
        if pacific_offset_ms(utc) == offset {
            return u64::try_from(utc).unwrap_or(0);
        }
    }
    u64::try_from(local_midnight + 8 * HOUR_MS).unwrap_or(0)
}

/// `2025-08-21T12:40:59Z` (whole seconds, rounded up so that a reset time is
/// never earlier than the real one).
pub(crate) fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms.div_ceil(1000);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn unix(y: i64, m: u32, d: u32, h: i64, min: i64) -> u64 {
        u64::try_from(days_from_civil(y, m, d) * DAY_MS as i64 + h * HOUR_MS + min * 60_000)
            .unwrap()
    }

    #[test]
    fn civil_roundtrip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in [-1000, 0, 11_017, 19_000, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(weekday(days_from_civil(2025, 3, 9)), 0);
    }

    #[test]
    fn rfc3339_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(unix(2025, 8, 21, 12, 40) + 59_000),
            "2025-08-21T12:40:59Z"
        );
        assert_eq!(rfc3339(1), "1970-01-01T00:00:01Z");
    }

    #[test]
    fn pacific_dst_2025() {
        // DST 2025: 9 March 10:00 UTC to 2 November 09:00 UTC.
        assert_eq!(
            pacific_offset_ms(unix(2025, 3, 9, 9, 59) as i64),
            -8 * HOUR_MS
        );
        assert_eq!(
            pacific_offset_ms(unix(2025, 3, 9, 10, 0) as i64),
            -7 * HOUR_MS
        );
        assert_eq!(
            pacific_offset_ms(unix(2025, 11, 2, 8, 59) as i64),
            -7 * HOUR_MS
        );
        assert_eq!(
            pacific_offset_ms(unix(2025, 11, 2, 9, 0) as i64),
            -8 * HOUR_MS
        );
        // Midnights: PST before the switch, PDT after.
        assert_eq!(
            next_pacific_midnight(unix(2025, 3, 8, 20, 0)),
            unix(2025, 3, 9, 8, 0)
        );
        assert_eq!(
            next_pacific_midnight(unix(2025, 3, 9, 8, 0)),
            unix(2025, 3, 10, 7, 0)
        );
        assert_eq!(
            next_pacific_midnight(unix(2025, 11, 2, 6, 59)),
            unix(2025, 11, 2, 7, 0)
        );
        assert_eq!(
            next_pacific_midnight(unix(2025, 11, 2, 7, 0)),
            unix(2025, 11, 3, 8, 0)
        );
        assert_eq!(
            pacific_day(unix(2025, 3, 9, 7, 59)),
            pacific_day(unix(2025, 3, 8, 8, 0))
        );
    }
}
