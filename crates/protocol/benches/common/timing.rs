//! The timing loop of the std-only micro-benchmarks (`protocol`'s and `llmux`'s).

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Runs `f` for about `budget` and returns nanoseconds per call.
pub fn time<R>(budget: Duration, mut f: impl FnMut() -> R) -> f64 {
    for _ in 0..100 {
        black_box(f());
    }
    let mut iters = 0u64;
    let start = Instant::now();
    let mut batch = 16u64;
    while start.elapsed() < budget {
        for _ in 0..batch {
            black_box(f());
        }
        iters += batch;
        batch = (batch * 2).min(1 << 16);
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}
