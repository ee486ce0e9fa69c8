//! Where usage goes, from the environment (uni-api's variable names, plus llmux's):
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `DISABLE_DATABASE` | `false` | `true` (any case; also `1`, `yes`): no store; the proxy works, stats endpoints answer "disabled" |
//! | `DATABASE_URL` | – | `postgres://…` / `postgresql://…` or `sqlite://path`; wins over `DB_TYPE` |
//! | `DB_TYPE` | `sqlite` | `sqlite` or `postgres` (anything else is a startup error, as in uni-api) |
//! | `DB_PATH` | – | SQLite file (uni-api's name) |
//! | `LLMUX_DATA_DIR` | `./data` | directory of the default SQLite file `stats.db` |
//! | `DB_USER` / `DB_PASSWORD` / `DB_HOST` / `DB_PORT` / `DB_NAME` | `postgres` / `mysecretpassword` / `localhost` / `5432` / `postgres` | PostgreSQL (uni-api's defaults) |
//! | `LLMUX_RETENTION_DAYS` | `90` | request and attempt rows older than this are folded into daily totals and deleted; `0` keeps them forever |
//! | `LLMUX_USAGE_QUEUE` | `16384` | records waiting for the writer before new ones are dropped (and counted) |

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use super::StoreError;
use super::background::CpuProbe;

pub const DEFAULT_RETENTION_DAYS: u32 = 90;
pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;

#[derive(Clone)]
pub enum Backend {
    Disabled,
    Sqlite {
        path: PathBuf,
    },
    /// Connection options carry the password: never `Debug`-print them (see [`Backend::describe`]).
    Postgres(Box<PgConnectOptions>),
}

impl Backend {
    /// For logs: no password, ever.
    pub fn describe(&self) -> String {
        match self {
            Backend::Disabled => "disabled".into(),
            Backend::Sqlite { path } => format!("sqlite {}", path.display()),
            Backend::Postgres(o) => format!(
                "postgres {}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Writer tuning; the defaults suit one gateway process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// Bounded queue between the request path and the writer.
    pub capacity: usize,
    /// Rows per transaction at most. Large: each commit rewrites the last page of every
    /// table and index, so under load fewer, larger commits cost less CPU (2048 rows: ~7% less
    /// than 512 on SQLite, `store_bench`); a quiet gateway still commits every
    /// `flush_interval`.
    pub batch_size: usize,
    /// A partial batch is written after waiting this long for more.
    pub flush_interval: Duration,
    /// Further tries of a failed batch before it is dropped (and counted).
    pub retries: u32,
    /// Upper bound of one write; a hung database costs at most this per try.
    pub write_timeout: Duration,
    /// How the writer learns whether the machine has idle CPU (for a store's idle lane).
    pub cpu: CpuProbe,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            capacity: DEFAULT_QUEUE_CAPACITY,
            batch_size: 2048,
            flush_interval: Duration::from_millis(200),
            retries: 3,
            write_timeout: Duration::from_secs(10),
            cpu: CpuProbe::ProcStat,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    /// 0 = keep rows forever.
    pub retention_days: u32,
    pub writer: WriterConfig,
}

impl StoreConfig {
    pub fn from_env() -> Result<StoreConfig, StoreError> {
        StoreConfig::from_lookup(|k| std::env::var(k).ok())
    }

    /// `from_env` with an injectable environment (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<StoreConfig, StoreError> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bad = |msg: String| StoreError::Config(msg);

        let retention_days = match var("LLMUX_RETENTION_DAYS") {
            None => DEFAULT_RETENTION_DAYS,
            Some(v) => v.parse().map_err(|_| {
                bad(format!(
                    "LLMUX_RETENTION_DAYS: expected a whole number of days (0 = keep forever), found {v:?}"
                ))
            })?,
        };
        let mut writer = WriterConfig::default();
        if let Some(v) = var("LLMUX_USAGE_QUEUE") {
            writer.capacity = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                bad(format!(
                    "LLMUX_USAGE_QUEUE: expected a positive number of records, found {v:?}"
                ))
            })?;
        }

        let disabled = var("DISABLE_DATABASE")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
        let backend = if disabled {
            Backend::Disabled
        } else if let Some(url) = var("DATABASE_URL") {
            backend_from_url(&url)?
        } else {
            match var("DB_TYPE")
                .unwrap_or_else(|| "sqlite".into())
                .to_ascii_lowercase()
                .as_str()
            {
                "sqlite" => Backend::Sqlite {
                    path: match var("DB_PATH") {
                        Some(p) => PathBuf::from(p),
                        None => {
                            PathBuf::from(var("LLMUX_DATA_DIR").unwrap_or_else(|| "data".into()))
                                .join("stats.db")
                        }
                    },
                },
                "postgres" | "postgresql" => {
                    let port = match var("DB_PORT") {
                        None => 5432,
                        Some(p) => p.parse().map_err(|_| {
                            bad(format!("DB_PORT: expected a port number, found {p:?}"))
                        })?,
                    };
                    let o = PgConnectOptions::new_without_pgpass()
                        .host(&var("DB_HOST").unwrap_or_else(|| "localhost".into()))
                        .port(port)
                        .username(&var("DB_USER").unwrap_or_else(|| "postgres".into()))
                        // Not trimmed: a password may end in spaces.
                        .password(&get("DB_PASSWORD").unwrap_or_else(|| "mysecretpassword".into()))
                        .database(&var("DB_NAME").unwrap_or_else(|| "postgres".into()));
                    Backend::Postgres(Box::new(o))
                }
                other => {
                    return Err(bad(format!(
                        "DB_TYPE: expected `sqlite` or `postgres`, found {other:?}"
                    )));
                }
            }
        };
        Ok(StoreConfig {
            backend,
            retention_days,
            writer,
        })
    }
}

