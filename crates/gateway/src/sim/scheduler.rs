//! The schedulers compared on the same harness: the key pool (`ours`) through an adapter, and
//! the baselines as tiny in-sim schedulers.
//!
//! The harness calls, per attempt: [`Scheduler::acquire`] → (the provider answers) →
//! [`Scheduler::answered`] with the response headers and, for a failure, its classification →
//! for a success, [`Scheduler::finished`] when the last byte is through. Attempt ids are unique
//! per run, so an adapter can hold a lease per attempt.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::keypool::classify::{Classified, ErrorClass, Flavor};
use crate::keypool::clock::{Clock, ManualClock, Nanos, nanos};
use crate::keypool::limits::Cost;
use crate::keypool::ratelimit_headers::observation;
use crate::keypool::{Acquire, Algorithm, KeyPool, KeySpec, Lease, PoolSettings, Ticket};

use super::provider::MODEL;

/// The gateway's completion reserve when the client sets no `max_tokens`
/// (`routing::attempt::DEFAULT_OUTPUT_RESERVE`).
pub const DEFAULT_OUTPUT_RESERVE: u64 = 1024;

/// What the gateway knows about a request before sending it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestInfo {
    /// Prompt tokens estimated from the body size.
    pub prompt_est: u64,
    pub max_tokens: Option<u64>,
}

/// A scheduler's answer to "which key for this attempt?".
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    Granted(usize),
    /// Nothing admissible now; the earliest key frees at `until`.
    Wait {
        until: Nanos,
    },
    /// Nothing will free within any sensible wait.
    Exhausted,
    /// The request is larger than any key allows.
    TooLarge,
}

pub trait Scheduler {
    fn name(&self) -> &'static str;
    /// A key for attempt `attempt` of client request `request`, which already tried `tried`.
    fn acquire(
        &mut self,
        request: usize,
        attempt: usize,
        req: &RequestInfo,
        tried: &[usize],
    ) -> Pick;
    /// Client request `request` is answered: nothing it waited for is needed any more.
    fn done(&mut self, _request: usize) {}
    /// Global retry budget (checked before every attempt after the first).
    fn allow_retry(&mut self) -> bool {
        true
    }
    /// A granted attempt that will not be sent.
    fn abandon(&mut self, _attempt: usize) {}
    /// The provider answered: `Ok` = 2xx (the attempt stays open until [`Self::finished`]);
    /// `Err` = the classified failure (the attempt is over).
    fn answered(
        &mut self,
        _attempt: usize,
        _key: usize,
        _headers: &HeaderMap,
        _outcome: Result<(), &Classified>,
    ) {
    }
    /// A successful attempt's last byte, with the usage the provider reported.
    fn finished(&mut self, _attempt: usize, _usage_tokens: u64) {}
    /// Disabled keys due for a `GET /models` check.
    fn due_revalidations(&mut self) -> Vec<usize> {
        Vec::new()
    }
    fn revalidated(&mut self, _key: usize, _ok: bool) {}
}

/// The schedulers of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `KeyPool` with `Algorithm::Smart` and default settings.
    Ours,
    /// Naive round robin: ignores all feedback, skips keys this request already tried.
    RoundRobin,
    /// Naive uniform random choice among keys this request has not tried.
    Random,
    /// uni-api (HEAD 2026): round robin, a key that answers a rate-limit 429 is benched for
    /// max(1800 s, stated wait), a quota error for 6 h; nothing else is learned.
    UniApiLike,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Ours, Kind::RoundRobin, Kind::Random, Kind::UniApiLike];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::RoundRobin => "round_robin",
            Kind::Random => "random",
            Kind::UniApiLike => "uni_api_like",
        }
    }

    pub fn build(
        self,
        keys: usize,
        flavor: Flavor,
        clock: Arc<ManualClock>,
        seed: u64,
    ) -> Box<dyn Scheduler> {
        match self {
            Kind::Ours => Box::new(PoolScheduler::new(keys, flavor, clock, seed)),
            Kind::RoundRobin => Box::new(RoundRobin { keys, cursor: 0 }),
            Kind::Random => Box::new(Random {
                keys,
                rng: fastrand::Rng::with_seed(seed ^ 0x0bad_5eed),
            }),
            Kind::UniApiLike => Box::new(UniApiLike {
                cooling_until: vec![0; keys],
                cursor: 0,
                clock,
                rate_limit_cooldown: nanos(Duration::from_secs(1800)),
                quota_cooldown: nanos(Duration::from_secs(6 * 3600)),
            }),
        }
    }
}

/// The key pool, driven exactly as `routing::attempt` drives it.
pub struct PoolScheduler {
    pool: KeyPool,
    flavor: Flavor,
    clock: Arc<ManualClock>,
    leases: BTreeMap<usize, Lease>,
    /// Slots booked for waiting requests, by request.
    tickets: BTreeMap<usize, Ticket>,
}

impl PoolScheduler {
    pub fn new(keys: usize, flavor: Flavor, clock: Arc<ManualClock>, seed: u64) -> PoolScheduler {
        let specs = (0..keys)
            .map(|i| KeySpec {
                secret: format!("sk-proj-sim{i:04}Xk29fQpLmN7wRt"),
                scope: None,
                max_inflight: None,
            })
            .collect();
        let settings = PoolSettings {
            name: "sim".into(),
            flavor: Some(flavor),
            algorithm: Algorithm::Smart,
            seed: Some(seed),
            ..PoolSettings::default()
        };
        let pool = KeyPool::new(specs, settings, clock.clone());
        PoolScheduler {
            pool,
            flavor,
            clock,
            leases: BTreeMap::new(),
            tickets: BTreeMap::new(),
        }
    }

    pub fn pool(&self) -> &KeyPool {
        &self.pool
    }
}

