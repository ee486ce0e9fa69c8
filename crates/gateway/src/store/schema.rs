//! Migrations per backend, applied in order at open and recorded in `llmux_migrations`. A
//! migration is never edited once released: schema changes are new numbered files.

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "usage tables",
    sql: include_str!("migrations/sqlite/0001_usage.sql"),
}];

pub(crate) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    name: "usage tables",
    sql: include_str!("migrations/postgres/0001_usage.sql"),
}];

pub(crate) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS llmux_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_migrations_in_order() {
        let versions = |m: &[Migration]| m.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(POSTGRES));
        for (i, m) in SQLITE.iter().enumerate() {
            assert_eq!(usize::try_from(m.version).ok(), Some(i + 1));
        }
        for table in [
            "llmux_requests",
            "llmux_attempts",
            "llmux_daily",
            "llmux_credits",
        ] {
            for m in [SQLITE, POSTGRES] {
                assert!(
                    m.iter()
                        .any(|m| m.sql.contains(&format!("CREATE TABLE {table} ")))
                );
            }
        }
    }
}
