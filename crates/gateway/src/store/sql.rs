//! What both backends ask and how their answers are read. The statements are written once in
//! the SQL that SQLite and PostgreSQL share (`$n` parameters, `CAST`, `FILTER`), so the two
//! stores answer the same questions the same way; only inserts and migrations differ.

use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::{HourlyCost, KeyCounts, NameCount, StoreError, SuccessCount, UsageRow};

/// Rows folded and deleted per purge transaction, so a purge never holds the write lock long.
pub(crate) const PURGE_CHUNK: i64 = 5000;

/// `/v1/stats`: attempts and successes per provider and model since `$1` (every attempt:
/// `llmux_all_attempts` adds the ones kept inline in request rows).
pub(crate) const CHANNEL_MODEL_COUNTS: &str = "SELECT provider, model, COUNT(*), COUNT(*) FILTER (WHERE success) \
     FROM llmux_all_attempts WHERE at_ms >= $1 GROUP BY provider, model";
/// `/v1/stats`: attempts and successes per provider since `$1`.
pub(crate) const CHANNEL_COUNTS: &str = "SELECT provider, COUNT(*), COUNT(*) FILTER (WHERE success) \
     FROM llmux_all_attempts WHERE at_ms >= $1 GROUP BY provider";
pub(crate) const MODEL_COUNTS: &str =
    "SELECT model, COUNT(*) FROM llmux_requests WHERE at_ms >= $1 GROUP BY model";
pub(crate) const ENDPOINT_COUNTS: &str =
    "SELECT endpoint, COUNT(*) FROM llmux_requests WHERE at_ms >= $1 GROUP BY endpoint";
pub(crate) const IP_COUNTS: &str =
    "SELECT client_ip, COUNT(*) FROM llmux_requests WHERE at_ms >= $1 GROUP BY client_ip";

/// Token totals per (client key, model): `$1` key, `$2` model (each optional; without a model,
/// rows with an empty one are left out), `[$3, $4)` time range; daily totals count when their
/// day overlaps the range.
pub(crate) const TOKEN_USAGE: &str = "SELECT client_key, model, CAST(SUM(p) AS BIGINT), CAST(SUM(c) AS BIGINT), \
       CAST(SUM(n) AS BIGINT) FROM ( \
       SELECT client_key, model, prompt_tokens AS p, completion_tokens AS c, CAST(1 AS BIGINT) AS n \
       FROM llmux_requests \
       WHERE (CAST($1 AS TEXT) IS NULL OR client_key = $1) \
         AND (CAST($2 AS TEXT) IS NULL OR model = $2) \
         AND (CAST($2 AS TEXT) IS NOT NULL OR model <> '') \
         AND (CAST($3 AS BIGINT) IS NULL OR at_ms >= $3) \
         AND (CAST($4 AS BIGINT) IS NULL OR at_ms < $4) \
       UNION ALL \
       SELECT client_key, model, prompt_tokens, completion_tokens, requests \
       FROM llmux_daily \
       WHERE (CAST($1 AS TEXT) IS NULL OR client_key = $1) \
         AND (CAST($2 AS TEXT) IS NULL OR model = $2) \
         AND (CAST($2 AS TEXT) IS NOT NULL OR model <> '') \
         AND (CAST($3 AS BIGINT) IS NULL OR (day + 1) * 86400000 > $3) \
         AND (CAST($4 AS BIGINT) IS NULL OR day * 86400000 < $4) \
     ) AS u GROUP BY client_key, model ORDER BY client_key, model";

/// Attempts and successes per upstream key of provider `$1` in `[$2, $3)` (`$3` optional).
pub(crate) const KEY_RANKINGS: &str = "SELECT key_fingerprint, COUNT(*), COUNT(*) FILTER (WHERE success) \
     FROM llmux_all_attempts \
     WHERE provider = $1 AND at_ms >= $2 AND (CAST($3 AS BIGINT) IS NULL OR at_ms < $3) \
       AND key_fingerprint IS NOT NULL \
     GROUP BY key_fingerprint";

