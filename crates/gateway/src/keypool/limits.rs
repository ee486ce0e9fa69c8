//! Limits configured with uni-api's `api_key_rate_limit` syntax (plus llmux's token windows),
//! resolved per model the way uni-api does: exact model key, else the first key contained in
//! the model name, else `default`.

use std::time::Duration;

use super::clock::Nanos;
use super::gcra::Bucket;
use crate::config::schema::{RateLimit, RateLimitSpec, RatePeriod};

/// What one request costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub requests: u64,
    /// Estimated prompt plus reserved completion tokens.
    pub tokens: u64,
    /// Estimated prompt tokens alone (for `N/tpr`).
    pub input_tokens: u64,
}

impl Cost {
    pub fn plus(self, o: Cost) -> Cost {
        Cost {
            requests: self.requests.saturating_add(o.requests),
            tokens: self.tokens.saturating_add(o.tokens),
            input_tokens: self.input_tokens.saturating_add(o.input_tokens),
        }
    }

    pub fn minus(self, o: Cost) -> Cost {
        Cost {
            requests: self.requests.saturating_sub(o.requests),
            tokens: self.tokens.saturating_sub(o.tokens),
            input_tokens: self.input_tokens.saturating_sub(o.input_tokens),
        }
    }
}

/// The configured limits that apply to one model.
pub fn limits_for<'a>(spec: &'a RateLimitSpec, model: &str) -> &'a [RateLimit] {
    match spec {
        RateLimitSpec::All(limits) => limits,
        RateLimitSpec::PerModel(entries) => entries
            .iter()
            .find(|(k, _)| k == model)
            .or_else(|| {
                entries
                    .iter()
                    .find(|(k, _)| k != "default" && model.contains(k.as_str()))
            })
            .or_else(|| entries.iter().find(|(k, _)| k == "default"))
            .map(|(_, l)| l.as_slice())
            .unwrap_or(&[]),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Requests,
    Tokens,
    InputTokens,
    OutputTokens,
}

impl Dim {
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Requests => "requests",
            Dim::Tokens => "tokens",
            Dim::InputTokens => "input_tokens",
            Dim::OutputTokens => "output_tokens",
        }
    }

    pub fn named(name: &str) -> Option<Dim> {
        [
            Dim::Requests,
            Dim::Tokens,
            Dim::InputTokens,
            Dim::OutputTokens,
        ]
        .into_iter()
        .find(|d| d.as_str() == name)
    }
}

/// Buckets for one key (or scope) and model.
#[derive(Debug, Clone, Default)]
pub struct BucketSet {
    pub buckets: Vec<(Dim, Bucket)>,
    /// `N/tpr`: largest prompt a request may carry.
    pub tokens_per_request: Option<u64>,
}

impl BucketSet {
    pub fn from_limits(limits: &[RateLimit]) -> Self {
        let mut set = BucketSet::default();
        for l in limits {
            match l.period {
                RatePeriod::Window(secs) => set.buckets.push((
                    Dim::Requests,
                    Bucket::new(l.count, Duration::from_secs(secs)),
                )),
                RatePeriod::TokenWindow(secs) => set
                    .buckets
                    .push((Dim::Tokens, Bucket::new(l.count, Duration::from_secs(secs)))),
                RatePeriod::TokensPerRequest => {
                    set.tokens_per_request =
                        Some(set.tokens_per_request.map_or(l.count, |t| t.min(l.count)));
                }
            }
        }
        set
    }

    /// What `cost` takes from a bucket of `dim`.
    pub fn cost_of(dim: Dim, cost: &Cost) -> u64 {
        match dim {
            Dim::Requests => cost.requests,
            Dim::Tokens => cost.tokens,
            Dim::InputTokens => cost.input_tokens,
            Dim::OutputTokens => cost.tokens.saturating_sub(cost.input_tokens),
        }
    }

    /// Longest wait before every bucket admits `cost` (0 = admissible now), and which limit binds.
    pub fn wait(&self, cost: &Cost, now: Nanos) -> (Nanos, Option<(Dim, u64, Nanos)>) {
        let mut worst = (0, None);
        for (dim, b) in &self.buckets {
            let w = b.wait_for(Self::cost_of(*dim, cost), now);
            if w > worst.0 {
                worst = (w, Some((*dim, b.capacity(), b.period())));
            }
        }
        worst
    }

