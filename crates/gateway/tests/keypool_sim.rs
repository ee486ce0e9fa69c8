//! The key pool against the acceptance bars of keys.md §b.6, on the deterministic simulation
//! (`llmux::sim`): shortened scenarios (2 min warm-up, 5 min measured; S4 compressed), each bar
//! checked on every one of three seeds; comparisons with baselines pool the three seeds.
//! `cargo run --release -p llmux --bin keypool-sim` runs the full-length ones.
//!
//! Reading of the bars:
//! - "utilisation ≥ 90 % at ρ = 0.9": utilisation is achieved ÷ true capacity, so at ρ = 0.9 it
//!   can never exceed the offered ≈ 90 % (a coin flip on the Poisson draw). The bar is asserted
//!   as ≥ 90 % of the attainable, min(offered, capacity); the table shows both numbers.
//! - "fast 429s carry Retry-After": every 429 the gateway answers by itself carries a
//!   `Retry-After` between 1 and 60 s (upstream 429s relayed after failed attempts are counted
//!   apart, in `relayed_429`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use llmux::sim::{self, Kind, Metrics, Scenario, Timeline};

const SEEDS: [u64; 3] = [1, 2, 3];

fn scenario(id: &str) -> Scenario {
    Scenario::all(&Timeline::short())
        .into_iter()
        .find(|s| s.id == id)
        .unwrap()
}

