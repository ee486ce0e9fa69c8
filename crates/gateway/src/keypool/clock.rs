//! Time for the key pool: a monotonic nanosecond count plus the wall clock (daily quotas reset
//! at calendar times). Injected, so tests and the simulation run on virtual time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Monotonic nanoseconds since the clock's origin.
pub type Nanos = u64;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Nanos;
    /// Wall-clock milliseconds since the Unix epoch.
    fn unix_ms(&self) -> u64;

    /// The wall-clock time of a monotonic instant.
    fn to_unix_ms(&self, t: Nanos) -> u64 {
        let now = self.now();
        let unix = self.unix_ms();
        if t >= now {
            unix + (t - now) / 1_000_000
        } else {
            unix.saturating_sub((now - t) / 1_000_000)
        }
    }

    /// The monotonic instant of a wall-clock time (clamped to now for the past).
    fn instant_of_unix_ms(&self, unix_ms: u64) -> Nanos {
        let now = self.now();
        now + unix_ms.saturating_sub(self.unix_ms()) * 1_000_000
    }
}

pub fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        nanos(self.origin.elapsed())
    }

    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Virtual time: moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicU64,
    unix_origin_ms: u64,
}

impl ManualClock {
    /// Starts at monotonic 0 = `unix_origin_ms` on the wall clock.
    pub fn new(unix_origin_ms: u64) -> Self {
        ManualClock {
            now: AtomicU64::new(0),
            unix_origin_ms,
        }
    }

    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(nanos(d), Ordering::SeqCst);
    }

    pub fn set(&self, t: Nanos) {
        self.now.store(t, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.now.load(Ordering::SeqCst)
    }

    fn unix_ms(&self) -> u64 {
        self.unix_origin_ms + self.now() / 1_000_000
    }
}
