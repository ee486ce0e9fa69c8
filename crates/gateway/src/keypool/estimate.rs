//! Limits estimated from 429s, for quota scopes whose provider reports none (Gemini sends no
//! rate-limit headers; some OpenAI-compatible vendors neither).
//!
//! A 429 that states its limit (Gemini `quotaValue`) is taken at its word. Otherwise the
//! estimate comes from what the scope was sent. Where the provider counts in fixed minute
//! windows (Google), a 429 bounds the limit: at least what the window admitted, less than that
//! plus the refused request; every further 429 narrows the bounds and the estimate sits in the
//! middle. Elsewhere a 429 cuts the estimate to 85 % of the last minute's send rate. Every
//! minute in which the estimate held traffic back without a 429 raises it by 5 % (or half the
//! way to the upper bound), and a request that would wait long on the estimate may go beyond it
//! while the upper bound leaves room ([`Estimator::may_probe`]): if the provider admits it, the
//! estimate rises to what the window admitted. Never above a stated or configured limit.
//!
//! The estimate is a bucket among the scope's learned ones, so selection headroom, waits and
//! waiters' bookings treat it like a limit read from headers; headers for the same dimension
//! replace it.

use std::time::Duration;

use super::clock::Nanos;
use super::gcra::Bucket;
use super::limits::{BucketSet, Cost, Dim};

const MINUTE: Nanos = 60_000_000_000;
/// A 429 cuts the estimate to this share of the last minute's send rate.
pub const DECREASE: f64 = 0.85;
/// Growth per minute in which the estimate was the binding limit and no 429 came.
pub const INCREASE: f64 = 0.05;
/// 429s of requests already in flight when the first one came are the same event.
const HOLD: Nanos = 10_000_000_000;
/// Bounds learned from 429s are trusted this long (limits change: tier upgrades).
const BOUNDS_TTL: Nanos = 10 * MINUTE;
/// Fewer requests than this in the period say more about others using the quota (another
/// instance, another application on the same key) than about its size: no estimate.
const MIN_SENT: f64 = 4.0;

/// Which [`SendRate`] count measures `dim`.
fn slot_of(dim: Dim) -> usize {
    usize::from(dim != Dim::Requests)
}

/// What a 429 says about the limit it hit: which one, and its value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limit429 {
    pub dim: Option<Dim>,
    pub stated: Option<u64>,
    /// What the refused request would have taken from that limit.
    pub refused: u64,
}

fn bucket(per_minute: u64, window_end: Option<Nanos>) -> Bucket {
    let minute = Duration::from_secs(60);
    match window_end {
        Some(end) => Bucket::windowed(per_minute, minute, end),
        None => Bucket::new(per_minute, minute),
    }
}

/// Requests and input tokens sent over the last minute, in 5 s slots (so that any window of
/// the last minute can be summed: a sliding minute, or the provider's current window).
#[derive(Debug, Clone, Default)]
pub struct SendRate {
    slots: [[u64; 2]; SLOTS],
    /// Number of the newest slot (time / SLOT).
    newest: u64,
    /// Since when requests carry token estimates (token counts before are missing).
    tokens_from: Option<Nanos>,
}

const SLOT: Nanos = 5_000_000_000;
/// A minute, plus the slot now is in.
const SLOTS: usize = 13;

impl SendRate {
    pub fn record(&mut self, cost: &Cost, now: Nanos) {
        self.advance(now);
        let slot = &mut self.slots[(self.newest % SLOTS as u64) as usize];
        slot[0] += cost.requests;
        slot[1] += cost.input_tokens;
        if cost.input_tokens > 0 && self.tokens_from.is_none() {
            self.tokens_from = Some(now);
        }
    }

