//! Shared by the usage-store tests: record builders, throw-away SQLite files and PostgreSQL
//! databases.
#![allow(dead_code)]

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use llmux::config::schema::Price;
use llmux::store::{PgStore, SqliteStore};
use llmux::usage::{AttemptRecord, Tokens, UsageRecord};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// The read half of `UsageStore` for a store that only takes writes (the writer's tests and
/// benchmarks): every question answers empty, credits are granted as asked.
#[allow(unused_macros)]
macro_rules! empty_reads {
    () => {
        async fn summary(&self, _: i64) -> Result<llmux::store::Summary, llmux::store::StoreError> {
            Ok(llmux::store::Summary::default())
        }
        async fn token_usage(
            &self,
            _: &llmux::store::UsageFilter,
        ) -> Result<Vec<llmux::store::UsageRow>, llmux::store::StoreError> {
            Ok(vec![])
        }
        async fn key_rankings(
            &self,
            _: &str,
            _: i64,
            _: Option<i64>,
        ) -> Result<Vec<llmux::store::KeyCounts>, llmux::store::StoreError> {
            Ok(vec![])
        }
        async fn cost_since(&self, _: &str, _: i64) -> Result<f64, llmux::store::StoreError> {
            Ok(0.0)
        }
        async fn hourly_costs(
            &self,
        ) -> Result<Vec<llmux::store::HourlyCost>, llmux::store::StoreError> {
            Ok(vec![])
        }
        async fn add_credits(
            &self,
            _: &str,
            a: f64,
            _: i64,
        ) -> Result<f64, llmux::store::StoreError> {
            Ok(a)
        }
        async fn credit_grants(&self) -> Result<Vec<(String, f64)>, llmux::store::StoreError> {
            Ok(vec![])
        }
        async fn purge_before(&self, _: i64) -> Result<u64, llmux::store::StoreError> {
            Ok(0)
        }
    };
}
#[allow(unused_imports)]
pub(crate) use empty_reads;

/// 2024-05-01T12:00:00Z, on an hour boundary.
pub const T0: i64 = 1_714_564_800_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 86_400_000;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn price(i: f64, o: f64) -> Price {
    Price {
        input_per_million: i,
        output_per_million: o,
    }
}

pub fn request(key: &str, model: &str, at_ms: i64, prompt: u64, completion: u64) -> UsageRecord {
    UsageRecord {
        at_ms,
        request_id: format!("req-{at_ms}-{model}").into(),
        client_key: key.into(),
        endpoint: "POST /v1/chat/completions".into(),
        model: model.into(),
        provider: Some("openai".into()),
        upstream_model: Some(format!("{model}-2024").into()),
        key_fingerprint: Some("sk-...up01#00000000000000aa".into()),
        status: 200,
        attempts: 1,
        stream: true,
        latency_ms: 850,
        ttft_ms: Some(120),
        tokens: Tokens {
            prompt,
            completion,
            cached: prompt / 2,
            reasoning: completion / 4,
            estimated: false,
        },
        price: price(1.0, 2.0),
        client_ip: Some("203.0.113.7".into()),
        inline_attempt: None,
    }
}

pub fn attempt(
    provider: &str,
    model: &str,
    key_fp: Option<&str>,
    at_ms: i64,
    success: bool,
) -> AttemptRecord {
    AttemptRecord {
        at_ms,
        request_id: format!("req-{at_ms}").into(),
        client_key: "sk-...cli1#00000000000000c1".into(),
        provider: provider.into(),
        model: model.into(),
        upstream_model: format!("{model}-up").into(),
        key_fingerprint: key_fp.map(Into::into),
        success,
        status: Some(if success { 200 } else { 429 }),
        error_class: (!success).then_some("rate_limit"),
        latency_ms: 300,
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("llmux-store-test"));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn sqlite(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path("stats.db"))
        .await
        .expect("open sqlite")
}

/// `LLMUX_TEST_PG_URL` (set by scripts/test.sh, which starts a throw-away server), or a
/// clear skip line.
pub fn pg_url(test: &str) -> Option<String> {
    match std::env::var("LLMUX_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            println!(
                "SKIP {test}: LLMUX_TEST_PG_URL is not set (scripts/test.sh starts a throw-away PostgreSQL)"
            );
            None
        }
    }
}

fn pg_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh")
}

/// `scripts/pg-throwaway.sh <action> <dir>` (`start` prints the server's URL).
pub fn pg(action: &str, dir: &TempDir) -> String {
    let out = std::process::Command::new("bash")
        .arg(pg_script())
        .arg(action)
        .arg(&dir.0)
        .output()
        .expect("run pg-throwaway.sh");
    assert!(
        out.status.success(),
        "pg-throwaway.sh {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A PostgreSQL server of one test's own (so stopping it disturbs no other test), stopped
/// even when the test fails.
pub struct PgServer(pub TempDir);

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(pg_script())
            .arg("stop")
            .arg(&(self.0).0)
            .output();
    }
}

/// A new, empty database on the test server, so tests never see each other's rows.
pub async fn pg_database(url: &str) -> PgConnectOptions {
    let base = PgConnectOptions::from_str(url).expect("LLMUX_TEST_PG_URL");
    let name = unique("llmux_t");
    let mut conn = base.connect().await.expect("connect to LLMUX_TEST_PG_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    base.database(&name)
}

pub async fn postgres(url: &str) -> PgStore {
    PgStore::open(pg_database(url).await).await
}
