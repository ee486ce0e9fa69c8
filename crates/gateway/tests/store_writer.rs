//! The background writer: `record` never waits, a full queue drops and counts, a failing
//! database costs records (counted) but never time, shutdown writes everything, a rejected row
//! costs only itself, and no secret reaches the database file or the logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmux::store::background::CpuProbe;
use llmux::store::service::UsageService;
use llmux::store::writer::StatsSnapshot;
use llmux::store::{
    Backend, Batch, StoreConfig, StoreError, UsageFilter, UsageStore, UsageWriter, WriterConfig,
};
use llmux::usage::{CostLedger, CreditsView, key_id};
use store_common::*;

/// A store whose writes wait for a gate, and fail while `fail` is set.
#[derive(Default)]
struct FakeStore {
    open: tokio::sync::watch::Sender<bool>,
    fail: AtomicBool,
    rows: AtomicUsize,
    tries: AtomicUsize,
}

impl FakeStore {
    fn new(open: bool, fail: bool) -> Arc<FakeStore> {
        let s = FakeStore::default();
        s.open.send_replace(open);
        s.fail.store(fail, Ordering::SeqCst);
        Arc::new(s)
    }
}

impl UsageStore for FakeStore {
    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
        self.tries.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(StoreError::Io(std::io::Error::other("database is down")));
        }
        self.rows.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(())
    }
    store_common::empty_reads!();
}

fn small(capacity: usize, batch_size: usize, retries: u32) -> WriterConfig {
    WriterConfig {
        capacity,
        batch_size,
        flush_interval: Duration::from_millis(10),
        retries,
        write_timeout: Duration::from_secs(30),
        ..WriterConfig::default()
    }
}

#[tokio::test]
async fn full_queue_drops_and_counts_and_the_ledger_still_sees_the_spend() {
    let store = FakeStore::new(false, false);
    let ledger = Arc::new(CostLedger::new());
    let writer = UsageWriter::spawn_on_current_runtime(
        Arc::clone(&store),
        small(8, 4, 0),
        Arc::clone(&ledger),
    );
    let sink = writer.sink();
    let mut rec = request("k", "m", T0, 1_000_000, 0); // $1 at price 1,2
    rec.price = price(1.0, 2.0);
    // The writer task has not run yet (current-thread runtime, no await): the queue holds 8.
    let started = Instant::now();
    for _ in 0..100 {
        sink.record(rec.clone());
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "record must not wait"
    );
    let s = writer.stats().snapshot();
    assert_eq!((s.queue_depth, s.dropped_full, s.written), (8, 92, 0));
    assert_eq!(
        ledger.spent_since("k", 0),
        100.0,
        "dropped records are still charged"
    );

    let mut metrics = String::new();
    writer.stats().render_prometheus(&mut metrics);
    assert!(
        metrics.contains("\nllmux_usage_queue_depth 8\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmux_usage_dropped_total{reason=\"queue_full\"} 92\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmux_usage_queue_capacity 8\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE llmux_usage_dropped_total counter\n"),
        "{metrics}"
    );

    store.open.send_replace(true);
    let s = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        s,
        StatsSnapshot {
            queue_depth: 0,
            capacity: 8,
            written: 8,
            dropped_full: 92,
            ..StatsSnapshot::default()
        }
    );
    assert_eq!(store.rows.load(Ordering::SeqCst), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_database_never_blocks_record_and_every_loss_is_counted() {
    let store = FakeStore::new(true, true);
    let writer = UsageWriter::spawn(
        Arc::clone(&store),
        small(64, 16, 2),
        Arc::new(CostLedger::new()),
    );
    let mut tasks = vec![];
    for t in 0..10 {
        let sink = writer.sink();
        tasks.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            for i in 0..200 {
                let started = Instant::now();
                sink.record_attempt(attempt("p", "m", Some("k"), T0 + i, false));
                sink.record(request("k", &format!("m{t}"), T0 + i, 1, 1));
                worst = worst.max(started.elapsed());
                tokio::task::yield_now().await;
            }
            worst
        }));
    }
    for t in tasks {
        let worst = t.await.unwrap();
        assert!(worst < Duration::from_millis(250), "record took {worst:?}");
    }
    let s = writer.shutdown(Duration::from_secs(3)).await;
    assert_eq!(s.written, 0);
    assert_eq!(s.dropped(), 4000, "{s:?}");
    assert!(s.dropped_full > 0 && s.dropped_failed > 0, "{s:?}");
    assert!(
        s.write_errors >= 3,
        "each batch is tried 1 + 2 times: {s:?}"
    );
    assert_eq!(s.queue_depth, 0);
}

