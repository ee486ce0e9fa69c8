//! Client rate limits (`api_keys[].preferences.rate_limit`, global `preferences.rate_limit`):
//! sliding windows of request times, as uni-api keeps them. A client key's limits count per
//! requested model (a per-model map picks the limits: exact model, the first key contained in
//! the model, `default`); the global limit counts every routed request of every key. A request
//! over any window is refused with the exact time until the oldest request leaves it. The
//! windows live in the app, so a reload keeps them; changed limits apply at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::schema::{RateLimit, RatePeriod};

/// A refused request: which limit, and when it would pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub limit: String,
    pub retry_after: Duration,
}

#[derive(Debug, Default)]
pub struct ClientLimiter {
    windows: Mutex<HashMap<Box<str>, VecDeque<Instant>>>,
}

impl ClientLimiter {
    /// Admits one request under `scope` if every window has room (all or nothing).
    pub fn admit(&self, scope: &str, limits: &[RateLimit], now: Instant) -> Result<(), Refused> {
        let windows: Vec<(u64, Duration)> = limits
            .iter()
            .filter_map(|l| match l.period {
                RatePeriod::Window(secs) => Some((l.count, Duration::from_secs(secs))),
                _ => None,
            })
            .collect();
        if windows.is_empty() {
            return Ok(());
        }
        let longest = windows.iter().map(|(_, d)| *d).max().unwrap_or_default();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let log = map.entry(Box::from(scope)).or_default();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= longest)
        {
            log.pop_front();
        }
        let mut worst: Option<Refused> = None;
        for (count, window) in &windows {
            let inside: Vec<&Instant> = log
                .iter()
                .filter(|t| now.duration_since(**t) < *window)
                .collect();
            let used = inside.len() as u64;
            if used >= *count {
                // The request that must leave for this one to fit.
                let idx = usize::try_from(used - count).unwrap_or(0);
                let leaves = inside
                    .get(idx)
                    .map_or(Duration::ZERO, |t| (**t + *window).duration_since(now));
                if worst.as_ref().is_none_or(|w| leaves > w.retry_after) {
                    worst = Some(Refused {
                        limit: format!("{count} requests per {}", describe(*window)),
                        retry_after: leaves,
                    });
                }
            }
        }
        if let Some(r) = worst {
            return Err(r);
        }
        log.push_back(now);
        Ok(())
    }
}

fn describe(d: Duration) -> String {
    match d.as_secs() {
        1 => "second".into(),
        60 => "minute".into(),
        3600 => "hour".into(),
        86_400 => "day".into(),
        2_592_000 => "month".into(),
        31_536_000 => "year".into(),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn per(count: u64, secs: u64) -> RateLimit {
        RateLimit {
            count,
            period: RatePeriod::Window(secs),
        }
    }

    #[test]
    fn third_request_in_a_minute_is_refused_until_the_first_leaves() {
        let l = ClientLimiter::default();
        let t0 = Instant::now();
        let lim = [per(2, 60)];
        assert!(l.admit("k", &lim, t0).is_ok());
        assert!(l.admit("k", &lim, t0 + Duration::from_secs(10)).is_ok());
        let r = l
            .admit("k", &lim, t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(r.retry_after, Duration::from_secs(40));
        assert_eq!(r.limit, "2 requests per minute");
        // Other scopes are independent.
        assert!(l.admit("j", &lim, t0 + Duration::from_secs(20)).is_ok());
        assert!(l.admit("k", &lim, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn every_window_must_have_room_and_refusals_are_not_counted() {
        let l = ClientLimiter::default();
        let t0 = Instant::now();
        let lim = [per(3, 1), per(4, 60)];
        for i in 0..3 {
            assert!(l.admit("k", &lim, t0 + Duration::from_millis(i)).is_ok());
        }
        assert!(l.admit("k", &lim, t0 + Duration::from_millis(5)).is_err());
        // After a second the per-second window has room, the minute window one slot.
        assert!(l.admit("k", &lim, t0 + Duration::from_secs(1)).is_ok());
        let r = l
            .admit("k", &lim, t0 + Duration::from_millis(1500))
            .unwrap_err();
        assert_eq!(r.limit, "4 requests per minute");
        assert_eq!(r.retry_after, Duration::from_millis(58_500));
    }

    #[test]
    fn no_windows_no_state() {
        let l = ClientLimiter::default();
        let tokens = [RateLimit {
            count: 1,
            period: RatePeriod::TokenWindow(60),
        }];
        for _ in 0..5 {
            assert!(l.admit("k", &tokens, Instant::now()).is_ok());
        }
        assert!(
            l.windows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        );
    }
}
