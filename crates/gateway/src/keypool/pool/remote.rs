//! The pool's side of running several llmux instances on one set of keys (the transport is
//! `keypool::shared`): which of its state changes the other instances must learn, applying
//! what they learned, and admission against configured limits that hold across instances.
//!
//! Pure like the rest of the pool: the transport sits behind [`Peers`], whose `publish` never
//! blocks (it is called under the pool's lock). Remote facts only ever make a key, scope or
//! model less available; the one way back is a [`Fact::Healthy`] a successful probe sends.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Acquire, KeyPool, Lease, Shared, State, Ticket, join_scope};
use crate::keypool::classify::{Classified, ErrorClass};
use crate::keypool::clock::{Nanos, nanos};
use crate::keypool::health::Health;
use crate::keypool::limits::{BucketSet, Cost, Dim};

/// How long a learned scope is remembered for instances that start later.
const SCOPE_TTL_MS: u64 = 7 * 24 * 3_600_000;
/// A key disabled by another instance is re-validated here this much later than there: the
/// instance that saw the failure checks first and tells the others (disabled for longer, or
/// healthy after its probe); only if it cannot (gone, no traffic) do they check themselves.
const REMOTE_REVALIDATE_GRACE: Nanos = 60_000_000_000;

/// A fact about a key (named by its fingerprint, never its secret), the key's quota scope, or a
/// model of the provider, true for `ttl_ms` from when it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Fingerprint of the key (or of a key of the scope) the fact is about; none for a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub ttl_ms: u64,
    pub fact: Fact,
}

/// Classes travel by their stable names (`ErrorClass::as_str`), so instances of different
/// versions skip what they do not know instead of misreading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    /// The key is cooling down (repeated server errors, a failed probe, configured cool-downs).
    KeyCooling { class: String },
    /// The key is disabled (invalid, revoked) until its next re-validation.
    KeyDisabled { class: String, attempt: usize },
    /// The key cannot serve this model (permission, model not available to it).
    ModelExcluded { model: String, class: String },
    /// The key's quota scope is exhausted for this model (rate limit, daily quota).
    ScopeBlocked {
        model: String,
        class: String,
        why: String,
    },
    /// The key's quota scope is out of credit.
    ScopeBilling { why: String },
    /// The model is paused for every key (overload, failure breaker).
    ModelPaused { model: String, why: String },
    /// The key belongs to this quota scope (learned from response headers).
    ScopeLearned { scope: String },
    /// The key answered again: whatever kept it out is over.
    Healthy,
}

impl Fact {
    /// Stable name, used in the shared store's record names.
    pub fn kind(&self) -> &'static str {
        match self {
            Fact::KeyCooling { .. } => "cooling",
            Fact::KeyDisabled { .. } => "disabled",
            Fact::ModelExcluded { .. } => "excluded",
            Fact::ScopeBlocked { .. } => "blocked",
            Fact::ScopeBilling { .. } => "billing",
            Fact::ModelPaused { .. } => "paused",
            Fact::ScopeLearned { .. } => "scope",
            Fact::Healthy => "healthy",
        }
    }

    /// The model the fact is limited to, if any.
    pub fn model(&self) -> Option<&str> {
        match self {
            Fact::ModelExcluded { model, .. }
            | Fact::ScopeBlocked { model, .. }
            | Fact::ModelPaused { model, .. } => Some(model),
            _ => None,
        }
    }
}

/// One bucket of a configured limit, as the shared store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBucket {
    pub dim: Dim,
    pub capacity: u64,
    pub period: Duration,
    pub cost: u64,
}

/// A request to admit one granted lease against the limits all instances share.
#[derive(Debug, Clone)]
pub struct Admission {
    pub pool: String,
    /// Key fingerprint.
    pub key: String,
    pub model: String,
    pub buckets: Vec<SharedBucket>,
}

pub enum Admitted {
    /// Within every limit (or the store is unreachable and admission fails open); the
    /// reservation settles token estimates later.
    Yes(Option<Box<dyn Reservation>>),
    /// Bucket `bucket` has no room: it fits again after `wait`.
    No { wait: Duration, bucket: usize },
}

/// A cost taken from shared buckets, corrected when the real usage is known.
pub trait Reservation: Send + Sync + Debug {
    /// `reserved` tokens were taken at admission, `actual` were used.
    fn settle(&self, reserved: u64, actual: u64);
    /// The request never reached the provider: give everything back.
    fn refund(&self);
}

