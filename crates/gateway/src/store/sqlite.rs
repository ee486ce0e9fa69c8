//! The embedded backend: one SQLite file in WAL mode (readers never wait for the writer),
//! `synchronous=NORMAL` (a power cut may lose the last commits, never corrupt the file) and a
//! 5 s busy timeout (uni-api's). The writer task is the only writer; besides the pool it has
//! one connection whose thread runs at idle CPU priority ([`super::background`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::Arguments;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};

use super::schema::{self, CREATE_MIGRATIONS_TABLE};
use super::{Batch, StoreError, UsageStore, background, clean_arc, sql, sql_i64};
use crate::usage::time::now_ms;
use crate::usage::{AttemptRecord, UsageRecord};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    /// The idle lane: `None` where a thread cannot be put under `SCHED_IDLE`; emptied by
    /// `close`.
    idle: Option<Arc<tokio::sync::Mutex<Option<SqliteConnection>>>>,
}

impl SqliteStore {
    /// Open or create the file (and its directory) and apply pending migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // New files only (WAL fixes the page size): a quarter of the write and read calls
            // per row compared with the default 4 KiB (`store_bench`: ~0.3 µs per request).
            .page_size(16384)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await?;
        migrate(&pool).await?;
        let idle = open_idle_connection(opts)
            .await
            .map(|c| Arc::new(tokio::sync::Mutex::new(Some(c))));
        Ok(SqliteStore {
            pool,
            path: path.to_owned(),
            idle,
        })
    }

    /// The pool ([`sql::shared_queries`]).
    async fn pool_ready(&self) -> Result<&SqlitePool, StoreError> {
        Ok(&self.pool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close every connection (checkpoints the WAL into the main file).
    pub async fn close(&self) {
        // The idle lane first: SQLite checkpoints when its last connection closes.
        if let Some(idle) = &self.idle {
            let conn = idle.lock().await.take();
            if let Some(conn) = conn {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
        self.pool.close().await;
    }
}

/// A connection for the idle lane. sqlx runs each SQLite connection on a thread it starts
/// when the connection opens, and a thread inherits its starter's scheduling policy: so the
/// connection is opened from a short-lived thread that first puts itself under `SCHED_IDLE`.
/// `None` (with the reason in the debug log) where that cannot be done: the writer then uses
/// the pool for every batch.
async fn open_idle_connection(opts: SqliteConnectOptions) -> Option<SqliteConnection> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opened = std::thread::Builder::new()
        .name("llmux-sqlite-idle-open".into())
        .spawn(move || {
            let conn = background::enter_idle_policy()
                .map_err(|e| format!("no SCHED_IDLE: {e}"))
                .and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())
                })
                .and_then(|rt| {
                    rt.block_on(sqlx::ConnectOptions::connect(&opts))
                        .map_err(|e| e.to_string())
                });
            let _ = tx.send(conn);
        });
    if let Err(e) = opened {
        tracing::debug!("usage store: no idle-priority lane (no thread: {e})");
        return None;
    }
    match rx.await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => {
            tracing::debug!("usage store: no idle-priority lane ({e})");
            None
        }
        Err(_) => None,
    }
}

/// One batch in one transaction on `conn`.
async fn insert_batch(conn: &mut SqliteConnection, batch: &Batch) -> Result<(), StoreError> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    insert_rows(&mut tx, &batch.requests, &REQUEST_INSERTS, bind_request).await?;
    insert_rows(&mut tx, &batch.attempts, &ATTEMPT_INSERTS, bind_attempt).await?;
    tx.commit().await?;
    Ok(())
}

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(CREATE_MIGRATIONS_TABLE).execute(pool).await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM llmux_migrations")
        .fetch_all(pool)
        .await?;
    for m in schema::MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(m.sqlite).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO llmux_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)")
            .bind(m.version)
            .bind(m.name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            "usage store: applied SQLite migration {} ({})",
            m.version,
            m.name
        );
    }
    Ok(())
}

