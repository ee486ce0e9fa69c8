//! The store as the gateway runs it: open and migrate, seed the ledger, run the writer and the
//! retention purge, and shut all of it down in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::writer::StatsSnapshot;
use super::{Store, StoreConfig, StoreError, UsageSink, UsageStore, UsageWriter};
use crate::usage::CostLedger;
use crate::usage::time::{DAY_MS, HOUR_MS, now_ms};

/// First purge a minute after startup (not during it), then hourly.
const PURGE_FIRST: Duration = Duration::from_secs(60);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct UsageService {
    store: Option<Arc<Store>>,
    ledger: Arc<CostLedger>,
    sink: UsageSink,
    writer: Option<UsageWriter>,
    purge: Option<JoinHandle<()>>,
}

impl UsageService {
    /// Open the configured database (none under `DISABLE_DATABASE`), apply migrations, load
    /// spending and credit grants into the ledger and start the background tasks. Fails only
    /// on a configuration or local-file problem: an unreachable PostgreSQL is retried by the
    /// writer instead.
    pub async fn start(cfg: StoreConfig) -> Result<UsageService, StoreError> {
        let Some(store) = Store::open(&cfg.backend).await? else {
            tracing::info!("usage store: disabled (DISABLE_DATABASE)");
            return Ok(UsageService::disabled());
        };
        tracing::info!(
            "usage store: {} (retention: {})",
            cfg.backend.describe(),
            match cfg.retention_days {
                0 => "forever".to_owned(),
                d => format!("{d} days"),
            }
        );
        let store = Arc::new(store);
        let ledger = Arc::new(CostLedger::new());
        if let Err(e) = load_ledger(&*store, &ledger).await {
            tracing::warn!("usage store: spending not loaded, credits start from zero: {e}");
        }
        let writer = UsageWriter::spawn(Arc::clone(&store), cfg.writer, Arc::clone(&ledger));
        let purge = (cfg.retention_days > 0)
            .then(|| tokio::spawn(purge_loop(Arc::clone(&store), cfg.retention_days)));
        Ok(UsageService {
            sink: writer.sink(),
            store: Some(store),
            ledger,
            writer: Some(writer),
            purge,
        })
    }

    /// No database: the sink only feeds the in-memory ledger.
    pub fn disabled() -> UsageService {
        let ledger = Arc::new(CostLedger::new());
        UsageService {
            sink: UsageSink::disabled(Arc::clone(&ledger)),
            store: None,
            ledger,
            writer: None,
            purge: None,
        }
    }

    pub fn sink(&self) -> UsageSink {
        self.sink.clone()
    }

    pub fn ledger(&self) -> &Arc<CostLedger> {
        &self.ledger
    }

    /// For the endpoints and smart key ordering; `None` under `DISABLE_DATABASE`.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// The store's lines for `GET /metrics` (all zero when disabled).
    pub fn render_metrics(&self, out: &mut String) {
        self.sink.stats().render_prometheus(out);
    }

    /// Stop the purge, write every queued record (bounded by `deadline`), close the pool.
    pub async fn shutdown(self, deadline: Duration) -> StatsSnapshot {
        if let Some(p) = self.purge {
            p.abort();
        }
        let snap = match self.writer {
            Some(w) => w.shutdown(deadline).await,
            None => self.sink.stats().snapshot(),
        };
        if let Some(store) = &self.store {
            store.close().await;
        }
        tracing::info!(
            "usage store: shut down; {} records written, {} dropped",
            snap.written,
            snap.dropped()
        );
        snap
    }
}

/// Seed the ledger from the database: hourly spending and granted credits.
pub async fn load_ledger<S: UsageStore>(store: &S, ledger: &CostLedger) -> Result<(), StoreError> {
    for h in store.hourly_costs().await? {
        ledger.add_spend(&h.client_key, h.hour * HOUR_MS, h.dollars);
    }
    for (key, granted) in store.credit_grants().await? {
        ledger.set_granted(&key, granted);
    }
    Ok(())
}

/// One retention pass: rows older than `retention_days` before `now_ms`.
pub async fn purge_once<S: UsageStore>(
    store: &S,
    retention_days: u32,
    now_ms: i64,
) -> Result<u64, StoreError> {
    store
        .purge_before(now_ms - i64::from(retention_days) * DAY_MS)
        .await
}

async fn purge_loop<S: UsageStore>(store: Arc<S>, retention_days: u32) {
    tokio::time::sleep(PURGE_FIRST).await;
    let mut tick = tokio::time::interval(PURGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match purge_once(&*store, retention_days, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("usage store: retention purged {n} rows"),
            Err(e) => tracing::warn!("usage store: retention purge failed, will retry: {e}"),
        }
    }
}
