//! The key pool of one provider: which key serves the next request, and what every upstream
//! outcome teaches about each key, its quota scope and the model.
//!
//! State lives behind one short-held mutex (never across an await). Limits belong to quota
//! scopes (keys draining one org/project bucket) and are known from the config, learned from
//! response headers, or learned from 429s. Selection is headroom-weighted power-of-two-choices
//! by default; uni-api's algorithms stay selectable.

// Model names are looked up on every request under the pool's lock: hashbrown's default
// hasher and `entry_ref` (a key is copied only when a model is first seen).
use hashbrown::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::classify::{Classified, ErrorClass, Flavor};
use super::clock::{Clock, Nanos, nanos};
use super::estimate::{Estimator, Limit429};
use super::gcra::Bucket;
use super::health::{AUTH_REVALIDATE, BILLING_REVALIDATE, Health, backoff, jitter};
use super::limits::{BucketSet, Cost, Dim, limits_for};
use super::ratelimit_headers::{LimitSnapshot, RequestsWindow};
use crate::config::schema::RateLimitSpec;
use crate::secret::{Credential, mask};

mod remote;
pub use remote::{Admission, AdmitFuture, Admitted, Event, Fact, Peers, Reservation, SharedBucket};

const SECOND: Nanos = 1_000_000_000;
const MINUTE: Nanos = 60 * SECOND;
const HOUR: Nanos = 60 * MINUTE;
/// Exploration rate of the default scheduler.
const EPSILON: f64 = 0.02;
/// In-flight count at which a key's score halves.
const KAPPA: f64 = 4.0;
/// Rather than wait longer than this for a limit only estimated from 429s, send the request
/// beyond it when the limit may well be higher (`Estimator::may_probe`).
const PROBE_AFTER: Nanos = 5 * SECOND;
/// A key over its concurrency cap is looked at again this soon.
const INFLIGHT_RECHECK: Nanos = 50_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Headroom-weighted power-of-two-choices with a little exploration (llmux default).
    #[default]
    Smart,
    RoundRobin,
    /// uni-api: one shuffle when the pool is built, then round robin.
    Random,
    FixedPriority,
    /// uni-api: round robin in an order re-sorted by success rate after every full cycle.
    SmartRoundRobin,
}

#[derive(Debug, Clone)]
pub struct KeySpec {
    pub secret: String,
    pub scope: Option<String>,
    pub max_inflight: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct PoolSettings {
    pub name: String,
    pub flavor: Option<Flavor>,
    pub algorithm: Algorithm,
    /// uni-api `api_key_rate_limit`.
    pub limits: Option<RateLimitSpec>,
    /// uni-api `api_key_cooldown_period`: cool any failing key this long (when set).
    pub cooldown: Option<Duration>,
    /// uni-api `api_key_rate_limit_cooldown_period`: cool a rate-limited key at least this long.
    pub rate_limit_cooldown: Option<Duration>,
    /// uni-api `api_key_quota_cooldown_period`: cool a quota-exhausted key this long.
    pub quota_cooldown: Option<Duration>,
    /// Default per-key in-flight cap.
    pub max_inflight: Option<u32>,
    /// All keys drain one quota.
    pub shared_scope: bool,
    /// Seed of the pool's own random choices (exploration, shuffles, jitter), for
    /// reproducible runs; none: seeded from the system.
    pub seed: Option<u64>,
}

/// What the response told about limits and scope (every response, success or not). The
/// scope id is borrowed from the response headers when they spell it whole.
#[derive(Debug, Clone, Default)]
pub struct Observed<'h> {
    pub limits: LimitSnapshot,
    pub scope_id: Option<std::borrow::Cow<'h, str>>,
}

#[derive(Debug)]
pub enum Acquire {
    Granted(Lease),
    /// Nothing admissible now; the earliest key frees at `until`. With a ticket, that slot
    /// is booked for this waiter (later waiters are told later slots): pass it back to
    /// [`KeyPool::acquire_with`] at `until`, or drop it to give the slot up.
    Wait {
        until: Nanos,
        why: String,
        ticket: Option<Ticket>,
    },
    /// Nothing will free within any sensible wait.
    Exhausted {
        retry_after: Option<Duration>,
        why: String,
    },
    /// The request is larger than any key's limit allows.
    TooLarge {
        why: String,
    },
}

#[derive(Debug)]
struct Key {
    credential: Arc<Credential>,
    masked: String,
    /// Shared with leases: usage records carry it without copying.
    fingerprint: Arc<str>,
    scope: usize,
    scope_learned: bool,
    max_inflight: Option<u32>,
    inflight: u32,
    health: Health,
    strikes: u32,
    consecutive_server: u32,
    consecutive_transport: u32,
    /// Models this key may not serve, until when, why.
    excluded: HashMap<Box<str>, (Nanos, ErrorClass)>,
    /// Configured limits (uni-api: per key and model).
    limits: HashMap<Box<str>, BucketSet>,
    /// Exponentially weighted success rate and latency (ns).
    success: f64,
    latency: f64,
    ok: u64,
    failed: u64,
    last_error: Option<(ErrorClass, String, u64)>,
    auth_failed_at: Option<Nanos>,
}

#[derive(Debug, Default)]
struct ScopeModel {
    /// Learned from headers.
    learned: BucketSet,
    blocked_until: Nanos,
    block_class: Option<ErrorClass>,
    block_why: String,
    block_strikes: u32,
    /// Largest request the scope accepts (learned from "Request too large").
    max_request_tokens: Option<u64>,
    /// Grant sequence of the lease whose response headers were applied last: an older
    /// snapshot (answers arrive out of order) must not overwrite a newer one.
    snap_seq: u64,
    /// Reservations of leases still in flight, by grant sequence; a snapshot taken when lease
    /// N started cannot include the ones granted after it, so they are re-applied.
    inflight: std::collections::BTreeMap<u64, Cost>,
    /// Slots booked by waiters' tickets (taken from `learned`, not yet sent: no snapshot
    /// includes them).
    booked: Cost,
    /// Limits estimated from 429s (their buckets are among `learned`) and the send rate.
    est: Estimator,
}

#[derive(Debug)]
struct Scope {
    name: String,
    models: HashMap<Box<str>, ScopeModel>,
    /// Out of credit: no key of the scope is used until then (then one probe).
    billing: Option<(Nanos, usize, String)>,
}

#[derive(Debug, Default)]
struct ModelState {
    blocked_until: Nanos,
    why: String,
    window_start: Nanos,
    total: u32,
    failures: u32,
    overload_strikes: u32,
}

#[derive(Debug)]
struct State {
    keys: Vec<Key>,
    scopes: Vec<Scope>,
    models: HashMap<Box<str>, ModelState>,
    cursor: usize,
    order: Vec<usize>,
    cycle_pos: usize,
    rng: fastrand::Rng,
    retry_tokens: f64,
    dirty: bool,
    grant_seq: u64,
    /// smart_round_robin: the order computed from the usage store's success rates (the last
    /// 72 h), applied at the end of each cycle; without it, the pool's own counters decide.
    ranked: Option<Vec<usize>>,
}

#[derive(Debug)]
struct Shared {
    settings: PoolSettings,
    clock: Arc<dyn Clock>,
    /// How many keys `state` holds (fixed when the pool is built): read on every request
    /// without taking the lock the workers share.
    key_count: usize,
    state: Mutex<State>,
    /// Other instances sharing these keys (`remote`), when configured.
    peers: OnceLock<Arc<dyn Peers>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Clone)]
pub struct KeyPool {
    shared: Arc<Shared>,
}

/// Stable, non-reversible id of a key for persisted state.
pub fn fingerprint(secret: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in secret.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}#{h:016x}", mask(secret))
}