pub type AdmitFuture<'a> = Pin<Box<dyn Future<Output = Admitted> + Send + 'a>>;

/// The other instances sharing this pool's keys.
pub trait Peers: Send + Sync + Debug {
    /// Tell them a fact. Must not block: the pool calls it under its lock.
    fn publish(&self, pool: &str, event: Event);
    /// Admit a request against the limits all instances share.
    fn admit(&self, admission: Admission) -> AdmitFuture<'_>;
}

/// What could change in one failure or success, captured before it (only with peers).
pub(super) struct Before {
    health: Health,
    scope: usize,
    excluded: Nanos,
    blocked: Nanos,
    billing: Nanos,
    paused: Nanos,
}

pub(super) fn before(shared: &Shared, st: &State, index: usize, model: &str) -> Option<Before> {
    shared.peers.get()?;
    let key = st.keys.get(index)?;
    let scope = st.scopes.get(key.scope)?;
    Some(Before {
        health: key.health.clone(),
        scope: key.scope,
        excluded: key.excluded.get(model).map_or(0, |e| e.0),
        blocked: scope.models.get(model).map_or(0, |m| m.blocked_until),
        billing: scope.billing.as_ref().map_or(0, |b| b.0),
        paused: st.models.get(model).map_or(0, |m| m.blocked_until),
    })
}

/// Publish what became less available (or healthy again) since `before`.
pub(super) fn publish_changes(
    shared: &Shared,
    st: &State,
    index: usize,
    model: &str,
    before: Option<Before>,
) {
    let (Some(before), Some(peers)) = (before, shared.peers.get()) else {
        return;
    };
    let Some(key) = st.keys.get(index) else {
        return;
    };
    let now = shared.clock.now();
    let pool = shared.settings.name.as_str();
    let ttl = |until: Nanos| until.saturating_sub(now) / 1_000_000;
    // Upstream messages are not expected to echo the key, but never let one travel if it does.
    let scrub = |why: &str| {
        if why.contains(&**key.credential.secret()) {
            why.replace(&**key.credential.secret(), &key.masked)
        } else {
            why.to_string()
        }
    };
    let send = |key: Option<&str>, ttl_ms: u64, fact: Fact| {
        if ttl_ms > 0 || matches!(fact, Fact::Healthy) {
            peers.publish(
                pool,
                Event {
                    key: key.map(str::to_string),
                    ttl_ms,
                    fact,
                },
            );
        }
    };
    let fp = Some(&*key.fingerprint);
    match (&before.health, &key.health) {
        (Health::Cooling { until: old, .. }, Health::Cooling { until, .. }) if old >= until => {}
        (_, Health::Cooling { until, class }) => send(
            fp,
            ttl(*until),
            Fact::KeyCooling {
                class: class.as_str().to_string(),
            },
        ),
        (
            Health::Disabled {
                revalidate_at: old, ..
            },
            Health::Disabled { revalidate_at, .. },
        ) if old == revalidate_at => {}
        (
            _,
            Health::Disabled {
                class,
                revalidate_at,
                attempt,
                ..
            },
        ) => send(
            fp,
            ttl(*revalidate_at),
            Fact::KeyDisabled {
                class: class.as_str().to_string(),
                attempt: *attempt,
            },
        ),
        (Health::Healthy, Health::Healthy) => {}
        (_, Health::Healthy) => send(fp, 0, Fact::Healthy),
        _ => {}
    }
    if let Some((until, class)) = key.excluded.get(model)
        && *until > before.excluded
    {
        send(
            fp,
            ttl(*until),
            Fact::ModelExcluded {
                model: model.to_string(),
                class: class.as_str().to_string(),
            },
        );
    }
    let Some(scope) = st.scopes.get(key.scope) else {
        return;
    };
    if key.scope != before.scope {
        send(
            fp,
            SCOPE_TTL_MS,
            Fact::ScopeLearned {
                scope: scope.name.clone(),
            },
        );
    }
    if let Some(sm) = scope.models.get(model)
        && sm.blocked_until > before.blocked
        && let Some(class) = sm.block_class
    {
        send(
            fp,
            ttl(sm.blocked_until),
            Fact::ScopeBlocked {
                model: model.to_string(),
                class: class.as_str().to_string(),
                why: scrub(&sm.block_why),
            },
        );
    }
    if let Some((until, _, why)) = &scope.billing
        && *until > before.billing
    {
        send(fp, ttl(*until), Fact::ScopeBilling { why: scrub(why) });
    }
    if let Some(m) = st.models.get(model)
        && m.blocked_until > before.paused
    {
        send(
            None,
            ttl(m.blocked_until),
            Fact::ModelPaused {
                model: model.to_string(),
                why: scrub(&m.why),
            },
        );
    }
}