#[tokio::test]
async fn shutdown_deadline_bounds_a_hung_database() {
    let store = FakeStore::new(false, false); // never answers
    let writer = UsageWriter::spawn(store, small(100, 10, 0), Arc::new(CostLedger::new()));
    let sink = writer.sink();
    for i in 0..50 {
        sink.record(request("k", "m", T0 + i, 1, 1));
    }
    let started = Instant::now();
    let s = writer.shutdown(Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!((s.written, s.dropped_shutdown, s.queue_depth), (0, 50, 0));
    // After shutdown, records are refused (and counted), still without waiting.
    sink.record(request("k", "m", T0, 1, 1));
    assert_eq!(sink.stats().snapshot().dropped_shutdown, 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_every_queued_record_to_sqlite() {
    let dir = TempDir::new();
    let store = Arc::new(sqlite(&dir).await);
    let cfg = WriterConfig {
        capacity: 25_000,
        ..WriterConfig::default()
    };
    let writer = UsageWriter::spawn(Arc::clone(&store), cfg, Arc::new(CostLedger::new()));
    let sink = writer.sink();
    let started = Instant::now();
    for i in 0..10_000 {
        sink.record_attempt(attempt("p", "m", Some("k1"), T0 + i, i % 4 != 0));
        sink.record(request("k", "m", T0 + i, 10, 5));
    }
    let queued_in = started.elapsed();
    let s = writer.shutdown(Duration::from_secs(120)).await;
    let total = started.elapsed();
    println!(
        "20000 records: queued in {queued_in:?} ({:.0} ns/record), written in {total:?} ({:.0} rows/s)",
        queued_in.as_nanos() as f64 / 20_000.0,
        20_000.0 / total.as_secs_f64()
    );
    assert_eq!((s.written, s.dropped()), (20_000, 0), "{s:?}");
    let usage = store.token_usage(&UsageFilter::default()).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (usage[0].requests, usage[0].prompt_tokens),
        (10_000, 100_000)
    );
    let summary = store.summary(0).await.unwrap();
    assert_eq!(
        (summary.channel[0].total, summary.channel[0].success),
        (10_000, 7_500)
    );
}

#[tokio::test]
async fn a_rejected_row_costs_only_itself() {
    let dir = TempDir::new();
    let store = Arc::new(sqlite(&dir).await);
    // A database-side rule that refuses one row, as a constraint would.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path("stats.db").display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON llmux_requests WHEN NEW.model = 'bad' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let writer = UsageWriter::spawn(
        Arc::clone(&store),
        small(100, 100, 3),
        Arc::new(CostLedger::new()),
    );
    let sink = writer.sink();
    for i in 0..10 {
        let model = if i == 4 { "bad" } else { "good" };
        sink.record(request("k", model, T0 + i, 1, 1));
    }
    let s = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!((s.written, s.dropped_failed), (9, 1), "{s:?}");
    let usage = store.token_usage(&UsageFilter::default()).await.unwrap();
    assert_eq!(usage[0].requests, 9);
}

/// Log lines captured for the secret checks.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    (logs.clone(), tracing::subscriber::set_default(subscriber))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_secret_reaches_the_database_file_or_the_logs() {
    let (logs, _guard) = capture_logs();
    let client_secret = "sk-client-CLIENTSECRET0123456789abcdWXYZ";
    let upstream_secret = "sk-proj-UPSTREAMSECRET9876543210zyxwQRST";
    let dir = TempDir::new();
    let cfg = StoreConfig {
        backend: Backend::Sqlite {
            path: dir.path("stats.db"),
        },
        retention_days: 0,
        // A tiny queue, so drops (and their warnings) happen too.
        writer: small(4, 2, 0),
    };
    let usage = UsageService::start(cfg).await.unwrap();
    let sink = usage.sink();
    for i in 0..50 {
        let mut r = request(&key_id(client_secret), "gpt-4o", T0 + i, 10, 10);
        r.key_fingerprint = Some(key_id(upstream_secret).into());
        sink.record(r);
        let mut a = attempt(
            "openai",
            "gpt-4o",
            Some(&key_id(upstream_secret)),
            T0 + i,
            true,
        );
        a.client_key = key_id(client_secret).into();
        sink.record_attempt(a);
        tokio::task::yield_now().await;
    }
    let store = usage.store().unwrap().clone();
    let paid = llmux::store::endpoints::PaidKey {
        label: llmux::secret::mask(client_secret),
        key_id: key_id(client_secret),
        credits: 1.0,
        since_ms: 0,
    };
    llmux::store::endpoints::add_credits(&*store, usage.ledger(), &paid, 2.0, T0)
        .await
        .unwrap();
    let s = usage.shutdown(Duration::from_secs(10)).await;
    assert!(s.written > 0 && s.dropped_full > 0, "{s:?}");

    // Every byte the database left on disk (main file, WAL, shared memory).
    let mut bytes = vec![];
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(contains(&bytes, "sk-...WXYZ#"), "the key id is stored");
    for secret in [
        client_secret,
        upstream_secret,
        "CLIENTSECRET",
        "UPSTREAMSECRET",
    ] {
        assert!(
            !contains(&bytes, secret),
            "{secret} found in the database files"
        );
    }

    // The logs (drop warnings included) name no key either; PostgreSQL configured with a
    // password it cannot reach logs the failure without the password.
    let unreachable = StoreConfig::from_lookup(|k| {
        (k == "DATABASE_URL")
            .then(|| "postgres://llmux:PGPASSWORDSECRET@127.0.0.1:1/llmux".to_owned())
    })
    .unwrap();
    let pg = UsageService::start(unreachable).await.unwrap();
    pg.sink().record(request("k", "m", T0, 1, 1));
    pg.shutdown(Duration::from_millis(200)).await;
    let logs = logs.0.lock().unwrap().clone();
    assert!(
        contains(&logs, "dropping records"),
        "{}",
        String::from_utf8_lossy(&logs)
    );
    assert!(
        contains(&logs, "PostgreSQL not ready"),
        "{}",
        String::from_utf8_lossy(&logs)
    );
    for secret in ["CLIENTSECRET", "UPSTREAMSECRET", "PGPASSWORDSECRET"] {
        assert!(
            !contains(&logs, secret),
            "{secret} logged: {}",
            String::from_utf8_lossy(&logs)
        );
    }
}