fn backend_from_url(url: &str) -> Result<Backend, StoreError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => PgConnectOptions::from_str(url)
            .map(|o| Backend::Postgres(Box::new(o)))
            // The parser's message may quote the URL, password included: say only what failed.
            .map_err(|_| StoreError::Config("DATABASE_URL: not a valid postgres:// URL".into())),
        Some("sqlite") => {
            let rest = url.get("sqlite://".len()..).unwrap_or("");
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() {
                return Err(StoreError::Config(
                    "DATABASE_URL: sqlite:// needs a file path".into(),
                ));
            }
            Ok(Backend::Sqlite {
                path: PathBuf::from(path),
            })
        }
        _ => Err(StoreError::Config(
            "DATABASE_URL: expected a postgres://, postgresql:// or sqlite:// URL".into(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<StoreConfig, StoreError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        StoreConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_to_sqlite_under_data() {
        let c = cfg(&[]).expect("config");
        assert_eq!(c.backend.describe(), "sqlite data/stats.db");
        assert_eq!(c.retention_days, 90);
        assert_eq!(c.writer, WriterConfig::default());
        let c = cfg(&[("LLMUX_DATA_DIR", "/var/lib/llmux")]).expect("config");
        assert_eq!(c.backend.describe(), "sqlite /var/lib/llmux/stats.db");
        let c = cfg(&[("DB_PATH", "/tmp/x.db"), ("LLMUX_DATA_DIR", "/y")]).expect("config");
        assert_eq!(c.backend.describe(), "sqlite /tmp/x.db");
    }

    #[test]
    fn disable_database_wins() {
        for v in ["true", "TRUE", "1", "yes"] {
            let c = cfg(&[("DISABLE_DATABASE", v), ("DB_TYPE", "postgres")]).expect("config");
            assert!(matches!(c.backend, Backend::Disabled), "{v}");
        }
        let c = cfg(&[("DISABLE_DATABASE", "false")]).expect("config");
        assert!(matches!(c.backend, Backend::Sqlite { .. }));
    }

    #[test]
    fn postgres_from_uni_api_variables_without_leaking_the_password() {
        let c = cfg(&[
            ("DB_TYPE", "Postgres"),
            ("DB_USER", "llm"),
            ("DB_PASSWORD", "hunter2-secret"),
            ("DB_HOST", "db.internal"),
            ("DB_PORT", "6543"),
            ("DB_NAME", "usage"),
        ])
        .expect("config");
        assert_eq!(c.backend.describe(), "postgres llm@db.internal:6543/usage");
        assert!(!format!("{c:?}").contains("hunter2"));
        let d = cfg(&[("DB_TYPE", "postgres")]).expect("config");
        assert_eq!(
            d.backend.describe(),
            "postgres postgres@localhost:5432/postgres"
        );
    }

    #[test]
    fn database_url_selects_the_backend() {
        let c = cfg(&[
            (
                "DATABASE_URL",
                "postgres://u:pw-secret@h:5433/d?sslmode=disable",
            ),
            ("DB_TYPE", "sqlite"),
        ])
        .expect("config");
        assert_eq!(c.backend.describe(), "postgres u@h:5433/d");
        let c = cfg(&[("DATABASE_URL", "sqlite:///tmp/u.db?mode=rwc")]).expect("config");
        assert_eq!(c.backend.describe(), "sqlite /tmp/u.db");
        let e = cfg(&[("DATABASE_URL", "mysql://u:pw-secret@h/d")]).expect_err("mysql");
        assert!(!e.to_string().contains("pw-secret"));
    }

    #[test]
    fn rejects_bad_values() {
        let e = cfg(&[("DB_TYPE", "mysql")]).expect_err("mysql");
        assert_eq!(
            e.to_string(),
            "usage store configuration: DB_TYPE: expected `sqlite` or `postgres`, found \"mysql\""
        );
        assert!(cfg(&[("DB_TYPE", "postgres"), ("DB_PORT", "x")]).is_err());
        assert!(cfg(&[("LLMUX_RETENTION_DAYS", "-1")]).is_err());
        assert!(cfg(&[("LLMUX_USAGE_QUEUE", "0")]).is_err());
        assert_eq!(
            cfg(&[("LLMUX_RETENTION_DAYS", "0")])
                .expect("config")
                .retention_days,
            0
        );
        assert_eq!(
            cfg(&[("LLMUX_USAGE_QUEUE", "8")])
                .expect("config")
                .writer
                .capacity,
            8
        );
    }
}
