//! Key-pool behaviour on virtual time: every class of keys.md table (a) and every state
//! transition.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use super::classify::{Classified, ErrorClass, Flavor};
use super::clock::{Clock, ManualClock};
use super::limits::{Cost, Dim};
use super::pool::{Acquire, Algorithm, KeyPool, KeySpec, Lease, Observed, PoolSettings};
use super::ratelimit_headers::{DimSnapshot, LimitSnapshot};
use crate::config::schema::{RateLimit, RateLimitSpec, RatePeriod};

const S: u64 = 1_000_000_000;
const REQ: Cost = Cost {
    requests: 1,
    tokens: 0,
    input_tokens: 0,
};

fn pool(n: usize, settings: PoolSettings) -> (KeyPool, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_767_225_600_000)); // 2026-01-01T00:00:00Z
    (pool_on(n, settings, clock.clone()), clock)
}

fn pool_on(n: usize, settings: PoolSettings, clock: Arc<ManualClock>) -> KeyPool {
    let keys = (0..n)
        .map(|i| KeySpec {
            secret: format!("sk-test-key-{i:04}-xxxxxxxx"),
            scope: None,
            max_inflight: None,
        })
        .collect();
    let settings = PoolSettings {
        name: "p".into(),
        ..settings
    };
    KeyPool::new(keys, settings, clock)
}

fn grant(p: &KeyPool, model: &str, tried: &[usize]) -> Lease {
    match p.acquire(model, REQ, tried) {
        Acquire::Granted(l) => l,
        other => panic!("expected a key, got {other:?}"),
    }
}

/// Report a requests-per-minute snapshot as the provider's headers would.
fn observe_requests(l: &Lease, limit: u64, remaining: u64, reset: Duration) {
    l.observe(&Observed {
        limits: LimitSnapshot {
            requests: Some(DimSnapshot {
                limit: Some(limit),
                remaining: Some(remaining),
                reset_after: Some(reset),
            }),
            ..LimitSnapshot::default()
        },
        scope_id: None,
    });
}

fn class(c: ErrorClass) -> Classified {
    Classified::new(c, "test")
}

fn rr() -> PoolSettings {
    PoolSettings {
        algorithm: Algorithm::RoundRobin,
        ..PoolSettings::default()
    }
}

#[test]
fn round_robin_and_fixed_priority_keep_uni_api_semantics() {
    let (p, _) = pool(3, rr());
    let picks: Vec<usize> = (0..6).map(|_| grant(&p, "m", &[]).index()).collect();
    assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    let (p, _) = pool(
        3,
        PoolSettings {
            algorithm: Algorithm::FixedPriority,
            ..PoolSettings::default()
        },
    );
    for _ in 0..3 {
        assert_eq!(grant(&p, "m", &[]).index(), 0);
    }
    assert_eq!(grant(&p, "m", &[0]).index(), 1);
}

#[test]
fn smart_round_robin_restarts_each_cycle_in_the_stores_ranking() {
    let (p, _) = pool(
        3,
        PoolSettings {
            algorithm: Algorithm::SmartRoundRobin,
            ..PoolSettings::default()
        },
    );
    assert_eq!(p.fingerprints().len(), 3);
    assert!(p.fingerprints()[2].starts_with("sk-...xxxx#"));
    // A ranking takes effect when the current cycle ends; one that is not a permutation of
    // the keys is ignored.
    p.set_ranked_order(vec![2, 0, 1]);
    p.set_ranked_order(vec![2, 2, 0]);
    p.set_ranked_order(vec![1, 0]);
    let picks: Vec<usize> = (0..9).map(|_| grant(&p, "m", &[]).index()).collect();
    assert_eq!(picks, vec![0, 1, 2, 2, 0, 1, 2, 0, 1]);
}

#[test]
fn the_16th_request_within_a_minute_moves_to_the_next_key() {
    let (p, clock) = pool(
        2,
        PoolSettings {
            algorithm: Algorithm::FixedPriority,
            limits: Some(RateLimitSpec::All(vec![RateLimit {
                count: 15,
                period: RatePeriod::Window(60),
            }])),
            ..PoolSettings::default()
        },
    );
    for _ in 0..15 {
        assert_eq!(grant(&p, "m", &[]).index(), 0);
    }
    assert_eq!(grant(&p, "m", &[]).index(), 1);
    clock.advance(Duration::from_secs(4));
    assert_eq!(grant(&p, "m", &[]).index(), 0);
}