/// Dollars spent by key `$1` since `$2`, daily totals included.
pub(crate) const COST_SINCE: &str = "SELECT COALESCE((SELECT SUM(cost) FROM llmux_requests \
                      WHERE client_key = $1 AND at_ms >= $2), 0.0) \
          + COALESCE((SELECT SUM(cost) FROM llmux_daily \
                      WHERE client_key = $1 AND (day + 1) * 86400000 > $2), 0.0)";

/// Spending per key and hour; a daily total counts in the last hour of its day.
pub(crate) const HOURLY_COSTS: &str = "SELECT client_key, at_ms / 3600000 AS hour, SUM(cost) FROM llmux_requests \
     WHERE cost > 0 GROUP BY client_key, hour \
     UNION ALL \
     SELECT client_key, day * 24 + 23, SUM(cost) FROM llmux_daily \
     WHERE cost > 0 GROUP BY client_key, day";

pub(crate) const ADD_CREDITS: &str =
    "INSERT INTO llmux_credits (at_ms, client_key, amount) VALUES ($1, $2, $3)";
pub(crate) const GRANTED: &str =
    "SELECT COALESCE(SUM(amount), 0.0) FROM llmux_credits WHERE client_key = $1";
pub(crate) const CREDIT_GRANTS: &str = "SELECT client_key, SUM(amount) FROM llmux_credits \
     GROUP BY client_key ORDER BY client_key";

/// The last id of the next purge chunk: the oldest [`PURGE_CHUNK`] request rows before `$1`.
pub(crate) const PURGE_BOUND: &str = "SELECT MAX(id) FROM (SELECT id FROM llmux_requests \
     WHERE at_ms < $1 ORDER BY id LIMIT $2) AS chunk";
/// Fold request rows before `$1` with ids up to `$2` into daily totals.
pub(crate) const PURGE_FOLD: &str = "INSERT INTO llmux_daily (day, client_key, model, requests, prompt_tokens, \
       completion_tokens, cost) \
     SELECT at_ms / 86400000, client_key, model, COUNT(*), CAST(SUM(prompt_tokens) AS BIGINT), \
       CAST(SUM(completion_tokens) AS BIGINT), SUM(cost) \
     FROM llmux_requests WHERE at_ms < $1 AND id <= $2 \
     GROUP BY at_ms / 86400000, client_key, model \
     ON CONFLICT (day, client_key, model) DO UPDATE SET \
       requests = llmux_daily.requests + excluded.requests, \
       prompt_tokens = llmux_daily.prompt_tokens + excluded.prompt_tokens, \
       completion_tokens = llmux_daily.completion_tokens + excluded.completion_tokens, \
       cost = llmux_daily.cost + excluded.cost";
pub(crate) const PURGE_REQUESTS: &str = "DELETE FROM llmux_requests WHERE at_ms < $1 AND id <= $2";
/// Up to `$2` attempt rows before `$1`.
pub(crate) const PURGE_ATTEMPTS: &str = "DELETE FROM llmux_attempts WHERE id IN \
     (SELECT id FROM llmux_attempts WHERE at_ms < $1 LIMIT $2)";

/// A result row of either backend, read by column position.
pub(crate) trait Columns {
    fn text(&self, i: usize) -> Result<String, sqlx::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, i: usize) -> Result<i64, sqlx::Error>;
    fn real(&self, i: usize) -> Result<f64, sqlx::Error>;
}

macro_rules! columns {
    ($($row:ty),*) => {$(
        impl Columns for $row {
            fn text(&self, i: usize) -> Result<String, sqlx::Error> {
                self.try_get(i)
            }
            fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
                self.try_get(i)
            }
            fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
                self.try_get(i)
            }
            fn real(&self, i: usize) -> Result<f64, sqlx::Error> {
                self.try_get(i)
            }
        }
    )*};
}