/// `OR FAIL`: a statement that fails keeps the rows it inserted before instead of undoing
/// itself (`ABORT`), so SQLite keeps no statement journal: no copy of every page a statement
/// touches, spilled to a temporary file past 64 KiB (half the write calls, ~0.5 µs per request,
/// `store_bench`). Nothing is lost: a failed statement fails the batch's transaction, which is
/// rolled back whole.
const INSERT_REQUEST: &str = "INSERT OR FAIL INTO llmux_requests (at_ms, request_id, client_key, \
    endpoint, model, provider, upstream_model, key_fingerprint, status, attempts, stream, \
    latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, \
    tokens_estimated, prompt_price, completion_price, cost, client_ip, attempt_status, \
    attempt_latency_ms) VALUES ";
const REQUEST_COLUMNS: usize = 24;

const INSERT_ATTEMPT: &str = "INSERT OR FAIL INTO llmux_attempts (at_ms, request_id, \
    client_key, provider, model, upstream_model, key_fingerprint, success, status, error_class, \
    latency_ms) VALUES ";
const ATTEMPT_COLUMNS: usize = 11;

/// Rows per INSERT statement, largest first. Per-statement costs dominate with one row per
/// statement (each is a round trip to sqlx's SQLite worker thread), so rows go in as few
/// statements as possible; the fixed sizes keep the number of distinct statement texts (each
/// prepared once and cached by sqlx) at five per table. 256 × 22 binds stays far below
/// SQLite's limit of 32 766.
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// Split `rows` into chunks of the sizes above (greedy: `300` → 256, 16, 16, 4, 4, 4).
fn chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = CHUNK_SIZES.into_iter().find(|n| *n <= rows.len())?;
        let (head, tail) = rows.split_at(size);
        rows = tail;
        Some(head)
    })
}

/// The INSERT texts of one table, one per chunk size, built once: `head` followed by `rows`
/// groups of `columns` placeholders. Only counts go into the text; every value is bound.
struct Inserts {
    columns: usize,
    texts: Vec<(usize, Arc<str>)>,
}

impl Inserts {
    fn new(head: &str, columns: usize) -> Inserts {
        let group = format!("({})", vec!["?"; columns].join(", "));
        let texts = CHUNK_SIZES
            .iter()
            .map(|&rows| {
                let sql = format!("{head}{}", vec![group.as_str(); rows].join(", "));
                (rows, Arc::from(sql))
            })
            .collect();
        Inserts { columns, texts }
    }

    fn sql(&self, rows: usize) -> sqlx::AssertSqlSafe<Arc<str>> {
        let sql = self
            .texts
            .iter()
            .find(|(n, _)| *n == rows)
            .map(|(_, sql)| sql);
        // `chunks` only makes chunks of the sizes above.
        sqlx::AssertSqlSafe(sql.map_or_else(|| Arc::from(""), Arc::clone))
    }
}

static REQUEST_INSERTS: LazyLock<Inserts> =
    LazyLock::new(|| Inserts::new(INSERT_REQUEST, REQUEST_COLUMNS));
static ATTEMPT_INSERTS: LazyLock<Inserts> =
    LazyLock::new(|| Inserts::new(INSERT_ATTEMPT, ATTEMPT_COLUMNS));

/// One request row's values, in `INSERT_REQUEST`'s column order. Text is bound as the record's
/// `Arc<str>` itself: sqlx would copy a `&str` or `String` into a new `Arc<String>` per bind.
fn bind_request(args: &mut SqliteArguments, r: &UsageRecord) -> Result<(), BoxDynError> {
    args.add(r.at_ms)?;
    args.add(clean_arc(&r.request_id))?;
    args.add(clean_arc(&r.client_key))?;
    args.add(clean_arc(&r.endpoint))?;
    args.add(clean_arc(&r.model))?;
    args.add(r.provider.as_ref().map(clean_arc))?;
    args.add(r.upstream_model.as_ref().map(clean_arc))?;
    args.add(r.key_fingerprint.as_ref().map(clean_arc))?;
    args.add(i64::from(r.status))?;
    args.add(i64::from(r.attempts))?;
    args.add(r.stream)?;
    args.add(sql_i64(r.latency_ms))?;
    args.add(r.ttft_ms.map(sql_i64))?;
    args.add(sql_i64(r.tokens.prompt))?;
    args.add(sql_i64(r.tokens.completion))?;
    args.add(sql_i64(r.tokens.cached))?;
    args.add(sql_i64(r.tokens.reasoning))?;
    args.add(r.tokens.estimated)?;
    args.add(r.price.input_per_million)?;
    args.add(r.price.output_per_million)?;
    args.add(r.cost())?;
    args.add(r.client_ip.as_ref().map(clean_arc))?;
    let inline = r.inline_attempt.as_ref();
    args.add(inline.and_then(|a| a.status).map(i64::from))?;
    args.add(inline.map(|a| sql_i64(a.latency_ms)))
}

