//! Usage, cost and statistics persisted in SQLite (default) or PostgreSQL, written off the
//! request path by a batching background writer. Nothing here is on the request path except
//! [`UsageSink::record`] / [`UsageSink::record_attempt`] (a `try_send` each; with the ledger
//! update ~0.3 µs per request, `store_bench`) and the in-memory credit check
//! ([`crate::usage::credit_state`]).
//!
//! # What the integrator calls
//!
//! **Startup** (`serve`), once:
//! ```ignore
//! let cfg = store::StoreConfig::from_env()?;          // DISABLE_DATABASE, DB_TYPE, DB_*, DATABASE_URL,
//!                                                     // DB_PATH, LLMUX_DATA_DIR, LLMUX_RETENTION_DAYS
//! let usage = store::UsageService::start(cfg).await?; // open + migrate, seed the ledger, spawn the
//!                                                     // writer and the hourly retention purge
//! // App keeps: usage.sink() (UsageSink, cheap clone), usage.ledger() (Arc<CostLedger>),
//! //            usage.store() (Option<&Arc<Store>>; None under DISABLE_DATABASE)
//! ```
//! `start` fails only on configuration or local-file problems (bad `DB_TYPE`, unwritable
//! SQLite directory); an unreachable PostgreSQL is retried by the writer. Per runtime (re)load:
//! `usage::PriceTable::new(&config.preferences.model_price)` and, per client key,
//! `usage::key_id(secret)` (the only form of a key the store ever sees).
//!
//! **Per request** (never blocks, never fails, no database access):
//! ```ignore
//! // before routing: uni-api's 429 "Balance is insufficient, please check your account."
//! let since = usage::window_start(key.created_at_ms, usage::time::now_ms());
//! if let Some(s) = usage::credit_state(&**ledger, &key_id, prefs.credits, since) && !s.enabled { .. }
//! // after each upstream attempt (provider, alias, upstream model, keypool fingerprint, outcome):
//! sink.record_attempt(usage::AttemptRecord { .. });
//! // when the response is finished (stream included), with the upstream usage or an estimate:
//! sink.record(usage::UsageRecord { tokens: usage::Tokens::reported(&ir_usage),
//!                                  price: prices.lookup(&alias), .. });
//! ```
//!
//! **Endpoints** ([`endpoints`]): each returns a serde struct whose JSON is uni-api's, or an
//! [`endpoints::EndpointError`] (status + the text uni-api puts in `{"message": ...}`).
//! `stats(store, hours, now)`, `token_usage(store, ledger, &query, terms, now)`,
//! `channel_key_rankings(store, provider, last_n_days, start, end, now)`,
//! `api_keys_states(store, ledger, &paid_keys)`, `add_credits(store, ledger, &paid_key, amount,
//! now)`, `generate_api_key()`. Under `DISABLE_DATABASE`: `/v1/stats` answers
//! [`endpoints::stats_disabled`] (`{"stats":{}}`), the others [`endpoints::EndpointError::disabled`]
//! (503). Admin checks and query-string parsing stay in the server.
//!
//! **`GET /metrics`**: `usage.render_metrics(&mut text)` appends queue depth, capacity, written,
//! dropped (by reason) and write errors.
//!
//! **smart_round_robin**: `store.key_rankings(provider, now - 72 h, None)` then
//! [`smart_order`] over the pool's key fingerprints.
//!
//! **Shutdown**: `usage.shutdown(deadline).await` stops accepting, writes every queued record
//! (what does not fit the deadline is counted as dropped) and closes the pool.
//!
//! # Layout
//! `config` (environment), `schema` + `migrations/` (per backend), `sqlite` / `postgres` (the
//! two [`UsageStore`] implementations: connection, migration, batch inserts), `sql` (the
//! queries both run and the reading of their rows), `writer` (queue, batching, retries, counters),
//! `background` (when a batch may be written at idle CPU priority), `endpoints` (uni-api JSON
//! shapes), `service` (startup, retention purge, shutdown).

pub mod background;
pub mod config;
pub mod endpoints;
pub mod postgres;
mod schema;
pub mod service;
mod sql;
pub mod sqlite;
pub mod writer;

