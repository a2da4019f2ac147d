//! ClickHouse schema: versioned migrations, applied at consumer start and recorded in
//! `schema_migrations`.
//!
//! Migrations are SQL files embedded at build time. Every statement in them must run on
//! ClickHouse 18.16 (the tests' server) and on current releases (deployments); a test runs
//! them on both. Statements are idempotent, so concurrent or repeated runs are harmless.

use clickhouse::Client;

/// One migration: a version, a name, and its SQL (statements separated by `;`).
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in version order.
pub static MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "events",
    sql: include_str!("../migrations/0001_events.sql"),
}];

/// The table that records applied migrations. ReplacingMergeTree because two consumers
/// may record the same version at once; readers take distinct versions.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
     (version UInt32, name String, applied_at DateTime('UTC')) \
     ENGINE = ReplacingMergeTree ORDER BY version";

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("creating database {database}: {source}")]
    CreateDatabase {
        database: String,
        source: clickhouse::error::Error,
    },
    #[error("migration {version} ({name}) failed: {source}")]
    Statement {
        version: u32,
        name: &'static str,
        source: clickhouse::error::Error,
    },
    #[error("reading schema_migrations: {0}")]
    Bookkeeping(#[source] clickhouse::error::Error),
}

/// Splits a migration's SQL into statements, dropping `--` comment lines.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_owned();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// Creates `database` if needed and applies every migration not yet recorded.
/// Returns the versions applied by this call.
///
/// `client` must not have a database set; the database is passed explicitly so the
/// same function serves tests that use a fresh database each.
pub async fn migrate(client: &Client, database: &str) -> Result<Vec<u32>, MigrationError> {
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS `{database}`"))
        .execute()
        .await
        .map_err(|source| MigrationError::CreateDatabase {
            database: database.to_owned(),
            source,
        })?;
    let db = client.clone().with_database(database);
    db.query(MIGRATIONS_TABLE)
        .execute()
        .await
        .map_err(MigrationError::Bookkeeping)?;
    let applied: Vec<u32> = db
        .query("SELECT DISTINCT version FROM schema_migrations ORDER BY version")
        .fetch_all()
        .await
        .map_err(MigrationError::Bookkeeping)?;
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for stmt in statements(m.sql) {
            db.query(&stmt)
                .execute()
                .await
                .map_err(|source| MigrationError::Statement {
                    version: m.version,
                    name: m.name,
                    source,
                })?;
        }
        db.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())")
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await
            .map_err(MigrationError::Bookkeeping)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        done.push(m.version);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_statements_split() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        let stmts = statements(MIGRATIONS[0].sql);
        assert_eq!(stmts.len(), 3);
        assert!(stmts[0].starts_with("CREATE TABLE IF NOT EXISTS commerce_events"));
        assert!(stmts.iter().all(|s| !s.ends_with(';') && !s.contains("--")));
        assert_eq!(
            statements("SELECT 1;\n-- c\nSELECT 2"),
            ["SELECT 1", "SELECT 2"]
        );
    }
}