#[tokio::test]
async fn credits_and_spending_survive_a_restart() {
    let dir = TempDir::new();
    let cfg = || StoreConfig {
        backend: Backend::Sqlite {
            path: dir.path("stats.db"),
        },
        retention_days: 30,
        writer: WriterConfig::default(),
    };
    let usage = UsageService::start(cfg()).await.unwrap();
    let mut r = request("k", "m", T0, 2_000_000, 0);
    r.price = price(1.0, 2.0);
    usage.sink().record(r);
    let store = usage.store().unwrap().clone();
    store.add_credits("k", 3.0, T0).await.unwrap();
    usage.shutdown(Duration::from_secs(10)).await;

    let again = UsageService::start(cfg()).await.unwrap();
    assert_eq!(again.ledger().spent_since("k", 0), 2.0);
    assert_eq!(again.ledger().granted("k"), 3.0);
    again.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn disabled_database_keeps_the_ledger_and_reports_zeros() {
    let cfg =
        StoreConfig::from_lookup(|k| (k == "DISABLE_DATABASE").then(|| "true".to_owned())).unwrap();
    let usage = UsageService::start(cfg).await.unwrap();
    assert!(usage.store().is_none());
    let mut r = request("k", "m", T0, 1_000_000, 0);
    r.price = price(0.5, 0.5);
    usage.sink().record(r);
    assert_eq!(usage.ledger().spent_since("k", 0), 0.5);
    let mut metrics = String::new();
    usage.render_metrics(&mut metrics);
    assert!(metrics.contains("llmux_usage_written_total 0\n"));
    assert!(metrics.contains("llmux_usage_dropped_total{reason=\"queue_full\"} 0\n"));
    let s = usage.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        s.dropped(),
        0,
        "nothing is dropped when there is no database"
    );
}

#[tokio::test]
async fn the_writer_needs_no_turn_of_the_callers_runtime() {
    // Server workers record and never wait for the writer: it runs on a thread of its own,
    // so a worker busy with requests is not where batches are bound.
    let store = FakeStore::new(true, false);
    let writer = UsageWriter::spawn(
        Arc::clone(&store),
        small(100, 10, 0),
        Arc::new(CostLedger::new()),
    );
    let sink = writer.sink();
    for i in 0..10 {
        sink.record(request("k", "m", T0 + i, 1, 1));
    }
    // This (single-threaded) runtime is blocked here; only another thread can write.
    let deadline = Instant::now() + Duration::from_secs(10);
    while writer.stats().snapshot().written < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(writer.stats().snapshot().written, 10);
    assert_eq!(store.rows.load(Ordering::SeqCst), 10);
    let s = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!((s.written, s.queue_depth), (10, 0));
}

/// A store with an idle lane that counts what each lane wrote.
#[derive(Default)]
struct LaneStore {
    normal_rows: AtomicUsize,
    idle_rows: AtomicUsize,
    largest_idle_batch: AtomicUsize,
    /// Every idle-lane write fails as a busy database would.
    idle_fails: bool,
    idle_failures: AtomicUsize,
}

