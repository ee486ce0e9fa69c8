//! The only way records reach the database: a bounded queue and one background task that
//! writes them in batches. `UsageSink::record` is a `try_send` — it never waits, never fails
//! the request; when the queue is full (database slow or down) the record is dropped, counted
//! and reported in a rate-limited warning and on `/metrics`. A failed batch is retried a few
//! times with backoff, then dropped and counted; a batch the database rejects for its data is
//! written row by row so one bad row costs only itself.
//!
//! A store with an idle lane (SQLite, see [`super::background`]) gets small batches written
//! at idle CPU priority while the machine has room and the queue is shallow; a queue that is
//! behind, a retry, a shutdown flush and a starved idle write all use the normal lane.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::background::{self, CpuIdle, Lane, Lanes};
use super::{Batch, StoreError, UsageStore, WriterConfig};
use crate::usage::time::now_ms;
use crate::usage::{AttemptRecord, CostLedger, UsageRecord};

/// Minimum time between two "records dropped" warnings.
const WARN_EVERY_MS: i64 = 10_000;
/// While a batch gathers, the queue is looked at this often (at most): a few wakeups per
/// second instead of one per record, and at 100 000 records per second still only 2 000
/// queued between two looks.
const GATHER: Duration = Duration::from_millis(20);

/// Counters of one writer, shared with every sink (all relaxed atomics: they are statistics).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Accepted and not yet written or dropped: the queue depth, including the batch being
    /// written.
    pending: AtomicU64,
    written: AtomicU64,
    dropped_full: AtomicU64,
    dropped_failed: AtomicU64,
    dropped_shutdown: AtomicU64,
    write_errors: AtomicU64,
    last_warn_ms: AtomicI64,
    capacity: AtomicU64,
}

/// A consistent-enough copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub queue_depth: u64,
    pub capacity: u64,
    pub written: u64,
    /// Dropped because the queue was full.
    pub dropped_full: u64,
    /// Dropped after the database refused them (retries exhausted, or a rejected row).
    pub dropped_failed: u64,
    /// Dropped because they arrived after shutdown began or did not fit the shutdown deadline.
    pub dropped_shutdown: u64,
    /// Failed write tries (each retry counts).
    pub write_errors: u64,
}

impl StatsSnapshot {
    pub fn dropped(&self) -> u64 {
        self.dropped_full + self.dropped_failed + self.dropped_shutdown
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn sub(counter: &AtomicU64, n: u64) {
    // Never below zero even if accounting were off by one somewhere: a gauge, not a panic.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

impl WriterStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            queue_depth: get(&self.pending),
            capacity: get(&self.capacity),
            written: get(&self.written),
            dropped_full: get(&self.dropped_full),
            dropped_failed: get(&self.dropped_failed),
            dropped_shutdown: get(&self.dropped_shutdown),
            write_errors: get(&self.write_errors),
        }
    }

    /// Prometheus text exposition of the counters, appended to `out`.
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let s = self.snapshot();
        let _ = write!(
            out,
            "# HELP llmux_usage_queue_depth Usage records accepted and not yet written.\n\
             # TYPE llmux_usage_queue_depth gauge\n\
             llmux_usage_queue_depth {}\n\
             # HELP llmux_usage_queue_capacity Usage records the queue holds before dropping.\n\
             # TYPE llmux_usage_queue_capacity gauge\n\
             llmux_usage_queue_capacity {}\n\
             # HELP llmux_usage_written_total Usage records written to the database.\n\
             # TYPE llmux_usage_written_total counter\n\
             llmux_usage_written_total {}\n\
             # HELP llmux_usage_dropped_total Usage records lost, by reason.\n\
             # TYPE llmux_usage_dropped_total counter\n\
             llmux_usage_dropped_total{{reason=\"queue_full\"}} {}\n\
             llmux_usage_dropped_total{{reason=\"write_failed\"}} {}\n\
             llmux_usage_dropped_total{{reason=\"shutdown\"}} {}\n\
             # HELP llmux_usage_write_errors_total Failed database writes (each retry counts).\n\
             # TYPE llmux_usage_write_errors_total counter\n\
             llmux_usage_write_errors_total {}\n",
            s.queue_depth,
            s.capacity,
            s.written,
            s.dropped_full,
            s.dropped_failed,
            s.dropped_shutdown,
            s.write_errors,
        );
    }

    /// At most one warning per [`WARN_EVERY_MS`], whichever thread gets there first.
    fn warn_dropped(&self, why: &str) {
        let now = now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let s = self.snapshot();
            tracing::warn!(
                "usage store: dropping records ({why}); dropped so far: {} queue full, {} write failed, {} at shutdown",
                s.dropped_full,
                s.dropped_failed,
                s.dropped_shutdown
            );
        }
    }
}

