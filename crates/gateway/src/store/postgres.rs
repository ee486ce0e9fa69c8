//! The PostgreSQL backend. The pool connects lazily and reconnects by itself, so a database
//! that is down at startup or restarts later only delays writes (the writer retries, then
//! drops and counts); migrations run on the first successful contact, under an advisory lock
//! so several gateways sharing one database migrate once. Batches are one `INSERT ... SELECT
//! FROM UNNEST(arrays)` per table: one round trip however many rows.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::OnceCell;

use super::schema::{self, CREATE_MIGRATIONS_TABLE};
use super::{
    Batch, HourlyCost, KeyCounts, NameCount, StoreError, SuccessCount, Summary, UsageFilter,
    UsageRow, UsageStore, clean, clean_opt, sql_i64,
};
use crate::usage::time::now_ms;

const PURGE_CHUNK: i64 = 5000;
const FIRST_CONTACT: Duration = Duration::from_secs(2);
/// Arbitrary constant naming llmux's migration lock among the database's advisory locks.
const MIGRATION_LOCK: i64 = 0x6c6c_6d75_7800;

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    migrated: Arc<OnceCell<()>>,
}

impl PgStore {
    /// Never fails: an unreachable server is reported and retried on first use.
    pub async fn open(opts: PgConnectOptions) -> PgStore {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(opts.application_name("llmux"));
        let store = PgStore {
            pool,
            migrated: Arc::new(OnceCell::new()),
        };
        // A short first try, so a database that is down delays startup by seconds at most.
        match tokio::time::timeout(FIRST_CONTACT, store.ready()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(
                    "usage store: PostgreSQL not ready yet, will retry on first write: {e}"
                );
            }
            Err(_) => tracing::warn!(
                "usage store: PostgreSQL not ready within {FIRST_CONTACT:?}, will retry on first write"
            ),
        }
        store
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| migrate(&self.pool))
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(CREATE_MIGRATIONS_TABLE)
        .execute(&mut *tx)
        .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM llmux_migrations")
        .fetch_all(&mut *tx)
        .await?;
    for m in schema::POSTGRES {
        if applied.contains(&m.version) {
            continue;
        }
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO llmux_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tracing::info!(
            "usage store: applied PostgreSQL migration {} ({})",
            m.version,
            m.name
        );
    }
    tx.commit().await?;
    Ok(())
}

fn text(s: &str) -> String {
    clean(s).into_owned()
}

fn opt_text(s: &Option<String>) -> Option<String> {
    clean_opt(s).map(std::borrow::Cow::into_owned)
}