impl UsageStore for LaneStore {
    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        self.normal_rows.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(())
    }
    fn has_idle_lane(&self) -> bool {
        true
    }
    async fn insert_idle(&self, batch: &Batch) -> Result<(), StoreError> {
        if self.idle_fails {
            self.idle_failures.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Timeout(Duration::from_millis(1)));
        }
        self.idle_rows.fetch_add(batch.len(), Ordering::SeqCst);
        self.largest_idle_batch
            .fetch_max(batch.len(), Ordering::SeqCst);
        Ok(())
    }
    store_common::empty_reads!();
}

/// A queue that is behind goes to the normal lane, whatever the CPU: the idle lane would
/// starve exactly when the writer must catch up.
#[tokio::test]
async fn a_queue_that_is_behind_is_written_on_the_normal_lane() {
    let store = Arc::new(LaneStore::default());
    let writer = UsageWriter::spawn_on_current_runtime(
        Arc::clone(&store),
        small(4096, 2048, 0),
        Arc::new(CostLedger::new()),
    );
    let sink = writer.sink();
    // The writer has not run yet: it finds 3000 records waiting.
    for i in 0..3000 {
        sink.record(request("k", "m", T0 + i, 1, 1));
    }
    let s = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(s.written, 3000);
    assert_eq!(store.normal_rows.load(Ordering::SeqCst), 3000);
    assert_eq!(store.idle_rows.load(Ordering::SeqCst), 0);
}

/// Hands `rounds` groups of `per_round` records to a writer on `store` that sees the CPU as
/// `cpu` says, pausing `pause` between groups, and shuts the writer down.
async fn trickle(
    store: &Arc<LaneStore>,
    cpu: CpuProbe,
    retries: u32,
    rounds: i64,
    per_round: i64,
    pause: Duration,
) -> StatsSnapshot {
    let cfg = WriterConfig {
        cpu,
        ..small(16_384, 2048, retries)
    };
    let writer = UsageWriter::spawn(Arc::clone(store), cfg, Arc::new(CostLedger::new()));
    let sink = writer.sink();
    for i in 0..rounds {
        for j in 0..per_round {
            sink.record(request("k", "m", T0 + i * 100 + j, 1, 1));
        }
        tokio::time::sleep(pause).await;
    }
    writer.shutdown(Duration::from_secs(10)).await
}

fn lane_rows(store: &LaneStore) -> (usize, usize) {
    (
        store.normal_rows.load(Ordering::SeqCst),
        store.idle_rows.load(Ordering::SeqCst),
    )
}

/// Records that trickle in while the CPU is idle go to the idle lane, written once each, and
/// an idle-lane transaction never holds more than the idle lane's batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_records_on_an_idle_machine_take_the_idle_lane() {
    let store = Arc::new(LaneStore::default());
    let s = trickle(
        &store,
        CpuProbe::Fixed(true),
        0,
        60,
        20,
        Duration::from_millis(5),
    )
    .await;
    assert_eq!((s.written, s.dropped()), (1200, 0));
    let (normal, idle) = lane_rows(&store);
    assert_eq!(normal + idle, 1200);
    // Only a batch the shutdown flush gathers may take the normal lane.
    assert!(idle >= 1200 - 20, "normal {normal}, idle {idle}");
    let largest = store.largest_idle_batch.load(Ordering::SeqCst);
    assert!(largest > 0 && largest <= llmux::store::background::IDLE_BATCH);
}

/// A busy machine never gets the idle lane: its thread would be starved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_machine_writes_on_the_normal_lane() {
    let store = Arc::new(LaneStore::default());
    let s = trickle(
        &store,
        CpuProbe::Fixed(false),
        0,
        30,
        20,
        Duration::from_millis(5),
    )
    .await;
    assert_eq!((s.written, s.dropped()), (600, 0));
    assert_eq!(lane_rows(&store), (600, 0));
}

/// A failed idle-lane write is retried on the normal lane: nothing is lost to a lane that
/// keeps failing (or a thread that is starved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_idle_write_is_retried_on_the_normal_lane() {
    let store = Arc::new(LaneStore {
        idle_fails: true,
        ..LaneStore::default()
    });
    let s = trickle(
        &store,
        CpuProbe::Fixed(true),
        1,
        100,
        10,
        Duration::from_millis(8),
    )
    .await;
    assert_eq!((s.written, s.dropped()), (1000, 0));
    assert_eq!(lane_rows(&store), (1000, 0));
    assert!(store.idle_failures.load(Ordering::SeqCst) > 0);
}