type Cell = Arc<OnceLock<Metrics>>;
type Cache = Mutex<HashMap<(&'static str, Kind, u64, u64), Cell>>;

/// One simulation per (scenario, scheduler, ρ, seed), shared by the tests of this binary.
fn run(id: &'static str, kind: Kind, rho: f64, seed: u64) -> Metrics {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry((id, kind, rho.to_bits(), seed))
        .or_default()
        .clone();
    cell.get_or_init(|| sim::run(&scenario(id), kind, rho, seed).metrics)
        .clone()
}

/// The runs of all seeds.
fn runs(id: &'static str, kind: Kind, rho: f64) -> Vec<Metrics> {
    SEEDS.iter().map(|&seed| run(id, kind, rho, seed)).collect()
}

fn show(m: &Metrics) -> String {
    format!("\n{}", sim::table(std::slice::from_ref(m)))
}

fn show_all(ms: &[Metrics]) -> String {
    format!("\n{}", sim::table(ms))
}

/// ρ = 0.9: client errors < 0.1 %, upstream 429s < 1 % of attempts, utilisation ≥ 90 % of the
/// attainable.
fn bars_at_0_9(id: &'static str) {
    for m in runs(id, Kind::Ours, 0.9) {
        bars_at_0_9_one(&m);
    }
}

fn bars_at_0_9_one(m: &Metrics) {
    assert!(m.requests > 500, "{}", show(m));
    assert!(
        m.error_pct() < 0.1,
        "client errors {:.2} %{}",
        m.error_pct(),
        show(m)
    );
    assert!(
        m.upstream_429_pct() < 1.0,
        "upstream 429s {:.2} % of attempts{}",
        m.upstream_429_pct(),
        show(m)
    );
    assert!(
        m.served_of_attainable() >= 0.90,
        "utilisation {:.1} % of the attainable{}",
        100.0 * m.served_of_attainable(),
        show(m)
    );
}

/// ρ = 1.5: the gateway's own 429s carry a sane Retry-After, nothing collapses into 5xx or
/// deadline misses, and goodput (utilisation of the binding dimension) stays ≥ 95 % of capacity.
fn bars_at_1_5(id: &'static str) {
    for m in runs(id, Kind::Ours, 1.5) {
        bars_at_1_5_one(&m);
    }
}

fn bars_at_1_5_one(m: &Metrics) {
    assert!(
        m.fast_429 > 0,
        "overload must be answered with 429s{}",
        show(m)
    );
    assert!(
        m.retry_after_mean_s >= 1.0 && m.retry_after_max_s <= 60,
        "Retry-After mean {:.1} s, max {} s{}",
        m.retry_after_mean_s,
        m.retry_after_max_s,
        show(m)
    );
    assert_eq!(m.server_5xx + m.deadline, 0, "collapse{}", show(m));
    assert!(
        m.utilisation >= 0.95,
        "goodput {:.1} % of capacity{}",
        100.0 * m.utilisation,
        show(m)
    );
}

#[test]
fn s1_at_0_9_meets_the_bars() {
    bars_at_0_9("S1");
}

#[test]
fn s2_at_0_9_meets_the_bars() {
    bars_at_0_9("S2");
}

#[test]
fn s3_at_0_9_meets_the_bars() {
    bars_at_0_9("S3");
}

#[test]
fn s1_at_1_5_keeps_goodput_and_answers_429_with_retry_after() {
    bars_at_1_5("S1");
}

#[test]
fn s2_at_1_5_keeps_goodput_and_answers_429_with_retry_after() {
    bars_at_1_5("S2");
}

#[test]
fn s3_at_1_5_keeps_goodput_and_answers_429_with_retry_after() {
    bars_at_1_5("S3");
}

#[test]
fn s2_load_is_fair_across_heterogeneous_scopes() {
    for rho in [0.9, 1.5] {
        for m in runs("S2", Kind::Ours, rho) {
            assert!(m.jain >= 0.95, "Jain {:.3}{}", m.jain, show(&m));
        }
    }
}

/// S4: after its first 401 the revoked key gets at most one more request (per instance).
fn revoked_key_dropped(rho: f64) {
    for m in runs("S4", Kind::Ours, rho) {
        let r = m.revoked.clone().unwrap();
        assert!(r.first_401_min.is_some(), "the revoked key never met a 401");
        assert!(
            r.sends_after_401 <= 1,
            "{} requests after its first 401{}",
            r.sends_after_401,
            show(&m)
        );
    }
}

/// S4: the restored key serves again right after its next re-validation, which is due 10 min
/// after its 401 (plus an upkeep tick of 5 s and the probe request).
fn restored_key_back(rho: f64) {
    let restore = Timeline::short().restore_at as f64 / 60e9;
    for m in runs("S4", Kind::Ours, rho) {
        let r = m.revoked.clone().unwrap();
        let next_revalidation = r.first_401_min.unwrap() + 10.0 - restore;
        let back = r.back_after_restore_min;
        assert!(
            back.is_some_and(|b| b <= next_revalidation + 1.0),
            "back after restoration: {back:?} min; its next re-validation was {next_revalidation:.1} min after{}",
            show(&m)
        );
    }
}

#[test]
fn s4_at_0_9_revoked_key_gets_at_most_one_request_after_its_401() {
    revoked_key_dropped(0.9);
}

#[test]
fn s4_at_1_5_revoked_key_gets_at_most_one_request_after_its_401() {
    revoked_key_dropped(1.5);
}

#[test]
fn s4_at_0_9_restored_key_is_back_at_its_next_revalidation() {
    restored_key_back(0.9);
}

#[test]
fn s4_at_1_5_restored_key_is_back_at_its_next_revalidation() {
    restored_key_back(1.5);
}

/// Upstream 429s over all seeds: (per 1000 client requests, % of attempts).
fn pooled_429s(ms: &[Metrics]) -> (f64, f64) {
    let (mut e, mut r, mut a) = (0u64, 0u64, 0u64);
    for m in ms {
        e += m.upstream_429;
        r += m.requests;
        a += m.attempts;
    }
    (1000.0 * e as f64 / r as f64, 100.0 * e as f64 / a as f64)
}

/// Fewer upstream 429s than `other`, per client request and per attempt, pooled over the seeds.
fn fewer_429s(id: &'static str, other: Kind, rho: f64) {
    let ours = runs(id, Kind::Ours, rho);
    let theirs = runs(id, other, rho);
    let (o, t) = (pooled_429s(&ours), pooled_429s(&theirs));
    assert!(
        o.0 < t.0 && o.1 < t.1,
        "ours {:.1}/1k ({:.2} %) vs {} {:.1}/1k ({:.2} %){}{}",
        o.0,
        o.1,
        other.name(),
        t.0,
        t.1,
        show_all(&ours),
        show_all(&theirs)
    );
}

#[test]
fn s2_ours_draws_fewer_upstream_429s_than_round_robin() {
    fewer_429s("S2", Kind::RoundRobin, 0.9);
    fewer_429s("S2", Kind::RoundRobin, 1.5);
}

#[test]
fn s3_ours_draws_fewer_upstream_429s_than_round_robin() {
    fewer_429s("S3", Kind::RoundRobin, 0.9);
    fewer_429s("S3", Kind::RoundRobin, 1.5);
}

// Against uni-api-like at ρ = 0.9 only: at 1.5 it has benched every key for 30 min after its
// first 429 and answers ~97 % of clients with 503, so its few upstream 429s measure idleness,
// not scheduling (see the table).

#[test]
fn s2_ours_draws_fewer_upstream_429s_than_uni_api_like() {
    fewer_429s("S2", Kind::UniApiLike, 0.9);
}

#[test]
fn s3_ours_draws_fewer_upstream_429s_than_uni_api_like() {
    fewer_429s("S3", Kind::UniApiLike, 0.9);
}

/// S8 (Gemini: no rate-limit headers; 429s name the per-minute quota and its value): the
/// limit learned from the first 429 per scope, counted in Google's fixed windows, keeps the
/// 0.9 and 1.5 bars and upstream 429s under 0.5 % of attempts (2.6 % / 14 % before limits
/// were learned from 429 bodies).
#[test]
fn s8_limits_stated_in_429s_meet_the_bars() {
    for m in runs("S8", Kind::Ours, 0.9) {
        bars_at_0_9_one(&m);
        assert!(m.upstream_429_pct() < 0.5, "{}", show(&m));
    }
    for m in runs("S8", Kind::Ours, 1.5) {
        bars_at_1_5_one(&m);
        assert!(m.upstream_429_pct() < 0.5, "{}", show(&m));
    }
}

/// S9 (as S8, but 429s do not say the limit's value): the limit is estimated from what each
/// window admitted before a 429 (AIMD within the bounds the 429s set). Softer bars than S1-S3,
/// where headers give the limits: client errors < 0.5 % and upstream 429s < 2 % of attempts at
/// 0.9; at 1.5 goodput ≥ 94 % and upstream 429s < 6 % of attempts over the seeds (2.6 % and
/// 14 % without estimates).
#[test]
fn s9_limits_estimated_from_429s_cut_upstream_429s() {
    for m in runs("S9", Kind::Ours, 0.9) {
        assert!(m.error_pct() < 0.5, "{}", show(&m));
        assert!(m.upstream_429_pct() < 2.0, "{}", show(&m));
        assert!(m.served_of_attainable() >= 0.90, "{}", show(&m));
    }
    let overload = runs("S9", Kind::Ours, 1.5);
    for m in &overload {
        assert!(m.utilisation >= 0.94, "{}", show(m));
        assert_eq!(m.server_5xx + m.deadline, 0, "collapse{}", show(m));
    }
    let (_, pct) = pooled_429s(&overload);
    assert!(pct < 6.0, "{pct:.2} %{}", show_all(&overload));
    fewer_429s("S9", Kind::RoundRobin, 0.9);
    fewer_429s("S9", Kind::RoundRobin, 1.5);
}

/// S5 (not a keys.md bar): a 60 s storm of 25 % provider-wide 503s at ρ = 0.9 should cost
/// ours no more client errors than naive round robin, which simply retries on another key.
#[test]
fn s5_storm_at_0_9_costs_no_more_client_errors_than_round_robin() {
    let errors = |ms: &[Metrics]| ms.iter().map(Metrics::errors).sum::<u64>();
    let ours = runs("S5", Kind::Ours, 0.9);
    let rr = runs("S5", Kind::RoundRobin, 0.9);
    assert!(
        errors(&ours) <= errors(&rr),
        "ours {} client errors vs round robin {}{}{}",
        errors(&ours),
        errors(&rr),
        show_all(&ours),
        show_all(&rr)
    );
}

#[test]
fn same_seed_same_result() {
    let s = scenario("S3");
    for kind in [Kind::Ours, Kind::Random] {
        let a = sim::run(&s, kind, 1.5, 7).metrics;
        let b = sim::run(&s, kind, 1.5, 7).metrics;
        assert_eq!(a, b);
    }
    let other = sim::run(&s, Kind::Ours, 1.5, 8).metrics;
    assert_ne!(sim::run(&s, Kind::Ours, 1.5, 7).metrics, other);
}