    /// Fraction of capacity left after this cost, the tightest dimension (1 without limits).
    pub fn headroom(&self, cost: &Cost, now: Nanos) -> f64 {
        self.buckets
            .iter()
            .map(|(dim, b)| {
                let avail = b.available(now) as f64 - Self::cost_of(*dim, cost) as f64;
                avail / b.capacity() as f64
            })
            .fold(1.0, f64::min)
    }

    pub fn take(&mut self, cost: &Cost, now: Nanos) {
        for (dim, b) in &mut self.buckets {
            b.force(Self::cost_of(*dim, cost), now);
        }
    }

    /// Settle tokens: `reserved` were taken at admission, `actual` were used.
    pub fn settle_tokens(&mut self, reserved: u64, actual: u64, now: Nanos) {
        for (dim, b) in &mut self.buckets {
            if matches!(dim, Dim::Tokens) {
                if actual < reserved {
                    b.refund(reserved - actual, now);
                } else {
                    b.force(actual - reserved, now);
                }
            }
        }
    }

    /// Give back a whole admission (the attempt never reached the provider).
    pub fn refund(&mut self, cost: &Cost, now: Nanos) {
        for (dim, b) in &mut self.buckets {
            b.refund(Self::cost_of(*dim, cost), now);
        }
    }

    /// Requests-per-window capacity scaled to a minute: a key's share of traffic.
    pub fn requests_per_minute(&self) -> Option<f64> {
        self.buckets
            .iter()
            .filter(|(d, _)| *d == Dim::Requests)
            .map(|(_, b)| b.capacity() as f64 * 60e9 / b.period() as f64)
            .reduce(f64::min)
    }

    pub fn get_mut(&mut self, dim: Dim) -> Option<&mut Bucket> {
        self.buckets
            .iter_mut()
            .find(|(d, _)| *d == dim)
            .map(|(_, b)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::RateLimit;

    fn rl(count: u64, period: RatePeriod) -> RateLimit {
        RateLimit { count, period }
    }

    #[test]
    fn model_lookup_is_exact_then_substring_then_default() {
        let spec = RateLimitSpec::PerModel(vec![
            ("gemini-2.5-pro".into(), vec![rl(5, RatePeriod::Window(60))]),
            ("flash".into(), vec![rl(10, RatePeriod::Window(60))]),
            ("default".into(), vec![rl(4, RatePeriod::Window(60))]),
        ]);
        assert_eq!(limits_for(&spec, "gemini-2.5-pro")[0].count, 5);
        assert_eq!(limits_for(&spec, "gemini-2.5-flash-lite")[0].count, 10);
        assert_eq!(limits_for(&spec, "other")[0].count, 4);
        let none = RateLimitSpec::PerModel(vec![("x".into(), vec![])]);
        assert!(limits_for(&none, "y").is_empty());
    }

    #[test]
    fn every_window_binds() {
        let mut set = BucketSet::from_limits(&[
            rl(2, RatePeriod::Window(60)),
            rl(3, RatePeriod::Window(86_400)),
            rl(1000, RatePeriod::TokenWindow(60)),
            rl(500, RatePeriod::TokensPerRequest),
        ]);
        assert_eq!(set.tokens_per_request, Some(500));
        let c = Cost {
            requests: 1,
            tokens: 400,
            input_tokens: 100,
        };
        assert_eq!(set.wait(&c, 0).0, 0);
        set.take(&c, 0);
        set.take(&c, 0);
        // requests/min and tokens/min both exhausted now
        let (w, binding) = set.wait(&c, 0);
        assert!(w > 0);
        assert!(binding.is_some());
        // after a minute: the day window still has one request left
        let minute = 60_000_000_000;
        assert_eq!(set.wait(&c, minute).0, 0);
        set.take(&c, minute);
        let (w, binding) = set.wait(&c, 2 * minute);
        assert!(w > 0);
        assert_eq!(binding.map(|b| b.0), Some(Dim::Requests));
    }
}
