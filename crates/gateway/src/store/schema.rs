//! Migrations, each in both backends' SQL, applied in order at open and recorded in
//! `llmux_migrations`. A migration is never edited once released: schema changes are new
//! numbered files.

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "usage tables",
        sqlite: include_str!("migrations/sqlite/0001_usage.sql"),
        postgres: include_str!("migrations/postgres/0001_usage.sql"),
    },
    Migration {
        version: 2,
        name: "fewer indexes",
        sqlite: include_str!("migrations/sqlite/0002_fewer_indexes.sql"),
        postgres: include_str!("migrations/postgres/0002_fewer_indexes.sql"),
    },
    Migration {
        version: 3,
        name: "inline attempts",
        sqlite: include_str!("migrations/sqlite/0003_inline_attempts.sql"),
        postgres: include_str!("migrations/postgres/0003_inline_attempts.sql"),
    },
];

pub(crate) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS llmux_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_create_every_table_in_both_dialects() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(m.version).ok(), Some(i + 1));
        }
        for table in [
            "llmux_requests",
            "llmux_attempts",
            "llmux_daily",
            "llmux_credits",
        ] {
            let create = format!("CREATE TABLE {table} ");
            assert!(MIGRATIONS.iter().any(|m| m.sqlite.contains(&create)));
            assert!(MIGRATIONS.iter().any(|m| m.postgres.contains(&create)));
        }
    }
}
