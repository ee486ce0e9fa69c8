//! A token bucket in GCRA form: one timestamp of state, exact waits, weighted costs, refunds and
//! debt. `governor` cannot peek or refund, which reservations need.

use std::time::Duration;

use super::clock::{Nanos, nanos};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    capacity: u64,
    period: Nanos,
    /// When the bucket will be full again (full whenever `tat <= now`).
    tat: Nanos,
}

impl Bucket {
    /// `capacity` tokens, refilled continuously over `period`; starts full.
    pub fn new(capacity: u64, period: Duration) -> Self {
        Bucket {
            capacity: capacity.max(1),
            period: nanos(period).max(1),
            tat: 0,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn period(&self) -> Nanos {
        self.period
    }

    /// Time `n` tokens take to refill.
    fn cost(&self, n: u64) -> Nanos {
        let c = (u128::from(n) * u128::from(self.period)).div_ceil(u128::from(self.capacity));
        u64::try_from(c).unwrap_or(u64::MAX)
    }

    pub fn available(&self, now: Nanos) -> u64 {
        let base = self.tat.max(now);
        let slack = (now + self.period).saturating_sub(base);
        let tokens = u128::from(slack) * u128::from(self.capacity) / u128::from(self.period);
        u64::try_from(tokens).unwrap_or(u64::MAX)
    }

    /// How long until `n` tokens fit (0 = now). A cost above capacity waits for a full bucket.
    pub fn wait_for(&self, n: u64, now: Nanos) -> Nanos {
        let need = self.cost(n.min(self.capacity));
        let new_tat = self.tat.max(now).saturating_add(need);
        new_tat.saturating_sub(now + self.period)
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
        self.tat = self.tat.max(now).saturating_add(self.cost(n));
    }

    /// Give back `n` tokens reserved earlier (never above full).
    pub fn refund(&mut self, n: u64, now: Nanos) {
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
        self.tat = now + self.cost(used);
    }

    /// Make `n` tokens wait at least `wait` from now (another instance used what this one saw
    /// as free; the shared store said when it fits).
    pub fn hold(&mut self, n: u64, wait: Nanos, now: Nanos) {
        let need = self.cost(n.min(self.capacity));
        let tat = (now + wait + self.period).saturating_sub(need);
        self.tat = self.tat.max(tat);
    }

    /// Empty now (a 429 said so); refills from here.
    pub fn drain(&mut self, now: Nanos) {
        self.tat = self.tat.max(now + self.period);
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
    fn hold_delays_exactly_and_never_shortens() {
        let mut b = Bucket::new(15, Duration::from_secs(60));
        b.hold(1, 7 * S, 0);
        assert_eq!(b.wait_for(1, 0), 7 * S);
        assert_eq!(b.wait_for(1, 7 * S), 0);
        b.hold(1, 2 * S, 0);
        assert_eq!(b.wait_for(1, 0), 7 * S);
    }
}