impl KeyPool {
    pub fn new(keys: Vec<KeySpec>, settings: PoolSettings, clock: Arc<dyn Clock>) -> KeyPool {
        let mut scopes: Vec<Scope> = Vec::new();
        let scope_of = |name: &str, scopes: &mut Vec<Scope>| -> usize {
            if let Some(i) = scopes.iter().position(|s| s.name == name) {
                return i;
            }
            scopes.push(Scope {
                name: name.to_string(),
                models: HashMap::new(),
                billing: None,
            });
            scopes.len() - 1
        };
        let mut built = Vec::with_capacity(keys.len());
        for spec in keys {
            let masked = mask(&spec.secret);
            let fp = fingerprint(&spec.secret);
            let scope_name = if settings.shared_scope {
                format!("{}:shared", settings.name)
            } else {
                spec.scope.clone().unwrap_or_else(|| format!("key:{fp}"))
            };
            let scope = scope_of(&scope_name, &mut scopes);
            built.push(Key {
                fingerprint: Arc::from(fp),
                credential: Arc::new(Credential::new(&spec.secret)),
                masked,
                scope,
                // A configured scope is not overridden by what headers suggest.
                scope_learned: spec.scope.is_some(),
                max_inflight: spec.max_inflight.or(settings.max_inflight),
                inflight: 0,
                health: Health::Healthy,
                strikes: 0,
                consecutive_server: 0,
                consecutive_transport: 0,
                excluded: HashMap::new(),
                limits: HashMap::new(),
                success: 1.0,
                latency: 0.0,
                ok: 0,
                failed: 0,
                last_error: None,
                auth_failed_at: None,
            });
        }
        let mut rng = settings
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        let mut order: Vec<usize> = (0..built.len()).collect();
        if settings.algorithm == Algorithm::Random {
            rng.shuffle(&mut order);
        }
        KeyPool {
            shared: Arc::new(Shared {
                settings,
                clock,
                key_count: built.len(),
                state: Mutex::new(State {
                    keys: built,
                    scopes,
                    models: HashMap::new(),
                    cursor: 0,
                    order,
                    cycle_pos: 0,
                    rng,
                    retry_tokens: 10.0,
                    dirty: false,
                    grant_seq: 0,
                    ranked: None,
                }),
                peers: OnceLock::new(),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.settings.name
    }

    pub fn len(&self) -> usize {
        self.shared.key_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.shared.settings
    }

    /// The keys' fingerprints in configuration order: how usage records name them.
    pub fn fingerprints(&self) -> Vec<String> {
        self.shared
            .lock()
            .keys
            .iter()
            .map(|k| k.fingerprint.to_string())
            .collect()
    }

    /// smart_round_robin: the order to restart from after each full cycle (indices in
    /// configuration order, best first). Ignored unless it names every key once.
    pub fn set_ranked_order(&self, order: Vec<usize>) {
        let mut st = self.shared.lock();
        let mut seen = vec![false; st.keys.len()];
        let valid = order.len() == seen.len()
            && order
                .iter()
                .all(|&i| seen.get_mut(i).is_some_and(|s| !std::mem::replace(s, true)));
        if valid {
            st.ranked = Some(order);
        }
    }

    /// True when admission needs a token estimate for this model (token limits configured or
    /// learned), so callers skip estimating otherwise.
    pub fn needs_tokens(&self, model: &str) -> bool {
        if let Some(spec) = &self.shared.settings.limits
            && limits_for(spec, model)
                .iter()
                .any(|l| !matches!(l.period, crate::config::schema::RatePeriod::Window(_)))
        {
            return true;
        }
        let st = self.shared.lock();
        st.scopes.iter().any(|s| {
            s.models.get(model).is_some_and(|m| {
                m.max_request_tokens.is_some()
                    || m.est.wants_tokens
                    || m.learned.buckets.iter().any(|(d, _)| *d != Dim::Requests)
            })
        })
    }

    /// Global retry budget: retries may be at most ~20 % of first attempts (plus a small
    /// reserve), so a provider-wide failure does not turn into a retry storm.
    pub fn allow_retry(&self) -> bool {
        let mut st = self.shared.lock();
        if st.retry_tokens >= 1.0 {
            st.retry_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Pick a key for `model`, never one of `tried`.
    pub fn acquire(&self, model: &str, cost: Cost, tried: &[usize]) -> Acquire {
        self.acquire_with(model, cost, tried, None)
    }

    /// As [`KeyPool::acquire`], redeeming the [`Ticket`] an earlier `Wait` booked: when its
    /// time has come and its key can still serve, the booked slot is granted; otherwise the
    /// booking is released and a key is picked as usual.
    pub fn acquire_with(
        &self,
        model: &str,
        cost: Cost,
        tried: &[usize],
        ticket: Option<Ticket>,
    ) -> Acquire {
        let mut ticket = ticket;
        if let Some(t) = &ticket
            && !Arc::ptr_eq(&t.shared, &self.shared)
        {
            // Another pool's booking: it releases itself there.
            ticket = None;
        }
        let now = self.shared.clock.now();
        let settings = &self.shared.settings;
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        if let Some(b) = ticket.as_mut().and_then(|t| t.booking.take()) {
            if b.model.as_ref() == model
                && !tried.contains(&b.index)
                && st.keys.get(b.index).is_some_and(|k| k.scope == b.scope)
            {
                if now < b.until {
                    return Acquire::Wait {
                        until: b.until,
                        why: format!("waiting for the slot booked on {}", st.keys[b.index].masked),
                        ticket: Some(Ticket::new(&self.shared, b)),
                    };
                }
                if let Verdict::Ok { .. } =
                    admissible(st, settings, b.index, model, &b.cost, now, true)
                {
                    if let Some(sm) = st.scopes[b.scope].models.get_mut(model) {
                        sm.booked = sm.booked.minus(b.cost);
                    }
                    return self.grant(st, b.index, model, b.cost, now, false);
                }
            }
            // The key cannot serve any more (a 429, a cool-down, a reload moved it): give the
            // slot back and look again.
            release(st, &b, now);
        }
        drop(ticket);
        if tried.is_empty() {
            st.retry_tokens = (st.retry_tokens + 0.2).min(20.0);
        }
        if st.keys.is_empty() {
            return Acquire::Exhausted {
                retry_after: None,
                why: format!("provider `{}` has no keys", settings.name),
            };
        }
        if let Some(m) = st.models.get(model)
            && m.blocked_until > now
        {
            return Acquire::Wait {
                until: m.blocked_until,
                why: m.why.clone(),
                ticket: None,
            };
        }
        // Inline for up to 8 keys: no allocation per request for the usual channel.
        let mut candidates: smallvec::SmallVec<[(usize, f64, f64); 8]> = smallvec::SmallVec::new();
        // The earliest a key frees, and that key when a booking can hold its slot.
        let mut earliest: Option<(Nanos, Option<usize>)> = None;
        // The key to send beyond its estimated limit rather than wait long for it.
        let mut probe: Option<(Nanos, usize)> = None;
        let mut reasons: Vec<String> = Vec::new();
        let mut too_large: Option<String> = None;
        for i in 0..st.keys.len() {
            if tried.contains(&i) {
                continue;
            }
            match admissible(st, settings, i, model, &cost, now, false) {
                Verdict::Ok { score, weight } => candidates.push((i, score, weight)),
                Verdict::Later {
                    at,
                    why,
                    bookable,
                    soft,
                } => {
                    let better = earliest.is_none_or(|(t, k)| at < t || (at == t && k.is_none()));
                    if better {
                        earliest = Some((at, bookable.then_some(i)));
                    }
                    if soft && probe.is_none_or(|(t, _)| at < t) {
                        probe = Some((at, i));
                    }
                    reasons.push(why);
                }
                Verdict::Never(why) => reasons.push(why),
                Verdict::TooLarge(why) => {
                    too_large = Some(why.clone());
                    reasons.push(why);
                }
            }
        }
        let pick = match settings.algorithm {
            Algorithm::Smart => pick_smart(&mut st.rng, &candidates),
            Algorithm::FixedPriority => candidates.first().map(|c| c.0),
            Algorithm::RoundRobin | Algorithm::Random | Algorithm::SmartRoundRobin => {
                pick_rotating(st, &candidates)
            }
        };
        let Some(index) = pick else {
            if let (Some((_, key)), Some((at, _))) = (probe, earliest)
                && at > now + PROBE_AFTER
            {
                return self.grant(st, key, model, cost, now, true);
            }
            if candidates.is_empty()
                && let Some(why) = too_large
                && earliest.is_none()
            {
                return Acquire::TooLarge { why };
            }
            let summary = summarize(&settings.name, model, &reasons);
            return match earliest {
                Some((until, key)) => Acquire::Wait {
                    until,
                    why: summary,
                    ticket: key.map(|index| {
                        let b = book(st, index, model, cost, until);
                        Ticket::new(&self.shared, b)
                    }),
                },
                None => Acquire::Exhausted {
                    retry_after: None,
                    why: summary,
                },
            };
        };
        self.grant(st, index, model, cost, now, true)
    }

    /// Reserve `index` for one attempt (its buckets too, unless a booking already holds them).
    fn grant(
        &self,
        st: &mut State,
        index: usize,
        model: &str,
        cost: Cost,
        now: Nanos,
        take: bool,
    ) -> Acquire {
        let key = &mut st.keys[index];
        key.inflight += 1;
        let probe = matches!(key.health, Health::Probation { .. });
        if probe {
            key.health = Health::Probation {
                probe_in_flight: true,
            };
        }
        if take && let Some(set) = key.limits.get_mut(model) {
            set.take(&cost, now);
        }
        let credential = Arc::clone(&key.credential);
        let fingerprint = Arc::clone(&key.fingerprint);
        let scope = key.scope;
        st.grant_seq += 1;
        let seq = st.grant_seq;
        // `entry_ref`: no key allocation per grant once the model is known.
        let sm = st.scopes[scope].models.entry_ref(model).or_default();
        if take {
            sm.learned.take(&cost, now);
        }
        sm.est.granted(&sm.learned, &cost, now);
        sm.inflight.insert(seq, cost);
        Acquire::Granted(Lease {
            grant: Observer {
                shared: Arc::clone(&self.shared),
                index,
                model: Arc::from(model),
                seq,
                scope_at_grant: scope,
                started: now,
            },
            cost,
            probe,
            reported: false,
            credential,
            fingerprint,
            remote: None,
        })
    }

    /// Keys whose re-validation is due; they are marked so that each is checked once.
    pub fn due_revalidations(&self) -> Vec<(usize, Arc<str>)> {
        let now = self.shared.clock.now();
        let mut st = self.shared.lock();
        let mut due = Vec::new();
        for (i, k) in st.keys.iter_mut().enumerate() {
            if let Health::Disabled {
                class: ErrorClass::AuthInvalid,
                revalidate_at,
                revalidating,
                ..
            } = &mut k.health
                && *revalidate_at <= now
                && !*revalidating
            {
                *revalidating = true;
                due.push((i, Arc::clone(k.credential.secret())));
            }
        }
        due
    }

    /// Result of a cheap validation call (list models) with a disabled key.
    pub fn revalidated(&self, index: usize, ok: bool) {
        let now = self.shared.clock.now();
        let mut st = self.shared.lock();
        st.dirty = true;
        let seen = remote::before(&self.shared, &st, index, "");
        let Some(k) = st.keys.get_mut(index) else {
            return;
        };
        if let Health::Disabled { class, attempt, .. } = k.health.clone() {
            k.health = if ok {
                tracing::info!(key = %k.masked, "key validated again; probing it with the next request");
                Health::Probation {
                    probe_in_flight: false,
                }
            } else {
                Health::disabled(class, &AUTH_REVALIDATE, attempt + 1, now)
            };
        }
        remote::publish_changes(&self.shared, &st, index, "", seen);
    }

    /// Whether slow state changed since the last call (for persistence).
    pub fn take_dirty(&self) -> bool {
        std::mem::take(&mut self.shared.lock().dirty)
    }

    pub fn status(&self) -> Vec<KeyStatus> {
        let now = self.shared.clock.now();
        let clock = &self.shared.clock;
        let mut st = self.shared.lock();
        for k in &mut st.keys {
            k.health.tick(now);
        }
        let st = &*st;
        st.keys
            .iter()
            .map(|k| {
                let scope = &st.scopes[k.scope];
                let (until, why) = match &k.health {
                    Health::Cooling { until, class } => (
                        Some(clock.to_unix_ms(*until)),
                        Some(class.as_str().to_string()),
                    ),
                    Health::Disabled {
                        class,
                        revalidate_at,
                        ..
                    } => (
                        Some(clock.to_unix_ms(*revalidate_at)),
                        Some(class.as_str().to_string()),
                    ),
                    _ => (None, None),
                };
                let mut limits = Vec::new();
                for (model, set) in &k.limits {
                    for (dim, b) in &set.buckets {
                        limits.push(LimitStatus {
                            model: model.to_string(),
                            dim: dim.as_str(),
                            source: "configured",
                            available: b.available(now),
                            capacity: b.capacity(),
                            blocked_until_unix_ms: None,
                            why: None,
                        });
                    }
                }
                for (model, sm) in &scope.models {
                    for (dim, b) in &sm.learned.buckets {
                        limits.push(LimitStatus {
                            model: model.to_string(),
                            dim: dim.as_str(),
                            source: if sm.est.is_estimated(*dim) {
                                "estimated"
                            } else {
                                "learned"
                            },
                            available: b.available(now),
                            capacity: b.capacity(),
                            blocked_until_unix_ms: None,
                            why: None,
                        });
                    }
                    if sm.blocked_until > now {
                        limits.push(LimitStatus {
                            model: model.to_string(),
                            dim: "blocked",
                            source: "provider",
                            available: 0,
                            capacity: 0,
                            blocked_until_unix_ms: Some(clock.to_unix_ms(sm.blocked_until)),
                            why: Some(sm.block_why.clone()),
                        });
                    }
                }
                KeyStatus {
                    key: k.masked.clone(),
                    scope: scope.name.clone(),
                    state: if scope.billing.as_ref().is_some_and(|b| b.0 > now) {
                        "disabled"
                    } else {
                        k.health.name()
                    },
                    until_unix_ms: until.or(scope.billing.as_ref().map(|b| clock.to_unix_ms(b.0))),
                    why: why.or(scope.billing.as_ref().map(|b| b.2.clone())),
                    last_error: k.last_error.as_ref().map(|(c, m, at)| LastError {
                        class: c.as_str(),
                        message: m.clone(),
                        at_unix_ms: *at,
                    }),
                    in_flight: k.inflight,
                    max_inflight: k.max_inflight,
                    success_rate: k.success,
                    latency_ms: (k.latency > 0.0).then_some(k.latency / 1e6),
                    requests_ok: k.ok,
                    requests_failed: k.failed,
                    excluded_models: k
                        .excluded
                        .iter()
                        .filter(|(_, (until, _))| *until > now)
                        .map(|(m, (until, class))| ExcludedModel {
                            model: m.to_string(),
                            until_unix_ms: clock.to_unix_ms(*until),
                            why: class.as_str(),
                        })
                        .collect(),
                    limits,
                }
            })
            .collect()
    }

    pub(super) fn with_state<R>(&self, f: impl FnOnce(&mut PoolView<'_>) -> R) -> R {
        let mut st = self.shared.lock();
        let mut view = PoolView {
            st: &mut st,
            clock: &self.shared.clock,
        };
        f(&mut view)
    }
}

/// Crate-internal access for persistence.
pub(super) struct PoolView<'a> {
    st: &'a mut State,
    pub clock: &'a Arc<dyn Clock>,
}

impl PoolView<'_> {
    pub fn keys(&self) -> impl Iterator<Item = (usize, &str, &Health, &str, bool)> {
        self.st.keys.iter().enumerate().map(|(i, k)| {
            (
                i,
                &*k.fingerprint,
                &k.health,
                self.st.scopes[k.scope].name.as_str(),
                k.scope_learned,
            )
        })
    }

    pub fn set_health(&mut self, index: usize, health: Health) {
        if let Some(k) = self.st.keys.get_mut(index) {
            k.health = health;
        }
    }

    pub fn join_scope(&mut self, index: usize, name: &str) {
        join_scope(self.st, index, name);
    }

    /// Each scope that has keys, with the first of them (persisted state names scopes so).
    fn scopes_by_first_key(&self) -> impl Iterator<Item = (usize, &Scope)> {
        self.st.scopes.iter().enumerate().filter_map(|(si, s)| {
            let first = self.st.keys.iter().position(|k| k.scope == si)?;
            Some((first, s))
        })
    }

    pub fn scope_blocks(&self) -> Vec<(usize, String, Nanos, ErrorClass, String)> {
        let mut out = Vec::new();
        for (first, s) in self.scopes_by_first_key() {
            for (m, sm) in &s.models {
                if let Some(c) = sm.block_class {
                    out.push((
                        first,
                        m.to_string(),
                        sm.blocked_until,
                        c,
                        sm.block_why.clone(),
                    ));
                }
            }
            if let Some((until, _, why)) = &s.billing {
                out.push((
                    first,
                    String::new(),
                    *until,
                    ErrorClass::Billing,
                    why.clone(),
                ));
            }
        }
        out
    }

    /// Estimated limits per scope (named by its first key), model and dimension, and whether
    /// they count in fixed windows.
    pub fn estimates(&self) -> Vec<(usize, String, Dim, u64, bool)> {
        let mut out = Vec::new();
        for (first, s) in self.scopes_by_first_key() {
            for (m, sm) in &s.models {
                for (dim, per_minute, windowed) in sm.est.estimates(&sm.learned) {
                    out.push((first, m.to_string(), dim, per_minute, windowed));
                }
            }
        }
        out
    }

    pub fn restore_estimate(
        &mut self,
        key: usize,
        model: &str,
        dim: Dim,
        per_minute: u64,
        windowed: bool,
    ) {
        let Some(scope) = self.st.keys.get(key).map(|k| k.scope) else {
            return;
        };
        let now = self.clock.now();
        let window_end = windowed.then(|| next_minute(&**self.clock));
        let sm = self.st.scopes[scope].models.entry_ref(model).or_default();
        sm.est
            .restore(&mut sm.learned, dim, per_minute, window_end, now);
    }

    pub fn block_scope(
        &mut self,
        key: usize,
        model: &str,
        until: Nanos,
        class: ErrorClass,
        why: String,
    ) {
        let Some(scope) = self.st.keys.get(key).map(|k| k.scope) else {
            return;
        };
        let s = &mut self.st.scopes[scope];
        if class == ErrorClass::Billing && model.is_empty() {
            s.billing = Some((until, 0, why));
        } else {
            let sm = s.models.entry_ref(model).or_default();
            sm.blocked_until = until;
            sm.block_class = Some(class);
            sm.block_why = why;
        }
    }
}

fn join_scope(st: &mut State, index: usize, name: &str) {
    let si = match st.scopes.iter().position(|s| s.name == name) {
        Some(i) => i,
        None => {
            st.scopes.push(Scope {
                name: name.to_string(),
                models: HashMap::new(),
                billing: None,
            });
            st.scopes.len() - 1
        }
    };
    if let Some(k) = st.keys.get_mut(index)
        && k.scope != si
    {
        tracing::info!(key = %k.masked, scope = name, "key shares a quota scope (learned from response headers)");
        k.scope = si;
        k.scope_learned = true;
        st.dirty = true;
    }
}

enum Verdict {
    Ok {
        score: f64,
        weight: f64,
    },
    /// Not before `at`; `bookable` when only the key's rate buckets stand in the way, so a
    /// waiter can book that slot; `soft` when only limits estimated from 429s do, and going
    /// beyond them now would narrow the estimate (`Estimator::may_probe`).
    Later {
        at: Nanos,
        why: String,
        bookable: bool,
        soft: bool,
    },
    Never(String),
    TooLarge(String),
}

/// Can key `i` serve `cost` now? With `booked`, the key's rate buckets already hold a slot
/// for this request (a ticket) and are not consulted.
fn admissible(
    st: &mut State,
    settings: &PoolSettings,
    i: usize,
    model: &str,
    cost: &Cost,
    now: Nanos,
    booked: bool,
) -> Verdict {
    let configured = settings.limits.as_ref().map(|spec| limits_for(spec, model));
    let key = &mut st.keys[i];
    key.health.tick(now);
    // Reasons are only built for keys that cannot serve (the happy path allocates nothing).
    let name = key.masked.as_str();
    let mut probation = false;
    let later = |at: Nanos, why: String| Verdict::Later {
        at,
        why,
        bookable: false,
        soft: false,
    };
    match &key.health {
        Health::Healthy => {}
        Health::Cooling { until, class } => {
            return later(*until, format!("{name} cooling ({})", class.as_str()));
        }
        Health::Probation { probe_in_flight } => {
            if *probe_in_flight {
                return later(now + SECOND, format!("{name} is being probed"));
            }
            probation = true;
        }
        Health::Disabled { class, .. } => {
            return Verdict::Never(format!("{name} disabled ({})", class.as_str()));
        }
    }
    if let Some((until, class)) = key.excluded.get(model) {
        if *until > now {
            return later(
                *until,
                format!("{name} cannot serve {model} ({})", class.as_str()),
            );
        }
        key.excluded.remove(model);
    }
    if let Some(cap) = key.max_inflight
        && key.inflight >= cap
    {
        return later(
            now + INFLIGHT_RECHECK,
            format!("{name} at its concurrency cap ({cap})"),
        );
    }
    if let Some(limits) = configured
        && !limits.is_empty()
        && !key.limits.contains_key(model)
    {
        key.limits
            .insert(Box::from(model), BucketSet::from_limits(limits));
    }
    let mut headroom = 1.0f64;
    let mut weight = None;
    // The rate buckets' wait is decided last: only a key nothing else holds back is bookable.
    let mut bucket_wait: Option<(Nanos, Binding, bool)> = None;
    let (mut soft, mut estimated) = (false, false);
    if let Some(set) = key.limits.get(model) {
        if let Some(tpr) = set.tokens_per_request
            && cost.input_tokens > tpr
        {
            return Verdict::TooLarge(format!(
                "the request's ~{} prompt tokens exceed {name}'s limit of {tpr} tokens per request",
                cost.input_tokens
            ));
        }
        if !booked {
            let (wait, binding) = set.wait(cost, now);
            if wait > 0 {
                bucket_wait = Some((wait, binding, false));
            }
            headroom = headroom.min(set.headroom(cost, now));
        }
        weight = set.requests_per_minute();
    }
    let success = key.success;
    let inflight = key.inflight;
    let scope_index = key.scope;
    let scope = &st.scopes[scope_index];
    let mut billing_over = false;
    if let Some((until, _, why)) = &scope.billing {
        if *until > now {
            return later(*until, format!("{}: {why}", st.keys[i].masked));
        }
        // The scope gets one probe (cleared below, once this key is picked as admissible).
        billing_over = true;
        probation = true;
    }
    if let Some(sm) = scope.models.get(model) {
        if sm.blocked_until > now {
            return later(
                sm.blocked_until,
                format!("{}: {}", st.keys[i].masked, sm.block_why),
            );
        }
        if let Some(max) = sm.max_request_tokens
            && cost.tokens > max
        {
            return Verdict::TooLarge(format!(
                "the request (~{} tokens) is larger than {}'s limit of {max} tokens per minute",
                cost.tokens, st.keys[i].masked
            ));
        }
        if !booked {
            let (wait, binding) = sm.learned.wait(cost, now);
            if wait > 0 {
                // Only estimates hold it back, and going beyond them would teach something.
                let hard = sm
                    .learned
                    .buckets
                    .iter()
                    .filter(|(d, _)| !sm.est.is_estimated(*d))
                    .any(|(d, b)| b.wait_for(BucketSet::cost_of(*d, cost), now) > 0);
                soft = bucket_wait.is_none() && !hard && sm.est.may_probe(&sm.learned, cost, now);
                estimated = binding.is_some_and(|b| sm.est.is_estimated(b.0));
                if bucket_wait.is_none_or(|(w, _, _)| wait > w) {
                    bucket_wait = Some((wait, binding, true));
                }
            }
            headroom = headroom.min(sm.learned.headroom(cost, now));
        }
        if weight.is_none() {
            weight = sm.learned.requests_per_minute();
        }
    }
    if let Some((wait, binding, learned)) = bucket_wait {
        return Verdict::Later {
            bookable: true,
            soft,
            at: now + wait,
            why: format!(
                "{}: {} exhausted{}",
                st.keys[i].masked,
                describe_binding(binding),
                match (learned, estimated) {
                    (true, true) => " (estimated from the provider's 429s)",
                    (true, false) => " (reported by the provider)",
                    _ => "",
                }
            ),
        };
    }
    if billing_over {
        // Until the probe answers, the billing block holds (a failure sets it again).
        st.scopes[scope_index].billing = None;
    }
    let mut score = headroom.max(0.01) * success.max(0.01) / (1.0 + f64::from(inflight) / KAPPA);
    if probation {
        score *= 0.5;
    }
    Verdict::Ok {
        score,
        weight: weight.unwrap_or(1.0).max(0.001),
    }
}

/// The limit that holds a key back: dimension, capacity, period.
type Binding = Option<(Dim, u64, Nanos)>;

fn describe_binding(binding: Binding) -> String {
    match binding {
        None => "limit".to_string(),
        Some((dim, cap, period)) => {
            let per = match period / SECOND {
                60 => "minute".to_string(),
                3600 => "hour".to_string(),
                86_400 => "day".to_string(),
                s => format!("{s} s"),
            };
            format!("{cap} {} per {per}", dim.as_str())
        }
    }
}

fn summarize(provider: &str, model: &str, reasons: &[String]) -> String {
    let mut shown: Vec<&str> = reasons.iter().map(String::as_str).take(4).collect();
    if reasons.len() > 4 {
        shown.push("...");
    }
    format!(
        "no key of provider `{provider}` can serve `{model}` now: {}",
        if shown.is_empty() {
            "all were tried".to_string()
        } else {
            shown.join("; ")
        }
    )
}

/// Power of two choices, sampled in proportion to capacity; occasionally explore.
fn pick_smart(rng: &mut fastrand::Rng, candidates: &[(usize, f64, f64)]) -> Option<usize> {
    match candidates.len() {
        0 => return None,
        1 => return Some(candidates[0].0),
        _ => {}
    }
    if rng.f64() < EPSILON {
        return Some(candidates[rng.usize(..candidates.len())].0);
    }
    let total: f64 = candidates.iter().map(|c| c.2).sum();
    let sample = |rng: &mut fastrand::Rng, skip: Option<usize>| -> usize {
        let total = total - skip.map_or(0.0, |s| candidates[s].2);
        let mut x = rng.f64() * total;
        for (pos, c) in candidates.iter().enumerate() {
            if Some(pos) == skip {
                continue;
            }
            x -= c.2;
            if x <= 0.0 {
                return pos;
            }
        }
        candidates.len() - 1 - usize::from(skip == Some(candidates.len() - 1))
    };
    let a = sample(rng, None);
    let b = sample(rng, Some(a));
    Some(if candidates[a].1 >= candidates[b].1 {
        candidates[a].0
    } else {
        candidates[b].0
    })
}

/// uni-api's rotations: the first admissible key at or after the cursor in the pool's order.
fn pick_rotating(st: &mut State, candidates: &[(usize, f64, f64)]) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let n = st.order.len();
    for step in 0..n {
        let pos = (st.cursor + step) % n;
        let key = st.order[pos];
        if candidates.iter().any(|c| c.0 == key) {
            st.cursor = (pos + 1) % n;
            st.cycle_pos += step + 1;
            if st.cycle_pos >= n {
                st.cycle_pos = 0;
                if st.order.len() > 1 && st.cursor == 0 {
                    resort_by_success(st);
                }
            }
            return Some(key);
        }
    }
    None
}

/// smart_round_robin: after a full cycle, order keys by success rate, then volume — the usage
/// store's ranking when there is one (uni-api), else the pool's own counters.
fn resort_by_success(st: &mut State) {
    if let Some(ranked) = &st.ranked {
        st.order.clone_from(ranked);
        return;
    }
    let keys = &st.keys;
    st.order.sort_by(|&a, &b| {
        keys[b]
            .success
            .total_cmp(&keys[a].success)
            .then(keys[b].ok.cmp(&keys[a].ok))
    });
}

/// One upstream attempt holding a key. Dropping it releases the key (a stream holds it until
/// the client has the last byte or goes away).
pub struct Lease {
    /// Which key, model and moment: also what learns from the answer's headers
    /// ([`Lease::observer`]).
    grant: Observer,
    cost: Cost,
    probe: bool,
    reported: bool,
    credential: Arc<Credential>,
    fingerprint: Arc<str>,
    /// What the shared limits reserved for this attempt (several instances).
    remote: Option<Box<dyn Reservation>>,
}

impl Lease {
    pub fn index(&self) -> usize {
        self.grant.index
    }

    /// The secret, only for the upstream request's auth.
    pub fn secret(&self) -> &str {
        self.credential.secret()
    }

    /// The secret and its header values, for the upstream request's auth.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    pub fn masked(&self) -> String {
        mask(self.secret())
    }

    /// The key's stable, non-reversible name ([`fingerprint`]), as usage records store it.
    pub fn fingerprint(&self) -> &Arc<str> {
        &self.fingerprint
    }

    pub fn reserved_tokens(&self) -> u64 {
        self.cost.tokens
    }

    /// Learn limits and scope from a response's headers (success or failure alike).
    pub fn observe(&self, obs: &Observed<'_>) {
        self.observer().observe(obs);
    }

    /// What [`Lease::observe`] needs, detached from the lease: a successful answer's headers
    /// are learned from after the answer has gone out, when the lease is already released.
    pub fn observer(&self) -> Observer {
        self.grant.clone()
    }

    /// The attempt succeeded.
    pub fn success(&mut self) {
        let now = self.grant.shared.clock.now();
        self.success_at(now);
    }

    /// [`Lease::success`] and, with the usage the provider reported, [`Lease::settle_tokens`]:
    /// one clock reading for both (a whole answer is judged and settled at one moment).
    pub fn success_settled(&mut self, actual: Option<u64>) {
        let now = self.grant.shared.clock.now();
        self.success_at(now);
        if let Some(actual) = actual {
            self.settle_tokens_at(actual, now);
        }
    }

    fn success_at(&mut self, now: Nanos) {
        self.reported = true;
        let mut st = self.grant.shared.lock();
        let seen = remote::before(&self.grant.shared, &st, self.grant.index, &self.grant.model);
        let key = &mut st.keys[self.grant.index];
        // A request sent before the key was disabled may still succeed: that does not
        // bring a revoked key back (re-validation does).
        if !matches!(key.health, Health::Disabled { .. }) {
            key.health = Health::Healthy;
        }
        key.strikes = 0;
        key.consecutive_server = 0;
        key.consecutive_transport = 0;
        key.ok += 1;
        key.success = key.success * 0.95 + 0.05;
        let elapsed = now.saturating_sub(self.grant.started) as f64;
        key.latency = if key.latency == 0.0 {
            elapsed
        } else {
            key.latency * 0.9 + elapsed * 0.1
        };
        let scope = key.scope;
        if let Some(sm) = st.scopes[scope].models.get_mut(&*self.grant.model) {
            sm.block_strikes = 0;
            if sm.est.succeeded(&mut sm.learned, now) {
                st.dirty = true;
            }
        }
        let m = st.models.entry_ref(&*self.grant.model).or_default();
        record_model_outcome(m, now, true);
        m.overload_strikes = 0;
        remote::publish_changes(
            &self.grant.shared,
            &st,
            self.grant.index,
            &self.grant.model,
            seen,
        );
    }

    /// Settle the token reservation with the usage the provider reported.
    pub fn settle_tokens(&self, actual: u64) {
        self.settle_tokens_at(actual, self.grant.shared.clock.now());
    }

    fn settle_tokens_at(&self, actual: u64, now: Nanos) {
        self.settle_remote(actual);
        let mut st = self.grant.shared.lock();
        let reserved = self.cost.tokens;
        let key = &mut st.keys[self.grant.index];
        if let Some(set) = key.limits.get_mut(&*self.grant.model) {
            set.settle_tokens(reserved, actual, now);
        }
        let scope = key.scope;
        if let Some(sm) = st.scopes[scope].models.get_mut(&*self.grant.model) {
            // A snapshot taken after this request started already counts what it really used.
            if self.grant.seq > sm.snap_seq {
                sm.learned.settle_tokens(reserved, actual, now);
            }
            sm.inflight.remove(&self.grant.seq);
        }
    }

    /// The attempt failed; act on the key, its scope or the model as the class says.
    pub fn failure(&mut self, c: &Classified) {
        self.reported = true;
        self.refund_remote_on(c);
        let shared = Arc::clone(&self.grant.shared);
        let settings = &shared.settings;
        let now = shared.clock.now();
        let mut guard = shared.lock();
        let st = &mut *guard;
        let multi = st.keys.len() >= 2;
        let n_keys = st.keys.len();
        let model: &str = &self.grant.model;
        let unix_now = shared.clock.unix_ms();
        let seen = remote::before(&shared, st, self.grant.index, model);
        {
            let key = &mut st.keys[self.grant.index];
            key.last_error = Some((c.class, truncate(&c.message, 300), unix_now));
            // Rate limits say nothing about the key's reliability (headroom covers them).
            if c.class.retry_elsewhere()
                && !matches!(
                    c.class,
                    ErrorClass::RateLimited
                        | ErrorClass::DailyQuota
                        | ErrorClass::Overloaded
                        | ErrorClass::RequestTooLarge
                )
            {
                key.failed += 1;
                key.success *= 0.95;
            }
        }
        let scope_index = st.keys[self.grant.index].scope;
        let masked = st.keys[self.grant.index].masked.clone();
        match c.class {
            ErrorClass::RateLimited => {
                let keys = &st.keys;
                let configured = |dim: Dim| configured_per_minute(keys, scope_index, model, dim);
                let sm = st.scopes[scope_index].models.entry_ref(model).or_default();
                sm.block_strikes += 1;
                let stated = c
                    .retry_after
                    .map(nanos)
                    .or_else(|| exhausted_reset(&sm.learned, now));
                // Google counts per-minute quotas in fixed windows; the retry delay runs to
                // the end of the current one (else it is the wall-clock minute).
                let window_end = matches!(settings.flavor, Some(Flavor::Gemini | Flavor::Vertex))
                    .then(|| match c.retry_after.map(nanos) {
                        Some(d) if d <= MINUTE => now + d,
                        _ => next_minute(&*shared.clock),
                    });
                let limit = Limit429 {
                    dim: c.limit_dim,
                    stated: c.limit_value,
                    refused: BucketSet::cost_of(c.limit_dim.unwrap_or(Dim::Requests), &self.cost),
                };
                // A refused request did not count against the limit it hit.
                sm.est.sent.unrecord(&self.cost, self.grant.started, now);
                if sm
                    .est
                    .rate_limited(&mut sm.learned, limit, configured, window_end, now)
                {
                    st.dirty = true;
                }
                let wait = stated.unwrap_or_else(|| backoff(SECOND, sm.block_strikes, MINUTE));
                // A fixed window ends for every key at once and the estimate paces the
                // return; elsewhere, jitter keeps keys and instances from coming back in step.
                let wait = if window_end.is_some() {
                    wait
                } else {
                    jitter(wait, &mut st.rng)
                };
                sm.blocked_until = sm.blocked_until.max(now + wait);
                sm.block_class = Some(ErrorClass::RateLimited);
                sm.block_why = format!("rate-limited by the provider for {}", fmt_secs(wait));
                for (_, b) in &mut sm.learned.buckets {
                    b.drain(now);
                }
                if let Some(min) = settings.rate_limit_cooldown
                    && multi
                {
                    let until = now + nanos(min).max(wait);
                    cool(&mut st.keys[self.grant.index], until, c.class);
                }
            }
            ErrorClass::RequestTooLarge => {
                let sm = st.scopes[scope_index].models.entry_ref(model).or_default();
                sm.max_request_tokens = c.limit_tokens.or(sm.max_request_tokens);
            }
            ErrorClass::DailyQuota => {
                let until = if let Some(q) = settings.quota_cooldown {
                    now + nanos(q)
                } else if let Some(at) = c.reset_at_unix_ms {
                    shared.clock.instant_of_unix_ms(at)
                } else if let Some(ra) = c.retry_after {
                    now + nanos(ra)
                } else {
                    // Next midnight UTC.
                    let day = 86_400_000;
                    shared.clock.instant_of_unix_ms((unix_now / day + 1) * day)
                };
                let sm = st.scopes[scope_index].models.entry_ref(model).or_default();
                sm.blocked_until = sm.blocked_until.max(until);
                sm.block_class = Some(ErrorClass::DailyQuota);
                sm.block_why = format!(
                    "daily quota exhausted until {}",
                    fmt_unix(shared.clock.to_unix_ms(until))
                );
                st.dirty = true;
            }
            ErrorClass::Billing => {
                if c.model_unavailable {
                    st.keys[self.grant.index]
                        .excluded
                        .insert(Box::from(model), (now + 24 * HOUR, c.class));
                } else {
                    let scope = &mut st.scopes[scope_index];
                    let attempt = scope.billing.as_ref().map_or(0, |b| b.1 + 1);
                    let until = if let Some(q) = settings.quota_cooldown {
                        now + nanos(q)
                    } else if let Some(at) = c.reset_at_unix_ms {
                        shared.clock.instant_of_unix_ms(at)
                    } else {
                        now + BILLING_REVALIDATE[attempt.min(BILLING_REVALIDATE.len() - 1)]
                    };
                    scope.billing = Some((
                        until,
                        attempt,
                        format!("out of credit: {}", truncate(&c.message, 120)),
                    ));
                    tracing::warn!(provider = %settings.name, key = %masked, "quota scope out of credit; probing again at {}", fmt_unix(shared.clock.to_unix_ms(until)));
                }
                st.dirty = true;
            }
            ErrorClass::AuthInvalid => {
                st.keys[self.grant.index].auth_failed_at = Some(now);
                let recent = st
                    .keys
                    .iter()
                    .filter(|k| {
                        k.auth_failed_at
                            .is_some_and(|t| now.saturating_sub(t) < MINUTE)
                    })
                    .count();
                if n_keys >= 2 && recent * 2 > n_keys {
                    // Most keys "invalid" at once: more likely our request (headers, base URL)
                    // than the keys. Keep the keys; pause the model briefly instead.
                    for k in &mut st.keys {
                        if matches!(
                            k.health,
                            Health::Disabled {
                                class: ErrorClass::AuthInvalid,
                                ..
                            }
                        ) && k
                            .auth_failed_at
                            .is_some_and(|t| now.saturating_sub(t) < MINUTE)
                        {
                            k.health = Health::Probation {
                                probe_in_flight: false,
                            };
                        }
                    }
                    let m = st.models.entry_ref(model).or_default();
                    m.blocked_until = now + 30 * SECOND;
                    m.why = format!(
                        "{recent} of {n_keys} keys of provider `{}` were rejected as invalid within a minute: suspecting the request, not the keys",
                        settings.name
                    );
                    tracing::error!("{}", m.why);
                } else {
                    let key = &mut st.keys[self.grant.index];
                    // More 401s from requests already in flight are the same event: keep the
                    // schedule step (only a failed re-validation moves it on).
                    let attempt = match key.health {
                        Health::Disabled { attempt, .. } => attempt,
                        _ => 0,
                    };
                    key.health = Health::disabled(c.class, &AUTH_REVALIDATE, attempt, now);
                    tracing::warn!(provider = %settings.name, key = %masked, "key rejected as invalid; disabled and re-validated later");
                    st.dirty = true;
                }
            }
            ErrorClass::Permission => {
                st.keys[self.grant.index]
                    .excluded
                    .insert(Box::from(model), (now + HOUR, c.class));
            }
            ErrorClass::ServerError => {
                let key = &mut st.keys[self.grant.index];
                key.consecutive_server += 1;
                if key.consecutive_server >= 2 {
                    key.strikes += 1;
                    let until =
                        now + jitter(backoff(10 * SECOND, key.strikes, 5 * MINUTE), &mut st.rng);
                    cool(&mut st.keys[self.grant.index], until, c.class);
                }
                let m = st.models.entry_ref(model).or_default();
                record_model_outcome(m, now, false);
            }
            ErrorClass::Overloaded
                if st
                    .models
                    .get(model)
                    .is_some_and(|m| m.blocked_until > self.grant.started) =>
            {
                // An answer to a request sent before the current pause: the same wave, already
                // acted on.
            }
            ErrorClass::Overloaded => {
                let m = st.models.entry_ref(model).or_default();
                m.overload_strikes += 1;
                let wait = c
                    .retry_after
                    .map(nanos)
                    .unwrap_or_else(|| backoff(SECOND, m.overload_strikes, 30 * SECOND));
                m.blocked_until = m.blocked_until.max(now + wait);
                m.why = format!(
                    "provider `{}` overloaded for {model}; back in {}",
                    settings.name,
                    fmt_secs(wait)
                );
            }
            ErrorClass::TransportPreSend => {
                let key = &mut st.keys[self.grant.index];
                key.consecutive_transport += 1;
                if key.consecutive_transport >= 3 {
                    key.strikes += 1;
                    let until = now + backoff(10 * SECOND, key.strikes, 5 * MINUTE);
                    cool(key, until, c.class);
                }
                // Never reached the provider: give the reservation back.
                if let Some(set) = key.limits.get_mut(model) {
                    set.refund(&self.cost, now);
                }
            }
            ErrorClass::Timeout | ErrorClass::StreamInterrupted => {
                let m = st.models.entry_ref(model).or_default();
                record_model_outcome(m, now, false);
            }
            ErrorClass::BadRequest
            | ErrorClass::ContextTooLong
            | ErrorClass::ClientCancelled
            | ErrorClass::UnknownClientError => {}
        }
        let key = &mut st.keys[self.grant.index];
        // A failed probe: back to cooling, twice as long as last time.
        if self.probe && matches!(key.health, Health::Probation { .. }) && c.class.retry_elsewhere()
        {
            key.strikes += 1;
            let until = now + jitter(backoff(10 * SECOND, key.strikes, 10 * MINUTE), &mut st.rng);
            cool(&mut st.keys[self.grant.index], until, c.class);
        }
        // uni-api's `api_key_cooldown_period`: any failure of the key cools it (with >= 2 keys).
        if let Some(period) = settings.cooldown
            && multi
            && c.class.retry_elsewhere()
            && !matches!(st.keys[self.grant.index].health, Health::Disabled { .. })
        {
            let until = now + nanos(period);
            cool(&mut st.keys[self.grant.index], until, c.class);
        }
        remote::publish_changes(&shared, st, self.grant.index, model, seen);
    }
}

/// Which key, model and moment a response's headers describe, detached from the lease: see
/// [`Lease::observer`].
#[derive(Clone)]
pub struct Observer {
    shared: Arc<Shared>,
    index: usize,
    model: Arc<str>,
    seq: u64,
    scope_at_grant: usize,
    started: Nanos,
}

impl Observer {
    /// [`Lease::observe`], for the lease this was taken from.
    pub fn observe(&self, obs: &Observed<'_>) {
        let now = self.shared.clock.now();
        let mut st = self.shared.lock();
        let mut joined = false;
        if let Some(scope_id) = &obs.scope_id {
            let key = &st.keys[self.index];
            let provider = &self.shared.settings.name;
            // Compare as `<provider>:<scope_id>` without building the string per response.
            let current = &st.scopes[key.scope].name;
            let same = current.len() == provider.len() + 1 + scope_id.len()
                && current.starts_with(provider.as_str())
                && current.ends_with(&**scope_id)
                && current.as_bytes()[provider.len()] == b':';
            if !key.scope_learned && !same && !self.shared.settings.shared_scope {
                let seen = remote::before(&self.shared, &st, self.index, "");
                join_scope(&mut st, self.index, &format!("{provider}:{scope_id}"));
                remote::publish_changes(&self.shared, &st, self.index, "", seen);
                joined = true;
            }
        }
        let scope = st.keys[self.index].scope;
        let sm = st.scopes[scope].models.entry_ref(&*self.model).or_default();
        // A key moved to another scope since this request started: its headers describe
        // the old one (unless this very answer revealed the move).
        if self.seq < sm.snap_seq || (scope != self.scope_at_grant && !joined) {
            return;
        }
        sm.snap_seq = self.seq;
        // The snapshot is the provider's view when this request arrived, not now: re-apply
        // what was granted after it, and the slots booked for waiters.
        let later = sm
            .inflight
            .range(self.seq + 1..)
            .fold(sm.booked, |a, (_, c)| a.plus(*c));
        let at = self.started;
        let dims = [
            (Dim::Requests, obs.limits.requests),
            (Dim::Tokens, obs.limits.tokens),
            (Dim::InputTokens, obs.limits.input_tokens),
            (Dim::OutputTokens, obs.limits.output_tokens),
        ];
        for (dim, snap) in dims {
            let Some(snap) = snap else { continue };
            let (Some(limit), Some(remaining)) = (snap.limit, snap.remaining) else {
                continue;
            };
            if limit == 0 {
                continue;
            }
            // The provider reports this limit: no estimate needed.
            sm.est.forget(dim);
            let period =
                if dim == Dim::Requests && obs.limits.requests_window == RequestsWindow::Day {
                    Duration::from_secs(86_400)
                } else {
                    Duration::from_secs(60)
                };
            let extra = match dim {
                Dim::Requests => later.requests,
                Dim::Tokens => later.tokens,
                _ => 0,
            };
            match sm.learned.get_mut(dim) {
                Some(b) => {
                    b.observe(limit, remaining, at);
                    b.force(extra, now);
                }
                None => {
                    let mut b = Bucket::new(limit, period);
                    b.observe(limit, remaining, at);
                    b.force(extra, now);
                    sm.learned.buckets.push((dim, b));
                }
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut st = self.grant.shared.lock();
        if let Some(sm) = st
            .scopes
            .get_mut(self.grant.scope_at_grant)
            .and_then(|s| s.models.get_mut(&*self.grant.model))
        {
            sm.inflight.remove(&self.grant.seq);
        }
        if let Some(key) = st.keys.get_mut(self.grant.index) {
            key.inflight = key.inflight.saturating_sub(1);
            if self.probe
                && !self.reported
                && let Health::Probation { probe_in_flight } = &mut key.health
            {
                *probe_in_flight = false;
            }
        }
    }
}

/// A waiter's booked slot: the cost it will send at `until`, already taken from the key's
/// rate buckets so that waiters after it are told later slots instead of all waking for the
/// same freed token. Redeem it with [`KeyPool::acquire_with`]; dropping it gives the slot back.
pub struct Ticket {
    shared: Arc<Shared>,
    booking: Option<Booking>,
}

#[derive(Debug)]
struct Booking {
    index: usize,
    scope: usize,
    model: Box<str>,
    cost: Cost,
    until: Nanos,
}

impl Ticket {
    fn new(shared: &Arc<Shared>, booking: Booking) -> Ticket {
        Ticket {
            shared: Arc::clone(shared),
            booking: Some(booking),
        }
    }

    /// When the booked slot comes.
    pub fn until(&self) -> Option<Nanos> {
        self.booking.as_ref().map(|b| b.until)
    }

    /// The booked key.
    pub fn index(&self) -> Option<usize> {
        self.booking.as_ref().map(|b| b.index)
    }
}

// Not derived: the pool's state holds the secrets.
impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("pool", &self.shared.settings.name)
            .field("booking", &self.booking)
            .finish()
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("pool", &self.grant.shared.settings.name)
            .field("key", &self.grant.index)
            .field("masked", &mask(self.secret()))
            .field("model", &self.grant.model)
            .field("seq", &self.grant.seq)
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(b) = self.booking.take() {
            let now = self.shared.clock.now();
            release(&mut self.shared.lock(), &b, now);
        }
    }
}

/// Take `cost` from key `index`'s buckets at `until` for a waiter.
fn book(st: &mut State, index: usize, model: &str, cost: Cost, until: Nanos) -> Booking {
    let key = &mut st.keys[index];
    if let Some(set) = key.limits.get_mut(model) {
        set.take(&cost, until);
    }
    let scope = key.scope;
    let sm = st.scopes[scope].models.entry_ref(model).or_default();
    sm.learned.take(&cost, until);
    sm.booked = sm.booked.plus(cost);
    Booking {
        index,
        scope,
        model: Box::from(model),
        cost,
        until,
    }
}

/// Give a booked slot back.
fn release(st: &mut State, b: &Booking, now: Nanos) {
    if let Some(set) = st
        .keys
        .get_mut(b.index)
        .and_then(|k| k.limits.get_mut(&*b.model))
    {
        set.refund(&b.cost, now);
    }
    if let Some(sm) = st
        .scopes
        .get_mut(b.scope)
        .and_then(|s| s.models.get_mut(&*b.model))
    {
        sm.learned.refund(&b.cost, now);
        sm.booked = sm.booked.minus(b.cost);
    }
}

fn cool(key: &mut Key, until: Nanos, class: ErrorClass) {
    let until = match key.health {
        Health::Cooling { until: u, .. } => u.max(until),
        _ => until,
    };
    key.health = Health::Cooling { until, class };
}

/// The configured per-minute limit of a scope in `dim`: the sum over its keys, when every one
/// has such a limit.
fn configured_per_minute(keys: &[Key], scope: usize, model: &str, dim: Dim) -> Option<u64> {
    let mut sum = 0u64;
    for k in keys.iter().filter(|k| k.scope == scope) {
        let (_, b) = k
            .limits
            .get(model)?
            .buckets
            .iter()
            .find(|(d, b)| *d == dim && b.period() == MINUTE)?;
        sum = sum.saturating_add(b.capacity());
    }
    (sum > 0).then_some(sum)
}

/// The next wall-clock minute (:00), as an instant.
fn next_minute(clock: &dyn Clock) -> Nanos {
    let minute_ms = 60_000;
    clock.instant_of_unix_ms((clock.unix_ms() / minute_ms + 1) * minute_ms)
}

/// Reset time of a learned dimension the provider reported empty.
fn exhausted_reset(learned: &BucketSet, now: Nanos) -> Option<Nanos> {
    learned
        .buckets
        .iter()
        .filter(|(_, b)| b.available(now) == 0)
        .map(|(_, b)| b.wait_for(1, now))
        .filter(|w| *w > 0)
        .max()
}

/// Model breaker: more than half of >= 10 attempts failing within 30 s pauses the model 15 s.
fn record_model_outcome(m: &mut ModelState, now: Nanos, ok: bool) {
    if now.saturating_sub(m.window_start) > 30 * SECOND {
        m.window_start = now;
        m.total = 0;
        m.failures = 0;
    }
    m.total += 1;
    if !ok {
        m.failures += 1;
        if m.total >= 10 && m.failures * 2 > m.total {
            m.blocked_until = now + 15 * SECOND;
            m.why = format!(
                "{} of the last {} attempts failed; pausing 15 s",
                m.failures, m.total
            );
            m.window_start = now;
            m.total = 0;
            m.failures = 0;
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn fmt_secs(d: Nanos) -> String {
    format!("{:.1}s", d as f64 / 1e9)
}

fn fmt_unix(ms: u64) -> String {
    format!("unix {}s", ms / 1000)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyStatus {
    pub key: String,
    pub scope: String,
    pub state: &'static str,
    pub until_unix_ms: Option<u64>,
    pub why: Option<String>,
    pub last_error: Option<LastError>,
    pub in_flight: u32,
    pub max_inflight: Option<u32>,
    pub success_rate: f64,
    pub latency_ms: Option<f64>,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub excluded_models: Vec<ExcludedModel>,
    pub limits: Vec<LimitStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LastError {
    pub class: &'static str,
    pub message: String,
    pub at_unix_ms: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExcludedModel {
    pub model: String,
    pub until_unix_ms: u64,
    pub why: &'static str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LimitStatus {
    pub model: String,
    pub dim: &'static str,
    pub source: &'static str,
    pub available: u64,
    pub capacity: u64,
    pub blocked_until_unix_ms: Option<u64>,
    pub why: Option<String>,
}