columns!(SqliteRow, PgRow);

fn map<R, T>(rows: &[R], f: impl Fn(&R) -> Result<T, sqlx::Error>) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|r| f(r).map_err(StoreError::from))
        .collect()
}

/// [`CHANNEL_MODEL_COUNTS`] (`with_model`) or [`CHANNEL_COUNTS`] rows.
pub(crate) fn success_counts<R: Columns>(
    rows: &[R],
    with_model: bool,
) -> Result<Vec<SuccessCount>, StoreError> {
    let at = if with_model { 2 } else { 1 };
    map(rows, |r| {
        Ok(SuccessCount {
            provider: r.text(0)?,
            model: if with_model { r.opt_text(1)? } else { None },
            total: r.int(at)?,
            success: r.int(at + 1)?,
        })
    })
}

pub(crate) fn name_counts<R: Columns>(rows: &[R]) -> Result<Vec<NameCount>, StoreError> {
    map(rows, |r| {
        Ok(NameCount {
            name: r.opt_text(0)?,
            count: r.int(1)?,
        })
    })
}

pub(crate) fn usage_rows<R: Columns>(rows: &[R]) -> Result<Vec<UsageRow>, StoreError> {
    map(rows, |r| {
        let (p, c) = (r.int(2)?, r.int(3)?);
        Ok(UsageRow {
            client_key: r.text(0)?,
            model: r.text(1)?,
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p.saturating_add(c),
            requests: r.int(4)?,
        })
    })
}

/// [`KEY_RANKINGS`] rows, best first.
pub(crate) fn key_rankings<R: Columns>(rows: &[R]) -> Result<Vec<KeyCounts>, StoreError> {
    let mut out = map(rows, |r| {
        Ok(KeyCounts {
            key_fingerprint: r.text(0)?,
            total: r.int(1)?,
            success: r.int(2)?,
        })
    })?;
    super::sort_rankings(&mut out);
    Ok(out)
}

pub(crate) fn hourly_costs<R: Columns>(rows: &[R]) -> Result<Vec<HourlyCost>, StoreError> {
    map(rows, |r| {
        Ok(HourlyCost {
            client_key: r.text(0)?,
            hour: r.int(1)?,
            dollars: r.real(2)?,
        })
    })
}

pub(crate) fn credit_grants<R: Columns>(rows: &[R]) -> Result<Vec<(String, f64)>, StoreError> {
    map(rows, |r| Ok((r.text(0)?, r.real(1)?)))
}