use std::future::Future;
use std::sync::Arc;

pub use config::{Backend, StoreConfig, WriterConfig};
pub use postgres::PgStore;
pub use service::UsageService;
pub use sqlite::SqliteStore;
pub use writer::{UsageSink, UsageWriter, WriterStats};

use crate::usage::{AttemptRecord, UsageRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("usage store configuration: {0}")]
    Config(String),
    #[error("usage database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("usage database: no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("usage database: {0}")]
    Io(#[from] std::io::Error),
}

/// Rows written in one transaction.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub requests: Vec<UsageRecord>,
    pub attempts: Vec<AttemptRecord>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.requests.len() + self.attempts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Attempts and successes of one provider (and model) — `/v1/stats` success rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessCount {
    pub provider: String,
    /// `None` in the per-provider list.
    pub model: Option<String>,
    pub total: i64,
    pub success: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCount {
    pub name: Option<String>,
    pub count: i64,
}

/// The five aggregates of `/v1/stats`, in the backend's order (sorted by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub channel_model: Vec<SuccessCount>,
    pub channel: Vec<SuccessCount>,
    pub models: Vec<NameCount>,
    pub endpoints: Vec<NameCount>,
    pub ips: Vec<NameCount>,
}

/// `/v1/token_usage` filters; times are unix ms, `end_ms` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub client_key: Option<String>,
    pub model: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

/// Token totals of one (client key, model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub client_key: String,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub requests: i64,
}

/// Attempts and successes of one upstream key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCounts {
    pub key_fingerprint: String,
    pub total: i64,
    pub success: i64,
}

impl KeyCounts {
    pub fn success_rate(&self) -> f64 {
        if self.total > 0 {
            // Counts are far below 2^53.
            #[allow(clippy::cast_precision_loss)]
            let r = self.success as f64 / self.total as f64;
            r
        } else {
            0.0
        }
    }
}

/// Spending of one client key in one hour (`hour` = unix ms / 3 600 000).
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyCost {
    pub client_key: String,
    pub hour: i64,
    pub dollars: f64,
}

