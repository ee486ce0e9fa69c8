//! The PostgreSQL backend. The pool connects lazily and reconnects by itself, so a database
//! that is down at startup or restarts later only delays writes (the writer retries, then
//! drops and counts); migrations run on the first successful contact, under an advisory lock
//! so several gateways sharing one database migrate once. Batches are one `INSERT ... SELECT
//! FROM UNNEST(arrays)` per table: one round trip however many rows.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::OnceCell;

use super::schema::{self, CREATE_MIGRATIONS_TABLE};
use super::{Batch, StoreError, UsageStore, clean, clean_opt, sql, sql_i64};
use crate::usage::time::now_ms;

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

    /// The pool once migrated ([`sql::shared_queries`]).
    async fn pool_ready(&self) -> Result<&PgPool, StoreError> {
        self.ready().await?;
        Ok(&self.pool)
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
    for m in schema::MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        sqlx::raw_sql(m.postgres).execute(&mut *tx).await?;
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

/// Text borrowed from the records (no copy unless it held a NUL).
fn text(s: &str) -> Cow<'_, str> {
    clean(s)
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
                   tokens_estimated, prompt_price, completion_price, cost, client_ip, \
                   attempt_status, attempt_latency_ms) \
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                   $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::INTEGER[], $10::INTEGER[], $11::BOOLEAN[], \
                   $12::BIGINT[], $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BIGINT[], \
                   $17::BIGINT[], $18::BOOLEAN[], $19::FLOAT8[], $20::FLOAT8[], $21::FLOAT8[], \
                   $22::TEXT[], $23::INTEGER[], $24::BIGINT[])",
            )
            .bind(rs.iter().map(|r| r.at_ms).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| text(&r.request_id)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| text(&r.client_key)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| text(&r.endpoint)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| text(&r.model)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| clean_opt(&r.provider)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| clean_opt(&r.upstream_model)).collect::<Vec<_>>())
            .bind(rs.iter().map(|r| clean_opt(&r.key_fingerprint)).collect::<Vec<_>>())
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
            .bind(rs.iter().map(|r| clean_opt(&r.client_ip)).collect::<Vec<_>>())
            .bind(
                rs.iter()
                    .map(|r| r.inline_attempt.and_then(|a| a.status).map(i32::from))
                    .collect::<Vec<_>>(),
            )
            .bind(
                rs.iter()
                    .map(|r| r.inline_attempt.map(|a| sql_i64(a.latency_ms)))
                    .collect::<Vec<_>>(),
            )
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
            .bind(at.iter().map(|a| clean_opt(&a.key_fingerprint)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| a.success).collect::<Vec<_>>())
            .bind(at.iter().map(|a| a.status.map(i32::from)).collect::<Vec<_>>())
            .bind(at.iter().map(|a| a.error_class).collect::<Vec<_>>())
            .bind(at.iter().map(|a| sql_i64(a.latency_ms)).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    sql::shared_queries!();
}
