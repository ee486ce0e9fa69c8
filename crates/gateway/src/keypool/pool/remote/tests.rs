//! Two pools ("instances") over an in-memory stand-in for the shared store: what one learns
//! the other applies, remote facts never make anything more available, and configured limits
//! hold across both. The Redis transport itself is tested in tests/keypool_shared.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::super::{Acquire, Algorithm, KeyPool, KeySpec, Lease, Observed, PoolSettings};
use super::*;
use crate::config::schema::{RateLimit, RateLimitSpec, RatePeriod};
use crate::keypool::classify::{Classified, ErrorClass};
use crate::keypool::clock::{Clock, ManualClock};
use crate::keypool::gcra::Bucket;
use crate::keypool::limits::Cost;

const S: u64 = 1_000_000_000;
const REQ: Cost = Cost {
    requests: 1,
    tokens: 0,
    input_tokens: 0,
};

fn secret(i: usize) -> String {
    format!("sk-remote-test-{i:04}-secretsecret")
}

/// The shared store: delivers every fact to the other instances at once, admits on one
/// set of buckets, and remembers what it saw.
#[derive(Debug, Default)]
struct Bus {
    pools: Mutex<Vec<(usize, KeyPool)>>,
    events: Mutex<Vec<(usize, String, Event)>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    settled: Mutex<Vec<(String, i64)>>,
    clock: Mutex<Option<Arc<ManualClock>>>,
}

#[derive(Debug)]
struct Node {
    id: usize,
    bus: Arc<Bus>,
}

#[derive(Debug)]
struct Held {
    bus: Arc<Bus>,
    keys: Vec<(String, SharedBucket)>,
}

impl Reservation for Held {
    fn settle(&self, reserved: u64, actual: u64) {
        for (k, b) in &self.keys {
            if b.dim == Dim::Tokens {
                self.bus
                    .settled
                    .lock()
                    .unwrap()
                    .push((k.clone(), actual as i64 - reserved as i64));
            }
        }
    }
    fn refund(&self) {
        for (k, b) in &self.keys {
            self.bus
                .settled
                .lock()
                .unwrap()
                .push((k.clone(), -(b.cost as i64)));
        }
    }
}

impl Peers for Node {
    fn publish(&self, pool: &str, event: Event) {
        self.bus
            .events
            .lock()
            .unwrap()
            .push((self.id, pool.to_string(), event.clone()));
        let pools = self.bus.pools.lock().unwrap().clone();
        for (id, p) in pools {
            if id != self.id && p.name() == pool {
                p.apply_remote(&event);
            }
        }
    }

    fn admit(&self, a: Admission) -> AdmitFuture<'_> {
        Box::pin(async move {
            let now = self.bus.clock.lock().unwrap().as_ref().unwrap().now();
            let mut buckets = self.bus.buckets.lock().unwrap();
            let names: Vec<String> = (0..a.buckets.len())
                .map(|i| format!("{}:{}:{}:{i}", a.pool, a.key, a.model))
                .collect();
            let mut worst = (0, 0);
            for (i, (name, b)) in names.iter().zip(&a.buckets).enumerate() {
                let bucket = buckets
                    .entry(name.clone())
                    .or_insert_with(|| Bucket::new(b.capacity, b.period));
                let w = bucket.wait_for(b.cost, now);
                if w > worst.0 {
                    worst = (w, i);
                }
            }
            if worst.0 > 0 {
                return Admitted::No {
                    wait: Duration::from_nanos(worst.0),
                    bucket: worst.1,
                };
            }
            for (name, b) in names.iter().zip(&a.buckets) {
                if let Some(bucket) = buckets.get_mut(name) {
                    bucket.force(b.cost, now);
                }
            }
            Admitted::Yes(Some(Box::new(Held {
                bus: Arc::clone(&self.bus),
                keys: names.into_iter().zip(a.buckets).collect(),
            })))
        })
    }
}

fn instances(
    n_keys: usize,
    settings: PoolSettings,
) -> (KeyPool, KeyPool, Arc<Bus>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_767_225_600_000));
    let bus = Arc::new(Bus::default());
    *bus.clock.lock().unwrap() = Some(Arc::clone(&clock));
    let make = |id: usize| {
        let keys = (0..n_keys)
            .map(|i| KeySpec {
                secret: secret(i),
                scope: None,
                max_inflight: None,
            })
            .collect();
        let p = KeyPool::new(
            keys,
            PoolSettings {
                name: "p".into(),
                ..settings.clone()
            },
            clock.clone(),
        );
        assert!(p.set_peers(Arc::new(Node {
            id,
            bus: Arc::clone(&bus),
        })));
        bus.pools.lock().unwrap().push((id, p.clone()));
        p
    };
    let a = make(0);
    let b = make(1);
    (a, b, bus, clock)
}