/// The [`super::UsageStore`] methods that only read or run the shared statements above, the
/// same for both backends: expanded inside each `impl UsageStore`, where `self.pool_ready()`
/// gives the backend's pool once it can answer (PostgreSQL: migrated).
macro_rules! shared_queries {
    () => {
        async fn summary(
            &self,
            since_ms: i64,
        ) -> Result<$crate::store::Summary, $crate::store::StoreError> {
            use $crate::store::sql;
            let pool = self.pool_ready().await?;
            let fetch = |q: &'static str| ::sqlx::query(q).bind(since_ms).fetch_all(pool);
            Ok($crate::store::Summary {
                channel_model: sql::success_counts(&fetch(sql::CHANNEL_MODEL_COUNTS).await?, true)?,
                channel: sql::success_counts(&fetch(sql::CHANNEL_COUNTS).await?, false)?,
                models: sql::name_counts(&fetch(sql::MODEL_COUNTS).await?)?,
                endpoints: sql::name_counts(&fetch(sql::ENDPOINT_COUNTS).await?)?,
                ips: sql::name_counts(&fetch(sql::IP_COUNTS).await?)?,
            })
        }

        async fn token_usage(
            &self,
            f: &$crate::store::UsageFilter,
        ) -> Result<Vec<$crate::store::UsageRow>, $crate::store::StoreError> {
            use $crate::store::{clean, sql};
            let pool = self.pool_ready().await?;
            let rows = ::sqlx::query(sql::TOKEN_USAGE)
                .bind(f.client_key.as_deref().map(clean))
                .bind(f.model.as_deref().map(clean))
                .bind(f.start_ms)
                .bind(f.end_ms)
                .fetch_all(pool)
                .await?;
            sql::usage_rows(&rows)
        }

        async fn key_rankings(
            &self,
            provider: &str,
            start_ms: i64,
            end_ms: Option<i64>,
        ) -> Result<Vec<$crate::store::KeyCounts>, $crate::store::StoreError> {
            use $crate::store::{clean, sql};
            let pool = self.pool_ready().await?;
            let rows = ::sqlx::query(sql::KEY_RANKINGS)
                .bind(clean(provider))
                .bind(start_ms)
                .bind(end_ms)
                .fetch_all(pool)
                .await?;
            sql::key_rankings(&rows)
        }

        async fn cost_since(
            &self,
            client_key: &str,
            since_ms: i64,
        ) -> Result<f64, $crate::store::StoreError> {
            use $crate::store::{clean, sql};
            let pool = self.pool_ready().await?;
            Ok(::sqlx::query_scalar(sql::COST_SINCE)
                .bind(clean(client_key))
                .bind(since_ms)
                .fetch_one(pool)
                .await?)
        }

        async fn hourly_costs(
            &self,
        ) -> Result<Vec<$crate::store::HourlyCost>, $crate::store::StoreError> {
            use $crate::store::sql;
            let pool = self.pool_ready().await?;
            let rows = ::sqlx::query(sql::HOURLY_COSTS).fetch_all(pool).await?;
            sql::hourly_costs(&rows)
        }

        async fn add_credits(
            &self,
            client_key: &str,
            amount: f64,
            at_ms: i64,
        ) -> Result<f64, $crate::store::StoreError> {
            use $crate::store::{clean, sql};
            let pool = self.pool_ready().await?;
            let mut tx = pool.begin().await?;
            ::sqlx::query(sql::ADD_CREDITS)
                .bind(at_ms)
                .bind(clean(client_key))
                .bind(amount)
                .execute(&mut *tx)
                .await?;
            let total: f64 = ::sqlx::query_scalar(sql::GRANTED)
                .bind(clean(client_key))
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(total)
        }

        async fn credit_grants(&self) -> Result<Vec<(String, f64)>, $crate::store::StoreError> {
            use $crate::store::sql;
            let pool = self.pool_ready().await?;
            let rows = ::sqlx::query(sql::CREDIT_GRANTS).fetch_all(pool).await?;
            sql::credit_grants(&rows)
        }

        async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, $crate::store::StoreError> {
            use $crate::store::sql;
            let pool = self.pool_ready().await?;
            let mut deleted = 0u64;
            loop {
                let mut tx = pool.begin().await?;
                let bound: Option<i64> = ::sqlx::query_scalar(sql::PURGE_BOUND)
                    .bind(cutoff_ms)
                    .bind(sql::PURGE_CHUNK)
                    .fetch_one(&mut *tx)
                    .await?;
                let Some(bound) = bound else {
                    break;
                };
                ::sqlx::query(sql::PURGE_FOLD)
                    .bind(cutoff_ms)
                    .bind(bound)
                    .execute(&mut *tx)
                    .await?;
                let done = ::sqlx::query(sql::PURGE_REQUESTS)
                    .bind(cutoff_ms)
                    .bind(bound)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                deleted += done.rows_affected();
            }
            loop {
                let done = ::sqlx::query(sql::PURGE_ATTEMPTS)
                    .bind(cutoff_ms)
                    .bind(sql::PURGE_CHUNK)
                    .execute(pool)
                    .await?;
                if done.rows_affected() == 0 {
                    break;
                }
                deleted += done.rows_affected();
            }
            Ok(deleted)
        }
    };
}

pub(crate) use shared_queries;