    /// A request sent at `sent` was refused without counting against the limit.
    pub fn unrecord(&mut self, cost: &Cost, sent: Nanos, now: Nanos) {
        self.advance(now);
        let n = sent / SLOT;
        if n <= self.newest && self.newest - n < SLOTS as u64 {
            let slot = &mut self.slots[(n % SLOTS as u64) as usize];
            slot[0] = slot[0].saturating_sub(cost.requests);
            slot[1] = slot[1].saturating_sub(cost.input_tokens);
        }
    }

    fn advance(&mut self, now: Nanos) {
        let n = now / SLOT;
        if n <= self.newest {
            return;
        }
        let stale = (n - self.newest).min(SLOTS as u64);
        for k in 0..stale {
            self.slots[((n - k) % SLOTS as u64) as usize] = [0; 2];
        }
        self.newest = n;
    }

    /// Requests (`i` = 0) or input tokens (1) sent from `from` to now (at most a minute; the
    /// slot `from` falls in counts in proportion).
    fn since(&self, from: Nanos, i: usize, now: Nanos) -> f64 {
        // Slots older than a minute before now are stale (not yet cleared).
        let oldest = (now / SLOT).saturating_sub(SLOTS as u64 - 1);
        let mut sum = 0.0;
        for n in oldest..=self.newest {
            let (start, end) = (n * SLOT, (n + 1) * SLOT);
            if end <= from {
                continue;
            }
            let share = if start >= from {
                1.0
            } else {
                (end - from) as f64 / SLOT as f64
            };
            sum += self.slots[(n % SLOTS as u64) as usize][i] as f64 * share;
        }
        sum
    }