fn rr() -> PoolSettings {
    PoolSettings {
        algorithm: Algorithm::RoundRobin,
        ..PoolSettings::default()
    }
}

fn grant(p: &KeyPool, model: &str, tried: &[usize]) -> Lease {
    match p.acquire(model, REQ, tried) {
        Acquire::Granted(l) => l,
        other => panic!("expected a key, got {other:?}"),
    }
}

fn fail(mut l: Lease, class: ErrorClass, retry_after: Option<Duration>) {
    let mut c = Classified::new(class, "test");
    c.retry_after = retry_after;
    l.failure(&c);
}

/// Which keys `p` hands out for `model` over `n` grants (each released at once).
fn picks(p: &KeyPool, model: &str, n: usize) -> Vec<usize> {
    (0..n)
        .filter_map(|_| match p.acquire(model, REQ, &[]) {
            Acquire::Granted(l) => Some(l.index()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_429_on_one_instance_holds_the_key_on_the_other_until_the_reset() {
    let (a, b, bus, clock) = instances(2, rr());
    let l = grant(&a, "m", &[]);
    let k = l.index();
    fail(l, ErrorClass::RateLimited, Some(Duration::from_secs(30)));
    let events = bus.events.lock().unwrap().clone();
    assert!(
        events.iter().any(|(_, _, e)| matches!(
            &e.fact,
            Fact::ScopeBlocked { model, class, .. } if model == "m" && class == "rate_limited_transient"
        ) && e.ttl_ms >= 30_000),
        "{events:?}"
    );
    assert!(!picks(&b, "m", 6).contains(&k));
    clock.advance(Duration::from_secs(29));
    assert!(!picks(&b, "m", 6).contains(&k));
    // 30 s plus up to 10 % jitter, then both use the key again.
    clock.advance(Duration::from_secs(5));
    assert!(picks(&b, "m", 4).contains(&k));
    assert!(picks(&a, "m", 4).contains(&k));
}

#[test]
fn a_revoked_key_is_never_sent_by_the_other_instance_until_it_answers_again() {
    let (a, b, bus, clock) = instances(3, rr());
    let l = grant(&a, "m", &[]);
    let k = l.index();
    fail(l, ErrorClass::AuthInvalid, None);
    assert!(!picks(&b, "m", 30).contains(&k));
    assert!(b.status()[k].state == "disabled", "{:?}", b.status()[k]);
    // Re-validation on A succeeds, the probe succeeds: B hears "healthy" and uses it again.
    clock.advance(Duration::from_secs(601));
    let due = a.due_revalidations();
    assert_eq!(due.iter().map(|d| d.0).collect::<Vec<_>>(), vec![k]);
    a.revalidated(k, true);
    assert!(
        !picks(&b, "m", 6).contains(&k),
        "probation on A is not health on B"
    );
    let mut probe = grant(&a, "m", &[(k + 1) % 3, (k + 2) % 3]);
    assert_eq!(probe.index(), k);
    probe.success();
    drop(probe);
    assert!(
        bus.events
            .lock()
            .unwrap()
            .iter()
            .any(|(_, _, e)| e.fact == Fact::Healthy)
    );
    assert!(picks(&b, "m", 6).contains(&k));
}

#[test]
fn the_instance_that_saw_the_401_revalidates_first() {
    let (a, b, _bus, clock) = instances(3, rr());
    let l = grant(&a, "m", &[]);
    let k = l.index();
    fail(l, ErrorClass::AuthInvalid, None);
    clock.advance(Duration::from_secs(601));
    assert_eq!(a.due_revalidations().len(), 1);
    assert!(b.due_revalidations().is_empty());
    // A never reports back (gone): B checks the key itself a minute later.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        b.due_revalidations()
            .iter()
            .map(|d| d.0)
            .collect::<Vec<_>>(),
        vec![k]
    );
}

#[test]
fn remote_facts_never_shorten_what_an_instance_knows() {
    let (a, b, _bus, clock) = instances(2, rr());
    let l = grant(&b, "m", &[]);
    let k = l.index();
    fail(l, ErrorClass::RateLimited, Some(Duration::from_secs(60)));
    let fp = super::super::fingerprint(&secret(k));
    for fact in [
        Fact::ScopeBlocked {
            model: "m".into(),
            class: "rate_limited_transient".into(),
            why: "short".into(),
        },
        Fact::KeyCooling {
            class: "server_error".into(),
        },
    ] {
        let ev = Event {
            key: Some(fp.clone()),
            ttl_ms: 1_000,
            fact,
        };
        let changed = b.apply_remote(&ev);
        if matches!(ev.fact, Fact::ScopeBlocked { .. }) {
            assert!(!changed, "a shorter block replaced a longer one");
        }
    }
    clock.advance(Duration::from_secs(2));
    // Still blocked by its own 60 s.
    assert!(!picks(&b, "m", 4).contains(&k));
    // A longer remote cool-down does extend; unknown classes and keys are ignored.
    let long = Event {
        key: Some(fp.clone()),
        ttl_ms: 600_000,
        fact: Fact::KeyCooling {
            class: "server_error".into(),
        },
    };
    assert!(a.apply_remote(&long));
    assert!(!a.apply_remote(&long), "same fact twice changes nothing");
    assert!(!a.apply_remote(&Event {
        key: Some(fp.clone()),
        ttl_ms: 900_000,
        fact: Fact::KeyCooling {
            class: "from_a_newer_version".into()
        },
    }));
    assert!(!a.apply_remote(&Event {
        key: Some("sk-...nope#0000000000000000".into()),
        ttl_ms: 900_000,
        fact: Fact::KeyCooling {
            class: "server_error".into()
        },
    }));
    clock.advance(Duration::from_secs(120));
    assert!(!picks(&a, "m", 4).contains(&k));
}

#[test]
fn applying_a_remote_fact_is_not_published_again() {
    let (a, b, bus, _clock) = instances(2, rr());
    fail(grant(&a, "m", &[]), ErrorClass::Permission, None);
    fail(
        grant(&a, "x", &[]),
        ErrorClass::Overloaded,
        Some(Duration::from_secs(5)),
    );
    let events = bus.events.lock().unwrap().clone();
    assert!(
        events.iter().all(|(origin, _, _)| *origin == 0),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(_, _, e)| matches!(&e.fact, Fact::ModelExcluded { model, .. } if model == "m"))
    );
    assert!(events.iter().any(|(_, _, e)| e.key.is_none()
        && matches!(&e.fact, Fact::ModelPaused { model, .. } if model == "x")));
    // The overload pauses the model on B too.
    assert!(matches!(b.acquire("x", REQ, &[]), Acquire::Wait { .. }));
}

#[test]
fn repeated_server_errors_cool_the_key_everywhere_and_a_success_clears_it() {
    let (a, b, bus, clock) = instances(2, rr());
    let k = {
        let l = grant(&a, "m", &[]);
        let k = l.index();
        fail(l, ErrorClass::ServerError, None);
        k
    };
    let l = grant(&a, "m", &[1 - k]);
    assert_eq!(l.index(), k);
    fail(l, ErrorClass::ServerError, None);
    assert_eq!(b.status()[k].state, "cooling");
    assert!(!picks(&b, "m", 4).contains(&k));
    // The cool-down ends; B probes and succeeds: A hears it.
    clock.advance(Duration::from_secs(12));
    let mut probe = grant(&b, "m", &[1 - k]);
    assert_eq!(probe.index(), k);
    probe.success();
    drop(probe);
    assert_eq!(a.status()[k].state, "healthy");
    let published: Vec<&str> = bus
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, e)| e.fact.kind())
        .collect();
    assert_eq!(published, vec!["cooling", "healthy"]);
}

