//! ClickHouse schema: versioned migrations, applied at consumer start and recorded in
//! `schema_migrations`.
//!
//! Migrations are SQL files embedded at build time. Every statement in them must run on
//! ClickHouse 18.16 (the tests' server) and on current releases (deployments); a test runs
//! them on both. Statements are idempotent, so concurrent or repeated runs are harmless.
//!
//! # One server or a cluster
//! [`migrate`] applies the files as they are to one server. [`migrate_cluster`] applies them
//! to every shard of a cluster, rewritten by [`cluster_statements`]: each event table becomes
//! `<table>_local` (the same columns, engine and `ORDER BY`) plus `<table>`, a
//! `Distributed(<cluster>, <database>, <table>_local, <key>)` table with the key of
//! [`SHARDING_KEYS`], so services insert and query the same table names either way. The
//! migration files stay the one source of truth. Distributed DDL (`ON CLUSTER`) is not used:
//! it needs ZooKeeper or ClickHouse Keeper. [`migrate_configured`] picks the mode from
//! [`ClickHouseArgs`].

use clickhouse::Client;

use crate::config::{ClickHouseArgs, ClickHouseArgsError};
use crate::rows::{COMMERCE_TABLE, PROBE_TABLE, REJECTED_TABLE};

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
    #[error("invalid clickhouse arguments: {0}")]
    Args(#[from] ClickHouseArgsError),
    #[error("migration {version} ({name}) cannot be applied to a cluster: {source}")]
    NotShardable {
        version: u32,
        name: &'static str,
        source: NotShardable,
    },
    #[error(
        "table {database}.{table} is {engine}, not Distributed: the database was migrated \
         for one server, so cluster mode would write to that server only; migrate its data \
         to a new database instead"
    )]
    NotDistributed {
        database: String,
        table: String,
        engine: String,
    },
    #[error("on shard {shard} (URL number {shard} of --clickhouse-shard-urls): {source}")]
    OnShard {
        shard: usize,
        #[source]
        source: Box<MigrationError>,
    },
}

/// A migration statement [`cluster_statements`] has no cluster form for.
#[derive(Debug, thiserror::Error)]
#[error("{reason}; statement: {statement}")]
pub struct NotShardable {
    pub reason: String,
    pub statement: String,
}

/// The sharding key of each event table in a cluster: the last argument of its
/// `Distributed(…)` engine. A migration that creates a table not listed here fails in cluster
/// mode (and a unit test fails first).
///
/// - `commerce_events`, `probe_results`: `cityHash64(event_id)`. Every copy of one event (a
///   redelivered entry, a store's retry, a batch retried after a partial insert) lands on the
///   same shard, where ReplacingMergeTree and `FINAL` collapse them. `FINAL` over a
///   Distributed table is applied per shard, so copies on two shards would both count.
/// - `rejected_events`: `cityHash64(stream_entry_id, event_id)`. Plain MergeTree, nothing is
///   collapsed, so the key only has to spread rows and be deterministic: the stream entry id
///   spreads rows even when `event_id` is empty (a whole entry rejected by the consumer, or
///   events without an id), the event id spreads the many rejections of one large entry, and
///   a retried batch's copies of a row land next to the original.
pub static SHARDING_KEYS: &[(&str, &str)] = &[
    (COMMERCE_TABLE, "cityHash64(event_id)"),
    (PROBE_TABLE, "cityHash64(event_id)"),
    (REJECTED_TABLE, "cityHash64(stream_entry_id, event_id)"),
];

/// The suffix of the per-shard tables behind each Distributed table.
pub const LOCAL_SUFFIX: &str = "_local";

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS ";

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

/// A migration's statements for one shard of `cluster`: every `CREATE TABLE IF NOT EXISTS
/// <table> …` becomes `CREATE TABLE IF NOT EXISTS <table>_local …` (the rest unchanged),
/// followed by `CREATE TABLE IF NOT EXISTS <table> AS <table>_local ENGINE =
/// Distributed('<cluster>', '<database>', '<table>_local', <key>)` with the key of
/// [`SHARDING_KEYS`].
///
/// Any other statement is an error naming it: an `ALTER`, say, would have to change both
/// tables, and is added here when a migration first needs it.
pub fn cluster_statements(
    sql: &str,
    database: &str,
    cluster: &str,
) -> Result<Vec<String>, NotShardable> {
    let mut out = Vec::new();
    for stmt in statements(sql) {
        let refuse = |reason: String| NotShardable {
            reason,
            statement: stmt.clone(),
        };
        let Some(rest) = strip_prefix_ignore_case(&stmt, CREATE_TABLE) else {
            return Err(refuse(format!(
                "only `{}<table> …` statements have a cluster form",
                CREATE_TABLE.trim_end()
            )));
        };
        let rest = rest.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (table, definition) = rest.split_at(end);
        let Some(&(_, key)) = SHARDING_KEYS.iter().find(|(t, _)| *t == table) else {
            return Err(refuse(format!(
                "table {table:?} has no sharding key in schema::SHARDING_KEYS"
            )));
        };
        let local = format!("{table}{LOCAL_SUFFIX}");
        out.push(format!("{CREATE_TABLE}{local}{definition}"));
        out.push(format!(
            "{CREATE_TABLE}{table} AS {local} ENGINE = Distributed({}, {}, {}, {key})",
            quote(cluster),
            quote(database),
            quote(&local),
        ));
    }
    Ok(out)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A ClickHouse string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Whether the tables are on one server or sharded over a cluster.
#[derive(Clone, Copy)]
enum Layout<'a> {
    Single,
    Shard { cluster: &'a str },
}

/// Applies the migrations the way `args` describe: to `--clickhouse-url` with
/// [`migrate`], or, with `--clickhouse-cluster`, to every `--clickhouse-shard-urls` with
/// [`migrate_cluster`]. The one entry point for services.
pub async fn migrate_configured(args: &ClickHouseArgs) -> Result<Vec<u32>, MigrationError> {
    args.validate()?;
    match args.cluster() {
        None => migrate(&args.server_client(), &args.clickhouse_database).await,
        Some(cluster) => {
            migrate_cluster(&args.shard_clients(), &args.clickhouse_database, cluster).await
        }
    }
}

/// Like [`migrate`], on every shard of `cluster` in turn (`shards`: one client per shard,
/// without a database): creates `database`, the `<table>_local` tables and the Distributed
/// `<table>`s of [`cluster_statements`], and records the versions in each shard's own
/// `schema_migrations`. Returns the versions applied on at least one shard, in order.
///
/// Each shard is migrated independently, so a run that failed on one shard is completed by
/// the next run. A database already migrated for one server is refused
/// ([`MigrationError::NotDistributed`]) rather than left writing to one shard.
pub async fn migrate_cluster(
    shards: &[Client],
    database: &str,
    cluster: &str,
) -> Result<Vec<u32>, MigrationError> {
    let mut done = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let on_shard = |source| MigrationError::OnShard {
            shard: i + 1,
            source: Box::new(source),
        };
        let applied = apply(shard, database, Layout::Shard { cluster })
            .await
            .map_err(on_shard)?;
        check_distributed(shard, database).await.map_err(on_shard)?;
        done.extend(applied);
    }
    done.sort_unstable();
    done.dedup();
    Ok(done)
}