    /// What was sent in `dim` (requests, or input tokens for a token dimension) in the
    /// provider's current window when it is known, else over the last minute; none while
    /// token counts do not cover that period.
    fn sent(&self, dim: Dim, window_end: Option<Nanos>, now: Nanos) -> Option<f64> {
        let from = match window_end {
            Some(end) => end.saturating_sub(MINUTE),
            None => now.saturating_sub(MINUTE),
        };
        if dim == Dim::Requests || self.tokens_from.is_some_and(|t| t <= from) {
            Some(self.since(from, slot_of(dim), now))
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
struct Estimated {
    dim: Dim,
    changed: Nanos,
    /// The estimate held traffic back since it last changed.
    binding: bool,
    /// The most the limit can be (stated by the provider or configured).
    ceiling: Option<u64>,
    /// Fixed windows: the limit is at least `lo` (admitted in one window) and below `hi`
    /// (that plus a refused request), as narrowed by the 429s until `at`.
    bounds: Option<(u64, u64, Nanos)>,
}

/// The estimates of one scope and model.
#[derive(Debug, Clone, Default)]
pub struct Estimator {
    pub sent: SendRate,
    dims: Vec<Estimated>,
    /// A 429 named a token limit: requests must carry token estimates from now on.
    pub wants_tokens: bool,
}

impl Estimator {
    pub fn is_estimated(&self, dim: Dim) -> bool {
        self.dims.iter().any(|e| e.dim == dim)
    }

    /// Headers now report `dim`: their limit replaces the estimate.
    pub fn forget(&mut self, dim: Dim) {
        self.dims.retain(|e| e.dim != dim);
    }

    /// A 429 for the limit `dim` (unknown: requests), whose value the provider may have
    /// stated; `configured(dim)`: the configured limit per minute, if any; `window_end`: the
    /// provider counts in fixed minute windows, one of which ends then. Returns whether an
    /// estimate changed.
    pub fn rate_limited(
        &mut self,
        learned: &mut BucketSet,
        limit: Limit429,
        configured: impl Fn(Dim) -> Option<u64>,
        window_end: Option<Nanos>,
        now: Nanos,
    ) -> bool {
        let Limit429 {
            dim,
            stated,
            refused,
        } = limit;
        let dim = dim.unwrap_or(Dim::Requests);
        if dim != Dim::Requests {
            self.wants_tokens = true;
        }
        let header_owned =
            learned.buckets.iter().any(|(d, _)| *d == dim) && !self.is_estimated(dim);
        if header_owned {
            return false;
        }
        if let Some(e) = self.dims.iter().find(|e| e.dim == dim)
            && now.saturating_sub(e.changed) < HOLD
        {
            return false;
        }
        let ceiling = [configured(dim), stated].into_iter().flatten().min();
        let existing = learned.get_mut(dim);
        let known = self
            .dims
            .iter()
            .find(|e| e.dim == dim)
            .and_then(|e| e.bounds)
            .filter(|b| now.saturating_sub(b.2) < BOUNDS_TTL);
        let mut bounds = None;
        let target = match (&existing, stated) {
            // The first 429 that states the limit: take the provider's word.
            (None, Some(limit)) => limit,
            _ if self
                .sent
                .sent(Dim::Requests, window_end, now)
                .unwrap_or(0.0)
                < MIN_SENT =>
            {
                return false;
            }
            _ => match self.sent.sent(dim, window_end, now) {
                // Counted in the provider's own window, the limit is at least what it
                // admitted and less than that plus the refused request; with what earlier
                // 429s said (unless they disagree: the limit moved), take the middle.
                Some(sent) if window_end.is_some() => {
                    let (mut lo, mut hi) = (sent as u64, sent as u64 + refused.max(1));
                    if let Some((l, h, _)) = known
                        && lo.max(l) < hi.min(h)
                    {
                        (lo, hi) = (lo.max(l), hi.min(h));
                    }
                    bounds = Some((lo, hi, now));
                    (lo + (hi - lo) / 2).max(1)
                }
                // Over a sliding minute it is a rate: back off below it.
                Some(sent) => ((sent * DECREASE).floor() as u64).max(1),
                // Token counts cover less than the period (requests carried no token
                // estimate before this 429): nothing to go by yet.
                None => return false,
            },
        };
        let target = ceiling.map_or(target, |c| target.min(c.max(1)));
        match existing {
            // Bounds place the limit (even above a low guess); otherwise a 429 only cuts.
            Some(b) if bounds.is_some() => b.rescale(target, now),
            Some(b) => {
                let target = target.min(b.capacity());
                b.rescale(target, now);
            }
            None => learned.buckets.push((dim, bucket(target, window_end))),
        }
        match self.dims.iter_mut().find(|e| e.dim == dim) {
            Some(e) => {
                e.changed = now;
                e.binding = false;
                e.ceiling = ceiling.or(e.ceiling);
                e.bounds = bounds.or(e.bounds);
            }
            None => self.dims.push(Estimated {
                dim,
                changed: now,
                binding: false,
                ceiling,
                bounds,
            }),
        }
        true
    }

    /// After a grant: note the estimates that are now out of room (the next request like it
    /// would wait on them).
    pub fn granted(&mut self, learned: &BucketSet, cost: &Cost, now: Nanos) {
        self.sent.record(cost, now);
        for e in &mut self.dims {
            if !e.binding
                && let Some((_, b)) = learned.buckets.iter().find(|(d, _)| *d == e.dim)
                && b.available(now) < BucketSet::cost_of(e.dim, cost).max(1)
            {
                e.binding = true;
            }
        }
    }

    /// A success: a fixed-window estimate below what its window admitted rises to that;
    /// every estimate that held traffic back for a whole minute without a 429 grows by 5 %
    /// (at least 1; below a known upper bound, half the way to it), never above its ceiling.
    /// Returns whether one grew.
    pub fn succeeded(&mut self, learned: &mut BucketSet, now: Nanos) -> bool {
        let mut grew = false;
        for e in &mut self.dims {
            // Fixed windows: what the provider admitted in this window is a lower bound
            // (more than the estimate only after a probe beyond it).
            if let Some(b) = learned.get_mut(e.dim)
                && let Some(from) = b.window_start(now)
            {
                let admitted = self.sent.since(from, slot_of(e.dim), now) as u64;
                let admitted = e.ceiling.map_or(admitted, |c| admitted.min(c));
                if admitted > b.capacity() {
                    b.rescale(admitted, now);
                    e.bounds = match e.bounds {
                        Some((lo, hi, at)) if admitted < hi => Some((lo.max(admitted), hi, at)),
                        _ => None,
                    };
                    grew = true;
                    continue;
                }
            }
            if !e.binding || now.saturating_sub(e.changed) < MINUTE {
                continue;
            }
            let Some(b) = learned.get_mut(e.dim) else {
                continue;
            };
            let cap = b.capacity();
            let below = e
                .bounds
                .filter(|b| now.saturating_sub(b.2) < BOUNDS_TTL)
                .map(|b| b.1.saturating_sub(1));
            // Below a known upper bound, close half the gap at a time.
            let step = ((cap as f64 * INCREASE) as u64)
                .max(below.map_or(0, |b| b.saturating_sub(cap) / 2))
                .max(1);
            let mut next = cap + step;
            if let Some(c) = [e.ceiling, below].into_iter().flatten().min() {
                next = next.min(c.max(cap));
            }
            e.changed = now;
            e.binding = false;
            if next > cap {
                b.rescale(next, now);
                grew = true;
            }
        }
        grew
    }

    /// May a request of `cost` go beyond the estimates that hold it back? Only in fixed
    /// windows whose bounds leave room for it below the limit's known upper bound: its
    /// answer narrows the bounds either way (a success raises the estimate to what the
    /// window admitted, a 429 lowers the upper bound).
    pub fn may_probe(&self, learned: &BucketSet, cost: &Cost, now: Nanos) -> bool {
        let mut any = false;
        for e in &self.dims {
            let Some(b) = learned
                .buckets
                .iter()
                .find(|(d, _)| *d == e.dim)
                .map(|x| x.1)
            else {
                continue;
            };
            let need = BucketSet::cost_of(e.dim, cost);
            if b.wait_for(need, now) == 0 {
                continue;
            }
            let (Some(from), Some((_, hi, at))) = (b.window_start(now), e.bounds) else {
                return false;
            };
            let sent = self.sent.since(from, slot_of(e.dim), now) as u64;
            if now.saturating_sub(at) >= BOUNDS_TTL || sent + need >= hi {
                return false;
            }
            any = true;
        }
        any
    }

    /// The estimates: dimension, per minute, counted in fixed windows (for persistence).
    pub fn estimates<'a>(
        &'a self,
        learned: &'a BucketSet,
    ) -> impl Iterator<Item = (Dim, u64, bool)> + 'a {
        self.dims.iter().filter_map(|e| {
            learned
                .buckets
                .iter()
                .find(|(d, _)| *d == e.dim)
                .map(|(d, b)| (*d, b.capacity(), b.is_windowed()))
        })
    }

    /// An estimate from a previous run (a full bucket: the scope rested meanwhile).
    pub fn restore(
        &mut self,
        learned: &mut BucketSet,
        dim: Dim,
        per_minute: u64,
        window_end: Option<Nanos>,
        now: Nanos,
    ) {
        if learned.buckets.iter().any(|(d, _)| *d == dim) {
            return;
        }
        learned.buckets.push((dim, bucket(per_minute, window_end)));
        self.dims.push(Estimated {
            dim,
            changed: now,
            binding: false,
            ceiling: None,
            bounds: None,
        });
        if dim != Dim::Requests {
            self.wants_tokens = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;
    const REQ: Cost = Cost {
        requests: 1,
        tokens: 0,
        input_tokens: 0,
    };

    fn capacity(learned: &BucketSet, dim: Dim) -> Option<u64> {
        learned
            .buckets
            .iter()
            .find(|(d, _)| *d == dim)
            .map(|(_, b)| b.capacity())
    }

    fn limit(dim: Dim, refused: u64) -> Limit429 {
        Limit429 {
            dim: Some(dim),
            stated: None,
            refused,
        }
    }

    /// `n` requests spread over the minute ending at `end`.
    fn send(est: &mut Estimator, learned: &mut BucketSet, cost: Cost, n: u64, end: Nanos) {
        for i in 0..n {
            let at = end - MINUTE + i * MINUTE / n;
            learned.take(&cost, at);
            est.granted(learned, &cost, at);
        }
    }

    #[test]
    fn a_429_cuts_below_the_send_rate_then_binding_minutes_add_five_percent() {
        let (mut est, mut learned) = (Estimator::default(), BucketSet::default());
        send(&mut est, &mut learned, REQ, 40, 120 * S);
        let none = |_| None;
        assert!(est.rate_limited(&mut learned, limit(Dim::Requests, 1), none, None, 120 * S));
        assert_eq!(capacity(&learned, Dim::Requests), Some(34)); // 0.85 x 40
        assert!(est.is_estimated(Dim::Requests));
        // As the pool does on a 429: the bucket is empty now.
        learned.buckets[0].1.drain(120 * S);
        // More 429s from the same burst are the same event.
        assert!(!est.rate_limited(&mut learned, limit(Dim::Requests, 1), none, None, 125 * S));
        // A minute in which the estimate held traffic back, then a success: +5 % (at least 1).
        send(&mut est, &mut learned, REQ, 40, 180 * S);
        assert!(!est.succeeded(&mut learned, 170 * S));
        assert!(est.succeeded(&mut learned, 181 * S));
        assert_eq!(capacity(&learned, Dim::Requests), Some(35));
        // Without traffic held back, no growth: a quiet scope says nothing about its limit.
        assert!(!est.succeeded(&mut learned, 300 * S));
        assert_eq!(capacity(&learned, Dim::Requests), Some(35));
    }

    #[test]
    fn a_429_after_a_few_requests_is_someone_elses_doing() {
        let (mut est, mut learned) = (Estimator::default(), BucketSet::default());
        send(&mut est, &mut learned, REQ, 3, 60 * S);
        assert!(!est.rate_limited(
            &mut learned,
            limit(Dim::Requests, 1),
            |_| None,
            None,
            60 * S
        ));
        assert!(learned.buckets.is_empty());
    }

    #[test]
    fn never_above_what_the_provider_or_the_configuration_says() {
        let (mut est, mut learned) = (Estimator::default(), BucketSet::default());
        send(&mut est, &mut learned, REQ, 100, 60 * S);
        let configured = |d: Dim| (d == Dim::Requests).then_some(30);
        est.rate_limited(
            &mut learned,
            limit(Dim::Requests, 1),
            configured,
            None,
            60 * S,
        );
        assert_eq!(capacity(&learned, Dim::Requests), Some(30));
        send(&mut est, &mut learned, REQ, 100, 130 * S);
        est.succeeded(&mut learned, 131 * S);
        assert_eq!(capacity(&learned, Dim::Requests), Some(30));
        // A 429 that states the limit: taken as is when nothing was estimated yet.
        let (mut est, mut learned) = (Estimator::default(), BucketSet::default());
        let stated = Limit429 {
            stated: Some(12),
            ..limit(Dim::Requests, 1)
        };
        est.rate_limited(&mut learned, stated, |_| None, None, 5 * S);
        assert_eq!(capacity(&learned, Dim::Requests), Some(12));
    }

    #[test]
    fn a_token_limit_waits_for_a_minute_of_token_counts() {
        let (mut est, mut learned) = (Estimator::default(), BucketSet::default());
        // Requests carried no token estimate: the 429 only asks for them.
        send(&mut est, &mut learned, REQ, 20, 120 * S);
        let tokens = limit(Dim::InputTokens, 900);
        assert!(!est.rate_limited(&mut learned, tokens, |_| None, None, 120 * S));
        assert!(est.wants_tokens);
        assert!(learned.buckets.is_empty());
        let cost = Cost {
            requests: 1,
            tokens: 2000,
            input_tokens: 1000,
        };
        send(&mut est, &mut learned, cost, 30, 180 * S);
        assert!(est.rate_limited(&mut learned, tokens, |_| None, None, 180 * S));
        assert_eq!(capacity(&learned, Dim::InputTokens), Some(25_500));
        assert_eq!(capacity(&learned, Dim::Requests), None);
    }

    #[test]
    fn in_fixed_windows_the_estimate_lands_between_what_fit_and_what_did_not() {
        let (mut est, mut learned) = (Estimator::default(), BucketSet::default());
        // The provider's window runs from 40 s to 100 s; 20 requests of 100 tokens were
        // admitted in it, 10 before it.
        let cost = Cost {
            requests: 1,
            tokens: 100,
            input_tokens: 100,
        };
        for i in 0..10 {
            est.granted(&learned, &cost, 25 * S + i * S);
        }
        for i in 0..20 {
            est.granted(&learned, &cost, 40 * S + i * S);
        }
        // A request of 300 tokens is refused at 70 s: at least 2,000 fit, 2,300 did not.
        est.sent.record(&cost, 70 * S);
        est.sent.unrecord(&cost, 70 * S, 70 * S);
        let refused = limit(Dim::InputTokens, 300);
        assert!(est.rate_limited(&mut learned, refused, |_| None, Some(100 * S), 70 * S));
        let (_, b) = learned.buckets[0];
        assert!(b.is_windowed());
        assert_eq!(b.capacity(), 2_150);
    }

    #[test]
    fn below_the_upper_bound_a_request_may_go_beyond_the_estimate_and_teach() {
        let (mut est, mut learned) = (Estimator::default(), BucketSet::default());
        // Window 0-60 s: 10 requests admitted, then one refused with a 20-request cost:
        // the limit is in [10, 30); the estimate, the middle: 20.
        for i in 0..10 {
            est.granted(&learned, &REQ, i * S);
        }
        assert!(est.rate_limited(
            &mut learned,
            limit(Dim::Requests, 20),
            |_| None,
            Some(60 * S),
            30 * S
        ));
        assert_eq!(capacity(&learned, Dim::Requests), Some(20));
        // Next window: the estimate's 20 are spent.
        for i in 0..20 {
            learned.take(&REQ, 60 * S + i * S);
            est.granted(&learned, &REQ, 60 * S + i * S);
        }
        // Up to the bound (below 30) one more may go; the provider admits it: the estimate
        // rises to what the window admitted.
        assert!(est.may_probe(&learned, &REQ, 85 * S));
        learned.take(&REQ, 85 * S);
        est.granted(&learned, &REQ, 85 * S);
        assert!(est.succeeded(&mut learned, 86 * S));
        assert_eq!(capacity(&learned, Dim::Requests), Some(21));
        // Nothing goes beyond the upper bound.
        for i in 0..8 {
            est.granted(&learned, &REQ, 87 * S + i * S);
        }
        assert!(!est.may_probe(&learned, &REQ, 100 * S));
    }

    #[test]
    fn headers_replace_an_estimate() {
        let (mut est, mut learned) = (Estimator::default(), BucketSet::default());
        send(&mut est, &mut learned, REQ, 10, 60 * S);
        est.rate_limited(
            &mut learned,
            limit(Dim::Requests, 1),
            |_| None,
            None,
            60 * S,
        );
        est.forget(Dim::Requests);
        assert!(!est.is_estimated(Dim::Requests));
        // The bucket is the headers' now: a 429 does not re-estimate it.
        assert!(!est.rate_limited(
            &mut learned,
            limit(Dim::Requests, 1),
            |_| None,
            None,
            200 * S
        ));
    }
}