/// One attempt row's values, in `INSERT_ATTEMPT`'s column order.
fn bind_attempt(args: &mut SqliteArguments, a: &AttemptRecord) -> Result<(), BoxDynError> {
    args.add(a.at_ms)?;
    args.add(clean_arc(&a.request_id))?;
    args.add(clean_arc(&a.client_key))?;
    args.add(clean_arc(&a.provider))?;
    args.add(clean_arc(&a.model))?;
    args.add(clean_arc(&a.upstream_model))?;
    args.add(a.key_fingerprint.as_ref().map(clean_arc))?;
    args.add(a.success)?;
    args.add(a.status.map(i64::from))?;
    args.add(a.error_class)?;
    args.add(sql_i64(a.latency_ms))
}

/// Insert `rows` with as few statements as [`chunks`] allows, in the open transaction.
async fn insert_rows<T>(
    conn: &mut SqliteConnection,
    rows: &[T],
    inserts: &Inserts,
    bind: fn(&mut SqliteArguments, &T) -> Result<(), BoxDynError>,
) -> Result<(), StoreError> {
    for chunk in chunks(rows) {
        let mut args = SqliteArguments::default();
        args.reserve(chunk.len() * inserts.columns, 0);
        for row in chunk {
            bind(&mut args, row).map_err(sqlx::Error::Encode)?;
        }
        sqlx::query_with(inserts.sql(chunk.len()), args)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl UsageStore for SqliteStore {
    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_batch(&mut conn, batch).await
    }

    fn has_idle_lane(&self) -> bool {
        self.idle.is_some()
    }

    async fn insert_idle(&self, batch: &Batch) -> Result<(), StoreError> {
        if let Some(idle) = &self.idle {
            let mut lane = idle.lock().await;
            if let Some(conn) = lane.as_mut() {
                return insert_batch(conn, batch).await;
            }
        }
        self.insert(batch).await
    }

    sql::shared_queries!();
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn chunks_use_few_fixed_sizes_and_keep_every_row() {
        let rows: Vec<u32> = (0..600).collect();
        let sizes: Vec<usize> = chunks(&rows).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![256, 256, 64, 16, 4, 4]);
        let back: Vec<u32> = chunks(&rows).flatten().copied().collect();
        assert_eq!(back, rows);
        assert_eq!(
            chunks(&rows[..3]).map(<[u32]>::len).collect::<Vec<_>>(),
            vec![1, 1, 1]
        );
        assert_eq!(chunks::<u32>(&[]).count(), 0);
    }

    #[test]
    fn every_chunk_size_has_a_text_with_one_placeholder_per_value() {
        for (inserts, columns) in [
            (&*REQUEST_INSERTS, REQUEST_COLUMNS),
            (&*ATTEMPT_INSERTS, ATTEMPT_COLUMNS),
        ] {
            for rows in CHUNK_SIZES {
                let sql = inserts.sql(rows).0;
                assert_eq!(sql.matches('?').count(), rows * columns);
                assert!(rows * columns < 32_766);
            }
        }
        // The column lists name as many columns as rows bind.
        let named = |head: &str| head.split(',').count();
        assert_eq!(named(INSERT_REQUEST), REQUEST_COLUMNS);
        assert_eq!(named(INSERT_ATTEMPT), ATTEMPT_COLUMNS);
    }
}
