//! The order in which one request tries its channels: uni-api's `SCHEDULING_ALGORITHM` and rule
//! weights. Candidates arrive in rule order (the priority list); weights only count when two or
//! more candidates carry one, and then the unweighted candidates are left out (uni-api, #87).
//! Every algorithm except `fixed_priority` moves the starting channel by one per request, per
//! client key and model; the counters live in [`Rotation`] so they survive a config reload.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::schema::ChannelSchedule;
use crate::runtime::Candidate;

/// Largest smooth weighted round-robin cycle built per request; larger weight sums are scaled
/// down proportionally (the shares stay the same within rounding).
const MAX_RING: u64 = 1000;

/// Request counters per client key id, then requested model (nested so a lookup borrows the
/// names instead of allocating them).
#[derive(Debug, Default)]
pub struct Rotation {
    counters: Mutex<HashMap<Box<str>, PerModel>>,
}

type PerModel = HashMap<Box<str>, u64>;

impl Rotation {
    /// The counter's value for this request (0 for the first), then incremented.
    pub fn next(&self, key_id: &str, model: &str) -> u64 {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(key_id).and_then(|m| m.get_mut(model)) {
            let v = *n;
            *n = n.wrapping_add(1);
            return v;
        }
        map.entry(Box::from(key_id))
            .or_default()
            .insert(Box::from(model), 1);
        0
    }
}

/// Whether `algorithm` uses the rotation counter.
pub fn rotates(algorithm: ChannelSchedule) -> bool {
    !matches!(
        algorithm,
        ChannelSchedule::FixedPriority | ChannelSchedule::Random
    )
}

/// The candidates in the order this request tries them.
pub fn order(
    candidates: &[Candidate],
    algorithm: ChannelSchedule,
    counter: u64,
    rng: &mut fastrand::Rng,
) -> Vec<Candidate> {
    let weighted: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].weight.is_some())
        .collect();
    let use_weights = weighted.len() >= 2;
    let pool: Vec<usize> = if use_weights {
        weighted
    } else {
        (0..candidates.len()).collect()
    };
    let weight = |i: usize| u64::from(candidates[i].weight.unwrap_or(1));
    let picked: Vec<usize> = match algorithm {
        ChannelSchedule::FixedPriority => pool,
        ChannelSchedule::Random => {
            let mut p = pool;
            rng.shuffle(&mut p);
            p
        }
        ChannelSchedule::WeightedRoundRobin | ChannelSchedule::SmartRoundRobin if use_weights => {
            let weights: Vec<u64> = pool.iter().map(|&i| weight(i)).collect();
            let ring = smooth_ring(&weights);
            let start = usize::try_from(counter % ring.len().max(1) as u64).unwrap_or(0);
            let mut seen = vec![false; pool.len()];
            let mut out = Vec::with_capacity(pool.len());
            for k in 0..ring.len() {
                let slot = ring[(start + k) % ring.len()];
                if !seen[slot] {
                    seen[slot] = true;
                    out.push(pool[slot]);
                }
            }
            out
        }
        ChannelSchedule::Lottery if use_weights => {
            let mut left: Vec<usize> = pool;
            let mut out = Vec::with_capacity(left.len());
            while !left.is_empty() {
                let total: u64 = left.iter().map(|&i| weight(i)).sum();
                let mut draw = rng.u64(0..total.max(1));
                let mut at = 0;
                for (j, &i) in left.iter().enumerate() {
                    if draw < weight(i) {
                        at = j;
                        break;
                    }
                    draw -= weight(i);
                }
                out.push(left.remove(at));
            }
            out
        }
        // round_robin, and the weighted algorithms without weights: rotate.
        _ => {
            let mut p = pool;
            if !p.is_empty() {
                let by = usize::try_from(counter % p.len() as u64).unwrap_or(0);
                p.rotate_left(by);
            }
            p
        }
    };
    picked.into_iter().map(|i| candidates[i].clone()).collect()
}

/// nginx's smooth weighted round robin over one full cycle: each position names an index into
/// `weights`, each index appears in proportion to its weight, spread out as evenly as possible.
pub fn smooth_ring(weights: &[u64]) -> Vec<usize> {
    let weights = reduce(weights);
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut ring = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let total_i = i64::try_from(total).unwrap_or(i64::MAX);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += i64::try_from(*w).unwrap_or(0);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total_i;
        ring.push(best);
    }
    ring
}

