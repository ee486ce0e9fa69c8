//! The embedded backend: one SQLite file in WAL mode (readers never wait for the writer),
//! `synchronous=NORMAL` (a power cut may lose the last commits, never corrupt the file) and a
//! 5 s busy timeout (uni-api's). The writer task is the only writer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::schema::{self, CREATE_MIGRATIONS_TABLE};
use super::{
    Batch, HourlyCost, KeyCounts, NameCount, StoreError, SuccessCount, Summary, UsageFilter,
    UsageRow, UsageStore, clean, clean_opt, sql_i64,
};
use crate::usage::time::now_ms;

/// Rows folded and deleted per purge transaction, so a purge never holds the write lock long.
const PURGE_CHUNK: i64 = 5000;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
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
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        migrate(&pool).await?;
        Ok(SqliteStore {
            pool,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close every connection (checkpoints the WAL into the main file).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(CREATE_MIGRATIONS_TABLE).execute(pool).await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM llmux_migrations")
        .fetch_all(pool)
        .await?;
    for m in schema::SQLITE {
        if applied.contains(&m.version) {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
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

const INSERT_REQUEST: &str = "INSERT INTO llmux_requests (at_ms, request_id, client_key, endpoint, \
    model, provider, upstream_model, key_fingerprint, status, attempts, stream, latency_ms, \
    ttft_ms, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, tokens_estimated, \
    prompt_price, completion_price, cost, client_ip) VALUES ";
const REQUEST_COLUMNS: usize = 22;

const INSERT_ATTEMPT: &str = "INSERT INTO llmux_attempts (at_ms, request_id, client_key, provider, \
    model, upstream_model, key_fingerprint, success, status, error_class, latency_ms) VALUES ";
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

/// `head` followed by `rows` groups of `columns` placeholders. Only counts go into the text;
/// every value is bound.
fn multi_insert(head: &str, columns: usize, rows: usize) -> sqlx::AssertSqlSafe<String> {
    let group = format!("({})", vec!["?"; columns].join(", "));
    sqlx::AssertSqlSafe(format!("{head}{}", vec![group; rows].join(", ")))
}

fn name_counts(rows: Vec<sqlx::sqlite::SqliteRow>) -> Result<Vec<NameCount>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(NameCount {
                name: r.try_get(0)?,
                count: r.try_get(1)?,
            })
        })
        .collect()
}

impl UsageStore for SqliteStore {
    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for chunk in chunks(&batch.requests) {
            let mut q = sqlx::query(multi_insert(INSERT_REQUEST, REQUEST_COLUMNS, chunk.len()));
            for r in chunk {
                q = q
                    .bind(r.at_ms)
                    .bind(clean(&r.request_id))
                    .bind(clean(&r.client_key))
                    .bind(clean(&r.endpoint))
                    .bind(clean(&r.model))
                    .bind(clean_opt(&r.provider))
                    .bind(clean_opt(&r.upstream_model))
                    .bind(clean_opt(&r.key_fingerprint))
                    .bind(i64::from(r.status))
                    .bind(i64::from(r.attempts))
                    .bind(r.stream)
                    .bind(sql_i64(r.latency_ms))
                    .bind(r.ttft_ms.map(sql_i64))
                    .bind(sql_i64(r.tokens.prompt))
                    .bind(sql_i64(r.tokens.completion))
                    .bind(sql_i64(r.tokens.cached))
                    .bind(sql_i64(r.tokens.reasoning))
                    .bind(r.tokens.estimated)
                    .bind(r.price.input_per_million)
                    .bind(r.price.output_per_million)
                    .bind(r.cost())
                    .bind(clean_opt(&r.client_ip));
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in chunks(&batch.attempts) {
            let mut q = sqlx::query(multi_insert(INSERT_ATTEMPT, ATTEMPT_COLUMNS, chunk.len()));
            for a in chunk {
                q = q
                    .bind(a.at_ms)
                    .bind(clean(&a.request_id))
                    .bind(clean(&a.client_key))
                    .bind(clean(&a.provider))
                    .bind(clean(&a.model))
                    .bind(clean(&a.upstream_model))
                    .bind(clean_opt(&a.key_fingerprint))
                    .bind(a.success)
                    .bind(a.status.map(i64::from))
                    .bind(clean_opt(&a.error_class))
                    .bind(sql_i64(a.latency_ms));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn summary(&self, since_ms: i64) -> Result<Summary, StoreError> {
        let success_counts = |rows: Vec<sqlx::sqlite::SqliteRow>, with_model: bool| {
            rows.iter()
                .map(|r| {
                    let model = if with_model { r.try_get(1)? } else { None };
                    let at = if with_model { 2 } else { 1 };
                    Ok(SuccessCount {
                        provider: r.try_get(0)?,
                        model,
                        total: r.try_get(at)?,
                        success: r.try_get(at + 1)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        };
        let channel_model = sqlx::query(
            "SELECT provider, model, COUNT(*), COUNT(*) FILTER (WHERE success) \
             FROM llmux_attempts WHERE at_ms >= ? GROUP BY provider, model",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let channel = sqlx::query(
            "SELECT provider, COUNT(*), COUNT(*) FILTER (WHERE success) \
             FROM llmux_attempts WHERE at_ms >= ? GROUP BY provider",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let models = sqlx::query(
            "SELECT model, COUNT(*) FROM llmux_requests WHERE at_ms >= ? GROUP BY model",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let endpoints = sqlx::query(
            "SELECT endpoint, COUNT(*) FROM llmux_requests WHERE at_ms >= ? GROUP BY endpoint",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let ips = sqlx::query(
            "SELECT client_ip, COUNT(*) FROM llmux_requests WHERE at_ms >= ? GROUP BY client_ip",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(Summary {
            channel_model: success_counts(channel_model, true)?,
            channel: success_counts(channel, false)?,
            models: name_counts(models)?,
            endpoints: name_counts(endpoints)?,
            ips: name_counts(ips)?,
        })
    }

    async fn token_usage(&self, f: &UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_key, model, SUM(p), SUM(c), SUM(n) FROM ( \
               SELECT client_key, model, prompt_tokens AS p, completion_tokens AS c, 1 AS n \
               FROM llmux_requests \
               WHERE (?1 IS NULL OR client_key = ?1) AND (?2 IS NULL OR model = ?2) \
                 AND (?2 IS NOT NULL OR model <> '') \
                 AND (?3 IS NULL OR at_ms >= ?3) AND (?4 IS NULL OR at_ms < ?4) \
               UNION ALL \
               SELECT client_key, model, prompt_tokens, completion_tokens, requests \
               FROM llmux_daily \
               WHERE (?1 IS NULL OR client_key = ?1) AND (?2 IS NULL OR model = ?2) \
                 AND (?2 IS NOT NULL OR model <> '') \
                 AND (?3 IS NULL OR (day + 1) * 86400000 > ?3) \
                 AND (?4 IS NULL OR day * 86400000 < ?4) \
             ) GROUP BY client_key, model ORDER BY client_key, model",
        )
        .bind(f.client_key.as_deref().map(clean))
        .bind(f.model.as_deref().map(clean))
        .bind(f.start_ms)
        .bind(f.end_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let (p, c): (i64, i64) = (r.try_get(2)?, r.try_get(3)?);
                Ok(UsageRow {
                    client_key: r.try_get(0)?,
                    model: r.try_get(1)?,
                    prompt_tokens: p,
                    completion_tokens: c,
                    total_tokens: p.saturating_add(c),
                    requests: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn key_rankings(
        &self,
        provider: &str,
        start_ms: i64,
        end_ms: Option<i64>,
    ) -> Result<Vec<KeyCounts>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_fingerprint, COUNT(*), COUNT(*) FILTER (WHERE success) \
             FROM llmux_attempts \
             WHERE provider = ?1 AND at_ms >= ?2 AND (?3 IS NULL OR at_ms < ?3) \
               AND key_fingerprint IS NOT NULL \
             GROUP BY key_fingerprint",
        )
        .bind(clean(provider))
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(KeyCounts {
                    key_fingerprint: r.try_get(0)?,
                    total: r.try_get(1)?,
                    success: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        super::sort_rankings(&mut out);
        Ok(out)
    }

    async fn cost_since(&self, client_key: &str, since_ms: i64) -> Result<f64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT SUM(cost) FROM llmux_requests \
                              WHERE client_key = ?1 AND at_ms >= ?2), 0.0) \
                  + COALESCE((SELECT SUM(cost) FROM llmux_daily \
                              WHERE client_key = ?1 AND (day + 1) * 86400000 > ?2), 0.0)",
        )
        .bind(clean(client_key))
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn hourly_costs(&self) -> Result<Vec<HourlyCost>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_key, at_ms / 3600000 AS hour, SUM(cost) FROM llmux_requests \
             WHERE cost > 0 GROUP BY client_key, hour \
             UNION ALL \
             SELECT client_key, day * 24 + 23, SUM(cost) FROM llmux_daily \
             WHERE cost > 0 GROUP BY client_key, day",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HourlyCost {
                    client_key: r.try_get(0)?,
                    hour: r.try_get(1)?,
                    dollars: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn add_credits(
        &self,
        client_key: &str,
        amount: f64,
        at_ms: i64,
    ) -> Result<f64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO llmux_credits (at_ms, client_key, amount) VALUES (?, ?, ?)")
            .bind(at_ms)
            .bind(clean(client_key))
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        let total: f64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount), 0.0) FROM llmux_credits WHERE client_key = ?",
        )
        .bind(clean(client_key))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(total)
    }

    async fn credit_grants(&self) -> Result<Vec<(String, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_key, SUM(amount) FROM llmux_credits GROUP BY client_key ORDER BY client_key",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        loop {
            let mut tx = self.pool.begin().await?;
            let bound: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(id) FROM (SELECT id FROM llmux_requests WHERE at_ms < ? \
                 ORDER BY id LIMIT ?)",
            )
            .bind(cutoff_ms)
            .bind(PURGE_CHUNK)
            .fetch_one(&mut *tx)
            .await?;
            let Some(bound) = bound else {
                break;
            };
            sqlx::query(
                "INSERT INTO llmux_daily (day, client_key, model, requests, prompt_tokens, \
                   completion_tokens, cost) \
                 SELECT at_ms / 86400000, client_key, model, COUNT(*), SUM(prompt_tokens), \
                   SUM(completion_tokens), SUM(cost) \
                 FROM llmux_requests WHERE at_ms < ?1 AND id <= ?2 \
                 GROUP BY at_ms / 86400000, client_key, model \
                 ON CONFLICT (day, client_key, model) DO UPDATE SET \
                   requests = llmux_daily.requests + excluded.requests, \
                   prompt_tokens = llmux_daily.prompt_tokens + excluded.prompt_tokens, \
                   completion_tokens = llmux_daily.completion_tokens + excluded.completion_tokens, \
                   cost = llmux_daily.cost + excluded.cost",
            )
            .bind(cutoff_ms)
            .bind(bound)
            .execute(&mut *tx)
            .await?;
            let done = sqlx::query("DELETE FROM llmux_requests WHERE at_ms < ?1 AND id <= ?2")
                .bind(cutoff_ms)
                .bind(bound)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            deleted += done.rows_affected();
        }
        loop {
            let done = sqlx::query(
                "DELETE FROM llmux_attempts WHERE id IN \
                 (SELECT id FROM llmux_attempts WHERE at_ms < ? LIMIT ?)",
            )
            .bind(cutoff_ms)
            .bind(PURGE_CHUNK)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 0 {
                break;
            }
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }
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
}