fn class_named(name: &str) -> Option<ErrorClass> {
    ErrorClass::ALL.into_iter().find(|c| c.as_str() == name)
}

impl KeyPool {
    /// Connect this pool to the other instances (once: a reloaded config builds new pools).
    pub fn set_peers(&self, peers: Arc<dyn Peers>) -> bool {
        self.shared.peers.set(peers).is_ok()
    }

    pub fn has_peers(&self) -> bool {
        self.shared.peers.get().is_some()
    }

    /// As [`KeyPool::acquire`], and with peers and configured limits for `model`, the grant
    /// is also admitted against the limits all instances share. A key the shared limits
    /// refuse is held back locally until they would admit it, and another one is tried.
    /// A `ticket` from an earlier `Wait` is redeemed as [`KeyPool::acquire_with`] does.
    pub async fn acquire_shared(
        &self,
        model: &str,
        cost: Cost,
        tried: &[usize],
        ticket: Option<Ticket>,
    ) -> Acquire {
        let peers = match self.shared.peers.get() {
            Some(p) if self.shared.settings.limits.is_some() => Arc::clone(p),
            _ => return self.acquire_with(model, cost, tried, ticket),
        };
        let mut soonest: Option<Nanos> = None;
        let mut ticket = ticket;
        for _ in 0..=self.len() {
            let mut lease = match self.acquire_with(model, cost, tried, ticket.take()) {
                Acquire::Granted(lease) => lease,
                // Refusals of the shared store are local holds now: the pool's own answer
                // already accounts for them.
                other => return other,
            };
            let Some(admission) = self.admission_for(&lease) else {
                return Acquire::Granted(lease);
            };
            match peers.admit(admission).await {
                Admitted::Yes(reservation) => {
                    lease.remote = reservation;
                    return Acquire::Granted(lease);
                }
                Admitted::No { wait, bucket } => {
                    let wait = nanos(wait).max(1_000_000);
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                    lease.not_admitted(bucket, wait);
                }
            }
        }
        let wait = soonest.unwrap_or(1_000_000);
        Acquire::Wait {
            until: self.shared.clock.now() + wait,
            why: format!(
                "the keys of provider `{}` are at their configured limits for `{model}` across instances",
                self.shared.settings.name
            ),
            ticket: None,
        }
    }

    fn admission_for(&self, lease: &Lease) -> Option<Admission> {
        let st = self.shared.lock();
        let key = st.keys.get(lease.grant.index)?;
        let set = key.limits.get(&*lease.grant.model)?;
        if set.buckets.is_empty() {
            return None;
        }
        Some(Admission {
            pool: self.shared.settings.name.clone(),
            key: key.fingerprint.to_string(),
            model: lease.grant.model.to_string(),
            buckets: set
                .buckets
                .iter()
                .map(|(dim, b)| SharedBucket {
                    dim: *dim,
                    capacity: b.capacity(),
                    period: Duration::from_nanos(b.period()),
                    cost: BucketSet::cost_of(*dim, &lease.cost),
                })
                .collect(),
        })
    }