#[test]
fn learned_scopes_and_billing_travel_and_carry_no_secret() {
    let (a, b, bus, _clock) = instances(3, rr());
    let l = grant(&a, "m", &[]);
    let k = l.index();
    l.observe(&Observed {
        scope_id: Some("org-42".into()),
        ..Observed::default()
    });
    let mut l = l;
    let mut c = Classified::new(
        ErrorClass::Billing,
        format!("your key {} is out of credit", secret(k)),
    );
    c.retry_after = None;
    l.failure(&c);
    drop(l);
    assert_eq!(b.status()[k].scope, "p:org-42");
    assert_eq!(b.status()[k].state, "disabled");
    let text = serde_json::to_string(
        &bus.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, e)| e.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        text.contains("billing") && text.contains("org-42"),
        "{text}"
    );
    for i in 0..3 {
        assert!(!text.contains(&secret(i)), "secret in {text}");
    }
}

fn limited(count: u64) -> PoolSettings {
    PoolSettings {
        limits: Some(RateLimitSpec::All(vec![RateLimit {
            count,
            period: RatePeriod::Window(60),
        }])),
        ..rr()
    }
}

fn now_or_never<F: std::future::Future>(f: F) -> F::Output {
    // The in-memory store never suspends.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("pending"),
    }
}