/// Fails if an event table on this shard is not Distributed.
async fn check_distributed(shard: &Client, database: &str) -> Result<(), MigrationError> {
    let tables: Vec<(String, String)> = shard
        .query("SELECT name, engine FROM system.tables WHERE database = ?")
        .bind(database)
        .fetch_all()
        .await
        .map_err(MigrationError::Bookkeeping)?;
    let single = tables.into_iter().find(|(table, engine)| {
        SHARDING_KEYS.iter().any(|(t, _)| t == table) && engine != "Distributed"
    });
    match single {
        Some((table, engine)) => Err(MigrationError::NotDistributed {
            database: database.to_owned(),
            table,
            engine,
        }),
        None => Ok(()),
    }
}

/// Creates `database` if needed and applies every migration not yet recorded.
/// Returns the versions applied by this call.
///
/// `client` must not have a database set; the database is passed explicitly so the
/// same function serves tests that use a fresh database each.
pub async fn migrate(client: &Client, database: &str) -> Result<Vec<u32>, MigrationError> {
    apply(client, database, Layout::Single).await
}

async fn apply(
    client: &Client,
    database: &str,
    layout: Layout<'_>,
) -> Result<Vec<u32>, MigrationError> {
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
        let stmts = match layout {
            Layout::Single => statements(m.sql),
            Layout::Shard { cluster } => {
                cluster_statements(m.sql, database, cluster).map_err(|source| {
                    MigrationError::NotShardable {
                        version: m.version,
                        name: m.name,
                        source,
                    }
                })?
            }
        };
        for stmt in stmts {
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

    #[test]
    fn every_migration_has_a_cluster_form() {
        for m in MIGRATIONS {
            let single = statements(m.sql);
            let cluster = cluster_statements(m.sql, "db", "pipeline")
                .unwrap_or_else(|e| panic!("migration {}: {e}", m.version));
            assert_eq!(cluster.len(), 2 * single.len());
            for (stmt, pair) in single.iter().zip(cluster.chunks(2)) {
                let table = stmt[CREATE_TABLE.len()..]
                    .split(|c: char| c.is_whitespace() || c == '(')
                    .next()
                    .unwrap();
                // the local table is the single-server statement with the name changed only
                assert_eq!(
                    pair[0],
                    stmt.replacen(table, &format!("{table}{LOCAL_SUFFIX}"), 1)
                );
                let key = SHARDING_KEYS.iter().find(|(t, _)| *t == table).unwrap().1;
                assert_eq!(
                    pair[1],
                    format!(
                        "CREATE TABLE IF NOT EXISTS {table} AS {table}_local ENGINE = \
                         Distributed('pipeline', 'db', '{table}_local', {key})"
                    )
                );
            }
        }
    }

    #[test]
    fn commerce_and_probes_are_sharded_by_event_id() {
        let key = |table| SHARDING_KEYS.iter().find(|(t, _)| *t == table).unwrap().1;
        assert_eq!(key(COMMERCE_TABLE), "cityHash64(event_id)");
        assert_eq!(key(PROBE_TABLE), "cityHash64(event_id)");
        assert!(key(REJECTED_TABLE).contains("stream_entry_id"));
    }

    #[test]
    fn statements_without_a_cluster_form_are_refused() {
        let err = cluster_statements("ALTER TABLE commerce_events ADD COLUMN x UInt8", "d", "c")
            .unwrap_err();
        assert!(
            err.reason.contains("only `CREATE TABLE IF NOT EXISTS"),
            "{err}"
        );
        assert!(err.statement.starts_with("ALTER TABLE"));
        let err = cluster_statements(
            "CREATE TABLE IF NOT EXISTS other (a UInt8) ENGINE = Log",
            "d",
            "c",
        )
        .unwrap_err();
        assert!(
            err.reason.contains("\"other\" has no sharding key"),
            "{err}"
        );
    }

    #[test]
    fn names_are_quoted_as_string_literals() {
        assert_eq!(quote("it's"), "'it\\'s'");
        assert_eq!(quote("a\\b"), "'a\\\\b'");
    }
}