/// Weights divided by their gcd, then scaled so the cycle has at most [`MAX_RING`] slots.
fn reduce(weights: &[u64]) -> Vec<u64> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|x| x / g).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_RING {
        w = w
            .iter()
            .map(|x| (x.saturating_mul(MAX_RING) / total).max(1))
            .collect();
    }
    w
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::providers::engine::Engine;

    fn cand(channel: usize, weight: Option<u32>) -> Candidate {
        Candidate {
            channel,
            alias: Arc::from("m"),
            upstream_model: Arc::from("m"),
            engine: Engine::OpenAi,
            weight,
            via_key: None,
        }
    }

    fn firsts(cands: &[Candidate], algo: ChannelSchedule, n: u64) -> Vec<usize> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0; 8];
        for c in 0..n {
            counts[order(cands, algo, c, &mut rng)[0].channel] += 1;
        }
        counts
    }

    #[test]
    fn smooth_ring_is_nginx_order() {
        assert_eq!(smooth_ring(&[5, 3, 2]), vec![0, 1, 2, 0, 0, 1, 0, 2, 1, 0]);
        assert_eq!(smooth_ring(&[10, 10]), vec![0, 1]);
    }

    #[test]
    fn weighted_round_robin_starts_in_proportion_and_tries_everyone() {
        let cands = [cand(0, Some(5)), cand(1, Some(3)), cand(2, Some(2))];
        let counts = firsts(&cands, ChannelSchedule::WeightedRoundRobin, 10);
        assert_eq!(&counts[..3], &[5, 3, 2]);
        let mut rng = fastrand::Rng::new();
        for c in 0..10 {
            let mut o: Vec<usize> = order(&cands, ChannelSchedule::WeightedRoundRobin, c, &mut rng)
                .iter()
                .map(|c| c.channel)
                .collect();
            o.sort_unstable();
            assert_eq!(o, vec![0, 1, 2]);
        }
    }

    #[test]
    fn unweighted_candidates_drop_out_only_with_two_weights() {
        let two = [cand(0, Some(1)), cand(1, None), cand(2, Some(1))];
        let mut rng = fastrand::Rng::new();
        let o = order(&two, ChannelSchedule::FixedPriority, 3, &mut rng);
        assert_eq!(o.iter().map(|c| c.channel).collect::<Vec<_>>(), vec![0, 2]);
        let one = [cand(0, None), cand(1, Some(9)), cand(2, None)];
        let o = order(&one, ChannelSchedule::WeightedRoundRobin, 1, &mut rng);
        assert_eq!(
            o.iter().map(|c| c.channel).collect::<Vec<_>>(),
            vec![1, 2, 0]
        );
    }

    #[test]
    fn fixed_priority_never_rotates_and_round_robin_does() {
        let cands = [cand(0, None), cand(1, None), cand(2, None)];
        assert_eq!(
            &firsts(&cands, ChannelSchedule::FixedPriority, 6)[..3],
            &[6, 0, 0]
        );
        assert_eq!(
            &firsts(&cands, ChannelSchedule::RoundRobin, 6)[..3],
            &[2, 2, 2]
        );
    }

    #[test]
    fn lottery_follows_weights_and_random_covers_all() {
        let cands = [cand(0, Some(8)), cand(1, Some(2))];
        let counts = firsts(&cands, ChannelSchedule::Lottery, 2000);
        assert!((1450..1750).contains(&counts[0]), "{counts:?}");
        let plain = [cand(0, None), cand(1, None), cand(2, None)];
        let counts = firsts(&plain, ChannelSchedule::Random, 900);
        assert!(counts[..3].iter().all(|&n| n > 200), "{counts:?}");
    }

    #[test]
    fn huge_weights_are_scaled_not_materialised() {
        let ring = smooth_ring(&[3_000_000, 1_000_000]);
        assert!(ring.len() <= 1000);
        assert_eq!(ring.iter().filter(|&&i| i == 0).count(), 3);
        let ring = smooth_ring(&[999_999, 1]);
        assert!(ring.len() <= 1001 && ring.contains(&1));
    }

    #[test]
    fn rotation_counts_per_key_and_model() {
        let r = Rotation::default();
        assert_eq!(r.next("k", "a"), 0);
        assert_eq!(r.next("k", "a"), 1);
        assert_eq!(r.next("k", "b"), 0);
        assert_eq!(r.next("j", "a"), 0);
    }
}
