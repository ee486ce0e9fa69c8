//! A token bucket in GCRA form: one timestamp of state, exact waits, weighted costs, refunds and
//! debt. `governor` cannot peek or refund, which reservations need.
//!
//! The same state also models a fixed window (Gemini's per-minute quotas reset all at once at
//! the window's end): the bucket is then evaluated at the start of the current window instead
//! of now, so nothing refills until the next window begins.

use std::time::Duration;

use super::clock::{Nanos, nanos};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    capacity: u64,
    period: Nanos,
    /// When the bucket will be full again (full whenever `tat <= now`).
    tat: Nanos,
    /// Fixed windows: an instant at which one window ends and the next begins.
    window: Option<Nanos>,
}

impl Bucket {
    /// `capacity` tokens, refilled continuously over `period`; starts full.
    pub fn new(capacity: u64, period: Duration) -> Self {
        Bucket {
            capacity: capacity.max(1),
            period: nanos(period).max(1),
            tat: 0,
            window: None,
        }
    }

    /// `capacity` tokens per window of `period`, windows starting at `boundary` (and every
    /// `period` before and after it); starts full.
    pub fn windowed(capacity: u64, period: Duration, boundary: Nanos) -> Self {
        Bucket {
            window: Some(boundary),
            ..Bucket::new(capacity, period)
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn period(&self) -> Nanos {
        self.period
    }

    pub fn is_windowed(&self) -> bool {
        self.window.is_some()
    }

    /// Fixed windows: when the current one began.
    pub fn window_start(&self, now: Nanos) -> Option<Nanos> {
        self.window.map(|_| self.anchor(now))
    }

    /// Time `n` tokens take to refill.
    fn cost(&self, n: u64) -> Nanos {
        let c = (u128::from(n) * u128::from(self.period)).div_ceil(u128::from(self.capacity));
        u64::try_from(c).unwrap_or(u64::MAX)
    }

    /// The instant the bucket is evaluated at: now, or the start of now's window.
    fn anchor(&self, now: Nanos) -> Nanos {
        match self.window {
            None => now,
            Some(boundary) => {
                let phase = boundary % self.period;
                now.saturating_sub((now + self.period - phase) % self.period)
            }
        }
    }

    pub fn available(&self, now: Nanos) -> u64 {
        let now = self.anchor(now);
        let base = self.tat.max(now);
        let slack = (now + self.period).saturating_sub(base);
        let tokens = u128::from(slack) * u128::from(self.capacity) / u128::from(self.period);
        u64::try_from(tokens).unwrap_or(u64::MAX)
    }

    /// How long until `n` tokens fit (0 = now). A cost above capacity waits for a full bucket.
    pub fn wait_for(&self, n: u64, now: Nanos) -> Nanos {
        let at = self.anchor(now);
        let need = self.cost(n.min(self.capacity));
        let new_tat = self.tat.max(at).saturating_add(need);
        let excess = new_tat.saturating_sub(at + self.period);
        if excess == 0 || self.window.is_none() {
            return excess;
        }
        // The first window that starts late enough.
        let windows = excess.div_ceil(self.period);
        (at + windows.saturating_mul(self.period)).saturating_sub(now)
    }

    /// Take `n` tokens if they fit now.
    pub fn try_take(&mut self, n: u64, now: Nanos) -> bool {
        if self.wait_for(n, now) > 0 {
            return false;
        }
        self.force(n, now);
        true
    }

    /// Take `n` tokens even beyond what is there: the debt delays later admissions.
    pub fn force(&mut self, n: u64, now: Nanos) {
        self.tat = self.tat.max(self.anchor(now)).saturating_add(self.cost(n));
    }

    /// Give back `n` tokens reserved earlier (never above full).
    pub fn refund(&mut self, n: u64, now: Nanos) {
        let now = self.anchor(now);
        if self.tat > now {
            self.tat = self.tat.saturating_sub(self.cost(n)).max(now);
        }
    }

    /// Resynchronise with what the provider reports: its limit and remaining tokens.
    pub fn observe(&mut self, limit: u64, remaining: u64, now: Nanos) {
        if limit > 0 && limit != self.capacity {
            self.capacity = limit;
        }
        let used = self.capacity.saturating_sub(remaining);
        self.tat = self.anchor(now) + self.cost(used);
    }

    /// Make `n` tokens wait at least `wait` from now (another instance used what this one saw
    /// as free; the shared store said when it fits).
    pub fn hold(&mut self, n: u64, wait: Nanos, now: Nanos) {
        let need = self.cost(n.min(self.capacity));
        let tat = (now + wait + self.period).saturating_sub(need);
        self.tat = self.tat.max(tat);
    }

    /// Change the capacity, keeping what is used (an estimated limit moved).
    pub fn rescale(&mut self, capacity: u64, now: Nanos) {
        let capacity = capacity.max(1);
        let now = self.anchor(now);
        if self.tat > now {
            let debt =
                u128::from(self.tat - now) * u128::from(self.capacity) / u128::from(capacity);
            self.tat = now.saturating_add(u64::try_from(debt).unwrap_or(u64::MAX));
        }
        self.capacity = capacity;
    }

    /// Empty now (a 429 said so); refills from here (or from the next window).
    pub fn drain(&mut self, now: Nanos) {
        self.tat = self.tat.max(self.anchor(now) + self.period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let mut b = Bucket::new(15, Duration::from_secs(60));
        for _ in 0..15 {
            assert!(b.try_take(1, 0));
        }
        // The 16th within the minute does not fit; one token refills every 4 s.
        assert!(!b.try_take(1, 0));
        assert_eq!(b.wait_for(1, 0), 4 * S);
        assert!(b.try_take(1, 4 * S));
        assert_eq!(b.available(4 * S), 0);
        assert_eq!(b.available(64 * S), 15);
    }

    #[test]
    fn weighted_costs_refunds_and_debt() {
        let mut b = Bucket::new(1000, Duration::from_secs(60));
        assert!(b.try_take(800, 0));
        assert_eq!(b.available(0), 200);
        b.refund(300, 0);
        assert_eq!(b.available(0), 500);
        b.force(900, 0); // overrun: 400 tokens of debt
        assert_eq!(b.available(0), 0);
        assert_eq!(b.wait_for(1, 0), 24 * S + 60_000_000);
        // A cost above capacity waits for a full bucket, not forever.
        assert!(b.wait_for(5000, 0) < 90 * S);
    }

    #[test]
    fn observe_and_drain() {
        let mut b = Bucket::new(100, Duration::from_secs(60));
        b.observe(60, 6, 10 * S);
        assert_eq!(b.capacity(), 60);
        assert_eq!(b.available(10 * S), 6);
        b.drain(10 * S);
        assert_eq!(b.available(10 * S), 0);
        assert_eq!(b.available(70 * S), 60);
    }

    #[test]
    fn a_fixed_window_refills_all_at_once_at_its_end() {
        // Windows end at 50 s, 110 s, 170 s, ...: 3 tokens each.
        let mut b = Bucket::windowed(3, Duration::from_secs(60), 50 * S);
        for _ in 0..3 {
            assert!(b.try_take(1, 80 * S));
        }
        assert_eq!(b.available(109 * S), 0);
        assert_eq!(b.wait_for(1, 80 * S), 30 * S);
        // Nothing trickles back within the window; all of it at its end.
        assert_eq!(b.available(110 * S), 3);
        assert!(b.try_take(3, 110 * S));
        assert!(!b.try_take(1, 169 * S));
        // A booking of the next window pushes the next request one window further.
        b.force(3, 110 * S);
        assert_eq!(b.wait_for(1, 120 * S), 110 * S);
        b.refund(3, 120 * S);
        assert_eq!(b.wait_for(1, 120 * S), 50 * S);
        b.drain(180 * S);
        assert_eq!(b.wait_for(1, 180 * S), 50 * S);
    }

    #[test]
    fn hold_delays_exactly_and_never_shortens() {
        let mut b = Bucket::new(15, Duration::from_secs(60));
        b.hold(1, 7 * S, 0);
        assert_eq!(b.wait_for(1, 0), 7 * S);
        assert_eq!(b.wait_for(1, 7 * S), 0);
        b.hold(1, 2 * S, 0);
        assert_eq!(b.wait_for(1, 0), 7 * S);
    }
}