#[test]
fn configured_limits_hold_across_instances() {
    let (a, b, _bus, clock) = instances(1, limited(15));
    let mut granted = 0;
    let mut held = Vec::new();
    for i in 0..30 {
        let p = if i % 2 == 0 { &a } else { &b };
        match now_or_never(p.acquire_shared("m", REQ, &[], None)) {
            Acquire::Granted(l) => {
                granted += 1;
                held.push(l);
            }
            Acquire::Wait { until, .. } => {
                // The next token of 15/min is 4 s away.
                let wait = until - clock.now();
                assert!(wait <= 4 * S + 1_000_000, "{wait}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(granted, 15);
    // A refusal is no failure: the key is healthy on both and comes back with the bucket.
    assert_eq!(a.status()[0].state, "healthy");
    assert_eq!(
        a.status()[0].requests_failed + b.status()[0].requests_failed,
        0
    );
    drop(held);
    clock.advance(Duration::from_secs(4));
    let back = [&a, &b]
        .iter()
        .filter(|p| {
            matches!(
                now_or_never(p.acquire_shared("m", REQ, &[], None)),
                Acquire::Granted(_)
            )
        })
        .count();
    assert_eq!(back, 1);
}

#[test]
fn a_refused_key_gives_way_to_another_with_room() {
    let (a, b, _bus, _clock) = instances(2, limited(2));
    // B uses up key 0's shared bucket (round robin: 0, 1, 0, 1).
    let used: Vec<usize> = (0..4)
        .map(
            |_| match now_or_never(b.acquire_shared("m", REQ, &[], None)) {
                Acquire::Granted(l) => l.index(),
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(used.iter().filter(|k| **k == 0).count(), 2);
    // A still has local room on both keys but the store refuses both: it waits, without
    // counting a failure, and says why.
    match now_or_never(a.acquire_shared("m", REQ, &[], None)) {
        Acquire::Wait { why, .. } => assert!(why.contains("2 requests per minute"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(
        a.status()
            .iter()
            .all(|k| k.requests_failed == 0 && k.in_flight == 0)
    );
}

#[test]
fn token_reservations_are_settled_and_refunded_in_the_store() {
    let settings = PoolSettings {
        limits: Some(RateLimitSpec::All(vec![
            RateLimit {
                count: 10,
                period: RatePeriod::Window(60),
            },
            RateLimit {
                count: 10_000,
                period: RatePeriod::TokenWindow(60),
            },
        ])),
        ..rr()
    };
    let (a, _b, bus, _clock) = instances(1, settings);
    let cost = Cost {
        requests: 1,
        tokens: 1_500,
        input_tokens: 500,
    };
    let Acquire::Granted(l) = now_or_never(a.acquire_shared("m", cost, &[], None)) else {
        panic!()
    };
    l.settle_tokens(700);
    drop(l);
    let Acquire::Granted(mut l) = now_or_never(a.acquire_shared("m", cost, &[], None)) else {
        panic!()
    };
    l.failure(&Classified::new(ErrorClass::TransportPreSend, "refused"));
    let settled = bus.settled.lock().unwrap().clone();
    assert_eq!(settled.len(), 3, "{settled:?}");
    assert!(
        settled[0].0.ends_with(":1") && settled[0].1 == -800,
        "{settled:?}"
    );
    // Never sent: both buckets get their cost back.
    assert_eq!(
        settled[1..].iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![-1, -1_500]
    );
}

#[test]
fn without_peers_or_limits_nothing_is_asked() {
    let clock = Arc::new(ManualClock::new(0));
    let p = KeyPool::new(
        vec![KeySpec {
            secret: secret(0),
            scope: None,
            max_inflight: None,
        }],
        limited(1),
        clock,
    );
    assert!(!p.has_peers());
    assert!(matches!(
        now_or_never(p.acquire_shared("m", REQ, &[], None)),
        Acquire::Granted(_)
    ));
    // Peers but no configured limit: granted without an admission.
    let (a, _b, bus, _clock) = instances(1, rr());
    for _ in 0..3 {
        assert!(matches!(
            now_or_never(a.acquire_shared("m", REQ, &[], None)),
            Acquire::Granted(_)
        ));
    }
    assert!(bus.buckets.lock().unwrap().is_empty());
}