/// Unboxed: the channel stores entries in blocks it reuses, so a record costs no allocation
/// of its own on the way to the writer.
#[derive(Debug)]
enum Entry {
    Request(UsageRecord),
    Attempt(AttemptRecord),
}

#[derive(Debug)]
struct SinkInner {
    tx: Option<mpsc::Sender<Entry>>,
    stats: Arc<WriterStats>,
    ledger: Arc<CostLedger>,
}

/// Where the request path hands its records. Cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct UsageSink {
    inner: Arc<SinkInner>,
}

impl UsageSink {
    /// No database (`DISABLE_DATABASE`): records only feed the in-memory ledger.
    pub fn disabled(ledger: Arc<CostLedger>) -> UsageSink {
        UsageSink {
            inner: Arc::new(SinkInner {
                tx: None,
                stats: Arc::new(WriterStats::default()),
                ledger,
            }),
        }
    }

    /// Record a finished request. Its cost is added to the ledger first, so credits stay
    /// enforced even if the record itself is dropped.
    pub fn record(&self, rec: UsageRecord) {
        self.inner
            .ledger
            .add_spend(&rec.client_key, rec.at_ms, rec.cost());
        self.send(Entry::Request(rec));
    }

    /// Record one upstream attempt.
    pub fn record_attempt(&self, rec: AttemptRecord) {
        self.send(Entry::Attempt(rec));
    }

    fn send(&self, entry: Entry) {
        let Some(tx) = &self.inner.tx else {
            return;
        };
        let stats = &self.inner.stats;
        add(&stats.pending, 1);
        match tx.try_send(entry) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                sub(&stats.pending, 1);
                add(&stats.dropped_full, 1);
                stats.warn_dropped("queue full: the database is slow or down");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                sub(&stats.pending, 1);
                add(&stats.dropped_shutdown, 1);
            }
        }
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.inner.stats
    }

    pub fn ledger(&self) -> &Arc<CostLedger> {
        &self.inner.ledger
    }
}

/// The background task's handle.
#[derive(Debug)]
pub struct UsageWriter {
    sink: UsageSink,
    stop: Arc<Notify>,
    task: JoinHandle<()>,
}

impl UsageWriter {
    /// Start the writer task on a thread of its own (see [`own_thread`]); on the current
    /// tokio runtime if that thread cannot be started.
    pub fn spawn<S: UsageStore>(
        store: Arc<S>,
        cfg: WriterConfig,
        ledger: Arc<CostLedger>,
    ) -> UsageWriter {
        Self::start(store, cfg, ledger, own_thread)
    }

    /// As [`UsageWriter::spawn`], on the current tokio runtime: the writer runs only when the
    /// caller yields (tests that look at the queue before it drains).
    pub fn spawn_on_current_runtime<S: UsageStore>(
        store: Arc<S>,
        cfg: WriterConfig,
        ledger: Arc<CostLedger>,
    ) -> UsageWriter {
        Self::start(store, cfg, ledger, tokio::spawn)
    }