/// What a usage database does. Implemented by [`SqliteStore`], [`PgStore`] and the [`Store`]
/// enum that the service holds; the writer and the contract tests are generic over it, so a
/// failing fake can stand in.
pub trait UsageStore: Send + Sync + 'static {
    /// Write one batch atomically.
    fn insert(&self, batch: &Batch) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether [`UsageStore::insert_idle`] has a lane of its own ([`background`]).
    fn has_idle_lane(&self) -> bool {
        false
    }

    /// Write one batch atomically on the idle-priority lane; where there is none, as
    /// [`UsageStore::insert`].
    fn insert_idle(&self, batch: &Batch) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.insert(batch)
    }

    /// `/v1/stats` aggregates since `since_ms`.
    fn summary(&self, since_ms: i64) -> impl Future<Output = Result<Summary, StoreError>> + Send;

    /// Token totals per (client key, model), including rows already folded into daily totals
    /// by retention. Without a model filter, rows with an empty model are left out (uni-api).
    fn token_usage(
        &self,
        filter: &UsageFilter,
    ) -> impl Future<Output = Result<Vec<UsageRow>, StoreError>> + Send;

    /// Attempts per upstream key of `provider` in `[start_ms, end_ms)` (`/v1/channel_key_rankings`,
    /// smart_round_robin ordering).
    fn key_rankings(
        &self,
        provider: &str,
        start_ms: i64,
        end_ms: Option<i64>,
    ) -> impl Future<Output = Result<Vec<KeyCounts>, StoreError>> + Send;

    /// Dollars spent by a client key since `since_ms` (daily totals included).
    fn cost_since(
        &self,
        client_key: &str,
        since_ms: i64,
    ) -> impl Future<Output = Result<f64, StoreError>> + Send;

    /// All spending per key and hour, to seed the in-memory ledger at startup.
    fn hourly_costs(&self) -> impl Future<Output = Result<Vec<HourlyCost>, StoreError>> + Send;

    /// Persist a credit grant; returns the key's granted total afterwards.
    fn add_credits(
        &self,
        client_key: &str,
        amount: f64,
        at_ms: i64,
    ) -> impl Future<Output = Result<f64, StoreError>> + Send;

    /// Granted totals per client key.
    fn credit_grants(&self) -> impl Future<Output = Result<Vec<(String, f64)>, StoreError>> + Send;

    /// Fold request rows older than `cutoff_ms` into daily totals and delete them and older
    /// attempt rows. Returns the number of rows deleted.
    fn purge_before(&self, cutoff_ms: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// The configured backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Open (and migrate) the configured database; `None` when disabled.
    pub async fn open(backend: &Backend) -> Result<Option<Store>, StoreError> {
        Ok(match backend {
            Backend::Disabled => None,
            Backend::Sqlite { path } => Some(Store::Sqlite(SqliteStore::open(path).await?)),
            Backend::Postgres(opts) => Some(Store::Postgres(PgStore::open((**opts).clone()).await)),
        })
    }

    /// Close the pool (SQLite: checkpoints the WAL into the main file).
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(p) => p.close().await,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

impl UsageStore for Store {
    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert(batch).await)
    }
    fn has_idle_lane(&self) -> bool {
        dispatch!(self, s => s.has_idle_lane())
    }
    async fn insert_idle(&self, batch: &Batch) -> Result<(), StoreError> {
        dispatch!(self, s => s.insert_idle(batch).await)
    }
    async fn summary(&self, since_ms: i64) -> Result<Summary, StoreError> {
        dispatch!(self, s => s.summary(since_ms).await)
    }
    async fn token_usage(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
        dispatch!(self, s => s.token_usage(filter).await)
    }
    async fn key_rankings(
        &self,
        provider: &str,
        start_ms: i64,
        end_ms: Option<i64>,
    ) -> Result<Vec<KeyCounts>, StoreError> {
        dispatch!(self, s => s.key_rankings(provider, start_ms, end_ms).await)
    }
    async fn cost_since(&self, client_key: &str, since_ms: i64) -> Result<f64, StoreError> {
        dispatch!(self, s => s.cost_since(client_key, since_ms).await)
    }
    async fn hourly_costs(&self) -> Result<Vec<HourlyCost>, StoreError> {
        dispatch!(self, s => s.hourly_costs().await)
    }
    async fn add_credits(
        &self,
        client_key: &str,
        amount: f64,
        at_ms: i64,
    ) -> Result<f64, StoreError> {
        dispatch!(self, s => s.add_credits(client_key, amount, at_ms).await)
    }
    async fn credit_grants(&self) -> Result<Vec<(String, f64)>, StoreError> {
        dispatch!(self, s => s.credit_grants().await)
    }
    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        dispatch!(self, s => s.purge_before(cutoff_ms).await)
    }
}