impl Scheduler for PoolScheduler {
    fn name(&self) -> &'static str {
        Kind::Ours.name()
    }

    fn acquire(
        &mut self,
        request: usize,
        attempt: usize,
        req: &RequestInfo,
        tried: &[usize],
    ) -> Pick {
        // routing::attempt::forward_json: a token estimate only when the pool needs one.
        let cost = if self.pool.needs_tokens(MODEL) {
            Cost {
                requests: 1,
                tokens: req.prompt_est + req.max_tokens.unwrap_or(DEFAULT_OUTPUT_RESERVE),
                input_tokens: req.prompt_est,
            }
        } else {
            Cost {
                requests: 1,
                ..Cost::default()
            }
        };
        let ticket = self.tickets.remove(&request);
        match self.pool.acquire_with(MODEL, cost, tried, ticket) {
            Acquire::Granted(lease) => {
                let index = lease.index();
                self.leases.insert(attempt, lease);
                Pick::Granted(index)
            }
            Acquire::Wait { until, ticket, .. } => {
                if let Some(t) = ticket {
                    self.tickets.insert(request, t);
                }
                Pick::Wait { until }
            }
            Acquire::Exhausted { .. } => Pick::Exhausted,
            Acquire::TooLarge { .. } => Pick::TooLarge,
        }
    }

    fn allow_retry(&mut self) -> bool {
        self.pool.allow_retry()
    }

    fn done(&mut self, request: usize) {
        self.tickets.remove(&request);
    }

    fn abandon(&mut self, attempt: usize) {
        self.leases.remove(&attempt);
    }

    fn answered(
        &mut self,
        attempt: usize,
        _key: usize,
        headers: &HeaderMap,
        outcome: Result<(), &Classified>,
    ) {
        let unix_ms = self.clock.unix_ms();
        let Some(lease) = self.leases.get_mut(&attempt) else {
            return;
        };
        lease.observe(&observation(headers, self.flavor, unix_ms));
        match outcome {
            Ok(()) => lease.success(),
            Err(c) => {
                lease.failure(c);
                self.leases.remove(&attempt);
            }
        }
    }

    fn finished(&mut self, attempt: usize, usage_tokens: u64) {
        if let Some(lease) = self.leases.remove(&attempt)
            && lease.reserved_tokens() > 0
        {
            // server::relay: the usage tap exists only when tokens were reserved.
            lease.settle_tokens(usage_tokens);
        }
    }

    fn due_revalidations(&mut self) -> Vec<usize> {
        self.pool
            .due_revalidations()
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }

    fn revalidated(&mut self, key: usize, ok: bool) {
        self.pool.revalidated(key, ok);
    }
}

/// Naive round robin.
pub struct RoundRobin {
    keys: usize,
    cursor: usize,
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        Kind::RoundRobin.name()
    }

    fn acquire(
        &mut self,
        _request: usize,
        _attempt: usize,
        _req: &RequestInfo,
        tried: &[usize],
    ) -> Pick {
        round_robin(&mut self.cursor, self.keys, |k| !tried.contains(&k))
    }
}

/// The next key from `cursor` on (wrapping) that `usable` accepts; the cursor moves past it.
fn round_robin(cursor: &mut usize, keys: usize, usable: impl Fn(usize) -> bool) -> Pick {
    for step in 0..keys {
        let k = (*cursor + step) % keys;
        if usable(k) {
            *cursor = (k + 1) % keys;
            return Pick::Granted(k);
        }
    }
    Pick::Exhausted
}

/// Naive random choice.
pub struct Random {
    keys: usize,
    rng: fastrand::Rng,
}

impl Scheduler for Random {
    fn name(&self) -> &'static str {
        Kind::Random.name()
    }

    fn acquire(
        &mut self,
        _request: usize,
        _attempt: usize,
        _req: &RequestInfo,
        tried: &[usize],
    ) -> Pick {
        let free: Vec<usize> = (0..self.keys).filter(|k| !tried.contains(k)).collect();
        if free.is_empty() {
            Pick::Exhausted
        } else {
            Pick::Granted(free[self.rng.usize(..free.len())])
        }
    }
}

/// uni-api-like: round robin with long benches (keys.md §3).
pub struct UniApiLike {
    cooling_until: Vec<Nanos>,
    cursor: usize,
    clock: Arc<ManualClock>,
    rate_limit_cooldown: Nanos,
    quota_cooldown: Nanos,
}

impl Scheduler for UniApiLike {
    fn name(&self) -> &'static str {
        Kind::UniApiLike.name()
    }

    fn acquire(
        &mut self,
        _request: usize,
        _attempt: usize,
        _req: &RequestInfo,
        tried: &[usize],
    ) -> Pick {
        let now = self.clock.now();
        let cooling_until = &self.cooling_until;
        round_robin(&mut self.cursor, cooling_until.len(), |k| {
            !tried.contains(&k) && cooling_until[k] <= now
        })
    }

    fn answered(
        &mut self,
        _attempt: usize,
        key: usize,
        _headers: &HeaderMap,
        outcome: Result<(), &Classified>,
    ) {
        let Err(c) = outcome else { return };
        let now = self.clock.now();
        // uni-api matches the body text; for these bodies that is exactly these classes.
        let bench = match c.class {
            ErrorClass::RateLimited | ErrorClass::DailyQuota => {
                Some(self.rate_limit_cooldown.max(c.retry_after.map_or(0, nanos)))
            }
            ErrorClass::Billing => Some(self.quota_cooldown),
            _ => None,
        };
        // uni-api benches a key only when the provider has more than one.
        if let Some(d) = bench
            && self.cooling_until.len() > 1
        {
            self.cooling_until[key] = self.cooling_until[key].max(now + d);
        }
    }
}