#[test]
fn rate_limit_blocks_the_scope_for_exactly_the_stated_time() {
    let (p, clock) = pool(2, rr());
    let mut l = grant(&p, "m", &[]);
    let first = l.index();
    let mut c = class(ErrorClass::RateLimited);
    c.retry_after = Some(Duration::from_secs(20));
    l.failure(&c);
    drop(l);
    // The other key serves meanwhile, every time.
    for _ in 0..4 {
        assert_ne!(grant(&p, "m", &[]).index(), first);
    }
    // Another model is not affected.
    let _ = grant(&p, "other", &[1 - first]);
    clock.advance(Duration::from_secs(19));
    assert!(matches!(
        p.acquire("m", REQ, &[1 - first]),
        Acquire::Wait { .. }
    ));
    clock.advance(Duration::from_secs(3)); // 20 s + up to 10 % jitter
    assert_eq!(grant(&p, "m", &[1 - first]).index(), first);
}

#[test]
fn nothing_available_says_when_and_why() {
    let (p, clock) = pool(1, rr());
    let mut l = grant(&p, "gpt", &[]);
    let mut c = class(ErrorClass::RateLimited);
    c.retry_after = Some(Duration::from_secs(30));
    l.failure(&c);
    drop(l);
    match p.acquire("gpt", REQ, &[]) {
        Acquire::Wait { until, why, .. } => {
            let wait = until - clock.now();
            assert!((30 * S..=33 * S).contains(&wait), "{wait}");
            assert!(why.contains("rate-limited") && why.contains("gpt"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn daily_quota_holds_until_the_provider_reset_and_survives_a_restart() {
    let (p, clock) = pool(2, rr());
    let mut l = grant(&p, "gemini", &[]);
    let k = l.index();
    let mut c = class(ErrorClass::DailyQuota);
    c.reset_at_unix_ms = Some(clock.unix_ms() + 8 * 3600 * 1000);
    l.failure(&c);
    drop(l);
    clock.advance(Duration::from_secs(7 * 3600));
    for _ in 0..3 {
        assert_ne!(grant(&p, "gemini", &[]).index(), k);
    }
    let snap = p.export();
    assert_eq!(snap.blocks.len(), 1);
    assert!(
        !serde_json::to_string(&snap)
            .unwrap()
            .contains("sk-test-key-0000-xxxxxxxx")
    );
    // A new process with the same keys picks the block up.
    let q = pool_on(2, rr(), clock.clone());
    q.import(&snap);
    for _ in 0..3 {
        assert_ne!(grant(&q, "gemini", &[]).index(), k);
    }
    clock.advance(Duration::from_secs(3600 + 1));
    let picks: Vec<usize> = (0..2).map(|_| grant(&p, "gemini", &[]).index()).collect();
    assert!(picks.contains(&k));
}

#[test]
fn billing_disables_the_whole_scope_then_probes() {
    let (p, clock) = pool(
        3,
        PoolSettings {
            shared_scope: true,
            ..rr()
        },
    );
    let mut l = grant(&p, "m", &[]);
    l.failure(&class(ErrorClass::Billing));
    drop(l);
    assert!(matches!(p.acquire("m", REQ, &[]), Acquire::Wait { .. }));
    let status = p.status();
    assert!(status.iter().all(|s| s.state == "disabled"), "{status:?}");
    clock.advance(Duration::from_secs(15 * 60 + 1));
    let mut probe = grant(&p, "m", &[]);
    probe.success();
}

#[test]
fn invalid_keys_are_disabled_and_revalidated_on_schedule() {
    let (p, clock) = pool(3, rr());
    let mut l = grant(&p, "m", &[]);
    let bad = l.index();
    l.failure(&class(ErrorClass::AuthInvalid));
    drop(l);
    for _ in 0..6 {
        assert_ne!(
            grant(&p, "m", &[]).index(),
            bad,
            "a revoked key got traffic"
        );
    }
    assert!(p.due_revalidations().is_empty());
    clock.advance(Duration::from_secs(600));
    let due = p.due_revalidations();
    assert_eq!(due.len(), 1);
    assert!(p.due_revalidations().is_empty(), "re-validated twice");
    p.revalidated(due[0].0, false);
    clock.advance(Duration::from_secs(600));
    assert!(
        p.due_revalidations().is_empty(),
        "back-off: next check after an hour"
    );
    clock.advance(Duration::from_secs(3000));
    let due = p.due_revalidations();
    p.revalidated(due[0].0, true);
    // Probation: one probe; success brings it back.
    let mut picks = Vec::new();
    for _ in 0..3 {
        let mut l = grant(&p, "m", &[]);
        picks.push(l.index());
        l.success();
    }
    assert!(picks.contains(&bad));
}

#[test]
fn most_keys_invalid_at_once_is_blamed_on_the_request() {
    let (p, _) = pool(3, rr());
    for tried in [vec![], vec![0]] {
        let mut l = grant(&p, "m", &tried);
        l.failure(&class(ErrorClass::AuthInvalid));
    }
    // 2 of 3 within a minute: the keys are not disabled; the model pauses briefly instead.
    let status = p.status();
    assert!(status.iter().all(|s| s.state != "disabled"), "{status:?}");
    match p.acquire("m", REQ, &[]) {
        Acquire::Wait { why, .. } => assert!(why.contains("suspecting the request"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn permission_excludes_only_that_model_for_an_hour() {
    let (p, clock) = pool(
        2,
        PoolSettings {
            algorithm: Algorithm::FixedPriority,
            ..PoolSettings::default()
        },
    );
    let mut l = grant(&p, "gpt-5", &[]);
    assert_eq!(l.index(), 0);
    l.failure(&class(ErrorClass::Permission));
    drop(l);
    assert_eq!(grant(&p, "gpt-5", &[]).index(), 1);
    assert_eq!(grant(&p, "gpt-4o", &[]).index(), 0);
    clock.advance(Duration::from_secs(3601));
    assert_eq!(grant(&p, "gpt-5", &[]).index(), 0);
}

#[test]
fn repeated_server_errors_cool_a_key_and_a_failed_probe_doubles_it() {
    let (p, clock) = pool(
        2,
        PoolSettings {
            algorithm: Algorithm::FixedPriority,
            ..PoolSettings::default()
        },
    );
    for _ in 0..2 {
        let mut l = grant(&p, "m", &[]);
        assert_eq!(l.index(), 0);
        l.failure(&class(ErrorClass::ServerError));
    }
    assert_eq!(grant(&p, "m", &[]).index(), 1);
    clock.advance(Duration::from_secs(12));
    let mut probe = grant(&p, "m", &[]);
    assert_eq!(probe.index(), 0);
    // While the probe is out, nobody else uses key 0.
    assert_eq!(grant(&p, "m", &[]).index(), 1);
    probe.failure(&class(ErrorClass::ServerError));
    drop(probe);
    clock.advance(Duration::from_secs(12));
    assert_eq!(grant(&p, "m", &[]).index(), 1, "second cool-down is longer");
    clock.advance(Duration::from_secs(12));
    let mut probe = grant(&p, "m", &[]);
    assert_eq!(probe.index(), 0);
    probe.success();
    drop(probe);
    assert_eq!(grant(&p, "m", &[]).index(), 0);
}

#[test]
fn overload_pauses_the_model_not_the_keys() {
    let (p, clock) = pool(2, rr());
    let mut l = grant(&p, "claude", &[]);
    let mut c = class(ErrorClass::Overloaded);
    c.retry_after = Some(Duration::from_secs(2));
    l.failure(&c);
    drop(l);
    assert!(matches!(
        p.acquire("claude", REQ, &[]),
        Acquire::Wait { .. }
    ));
    let _ = grant(&p, "other", &[]);
    clock.advance(Duration::from_secs(2));
    let _ = grant(&p, "claude", &[]);
    assert!(p.status().iter().all(|s| s.state == "healthy"));
}

#[test]
fn bad_requests_do_not_touch_the_key() {
    let (p, _) = pool(1, rr());
    for c in [
        ErrorClass::BadRequest,
        ErrorClass::ContextTooLong,
        ErrorClass::ClientCancelled,
    ] {
        let mut l = grant(&p, "m", &[]);
        l.failure(&class(c));
    }
    let s = &p.status()[0];
    assert_eq!((s.state, s.requests_failed), ("healthy", 0));
}

#[test]
fn a_request_larger_than_the_scope_limit_is_refused_without_cooling() {
    let (p, _) = pool(1, rr());
    let mut l = grant(&p, "m", &[]);
    let mut c = class(ErrorClass::RequestTooLarge);
    c.limit_tokens = Some(30_000);
    l.failure(&c);
    drop(l);
    let big = Cost {
        requests: 1,
        tokens: 31_000,
        input_tokens: 30_000,
    };
    assert!(matches!(p.acquire("m", big, &[]), Acquire::TooLarge { .. }));
    let small = Cost {
        requests: 1,
        tokens: 1000,
        input_tokens: 500,
    };
    assert!(matches!(p.acquire("m", small, &[]), Acquire::Granted(_)));
}

#[test]
fn concurrency_cap_waits_for_a_release() {
    let (p, _) = pool(
        1,
        PoolSettings {
            max_inflight: Some(1),
            ..rr()
        },
    );
    let l = grant(&p, "m", &[]);
    assert!(matches!(p.acquire("m", REQ, &[]), Acquire::Wait { .. }));
    drop(l);
    let _ = grant(&p, "m", &[]);
}

#[test]
fn scopes_are_learned_from_organization_headers() {
    let (p, _) = pool(3, rr());
    for i in 0..2 {
        let l = grant(&p, "m", &(0..i).collect::<Vec<_>>());
        l.observe(&Observed {
            limits: LimitSnapshot::default(),
            scope_id: Some("org-shared".into()),
        });
    }
    let status = p.status();
    assert_eq!(status[0].scope, status[1].scope);
    assert_ne!(status[0].scope, status[2].scope);
    // A rate limit on one key of the org blocks its sibling too.
    let mut l = grant(&p, "m", &[1, 2]);
    assert_eq!(l.index(), 0);
    let mut c = class(ErrorClass::RateLimited);
    c.retry_after = Some(Duration::from_secs(10));
    l.failure(&c);
    drop(l);
    for _ in 0..3 {
        assert_eq!(grant(&p, "m", &[]).index(), 2);
    }
}

#[test]
fn headers_teach_limits_and_steer_traffic_to_headroom() {
    let (p, _) = pool(2, PoolSettings::default());
    // Key 0 reports almost no requests left this minute, key 1 plenty.
    for (i, remaining) in [(0usize, 1u64), (1, 450)] {
        let l = grant(&p, "m", &[1 - i]);
        observe_requests(&l, 500, remaining, Duration::from_secs(6));
    }
    let to_one = (0..100)
        .filter(|_| grant(&p, "m", &[]).index() == 1)
        .count();
    assert!(to_one >= 95, "{to_one}");
}

#[test]
fn smart_selection_shares_load_by_capacity() {
    let (p, _) = pool(2, PoolSettings::default());
    for (i, limit) in [(0usize, 600u64), (1, 60)] {
        let l = grant(&p, "m", &[1 - i]);
        observe_requests(&l, limit, limit, Duration::ZERO);
    }
    let mut counts = [0usize; 2];
    for _ in 0..1000 {
        let l = grant(&p, "m", &[]);
        counts[l.index()] += 1;
        drop(l);
        // refill instantly for the test: re-observe full buckets
        for i in 0..2 {
            let limit = [600, 60][i];
            if let Acquire::Granted(l) = p.acquire("m", REQ, &[1 - i]) {
                observe_requests(&l, limit, limit, Duration::ZERO);
            }
        }
    }
    assert!(counts[0] > 5 * counts[1], "{counts:?}");
    assert!(counts[1] > 0, "{counts:?}");
}

/// One key allowed 10 000 tokens a minute.
fn ten_thousand_tokens_a_minute() -> KeyPool {
    pool(
        1,
        PoolSettings {
            limits: Some(RateLimitSpec::All(vec![RateLimit {
                count: 10_000,
                period: RatePeriod::TokenWindow(60),
            }])),
            ..rr()
        },
    )
    .0
}

#[test]
fn token_reservations_are_settled_with_real_usage() {
    let p = ten_thousand_tokens_a_minute();
    assert!(p.needs_tokens("m"));
    let cost = Cost {
        requests: 1,
        tokens: 6000,
        input_tokens: 1000,
    };
    let l = match p.acquire("m", cost, &[]) {
        Acquire::Granted(l) => l,
        other => panic!("{other:?}"),
    };
    // A second one does not fit while the first holds its reservation...
    assert!(matches!(p.acquire("m", cost, &[]), Acquire::Wait { .. }));
    // ...but does once the first settles at its real usage.
    l.settle_tokens(1200);
    drop(l);
    assert!(matches!(p.acquire("m", cost, &[]), Acquire::Granted(_)));
}

#[test]
fn a_success_settled_at_once_frees_the_reservation_and_heals_the_key() {
    let p = ten_thousand_tokens_a_minute();
    let cost = Cost {
        requests: 1,
        tokens: 6000,
        input_tokens: 1000,
    };
    let mut l = match p.acquire("m", cost, &[]) {
        Acquire::Granted(l) => l,
        other => panic!("{other:?}"),
    };
    assert!(matches!(p.acquire("m", cost, &[]), Acquire::Wait { .. }));
    l.success_settled(Some(1200));
    drop(l);
    let mut l = match p.acquire("m", cost, &[]) {
        Acquire::Granted(l) => l,
        other => panic!("settled at 1200 of 6000, the next request fits: {other:?}"),
    };
    assert_eq!(p.status()[0].requests_ok, 1, "the success counted");
    // Without usage it is a plain success: the reservation stays booked until it expires.
    l.success_settled(None);
    drop(l);
    assert!(matches!(p.acquire("m", cost, &[]), Acquire::Wait { .. }));
    assert_eq!(p.status()[0].requests_ok, 2);
}

#[test]
fn uni_api_cooldown_period_cools_any_failing_key() {
    let (p, clock) = pool(
        2,
        PoolSettings {
            algorithm: Algorithm::FixedPriority,
            cooldown: Some(Duration::from_secs(60)),
            ..PoolSettings::default()
        },
    );
    let mut l = grant(&p, "m", &[]);
    l.failure(&class(ErrorClass::Timeout));
    drop(l);
    assert_eq!(grant(&p, "m", &[]).index(), 1);
    clock.advance(Duration::from_secs(61));
    assert_eq!(grant(&p, "m", &[]).index(), 0);
}

#[test]
fn retry_budget_limits_storms() {
    let (p, _) = pool(1, rr());
    let allowed = (0..100).filter(|_| p.allow_retry()).count();
    assert!((9..=11).contains(&allowed), "{allowed}");
    for _ in 0..10 {
        let _ = grant(&p, "m", &[]);
    }
    assert!(p.allow_retry(), "first attempts refill the budget");
}

fn two_per_minute() -> PoolSettings {
    PoolSettings {
        limits: Some(RateLimitSpec::All(vec![RateLimit {
            count: 2,
            period: RatePeriod::Window(60),
        }])),
        ..rr()
    }
}

/// A `Wait` with its booked slot.
fn wait(a: Acquire) -> (u64, super::pool::Ticket) {
    match a {
        Acquire::Wait {
            until,
            ticket: Some(t),
            ..
        } => (until, t),
        other => panic!("expected a booked wait, got {other:?}"),
    }
}

#[test]
fn waiters_are_told_successive_slots_and_get_the_one_they_booked() {
    // One token every 30 s, both spent at t = 0.
    let (p, clock) = pool(1, two_per_minute());
    let _a = grant(&p, "m", &[]);
    let _b = grant(&p, "m", &[]);
    let (first, t1) = wait(p.acquire("m", REQ, &[]));
    let (second, t2) = wait(p.acquire("m", REQ, &[]));
    assert_eq!((first, second), (30 * S, 60 * S));
    assert_eq!(t1.until(), Some(30 * S));
    clock.set(30 * S);
    // A newcomer cannot take the slot the first waiter booked.
    let (later, t3) = wait(p.acquire("m", REQ, &[]));
    assert_eq!(later, 90 * S);
    drop(t3);
    // The second waiter, woken early, keeps its place.
    let (again, t2) = wait(p.acquire_with("m", REQ, &[], Some(t2)));
    assert_eq!(again, 60 * S);
    let Acquire::Granted(l) = p.acquire_with("m", REQ, &[], Some(t1)) else {
        panic!("the first waiter's slot")
    };
    assert_eq!(l.index(), 0);
    clock.set(60 * S);
    assert!(matches!(
        p.acquire_with("m", REQ, &[], Some(t2)),
        Acquire::Granted(_)
    ));
    // Every slot up to 90 s is spent; the bucket is exactly where four grants leave it.
    let (next, _) = wait(p.acquire("m", REQ, &[]));
    assert_eq!(next, 90 * S);
}

#[test]
fn an_abandoned_ticket_gives_its_slot_back() {
    let (p, clock) = pool(1, two_per_minute());
    let _a = grant(&p, "m", &[]);
    let _b = grant(&p, "m", &[]);
    let (_, t1) = wait(p.acquire("m", REQ, &[]));
    let (second, t2) = wait(p.acquire("m", REQ, &[]));
    assert_eq!(second, 60 * S);
    // The first waiter gives up (its client went away): the next waiter moves up a slot.
    drop(t1);
    let (moved_up, t3) = wait(p.acquire("m", REQ, &[]));
    assert_eq!(moved_up, 60 * S);
    drop((t2, t3));
    // With nobody waiting, nothing is held: the token of t = 30 s is free at 30 s.
    clock.set(30 * S);
    assert!(matches!(p.acquire("m", REQ, &[]), Acquire::Granted(_)));
}

#[test]
fn a_ticket_whose_key_was_rate_limited_meanwhile_is_released() {
    let (p, clock) = pool(2, two_per_minute());
    let mut held: Vec<Lease> = (0..4).map(|_| grant(&p, "m", &[])).collect();
    let (until, t) = wait(p.acquire("m", REQ, &[]));
    assert_eq!(until, 30 * S);
    let booked = t.index().unwrap();
    // Before the slot comes, an earlier request on the booked key answers a 429 (50 s).
    clock.set(10 * S);
    held.retain(|l| l.index() == booked);
    let mut other = held.pop().unwrap();
    let mut c = class(ErrorClass::RateLimited);
    c.retry_after = Some(Duration::from_secs(50));
    other.failure(&c);
    drop(other);
    clock.set(30 * S);
    // The slot is not honoured on the blocked key; the other key's next token is.
    match p.acquire_with("m", REQ, &[], Some(t)) {
        Acquire::Granted(l) => assert_ne!(l.index(), booked),
        other => panic!("{other:?}"),
    }
}

#[test]
fn booked_slots_survive_a_header_snapshot() {
    // Limits learned from headers: 2 per minute, both spent.
    let (p, clock) = pool(1, rr());
    let l = grant(&p, "m", &[]);
    observe_requests(&l, 2, 1, Duration::from_secs(30));
    let _l2 = grant(&p, "m", &[]);
    let (until, t) = wait(p.acquire("m", REQ, &[]));
    assert_eq!(until, 30 * S);
    // A snapshot from the first lease (taken before the wait was booked) arrives late.
    clock.set(5 * S);
    observe_requests(&l, 2, 1, Duration::from_secs(30));
    // The booked slot still counts: the next waiter is told a later one.
    let (next, _) = wait(p.acquire("m", REQ, &[]));
    assert!(next > until, "{next} <= {until}");
    drop(t);
}

#[test]
fn a_header_less_scope_learns_its_limit_from_429s_in_fixed_windows() {
    let gemini = || PoolSettings {
        flavor: Some(Flavor::Gemini),
        ..rr()
    };
    // Virtual 0 is 00:00:00 on the wall clock: Google's windows end at 60 s, 120 s, ...
    let (p, clock) = pool(1, gemini());
    for i in 0..10 {
        clock.set(i * 2 * S);
        grant(&p, "m", &[]).success();
    }
    clock.set(30 * S);
    let mut l = grant(&p, "m", &[]);
    let mut c = class(ErrorClass::RateLimited);
    c.retry_after = Some(Duration::from_secs(30));
    c.limit_dim = Some(Dim::Requests);
    l.failure(&c);
    drop(l);
    let estimated = |p: &KeyPool| {
        p.status()[0]
            .limits
            .iter()
            .find(|l| l.source == "estimated")
            .map(|l| (l.dim, l.capacity))
    };
    // 10 admitted in the window, the 11th refused: 10 per minute.
    assert_eq!(estimated(&p), Some(("requests", 10)));
    // The next window admits 10, at once; the 11th is told the window after.
    clock.set(60 * S);
    for _ in 0..10 {
        grant(&p, "m", &[]);
    }
    let (until, _) = wait(p.acquire("m", REQ, &[]));
    assert_eq!(until, 120 * S);
    // The estimate survives a restart.
    let snap = p.export();
    assert_eq!(snap.estimates.len(), 1);
    assert!(snap.estimates[0].fixed_window);
    let q = pool_on(1, gemini(), clock.clone());
    q.import(&snap);
    assert_eq!(estimated(&q), Some(("requests", 10)));
}