    /// Apply what another instance learned. Only ever makes things less available (later
    /// `until`s win), except [`Fact::Healthy`]. Returns whether anything changed.
    pub fn apply_remote(&self, ev: &Event) -> bool {
        let now = self.shared.clock.now();
        let until = now.saturating_add(ev.ttl_ms.saturating_mul(1_000_000));
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        if let Fact::ModelPaused { model, why } = &ev.fact {
            if ev.ttl_ms == 0 {
                return false;
            }
            let m = st.models.entry_ref(model.as_str()).or_default();
            if until <= m.blocked_until {
                return false;
            }
            m.blocked_until = until;
            m.why.clone_from(why);
            return true;
        }
        let Some(index) = ev
            .key
            .as_deref()
            .and_then(|fp| st.keys.iter().position(|k| &*k.fingerprint == fp))
        else {
            return false;
        };
        if ev.ttl_ms == 0 && !matches!(ev.fact, Fact::Healthy) {
            return false;
        }
        let class = |name: &str| class_named(name);
        match &ev.fact {
            Fact::ModelPaused { .. } => false,
            Fact::KeyCooling { class: name } => {
                let Some(class) = class(name) else {
                    return false;
                };
                let key = &mut st.keys[index];
                match key.health {
                    Health::Disabled { .. } => false,
                    Health::Cooling { until: u, .. } if u >= until => false,
                    _ => {
                        key.health = Health::Cooling { until, class };
                        true
                    }
                }
            }
            Fact::KeyDisabled {
                class: name,
                attempt,
            } => {
                let Some(class) = class(name) else {
                    return false;
                };
                let key = &mut st.keys[index];
                let revalidate_at = until.saturating_add(REMOTE_REVALIDATE_GRACE);
                let revalidating = match key.health {
                    Health::Disabled {
                        revalidate_at: at,
                        revalidating,
                        ..
                    } => {
                        if at >= revalidate_at {
                            return false;
                        }
                        revalidating
                    }
                    _ => false,
                };
                key.health = Health::Disabled {
                    class,
                    revalidate_at,
                    attempt: *attempt,
                    revalidating,
                };
                st.dirty = true;
                true
            }
            Fact::ModelExcluded { model, class: name } => {
                let Some(class) = class(name) else {
                    return false;
                };
                let key = &mut st.keys[index];
                match key.excluded.get_mut(model.as_str()) {
                    Some(e) if e.0 >= until => false,
                    Some(e) => {
                        *e = (until, class);
                        true
                    }
                    None => {
                        key.excluded
                            .insert(Box::from(model.as_str()), (until, class));
                        true
                    }
                }
            }
            Fact::ScopeBlocked {
                model,
                class: name,
                why,
            } => {
                let Some(class) = class(name) else {
                    return false;
                };
                let scope = st.keys[index].scope;
                let sm = st.scopes[scope]
                    .models
                    .entry(Box::from(model.as_str()))
                    .or_default();
                if until <= sm.blocked_until {
                    return false;
                }
                sm.blocked_until = until;
                sm.block_class = Some(class);
                sm.block_why.clone_from(why);
                if class == ErrorClass::DailyQuota {
                    st.dirty = true;
                }
                true
            }
            Fact::ScopeBilling { why } => {
                let scope = st.keys[index].scope;
                let s = &mut st.scopes[scope];
                let attempt = match &s.billing {
                    Some((u, _, _)) if *u >= until => return false,
                    Some((_, a, _)) => *a,
                    None => 0,
                };
                s.billing = Some((until, attempt, why.clone()));
                st.dirty = true;
                true
            }
            Fact::ScopeLearned { scope } => {
                let key = &st.keys[index];
                if key.scope_learned
                    || self.shared.settings.shared_scope
                    || st.scopes[key.scope].name == *scope
                {
                    return false;
                }
                join_scope(st, index, scope);
                true
            }
            Fact::Healthy => {
                let key = &mut st.keys[index];
                if key.health == Health::Healthy {
                    return false;
                }
                key.health = Health::Healthy;
                key.strikes = 0;
                key.auth_failed_at = None;
                st.dirty = true;
                true
            }
        }
    }
}

impl Lease {
    /// The shared limits refused this grant: nothing was sent, so give the local reservation
    /// back (no health penalty) and hold the refused bucket until the store says it fits.
    fn not_admitted(self, bucket: usize, wait: Nanos) {
        let now = self.grant.shared.clock.now();
        {
            let mut guard = self.grant.shared.lock();
            let st = &mut *guard;
            if let Some(key) = st.keys.get_mut(self.grant.index)
                && let Some(set) = key.limits.get_mut(&*self.grant.model)
            {
                set.refund(&self.cost, now);
                if let Some((dim, b)) = set.buckets.get_mut(bucket) {
                    b.hold(BucketSet::cost_of(*dim, &self.cost), wait, now);
                }
            }
            if let Some(sm) = st
                .scopes
                .get_mut(self.grant.scope_at_grant)
                .and_then(|s| s.models.get_mut(&*self.grant.model))
            {
                sm.learned.refund(&self.cost, now);
            }
        }
        // Dropping releases the in-flight slot and a probe that never happened.
        drop(self);
    }

    /// Settle the shared token reservation (beside the local one).
    pub(super) fn settle_remote(&self, actual: u64) {
        if let Some(r) = &self.remote {
            r.settle(self.cost.tokens, actual);
        }
    }

    /// A request that never reached the provider gives its shared reservation back.
    pub(super) fn refund_remote_on(&mut self, c: &Classified) {
        if c.class == ErrorClass::TransportPreSend
            && let Some(r) = self.remote.take()
        {
            r.refund();
        }
    }
}

#[cfg(test)]
mod tests;
