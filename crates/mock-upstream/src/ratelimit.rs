//! Per-key request limits modelled on OpenAI's: a bucket of `rpm` requests
//! that refills continuously (rpm/60 per second), so with a limit of 3 a
//! denied request is told to "try again in 20s", as the real API says.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::util::{ceil_ms, go_duration};

/// Requests per minute reported when no limit is configured.
pub(crate) const DEFAULT_RPM: u64 = 10_000;
/// Tokens per minute reported in `x-ratelimit-limit-tokens` (never enforced).
pub(crate) const TOKENS_PER_MIN: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub(crate) struct RateHeaders {
    pub limit_requests: u64,
    pub remaining_requests: u64,
    pub reset_requests: Duration,
    pub limit_tokens: u64,
    pub remaining_tokens: u64,
    pub reset_tokens: Duration,
}

impl RateHeaders {
    /// What an unlimited key looks like: computed without any shared state so
    /// the load-test path takes no lock.
    pub fn unlimited(est_tokens: u64) -> RateHeaders {
        let est = est_tokens.min(TOKENS_PER_MIN);
        RateHeaders {
            limit_requests: DEFAULT_RPM,
            remaining_requests: DEFAULT_RPM - 1,
            reset_requests: Duration::from_secs(60) / DEFAULT_RPM as u32,
            limit_tokens: TOKENS_PER_MIN,
            remaining_tokens: TOKENS_PER_MIN - est,
            reset_tokens: Duration::from_secs_f64(est as f64 * 60.0 / TOKENS_PER_MIN as f64),
        }
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        let pairs: [(&'static str, HeaderValue); 6] = [
            (
                "x-ratelimit-limit-requests",
                HeaderValue::from(self.limit_requests),
            ),
            (
                "x-ratelimit-limit-tokens",
                HeaderValue::from(self.limit_tokens),
            ),
            (
                "x-ratelimit-remaining-requests",
                HeaderValue::from(self.remaining_requests),
            ),
            (
                "x-ratelimit-remaining-tokens",
                HeaderValue::from(self.remaining_tokens),
            ),
            (
                "x-ratelimit-reset-requests",
                duration_value(self.reset_requests),
            ),
            (
                "x-ratelimit-reset-tokens",
                duration_value(self.reset_tokens),
            ),
        ];
        for (name, value) in pairs {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

fn duration_value(d: Duration) -> HeaderValue {
    HeaderValue::try_from(go_duration(ceil_ms(d))).unwrap_or(HeaderValue::from_static("0s"))
}

pub(crate) enum Decision {
    Allowed(RateHeaders),
    Denied {
        headers: RateHeaders,
        retry_after: Duration,
        used: u64,
    },
}

struct Bucket {
    requests: f64,
    tokens: f64,
    last: Instant,
}

pub(crate) struct Limiter {
    rpm: u64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    pub fn new(rpm: u32) -> Limiter {
        Limiter {
            rpm: u64::from(rpm),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn rpm(&self) -> u64 {
        self.rpm
    }

    /// Counts one request against `key` (if the bucket allows it).
    pub fn check(&self, key: &str, est_tokens: u64) -> Decision {
        self.with_bucket(key, |b, rpm| {
            if b.requests >= 1.0 {
                b.requests -= 1.0;
                b.tokens = (b.tokens - est_tokens as f64).max(0.0);
                Decision::Allowed(headers_for(b, rpm))
            } else {
                let per_request = 60.0 / rpm as f64;
                Decision::Denied {
                    headers: headers_for(b, rpm),
                    retry_after: Duration::from_secs_f64((1.0 - b.requests) * per_request),
                    used: rpm.saturating_sub(b.requests.floor() as u64),
                }
            }
        })
    }

    /// The current window for `key` without counting a request.
    pub fn peek(&self, key: &str) -> RateHeaders {
        self.with_bucket(key, |b, rpm| headers_for(b, rpm))
    }

    fn with_bucket<T>(&self, key: &str, f: impl FnOnce(&mut Bucket, u64) -> T) -> T {
        let now = Instant::now();
        let rpm = self.rpm.max(1);
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = map.entry(key.to_owned()).or_insert(Bucket {
            requests: rpm as f64,
            tokens: TOKENS_PER_MIN as f64,
            last: now,
        });
        let dt = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.requests = (bucket.requests + dt * rpm as f64 / 60.0).min(rpm as f64);
        bucket.tokens =
            (bucket.tokens + dt * TOKENS_PER_MIN as f64 / 60.0).min(TOKENS_PER_MIN as f64);
        bucket.last = now;
        f(bucket, rpm)
    }
}

fn headers_for(b: &Bucket, rpm: u64) -> RateHeaders {
    let rpm_f = rpm as f64;
    let tpm_f = TOKENS_PER_MIN as f64;
    RateHeaders {
        limit_requests: rpm,
        remaining_requests: b.requests.floor().max(0.0) as u64,
        reset_requests: Duration::from_secs_f64(((rpm_f - b.requests) * 60.0 / rpm_f).max(0.0)),
        limit_tokens: TOKENS_PER_MIN,
        remaining_tokens: b.tokens.floor().max(0.0) as u64,
        reset_tokens: Duration::from_secs_f64(((tpm_f - b.tokens) * 60.0 / tpm_f).max(0.0)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn bucket_denies_after_limit_and_reports_wait() {
        let l = Limiter::new(3);
        for expected_remaining in [2, 1, 0] {
            match l.check("k", 10) {
                Decision::Allowed(h) => assert_eq!(h.remaining_requests, expected_remaining),
                Decision::Denied { .. } => panic!("denied too early"),
            }
        }
        match l.check("k", 10) {
            Decision::Denied {
                retry_after, used, ..
            } => {
                assert_eq!(used, 3);
                assert!(
                    retry_after > Duration::from_secs(19) && retry_after <= Duration::from_secs(20)
                );
            }
            Decision::Allowed(_) => panic!("should be limited"),
        }
        // Other keys have their own bucket.
        assert!(matches!(l.check("other", 1), Decision::Allowed(_)));
    }
}