    fn start<S: UsageStore>(
        store: Arc<S>,
        cfg: WriterConfig,
        ledger: Arc<CostLedger>,
        spawn: fn(Writing) -> JoinHandle<()>,
    ) -> UsageWriter {
        let capacity = cfg.capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(WriterStats::default());
        stats.capacity.store(
            u64::try_from(capacity).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let stop = Arc::new(Notify::new());
        let task = spawn(Box::pin(run(
            store,
            rx,
            cfg,
            Arc::clone(&stats),
            Arc::clone(&stop),
        )));
        UsageWriter {
            sink: UsageSink {
                inner: Arc::new(SinkInner {
                    tx: Some(tx),
                    stats,
                    ledger,
                }),
            },
            stop,
            task,
        }
    }

    pub fn sink(&self) -> UsageSink {
        self.sink.clone()
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        self.sink.stats()
    }

    /// Stop accepting records, write everything queued, and return the final counters. If
    /// the database does not take it all within `deadline`, the rest is counted as dropped.
    pub async fn shutdown(self, deadline: Duration) -> StatsSnapshot {
        self.stop.notify_one();
        let stats = Arc::clone(self.sink.stats());
        let mut task = self.task;
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
            // The task runs on the writer's own thread: wait for the abort to land there and
            // drop the queue, so that what it held is counted once and later records are
            // refused (and counted) rather than queued to nobody.
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut task).await;
            let left = stats.pending.swap(0, Ordering::Relaxed);
            add(&stats.dropped_shutdown, left);
            tracing::warn!(
                "usage store: {left} records not written within the {deadline:?} shutdown deadline"
            );
        }
        stats.snapshot()
    }
}

/// The writer's task, boxed so that both ways of starting it take one type.
type Writing = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// Runs `task` on a dedicated thread with its own single-threaded runtime, which lives until
/// the task ends or is aborted. Writing a batch binds every row on the writer's thread (a few
/// thousand instructions a row): on a server worker's runtime that stalled the requests of
/// that worker for the length of each batch.
fn own_thread(task: Writing) -> JoinHandle<()> {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("llmux-usage-writer".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            // Dropped when the task ends (or is aborted): the runtime then stops.
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            if started_tx.send((runtime.handle().clone(), done_tx)).is_ok() {
                runtime.block_on(async move {
                    let _ = done_rx.await;
                });
            }
        });
    match thread.ok().and_then(|_| started_rx.recv().ok()) {
        Some((handle, done)) => handle.spawn(async move {
            task.await;
            drop(done);
        }),
        None => {
            tracing::warn!("usage store: no thread for the writer; it runs on a server worker");
            tokio::spawn(task)
        }
    }
}

