//! PostgreSQL stopped in the middle of the load: requests keep being answered at full speed,
//! the lost records are counted and shown on `/metrics`, and once the server is back the
//! writer reconnects by itself. Runs its own throw-away server (scripts/pg-throwaway.sh) so
//! stopping it disturbs no other test; skipped when `LLMUX_TEST_PG_URL` is not set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmux::store::service::UsageService;
use llmux::store::{PgStore, StoreConfig, UsageFilter, UsageSink, UsageStore, WriterConfig};
use store_common::*;

/// One simulated request: what the request path does with the store (two `record` calls),
/// then the answer. Returns how long the store part took.
fn serve(sink: &UsageSink, model: &str, i: i64) -> Duration {
    let started = Instant::now();
    sink.record_attempt(attempt("openai", model, Some("k1"), T0 + i, true));
    sink.record(request("k", model, T0 + i, 10, 5));
    started.elapsed()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_never_slows_requests_and_drops_are_counted() {
    if pg_url("postgres_outage_never_slows_requests_and_drops_are_counted").is_none() {
        return;
    }
    let server = PgServer(TempDir::new());
    let url = pg("start", &server.0);
    let mut cfg = StoreConfig::from_lookup(|k| (k == "DATABASE_URL").then(|| url.clone())).unwrap();
    cfg.retention_days = 0;
    cfg.writer = WriterConfig {
        capacity: 256,
        batch_size: 32,
        flush_interval: Duration::from_millis(20),
        retries: 2,
        write_timeout: Duration::from_secs(1),
        ..WriterConfig::default()
    };
    let usage = UsageService::start(cfg).await.unwrap();
    let sink = usage.sink();
    let stats = Arc::clone(sink.stats());

    // 1. Healthy: everything is written (200 records fit the queue).
    for i in 0..100 {
        serve(&sink, "before", i);
    }
    wait_until("the first 200 rows written", || {
        stats.snapshot().written == 200
    })
    .await;
    assert_eq!(stats.snapshot().dropped(), 0);

    // 2. Stop PostgreSQL under load: 8 concurrent clients for 5 s, longer than the writer's
    //    tries of one batch (3 × 1 s timeout + backoff).
    pg("stop", &server.0);
    let started = Instant::now();
    let mut clients = vec![];
    for c in 0..8i64 {
        let sink = sink.clone();
        clients.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut answered = 0i64;
            while started.elapsed() < Duration::from_secs(5) {
                worst = worst.max(serve(&sink, "during", c * 1_000_000 + answered));
                answered += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (answered, worst)
        }));
    }
    let mut answered = 0;
    for c in clients {
        let (n, worst) = c.await.unwrap();
        answered += n;
        assert!(
            worst < Duration::from_millis(100),
            "a request waited {worst:?} on the store"
        );
    }
    let outage = started.elapsed();
    // Each client sleeps 2 ms per request: close to 2500 answers each when nothing blocks.
    assert!(
        answered > 8 * 500,
        "only {answered} requests answered in {outage:?}"
    );
    wait_until("a batch dropped after its retries", || {
        stats.snapshot().dropped_failed > 0
    })
    .await;
    let during = stats.snapshot();
    assert!(during.dropped_full > 0, "{during:?}");
    let mut metrics = String::new();
    usage.render_metrics(&mut metrics);
    let line = format!(
        "llmux_usage_dropped_total{{reason=\"queue_full\"}} {}",
        during.dropped_full
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("llmux_usage_dropped_total{reason=\"queue_full\"}")
                && l.split(' ').nth(1).and_then(|n| n.parse::<u64>().ok())
                    >= Some(during.dropped_full)
        ),
        "{line} not in:\n{metrics}"
    );

    // 3. Back up: the writer reconnects; what is recorded now is written.
    pg("start", &server.0);
    wait_until("the queue drained", || stats.snapshot().queue_depth == 0).await;
    for i in 0..100 {
        serve(&sink, "after", i);
    }
    let end = usage.shutdown(Duration::from_secs(30)).await;
    println!("outage {outage:?}, {answered} requests answered; writer: {end:?}");
    assert_eq!(end.queue_depth, 0);
    assert_eq!(
        end.written + end.dropped(),
        2 * (100 + u64::try_from(answered).unwrap() + 100),
        "every record is either written or counted as dropped: {end:?}"
    );

    let check = PgStore::open(url.parse().unwrap()).await;
    let count = |model: &str| {
        let f = UsageFilter {
            model: Some(model.to_owned()),
            ..UsageFilter::default()
        };
        let check = check.clone();
        async move {
            check
                .token_usage(&f)
                .await
                .unwrap()
                .iter()
                .map(|r| r.requests)
                .sum::<i64>()
        }
    };
    assert_eq!(count("before").await, 100);
    assert_eq!(count("after").await, 100, "written after the restart");
    check.close().await;
}
