//! What usage logging costs the gateway, per request, with SQLite: the request path's
//! `record` calls and the writer's CPU time. Ignored by default (a measurement, not a check):
//!
//!     cargo test --release -p llmux --test store_bench -- --ignored --nocapture --test-threads=1
//!
//! One test at a time: the CPU time measured is the whole process's. Knobs (environment):
//! `LLMUX_BENCH_RATE` (requests per second handed over; default: a burst),
//! `LLMUX_BENCH_BATCH` (writer batch size), `LLMUX_BENCH_DROP` (indexes to drop first).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmux::store::{Batch, StoreError, UsageStore, UsageWriter, WriterConfig};
use llmux::usage::CostLedger;
use store_common::*;

/// User + system CPU time of this process (Linux), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

const REQUESTS: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --release --ignored --nocapture --test-threads=1"]
async fn sqlite_logging_cost_per_request() {
    let dir = TempDir::new();
    let store = Arc::new(sqlite(&dir).await);
    // LLMUX_BENCH_DROP=index,index: measure without those indexes.
    if let Ok(drop) = std::env::var("LLMUX_BENCH_DROP") {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(store.path()),
        )
        .await
        .unwrap();
        for index in drop.split(',').filter(|s| !s.is_empty()) {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {index}")))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
    measure("sqlite", store).await;
}

/// The same without a database: the queue, batching and record handling alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --release --ignored --nocapture --test-threads=1"]
async fn writer_overhead_without_a_database() {
    measure("no-op store", Arc::new(NoopStore)).await;
}

struct NoopStore;

impl UsageStore for NoopStore {
    async fn insert(&self, _: &Batch) -> Result<(), StoreError> {
        Ok(())
    }
    store_common::empty_reads!();
}

async fn measure<S: UsageStore>(label: &str, store: Arc<S>) {
    let mut cfg = WriterConfig {
        capacity: 250_000,
        ..WriterConfig::default()
    };
    // LLMUX_BENCH_BATCH=n: try another batch size.
    if let Some(n) = std::env::var("LLMUX_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.batch_size = n;
    }
    let writer = UsageWriter::spawn(Arc::clone(&store), cfg, Arc::new(CostLedger::new()));
    let sink = writer.sink();
    // Build the records first: the request path has them anyway. The common request: answered
    // at the first try, its attempt kept in its own row.
    let work: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let mut r = request("sk-...cli1#00000000000000c1", "gpt-4o", T0 + i, 1200, 300);
            r.inline_attempt = Some(llmux::usage::InlineAttempt {
                status: Some(200),
                latency_ms: 840,
            });
            r
        })
        .collect();
    // LLMUX_BENCH_RATE=n: hand over n requests per second, in 1 ms steps, as a busy gateway
    // would (the queue then stays short); unset or 0: as fast as possible (a burst).
    let rate: u64 = std::env::var("LLMUX_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let mut busy = Duration::ZERO;
    for (i, r) in work.into_iter().enumerate() {
        let t = Instant::now();
        sink.record(r);
        busy += t.elapsed();
        if rate > 0 && (i as u64 + 1).is_multiple_of((rate / 1000).max(1)) {
            let due = Duration::from_micros((i as u64 + 1) * 1_000_000 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let queued = busy;
    let s = writer.shutdown(Duration::from_secs(600)).await;
    let total = started.elapsed();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(s.written, u64::try_from(REQUESTS).unwrap());
    let per_request_us = |d: f64| d * 1e6 / REQUESTS as f64;
    let pace = if rate > 0 {
        format!("{rate}/s")
    } else {
        "burst".to_owned()
    };
    println!(
        "{label} (batches of {}, {pace}): {REQUESTS} requests (1 row each, attempt inline): record() {:.2} µs/request on the request path; \
         all written in {total:?}; process CPU {:.1} µs/request in total (request path + writer)",
        cfg.batch_size,
        per_request_us(queued.as_secs_f64()),
        per_request_us(cpu),
    );
}