fn name_counts(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<NameCount>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(NameCount {
                name: r.try_get(0)?,
                count: r.try_get(1)?,
            })
        })
        .collect()
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl UsageStore for PgStore {
    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        self.ready().await?;
        let mut tx = self.pool.begin().await?;
        if !batch.requests.is_empty() {
            let rs = &batch.requests;
            sqlx::query(
                "INSERT INTO llmux_requests (at_ms, request_id, client_key, endpoint, model, \
                   provider, upstream_model, key_fingerprint, status, attempts, stream, latency_ms, \
                   ttft_ms, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, \
                   tokens_estimated, prompt_price, completion_price, cost, client_ip) \
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                   $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::INTEGER[], $10::INTEGER[], $11::BOOLEAN[], \
                   $12::BIGINT[], $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BIGINT[], \
                   $17::BIGINT[], $18::BOOLEAN[], $19::FLOAT8[], $20::FLOAT8[], $21::FLOAT8[], \
                   $22::TEXT[])",
            )
            .bind(rs.iter().map(|r| r.at_ms).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| text(&r.request_id)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| text(&r.client_key)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| text(&r.endpoint)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| text(&r.model)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| opt_text(&r.provider)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| opt_text(&r.upstream_model)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| opt_text(&r.key_fingerprint)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| i32::from(r.status)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| i32_of(r.attempts)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| r.stream).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| sql_i64(r.latency_ms)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| r.ttft_ms.map(sql_i64)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| sql_i64(r.tokens.prompt)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| sql_i64(r.tokens.completion)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| sql_i64(r.tokens.cached)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| sql_i64(r.tokens.reasoning)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| r.tokens.estimated).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| r.price.input_per_million).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| r.price.output_per_million).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| r.cost()).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| opt_text(&r.client_ip)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !batch.attempts.is_empty() {
            let at = &batch.attempts;
            sqlx::query(
                "INSERT INTO llmux_attempts (at_ms, request_id, client_key, provider, model, \
                   upstream_model, key_fingerprint, success, status, error_class, latency_ms) \
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                   $6::TEXT[], $7::TEXT[], $8::BOOLEAN[], $9::INTEGER[], $10::TEXT[], $11::BIGINT[])",
            )
            .bind(at.iter().map(|a| a.at_ms).collect::<Vec<_>>())
            .bind(at.iter().map(|a| text(&a.request_id)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| text(&a.client_key)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| text(&a.provider)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| text(&a.model)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| text(&a.upstream_model)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| opt_text(&a.key_fingerprint)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| a.success).collect::<Vec<_>>())
            .bind(at.iter().map(|a| a.status.map(i32::from)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| opt_text(&a.error_class)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| sql_i64(a.latency_ms)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn summary(&self, since_ms: i64) -> Result<Summary, StoreError> {
        self.ready().await?;
        let success_counts = |rows: Vec<sqlx::postgres::PgRow>, with_model: bool| {
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
             FROM llmux_attempts WHERE at_ms >= $1 GROUP BY provider, model",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let channel = sqlx::query(
            "SELECT provider, COUNT(*), COUNT(*) FILTER (WHERE success) \
             FROM llmux_attempts WHERE at_ms >= $1 GROUP BY provider",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let models = sqlx::query(
            "SELECT model, COUNT(*) FROM llmux_requests WHERE at_ms >= $1 GROUP BY model",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let endpoints = sqlx::query(
            "SELECT endpoint, COUNT(*) FROM llmux_requests WHERE at_ms >= $1 GROUP BY endpoint",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        let ips = sqlx::query(
            "SELECT client_ip, COUNT(*) FROM llmux_requests WHERE at_ms >= $1 GROUP BY client_ip",
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
        self.ready().await?;
        let rows = sqlx::query(
            "SELECT client_key, model, SUM(p)::BIGINT, SUM(c)::BIGINT, SUM(n)::BIGINT FROM ( \
               SELECT client_key, model, prompt_tokens AS p, completion_tokens AS c, 1::BIGINT AS n \
               FROM llmux_requests \
               WHERE ($1::TEXT IS NULL OR client_key = $1) AND ($2::TEXT IS NULL OR model = $2) \
                 AND ($2::TEXT IS NOT NULL OR model <> '') \
                 AND ($3::BIGINT IS NULL OR at_ms >= $3) AND ($4::BIGINT IS NULL OR at_ms < $4) \
               UNION ALL \
               SELECT client_key, model, prompt_tokens, completion_tokens, requests \
               FROM llmux_daily \
               WHERE ($1::TEXT IS NULL OR client_key = $1) AND ($2::TEXT IS NULL OR model = $2) \
                 AND ($2::TEXT IS NOT NULL OR model <> '') \
                 AND ($3::BIGINT IS NULL OR (day + 1) * 86400000 > $3) \
                 AND ($4::BIGINT IS NULL OR day * 86400000 < $4) \
             ) AS u GROUP BY client_key, model ORDER BY client_key, model",
        )
        .bind(f.client_key.as_deref().map(text))
        .bind(f.model.as_deref().map(text))
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
        self.ready().await?;
        let rows = sqlx::query(
            "SELECT key_fingerprint, COUNT(*), COUNT(*) FILTER (WHERE success) \
             FROM llmux_attempts \
             WHERE provider = $1 AND at_ms >= $2 AND ($3::BIGINT IS NULL OR at_ms < $3) \
               AND key_fingerprint IS NOT NULL \
             GROUP BY key_fingerprint",
        )
        .bind(text(provider))
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
        self.ready().await?;
        Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT SUM(cost) FROM llmux_requests \
                              WHERE client_key = $1 AND at_ms >= $2), 0.0) \
                  + COALESCE((SELECT SUM(cost) FROM llmux_daily \
                              WHERE client_key = $1 AND (day + 1) * 86400000 > $2), 0.0)",
        )
        .bind(text(client_key))
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn hourly_costs(&self) -> Result<Vec<HourlyCost>, StoreError> {
        self.ready().await?;
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
        self.ready().await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO llmux_credits (at_ms, client_key, amount) VALUES ($1, $2, $3)")
            .bind(at_ms)
            .bind(text(client_key))
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        let total: f64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount), 0.0) FROM llmux_credits WHERE client_key = $1",
        )
        .bind(text(client_key))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(total)
    }

    async fn credit_grants(&self) -> Result<Vec<(String, f64)>, StoreError> {
        self.ready().await?;
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
        self.ready().await?;
        let mut deleted = 0u64;
        loop {
            let mut tx = self.pool.begin().await?;
            let bound: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(id) FROM (SELECT id FROM llmux_requests WHERE at_ms < $1 \
                 ORDER BY id LIMIT $2) AS chunk",
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
                 SELECT at_ms / 86400000, client_key, model, COUNT(*), SUM(prompt_tokens)::BIGINT, \
                   SUM(completion_tokens)::BIGINT, SUM(cost) \
                 FROM llmux_requests WHERE at_ms < $1 AND id <= $2 \
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
            let done = sqlx::query("DELETE FROM llmux_requests WHERE at_ms < $1 AND id <= $2")
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
                 (SELECT id FROM llmux_attempts WHERE at_ms < $1 LIMIT $2)",
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