async fn run<S: UsageStore>(
    store: Arc<S>,
    mut rx: mpsc::Receiver<Entry>,
    cfg: WriterConfig,
    stats: Arc<WriterStats>,
    stop: Arc<Notify>,
) {
    let batch_size = cfg.batch_size.max(1);
    let capacity = u64::try_from(cfg.capacity).unwrap_or(u64::MAX);
    let idle_lane = store.has_idle_lane();
    let mut lanes = Lanes::default();
    let mut cpu = CpuIdle::new(cfg.cpu);
    // Both grow to the largest batch seen and are reused (a fresh batch of a few hundred
    // kilobytes per write costs page faults); an idle gateway allocates none.
    let mut buf: Vec<Entry> = Vec::new();
    let mut batch = Batch::default();
    let mut closing = false;
    loop {
        if buf.is_empty() {
            tokio::select! {
                biased;
                () = stop.notified(), if !closing => {
                    // Senders fail from now on; what is queued is still received.
                    rx.close();
                    closing = true;
                    continue;
                }
                n = rx.recv_many(&mut buf, batch_size) => {
                    if n == 0 {
                        break; // closed and empty
                    }
                }
            }
        }
        // A batch that starts with more than the idle lane takes found a queue behind.
        let lane = if idle_lane && !closing && buf.len() <= background::IDLE_BATCH {
            let now = std::time::Instant::now();
            let queued = stats.pending.load(Ordering::Relaxed);
            lanes.choose(now, queued, capacity, cpu.idle_enough(now))
        } else {
            Lane::Normal
        };
        let batch_size = match lane {
            Lane::Idle => background::IDLE_BATCH.min(batch_size),
            Lane::Normal => batch_size,
        };
        let deadline = Instant::now() + cfg.flush_interval;
        while buf.len() < batch_size {
            if closing {
                // The channel no longer waits: take what is left.
                let room = batch_size - buf.len();
                if rx.recv_many(&mut buf, room).await == 0 {
                    break;
                }
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Sleep, then take everything queued meanwhile: under load, waking up for every
            // record (and the senders waking this task) would cost more than writing it.
            tokio::select! {
                biased;
                () = stop.notified() => {
                    rx.close();
                    closing = true;
                    continue;
                }
                () = tokio::time::sleep((deadline - now).min(GATHER)) => {}
            }
            while buf.len() < batch_size {
                match rx.try_recv() {
                    Ok(entry) => buf.push(entry),
                    Err(_) => break,
                }
            }
        }
        fill(&mut batch, &mut buf);
        let started = std::time::Instant::now();
        write(&*store, &batch, lane, &cfg, &stats, closing).await;
        if lane == Lane::Idle {
            lanes.idle_write_took(std::time::Instant::now(), started.elapsed());
        }
    }
}

/// Move the gathered entries into the (empty) batch, keeping both allocations.
fn fill(batch: &mut Batch, buf: &mut Vec<Entry>) {
    batch.requests.clear();
    batch.attempts.clear();
    for e in buf.drain(..) {
        match e {
            Entry::Request(r) => batch.requests.push(r),
            Entry::Attempt(a) => batch.attempts.push(a),
        }
    }
}

fn count(batch: &Batch) -> u64 {
    u64::try_from(batch.len()).unwrap_or(u64::MAX)
}

async fn try_insert<S: UsageStore>(
    store: &S,
    batch: &Batch,
    lane: Lane,
    timeout: Duration,
) -> Result<(), StoreError> {
    let written = match lane {
        Lane::Idle => tokio::time::timeout(timeout, store.insert_idle(batch)).await,
        Lane::Normal => tokio::time::timeout(timeout, store.insert(batch)).await,
    };
    written.unwrap_or(Err(StoreError::Timeout(timeout)))
}

async fn write<S: UsageStore>(
    store: &S,
    batch: &Batch,
    lane: Lane,
    cfg: &WriterConfig,
    stats: &WriterStats,
    closing: bool,
) {
    let n = count(batch);
    // At shutdown one retry is enough: the deadline bounds the rest.
    let retries = if closing {
        cfg.retries.min(1)
    } else {
        cfg.retries
    };
    let mut tries = 0u32;
    let mut lane = lane;
    loop {
        match try_insert(store, batch, lane, cfg.write_timeout).await {
            Ok(()) => {
                add(&stats.written, n);
                sub(&stats.pending, n);
                return;
            }
            Err(e) if !e.is_transient() => {
                add(&stats.write_errors, 1);
                tracing::warn!("usage store: batch rejected ({e}); writing its rows one by one");
                write_singly(store, batch, cfg, stats).await;
                return;
            }
            Err(e) => {
                add(&stats.write_errors, 1);
                tries += 1;
                // A retry must not wait on a thread that may be starved of CPU.
                lane = Lane::Normal;
                if tries > retries {
                    add(&stats.dropped_failed, n);
                    sub(&stats.pending, n);
                    tracing::debug!(
                        "usage store: dropping a batch of {n} after {tries} tries: {e}"
                    );
                    stats.warn_dropped(&format!("write failed: {e}"));
                    return;
                }
                let backoff = Duration::from_millis(250u64 << (tries - 1).min(4));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

async fn write_singly<S: UsageStore>(
    store: &S,
    batch: &Batch,
    cfg: &WriterConfig,
    stats: &WriterStats,
) {
    // Clones share their text: a row costs a few reference counts.
    let singles = batch
        .requests
        .iter()
        .map(|r| Batch {
            requests: vec![r.clone()],
            attempts: vec![],
        })
        .chain(batch.attempts.iter().map(|a| Batch {
            requests: vec![],
            attempts: vec![a.clone()],
        }));
    for one in singles {
        match try_insert(store, &one, Lane::Normal, cfg.write_timeout).await {
            Ok(()) => add(&stats.written, 1),
            Err(e) => {
                add(&stats.write_errors, 1);
                add(&stats.dropped_failed, 1);
                stats.warn_dropped(&format!("row rejected: {e}"));
            }
        }
        sub(&stats.pending, 1);
    }
}
