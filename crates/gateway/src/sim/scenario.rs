//! Scenarios of keys.md §b.6 (OpenAI flavour): keys, the quota scopes they really drain,
//! faults on a schedule, the workload and the measurement window.

use crate::keypool::clock::Nanos;

use super::provider::{Dialect, Fault, MINUTE, SECOND, ScopeLimits};
use super::workload::Workload;

/// When things happen. Fault times are relative to the start of the measured window.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub warmup: Nanos,
    pub measure: Nanos,
    /// S4: key 2 revoked, key 5 daily quota, key 8 out of credit, key 2 restored.
    pub revoke_at: Nanos,
    pub daily_at: Nanos,
    pub billing_at: Nanos,
    pub restore_at: Nanos,
    /// S4 keeps sending (unmeasured) this long after the window, so the restored key's return
    /// (at its next re-validation) is seen.
    pub churn_tail: Nanos,
    /// S5: provider-wide 503 storm.
    pub storm_at: Nanos,
    pub storm_for: Nanos,
    pub storm_share: f64,
}

impl Timeline {
    /// The protocol of keys.md §b.6: 2 min warm-up, 30 min measured.
    pub fn full() -> Timeline {
        Timeline {
            warmup: 2 * MINUTE,
            measure: 30 * MINUTE,
            revoke_at: 5 * MINUTE,
            daily_at: 10 * MINUTE,
            billing_at: 15 * MINUTE,
            restore_at: 25 * MINUTE,
            // The first re-validation (10 min after the 401) finds the key still revoked; the
            // next is an hour later, i.e. ~75 min into the window.
            churn_tail: 50 * MINUTE,
            storm_at: 10 * MINUTE,
            storm_for: 60 * SECOND,
            storm_share: 0.25,
        }
    }