/// Text as stored: NUL removed (PostgreSQL text cannot hold it, and a client-chosen model name
/// or request id with one must not fail a batch; uni-api strips it too). Both backends store
/// the same text, so they answer the same.
pub(crate) fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    // memchr directly: `contains(char)` goes through the generic searcher (~85 instructions
    // for a short string; the usage row cleans eight).
    if memchr::memchr(0, s.as_bytes()).is_some() {
        std::borrow::Cow::Owned(s.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

pub(crate) fn clean_opt(s: &Option<Arc<str>>) -> Option<std::borrow::Cow<'_, str>> {
    s.as_deref().map(clean)
}

/// [`clean`] for a shared string: the same `Arc` (no copy) unless it held a NUL.
pub(crate) fn clean_arc(s: &Arc<str>) -> Arc<str> {
    match clean(s) {
        std::borrow::Cow::Borrowed(_) => Arc::clone(s),
        std::borrow::Cow::Owned(cleaned) => Arc::from(cleaned),
    }
}

/// u64 counters into SQL BIGINT (saturating; real values are far below the limit).
pub(crate) fn sql_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Best first: success rate, then volume (uni-api's order); fingerprint breaks ties so the
/// order is stable.
pub(crate) fn sort_rankings(v: &mut [KeyCounts]) {
    v.sort_by(|a, b| {
        b.success_rate()
            .total_cmp(&a.success_rate())
            .then(b.total.cmp(&a.total))
            .then_with(|| a.key_fingerprint.cmp(&b.key_fingerprint))
    });
}

/// uni-api's `smart_round_robin` order for one provider's keys: by success rate, then volume
/// (both descending) over the rankings given (uni-api reads the last 72 h), keys without data
/// last, ties in configuration order; then dealt round-robin into `ceil(n / 100)` groups that
/// are concatenated, so large pools interleave good and less good keys. Returns indices into
/// `fingerprints` (the keys' [`crate::usage::key_id`]s, in configuration order).
pub fn smart_order(rankings: &[KeyCounts], fingerprints: &[String]) -> Vec<usize> {
    let stats: std::collections::HashMap<&str, (f64, i64)> = rankings
        .iter()
        .map(|k| (k.key_fingerprint.as_str(), (k.success_rate(), k.total)))
        .collect();
    let mut order: Vec<usize> = (0..fingerprints.len()).collect();
    let key = |i: &usize| {
        fingerprints
            .get(*i)
            .and_then(|fp| stats.get(fp.as_str()))
            .copied()
            .unwrap_or((-1.0, 0))
    };
    // Stable: equal keys keep configuration order.
    order.sort_by(|a, b| {
        let (ra, ta) = key(a);
        let (rb, tb) = key(b);
        rb.total_cmp(&ra).then(tb.cmp(&ta))
    });
    let groups = order.len().div_ceil(100).max(1);
    let mut dealt: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for (n, i) in order.into_iter().enumerate() {
        if let Some(g) = dealt.get_mut(n % groups) {
            g.push(i);
        }
    }
    dealt.into_iter().flatten().collect()
}

impl StoreError {
    /// Worth retrying the same batch: connection trouble, timeouts, a busy or restarting
    /// database. Not: a row the database rejects (bad data, constraint), which would fail again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
                if let Ok(n) = code.parse::<u32>() {
                    // SQLite result codes (extended code & 0xff = primary): TOOBIG, CONSTRAINT,
                    // MISMATCH, RANGE are about the row.
                    !matches!(n & 0xff, 18 | 19 | 20 | 25)
                } else {
                    // PostgreSQL SQLSTATE classes 22 (data exception), 23 (integrity).
                    !(code.starts_with("22") || code.starts_with("23"))
                }
            }
            StoreError::Config(_) => false,
            StoreError::Db(_) | StoreError::Timeout(_) | StoreError::Io(_) => true,
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn kc(fp: &str, success: i64, total: i64) -> KeyCounts {
        KeyCounts {
            key_fingerprint: fp.into(),
            total,
            success,
        }
    }

    #[test]
    fn smart_order_ranks_known_keys_first_and_keeps_config_order_for_ties() {
        let fps: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rankings = [
            kc("b", 9, 10),
            kc("c", 10, 10),
            kc("d", 9, 10),
            kc("e", 5, 20),
        ];
        // c (1.0), then b and d (0.9, same volume: config order), e (0.25), a (no data).
        assert_eq!(smart_order(&rankings, &fps), vec![2, 1, 3, 4, 0]);
        assert_eq!(smart_order(&[], &fps), vec![0, 1, 2, 3, 4]);
        assert_eq!(smart_order(&[], &[]), Vec::<usize>::new());
    }

    #[test]
    fn smart_order_deals_large_pools_into_groups() {
        let fps: Vec<String> = (0..150).map(|i| format!("k{i:03}")).collect();
        // Key i has success rate (150 - i) / 150: already best-first in config order.
        let rankings: Vec<KeyCounts> = (0..150)
            .map(|i| kc(&format!("k{i:03}"), 150 - i, 150))
            .collect();
        let order = smart_order(&rankings, &fps);
        // Two groups: even ranks then odd ranks.
        assert_eq!(&order[..3], &[0, 2, 4]);
        assert_eq!(&order[75..78], &[1, 3, 5]);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..150).collect::<Vec<_>>());
    }
}