    /// Short runs for the test suite: 2 min warm-up, 5 min measured; S4 compressed so the
    /// first re-validation (10 min after the 401) already finds the key restored.
    pub fn short() -> Timeline {
        Timeline {
            warmup: 2 * MINUTE,
            measure: 5 * MINUTE,
            revoke_at: 30 * SECOND,
            daily_at: 90 * SECOND,
            billing_at: 2 * MINUTE,
            restore_at: 4 * MINUTE,
            churn_tail: 6 * MINUTE,
            storm_at: 2 * MINUTE,
            storm_for: 60 * SECOND,
            storm_share: 0.25,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    pub dialect: Dialect,
    pub scopes: Vec<ScopeLimits>,
    /// The true scope of each key.
    pub key_scope: Vec<usize>,
    pub faults: Vec<Fault>,
    pub workload: Workload,
    pub warmup: Nanos,
    pub measure: Nanos,
    /// Arrivals continue (unmeasured) this long after the window.
    pub tail: Nanos,
    /// A key revoked and later restored: (key, restored at).
    pub revoked: Option<(usize, Nanos)>,
}

const SMALL: ScopeLimits = ScopeLimits {
    rpm: 60,
    tpm: 40_000,
};
const LARGE: ScopeLimits = ScopeLimits {
    rpm: 500,
    tpm: 200_000,
};

impl Scenario {
    fn base(id: &'static str, title: &'static str, t: &Timeline) -> Scenario {
        Scenario {
            id,
            title,
            dialect: Dialect::OpenAi,
            scopes: vec![SMALL; 10],
            key_scope: (0..10).collect(),
            faults: Vec::new(),
            workload: Workload::default(),
            warmup: t.warmup,
            measure: t.measure,
            tail: 0,
            revoked: None,
        }
    }

    /// S1: 10 separate scopes of 60 RPM / 40k TPM.
    pub fn s1(t: &Timeline) -> Scenario {
        Scenario::base("S1", "homogeneous 10 x (60 RPM, 40k TPM)", t)
    }

    /// S2: 3 x (500 RPM, 200k TPM) + 7 x (60 RPM, 40k TPM).
    pub fn s2(t: &Timeline) -> Scenario {
        let mut s = Scenario::base("S2", "heterogeneous 3 x (500, 200k) + 7 x (60, 40k)", t);
        for scope in s.scopes.iter_mut().take(3) {
            *scope = LARGE;
        }
        s
    }

    /// S3: keys 7-10 share one (60 RPM, 40k TPM) scope, named only by `openai-organization`.
    pub fn s3(t: &Timeline) -> Scenario {
        let mut s = Scenario::base("S3", "keys 7-10 share one hidden 60 RPM scope", t);
        s.scopes.truncate(7);
        s.key_scope = (0..10).map(|k: usize| k.min(6)).collect();
        s
    }

    /// S4: churn on S1's keys: key 2 revoked then restored, key 5 out of daily quota, key 8
    /// out of credit.
    pub fn s4(t: &Timeline) -> Scenario {
        let mut s = Scenario::base(
            "S4",
            "churn: key 2 revoked/restored, key 5 RPD, key 8 billing",
            t,
        );
        let w = t.warmup;
        s.faults = vec![
            Fault::Revoked {
                key: 1,
                from: w + t.revoke_at,
                to: w + t.restore_at,
            },
            Fault::DailyQuota {
                key: 4,
                from: w + t.daily_at,
            },
            Fault::Billing {
                key: 7,
                from: w + t.billing_at,
            },
        ];
        s.tail = t.churn_tail;
        s.revoked = Some((1, w + t.restore_at));
        s
    }

    /// S5: S1 with a provider-wide 503 storm.
    pub fn s5(t: &Timeline) -> Scenario {
        let mut s = Scenario::base("S5", "S1 + 25 % provider-wide 503 for 60 s", t);
        s.faults = vec![Fault::Overload {
            from: t.warmup + t.storm_at,
            to: t.warmup + t.storm_at + t.storm_for,
            share: t.storm_share,
        }];
        s
    }

    /// S8: S1's keys on the Gemini dialect: fixed minute windows (requests and input tokens),
    /// no rate-limit or scope headers; only 429 bodies (QuotaFailure + RetryInfo) teach.
    pub fn s8(t: &Timeline) -> Scenario {
        let mut s = Scenario::base(
            "S8",
            "Gemini: 10 x (60 RPM, 40k input TPM), fixed windows, no headers",
            t,
        );
        s.dialect = Dialect::Gemini;
        s
    }

    /// S9: S8 with 429s that do not state the limit's value: only the send rate at each 429
    /// teaches (AIMD), as with header-less OpenAI-compatible vendors.
    pub fn s9(t: &Timeline) -> Scenario {
        let mut s = Scenario::base("S9", "Gemini as S8, 429s without the limit's value", t);
        s.dialect = Dialect::GeminiUnstated;
        s
    }

    pub fn all(t: &Timeline) -> Vec<Scenario> {
        vec![
            Scenario::s1(t),
            Scenario::s2(t),
            Scenario::s3(t),
            Scenario::s4(t),
            Scenario::s5(t),
            Scenario::s8(t),
            Scenario::s9(t),
        ]
    }

    /// Mean tokens a request counts against the tokens-per-minute limit.
    pub fn mean_billed(&self) -> f64 {
        self.workload.mean_billed(self.dialect)
    }

    /// Can the scope serve at `t` (some key valid, not out of credit or daily quota)?
    pub fn scope_available(&self, scope: usize, t: Nanos) -> bool {
        let keys: Vec<usize> = (0..self.key_scope.len())
            .filter(|&k| self.key_scope[k] == scope)
            .collect();
        let dead = |k: usize| {
            self.faults.iter().any(|f| match *f {
                Fault::Revoked { key, from, to } => key == k && from <= t && t < to,
                _ => false,
            })
        };
        let scope_dead = self.faults.iter().any(|f| match *f {
            Fault::Billing { key, from } | Fault::DailyQuota { key, from } => {
                self.key_scope[key] == scope && from <= t
            }
            _ => false,
        });
        !scope_dead && keys.iter().any(|&k| !dead(k))
    }

    /// Seconds of the measured window during which the scope could serve.
    pub fn available_secs(&self, scope: usize) -> f64 {
        let start = self.warmup;
        let steps = self.measure / SECOND;
        (0..steps)
            .filter(|i| self.scope_available(scope, start + i * SECOND + SECOND / 2))
            .count() as f64
    }

    /// True capacity in requests per second of each scope (its binding dimension, for the
    /// workload's mean billed tokens).
    pub fn scope_capacity_rps(&self, mean_tokens: f64) -> Vec<f64> {
        self.scopes
            .iter()
            .map(|s| (s.rpm as f64 / 60.0).min(s.tpm as f64 / 60.0 / mean_tokens))
            .collect()
    }

    /// Nominal aggregate capacity (all scopes up), requests per second.
    pub fn capacity_rps(&self, mean_tokens: f64) -> f64 {
        self.scope_capacity_rps(mean_tokens).iter().sum()
    }

    /// Is the aggregate binding dimension tokens (else requests)?
    pub fn tokens_bind(&self, mean_tokens: f64) -> bool {
        let tpm: f64 = self.scopes.iter().map(|s| s.tpm as f64).sum();
        let rpm: f64 = self.scopes.iter().map(|s| s.rpm as f64).sum();
        tpm / mean_tokens < rpm
    }
}
