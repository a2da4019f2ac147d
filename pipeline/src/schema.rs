//! ClickHouse schema: versioned migrations, applied at consumer start and recorded in
//! `schema_migrations`.
//!
//! Migrations are SQL files embedded at build time. Every statement in them must run on
//! ClickHouse 18.16 (the tests' server) and on current releases (deployments); a test runs
//! them on both. Statements are idempotent, so concurrent or repeated runs are harmless;
//! a migration that moves a table (copy, then `RENAME`) cannot be, and carries a check of
//! whether it is in place instead ([`Migration::done_when`]). One exception, on 18.16 only:
//! two runs of such a migration at once can deadlock the server, one run's
//! `INSERT … SELECT` holding the new table and waiting for the old one, which the other's
//! `RENAME` holds while it waits for the new one (18.16's table locks have no timeout). Seen
//! once, 2026-12-03, in `two_consumers_starting_at_once_both_migrate_a_database_of_migration_1`
//! (the test hung; it had passed in every run before). Upgrading an 18.16 database from
//! migration 1 therefore wants one consumer started alone first; current releases, which
//! deployments run, are not known to share this lock order.
//!
//! # One server or a cluster
//! [`migrate`] applies the files as they are to one server. [`migrate_cluster`] applies them
//! to every shard of a cluster, rewritten by [`cluster_statements`]: each event table becomes
//! `<table>_local` (the same columns, engine and `ORDER BY`) plus `<table>`, a
//! `Distributed(<cluster>, <database>, <table>_local, <key>)` table with the key of
//! [`SHARDING_KEYS`], so services insert and query the same table names either way. The
//! migration files stay the one source of truth. [`migrate_configured`] picks the mode from
//! [`ClickHouseArgs`].
//!
//! # Replicas
//! With `--clickhouse-replicated` every node holds replicas: each `MergeTree`-family engine
//! of a created table becomes its `Replicated…` form ([`replicated_statement`]), with the
//! ZooKeeper path `/clickhouse/tables/{shard}/<database>/<table>` and the replica
//! `{replica}` (both macros from each server's `<macros>`), written out as the two explicit
//! arguments that ClickHouse 18.16 and current releases both accept. The migrations are
//! applied to every node in turn (every URL of `--clickhouse-url`, or of
//! `--clickhouse-shard-urls` in a cluster), each node recording them in its own
//! `schema_migrations`, never through `ON CLUSTER` DDL (ARCHITECTURE.md, "Losing one
//! machine", says why); a node that cannot be reached is left for the next start, as long
//! as one node took every migration.

use clickhouse::Client;

use crate::config::{ClickHouseArgs, ClickHouseArgsError};
use crate::rows::{COMMERCE_TABLE, PROBE_TABLE, REJECTED_TABLE};

/// One migration: a version, a name, and its SQL (statements separated by `;`).
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
    /// For a migration whose statements cannot all be repeated (a `RENAME`): a query, run
    /// as it is in both layouts, that returns 1 when the migration's effect is already in
    /// place. A run that finds it so records the version without running the statements:
    /// the previous run died between its last statement and the bookkeeping, or another
    /// consumer migrated at the same time (then this run's failed statement is not an
    /// error either).
    pub done_when: Option<&'static str>,
}

/// Every migration, in version order.
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        sql: include_str!("../migrations/0001_events.sql"),
        done_when: None,
    },
    Migration {
        version: 2,
        name: "identity",
        sql: include_str!("../migrations/0002_identity.sql"),
        done_when: Some(IDENTITY_DONE),
    },
    Migration {
        version: 3,
        name: "probe_phases",
        sql: include_str!("../migrations/0003_probe_phases.sql"),
        // each ALTER that finds its column counts as applied (`already_applied`)
        done_when: None,
    },
    Migration {
        version: 4,
        name: "rollups",
        sql: include_str!("../migrations/0004_rollups.sql"),
        done_when: None,
    },
    Migration {
        version: 5,
        name: "probe_rollups",
        sql: include_str!("../migrations/0005_probe_rollups.sql"),
        done_when: None,
    },
    Migration {
        version: 6,
        name: "conflict_rollup",
        sql: include_str!("../migrations/0006_conflict_rollup.sql"),
        done_when: None,
    },
    Migration {
        version: 7,
        name: "hourly_rollups",
        sql: include_str!("../migrations/0007_hourly_rollups.sql"),
        done_when: None,
    },
    Migration {
        version: 8,
        name: "arrival_rollup",
        sql: include_str!("../migrations/0008_arrival_rollup.sql"),
        done_when: None,
    },
    Migration {
        version: 9,
        name: "category_rollup",
        sql: include_str!("../migrations/0009_category_rollup.sql"),
        // its ALTER that finds its column counts as applied (`already_applied`)
        done_when: None,
    },
    Migration {
        version: 10,
        name: "build_rows",
        sql: include_str!("../migrations/0010_build_rows.sql"),
        // its ALTER that finds its column counts as applied (`already_applied`)
        done_when: None,
    },
];

/// Migration 2 is in place when the tables services use have a `UUID` `event_id`, and no
/// table of theirs (the `_local` tables of a cluster included) still has the text one.
/// The moved-away `<table>_0001` tables are not counted: they keep the old column.
const IDENTITY_DONE: &str = "SELECT toUInt8(\
    countIf(table IN ('commerce_events', 'probe_results') AND type = 'UUID') = 2 \
    AND countIf(type != 'UUID') = 0) \
    FROM system.columns WHERE database = currentDatabase() AND name = 'event_id' \
    AND table IN ('commerce_events', 'probe_results', \
    'commerce_events_local', 'probe_results_local')";

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
    #[error(
        "table {database}.{table} is {engine}, not replicated: it was created before \
         --clickhouse-replicated was set, so its rows would stay on this node; copy its data \
         into a database migrated with replicas instead"
    )]
    NotReplicated {
        database: String,
        table: String,
        engine: String,
    },
    #[error(
        "on node {shard} (URL number {shard} of --clickhouse-shard-urls or --clickhouse-url): {source}"
    )]
    OnShard {
        shard: usize,
        #[source]
        source: Box<MigrationError>,
    },
}

impl MigrationError {
    /// Whether the node could not be reached at all (see [`crate::retry::clickhouse_unreachable`]),
    /// rather than refusing something.
    pub fn unreachable(&self) -> bool {
        match self {
            MigrationError::CreateDatabase { source, .. }
            | MigrationError::Statement { source, .. }
            | MigrationError::Bookkeeping(source) => crate::retry::clickhouse_unreachable(source),
            MigrationError::OnShard { source, .. } => source.unreachable(),
            _ => false,
        }
    }
}

/// A migration statement [`cluster_statements`] has no cluster form for.
#[derive(Debug, thiserror::Error)]
#[error("{reason}; statement: {statement}")]
pub struct NotShardable {
    pub reason: String,
    pub statement: String,
}

/// The sharding key of each event table (and rollup) in a cluster: the last argument of its
/// `Distributed(…)` engine. A migration that creates a table not listed here fails in cluster
/// mode (and a unit test fails first).
///
/// - `commerce_events`, `probe_results`: `cityHash64(toString(event_id))`. Every copy of one
///   event (a redelivered entry, a store's retry, a batch retried after a partial insert)
///   has its `event_id`, so it lands on the same shard, where ReplacingMergeTree and `FINAL`
///   collapse them. `FINAL` over a Distributed table is applied per shard, so copies on two
///   shards would both count. The hash of the id's text, not of the `UUID` column that
///   migration 2 introduced: rows placed by the `String` column of migration 1 stay where a
///   later copy of the same event goes.
/// - `rejected_events`: `cityHash64(stream_entry_id, event_id)`. Plain MergeTree, nothing is
///   collapsed, so the key only has to spread rows and be deterministic: the stream entry id
///   spreads rows even when `event_id` is empty (a whole entry rejected by the consumer, or
///   events without an id), the event id spreads the many rejections of one large entry, and
///   a retried batch's copies of a row land next to the original.
/// - the rollups of migrations 4 and 5 (`commerce_daily`, `audience_daily`, `rollup_builds`,
///   `probe_daily`, `probe_minutes`): `toUInt32(day)`. Every build of a day writes its groups to the day's shard, where
///   `ReplacingMergeTree(version)` and `FINAL` keep the latest build's row of each group.
/// - migration 6's `conflicts_daily`: `toUInt32(day)`, the same way.
/// - migration 7's hourly rollups (`commerce_hourly`, `probe_hourly`, `rollup_hour_builds`):
///   `toUInt32(hour)`, every build of an hour to the hour's shard.
/// - migration 8's `arrivals_minutes` and migration 9's `category_hourly`: `toUInt32(hour)`,
///   the same way.
pub static SHARDING_KEYS: &[(&str, &str)] = &[
    (COMMERCE_TABLE, "cityHash64(toString(event_id))"),
    (PROBE_TABLE, "cityHash64(toString(event_id))"),
    (REJECTED_TABLE, "cityHash64(stream_entry_id, event_id)"),
    ("commerce_daily", "toUInt32(day)"),
    ("audience_daily", "toUInt32(day)"),
    ("rollup_builds", "toUInt32(day)"),
    ("probe_daily", "toUInt32(day)"),
    ("probe_minutes", "toUInt32(day)"),
    ("conflicts_daily", "toUInt32(day)"),
    ("commerce_hourly", "toUInt32(hour)"),
    ("probe_hourly", "toUInt32(hour)"),
    ("rollup_hour_builds", "toUInt32(hour)"),
    ("arrivals_minutes", "toUInt32(hour)"),
    ("category_hourly", "toUInt32(hour)"),
];

/// The suffix of the per-shard tables behind each Distributed table.
pub const LOCAL_SUFFIX: &str = "_local";

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS ";
const ALTER_TABLE: &str = "ALTER TABLE ";

/// Whether `stmt` failed only because its effect is already in place: an `ADD COLUMN` whose
/// column exists (a rerun after a partial run, or another consumer migrating at the same
/// time). ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`; it says `Code: 44`, current
/// releases `Code: 15 (DUPLICATE_COLUMN)`, both with this text.
pub fn already_applied(stmt: &str, error: &str) -> bool {
    strip_prefix_ignore_case(stmt, ALTER_TABLE).is_some()
        && stmt.to_ascii_uppercase().contains(" ADD COLUMN ")
        && error.contains("column with this name already exists")
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

/// A migration's statements for one shard of `cluster`:
///
/// - `CREATE TABLE IF NOT EXISTS <table> …` of an event table becomes `CREATE TABLE IF NOT
///   EXISTS <table>_local …` (the rest unchanged), followed by `CREATE TABLE IF NOT EXISTS
///   <table> AS <table>_local ENGINE = Distributed('<cluster>', '<database>', '<table>_local',
///   <key>)` with the key of [`SHARDING_KEYS`].
/// - A table named after an event table (`commerce_events_0002`: a table a migration fills
///   and swaps in) exists per shard only, as `<name>_local`.
/// - `INSERT INTO … SELECT … FROM …` and `RENAME TABLE …` run per shard on the `_local`
///   tables, so each shard copies its own rows and placement is kept. A `RENAME` that gives
///   an event table's name to another table is followed by dropping and recreating that
///   event table's Distributed table, whose columns must follow the new local table.
///
/// `ALTER TABLE <table> …` of an event table changes both: `<table>_local` first, then the
/// Distributed `<table>`, whose columns must follow (it does not read them from the local
/// table after creation).
///
/// Any other statement is an error naming it.
pub fn cluster_statements(
    sql: &str,
    database: &str,
    cluster: &str,
) -> Result<Vec<String>, NotShardable> {
    let mut out = Vec::new();
    let distributed = |table: &str, key: &str| {
        format!(
            "{CREATE_TABLE}{table} AS {table}{LOCAL_SUFFIX} ENGINE = Distributed({}, {}, {}, {key})",
            quote(cluster),
            quote(database),
            quote(&format!("{table}{LOCAL_SUFFIX}")),
        )
    };
    for stmt in statements(sql) {
        let refuse = |reason: String| NotShardable {
            reason,
            statement: stmt.clone(),
        };
        if let Some(rest) = strip_prefix_ignore_case(&stmt, CREATE_TABLE) {
            let rest = rest.trim_start();
            let end = rest.find(|c: char| !is_identifier(c)).unwrap_or(rest.len());
            let (table, definition) = rest.split_at(end);
            if let Some(&(_, key)) = SHARDING_KEYS.iter().find(|(t, _)| *t == table) {
                out.push(format!("{CREATE_TABLE}{table}{LOCAL_SUFFIX}{definition}"));
                out.push(distributed(table, key));
            } else if is_event_table_family(table) {
                out.push(localised(&stmt));
            } else {
                return Err(refuse(format!(
                    "table {table:?} has no sharding key in schema::SHARDING_KEYS"
                )));
            }
        } else if let Some(rest) = strip_prefix_ignore_case(&stmt, ALTER_TABLE) {
            let rest = rest.trim_start();
            let end = rest.find(|c: char| !is_identifier(c)).unwrap_or(rest.len());
            let (table, change) = rest.split_at(end);
            if !SHARDING_KEYS.iter().any(|(t, _)| *t == table) {
                return Err(refuse(format!(
                    "table {table:?} has no sharding key in schema::SHARDING_KEYS"
                )));
            }
            // the Distributed table does not follow its local table's columns by itself
            out.push(format!("{ALTER_TABLE}{table}{LOCAL_SUFFIX}{change}"));
            out.push(format!("{ALTER_TABLE}{table}{change}"));
        } else if strip_prefix_ignore_case(&stmt, "INSERT INTO ").is_some() {
            out.push(localised(&stmt));
        } else if let Some(pairs) = strip_prefix_ignore_case(&stmt, "RENAME TABLE ") {
            out.push(localised(&stmt));
            for pair in pairs.split(',') {
                let target = pair.split_whitespace().last().unwrap_or_default();
                if let Some(&(table, key)) = SHARDING_KEYS.iter().find(|(t, _)| *t == target) {
                    out.push(format!("DROP TABLE IF EXISTS {table}"));
                    out.push(distributed(table, key));
                }
            }
        } else {
            return Err(refuse(
                "only `CREATE TABLE IF NOT EXISTS <table> …`, `ALTER TABLE <table> …`, \
                 `INSERT INTO … SELECT` and `RENAME TABLE …` statements have a cluster form"
                    .to_owned(),
            ));
        }
    }
    Ok(out)
}

fn is_identifier(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// An event table's name, or one derived from it (`commerce_events_0001`).
fn is_event_table_family(name: &str) -> bool {
    SHARDING_KEYS.iter().any(|(t, _)| {
        name == *t
            || name
                .strip_prefix(t)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|rest| !rest.is_empty())
    })
}

/// `stmt` with every table of an event table's family renamed to its `_local` table.
fn localised(stmt: &str) -> String {
    let mut out = String::with_capacity(stmt.len() + 32);
    let mut word = String::new();
    for c in stmt.chars().chain(std::iter::once(' ')) {
        if is_identifier(c) {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push_str(&word);
            if is_event_table_family(&word) {
                out.push_str(LOCAL_SUFFIX);
            }
            word.clear();
        }
        out.push(c);
    }
    out.pop();
    out
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

/// The ZooKeeper path of a replicated table: one per shard, database and table, so
/// databases (a test's each) never share a path.
fn zookeeper_path(database: &str, table: &str) -> String {
    format!("/clickhouse/tables/{{shard}}/{database}/{table}")
}

/// `stmt` for a node holding replicas: a `CREATE TABLE … ENGINE = <X>MergeTree[(args)] …`
/// becomes `… ENGINE = Replicated<X>MergeTree('/clickhouse/tables/{shard}/<database>/<table>',
/// '{replica}'[, args]) …`; any other statement (a `Distributed` table, an `ALTER`, which a
/// replicated table passes on to its replicas itself) is returned as it is.
pub fn replicated_statement(stmt: &str, database: &str) -> String {
    let Some(rest) = strip_prefix_ignore_case(stmt, CREATE_TABLE) else {
        return stmt.to_owned();
    };
    let rest = rest.trim_start();
    let table = &rest[..rest.find(|c: char| !is_identifier(c)).unwrap_or(rest.len())];
    let Some(engine_at) = stmt.find("ENGINE") else {
        return stmt.to_owned();
    };
    let after = stmt[engine_at + "ENGINE".len()..].trim_start();
    let Some(after) = after.strip_prefix('=') else {
        return stmt.to_owned();
    };
    let engine_start = stmt.len() - after.trim_start().len();
    let tail = &stmt[engine_start..];
    let name_len = tail.find(|c: char| !is_identifier(c)).unwrap_or(tail.len());
    let engine = &tail[..name_len];
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return stmt.to_owned();
    }
    let (args, rest) = match tail[name_len..].strip_prefix('(') {
        Some(inner) => match inner.find(')') {
            Some(close) => (inner[..close].trim(), &inner[close + 1..]),
            None => return stmt.to_owned(),
        },
        None => ("", &tail[name_len..]),
    };
    let mut replicated = format!(
        "Replicated{engine}({}, '{{replica}}'",
        quote(&zookeeper_path(database, table))
    );
    if !args.is_empty() {
        replicated.push_str(", ");
        replicated.push_str(args);
    }
    replicated.push(')');
    format!("{}{replicated}{rest}", &stmt[..engine_start])
}

/// The statements of migration `m` as one node of `layout` runs them.
fn node_statements(
    m: &Migration,
    database: &str,
    layout: Layout<'_>,
    replicated: bool,
) -> Result<Vec<String>, MigrationError> {
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
    Ok(if replicated {
        stmts
            .iter()
            .map(|s| replicated_statement(s, database))
            .collect()
    } else {
        stmts
    })
}

/// Applies the migrations the way `args` describe: to `--clickhouse-url` with
/// [`migrate`], or, with `--clickhouse-cluster`, to every `--clickhouse-shard-urls` with
/// [`migrate_cluster`]. The one entry point for services.
pub async fn migrate_configured(args: &ClickHouseArgs) -> Result<Vec<u32>, MigrationError> {
    migrate_configured_to(args, u32::MAX).await
}

/// Like [`migrate_configured`], applying only the migrations up to version `last`: how a
/// test builds a database of an earlier schema to migrate from.
pub async fn migrate_configured_to(
    args: &ClickHouseArgs,
    last: u32,
) -> Result<Vec<u32>, MigrationError> {
    args.validate()?;
    let database = &args.clickhouse_database;
    let replicated = args.clickhouse_replicated;
    match args.cluster() {
        None if !replicated => migrate_to(&args.server_client(), database, last).await,
        None => migrate_nodes(&args.server_clients(), database, Layout::Single, true, last).await,
        Some(cluster) => {
            let layout = Layout::Shard { cluster };
            migrate_nodes(&args.shard_clients(), database, layout, replicated, last).await
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
    migrate_cluster_to(shards, database, cluster, u32::MAX).await
}

/// Like [`migrate_cluster`], applying only the migrations up to version `last`.
pub async fn migrate_cluster_to(
    shards: &[Client],
    database: &str,
    cluster: &str,
    last: u32,
) -> Result<Vec<u32>, MigrationError> {
    migrate_nodes(shards, database, Layout::Shard { cluster }, false, last).await
}

/// Applies the migrations to every node, each recording them in its own
/// `schema_migrations`; returns the versions applied on at least one node, in order.
///
/// One migration on every node, then the next: a replica creating a replicated table
/// checks its columns against the ones ZooKeeper holds for that table, which a later
/// migration's `ALTER` on another replica would already have changed.
///
/// With replicas, a node that cannot be reached is skipped with a warning (its replicated
/// tables catch up on their rows when it is back, and the next start migrates it), so a
/// consumer starts while one replica is down; at least one node must take every migration.
/// Without replicas every node holds rows no other has, and every node must be migrated.
async fn migrate_nodes(
    nodes: &[Client],
    database: &str,
    layout: Layout<'_>,
    replicated: bool,
    last: u32,
) -> Result<Vec<u32>, MigrationError> {
    let on_node = |i: usize, source| MigrationError::OnShard {
        shard: i + 1,
        source: Box::new(source),
    };
    let mut done = Vec::new();
    if replicated {
        join_fresh_replicas(nodes, database).await?;
    }
    let mut skipped: Vec<Option<MigrationError>> = nodes.iter().map(|_| None).collect();
    let versions = MIGRATIONS.iter().map(|m| m.version).filter(|&v| v <= last);
    for version in versions {
        for (i, node) in nodes.iter().enumerate() {
            if skipped[i].is_some() {
                continue;
            }
            match apply(node, database, layout, replicated, version).await {
                Ok(applied) => done.extend(applied),
                Err(e) if replicated && e.unreachable() => {
                    tracing::warn!(
                        node = i + 1,
                        error = %e,
                        "clickhouse node unreachable; migrating the others, it is migrated at the next start"
                    );
                    skipped[i] = Some(on_node(i, e));
                }
                Err(e) => return Err(on_node(i, e)),
            }
        }
    }
    let mut reached = 0;
    for (i, node) in nodes.iter().enumerate() {
        if skipped[i].is_none() {
            check_engines(node, database, layout, replicated)
                .await
                .map_err(|e| on_node(i, e))?;
            reached += 1;
        }
    }
    if let (0, Some(e)) = (reached, skipped.into_iter().flatten().next()) {
        return Err(e);
    }
    done.sort_unstable();
    done.dedup();
    Ok(done)
}

/// Gives every reachable node that has no table in `database` yet (a replica added to a
/// running deployment, or one that was down when the database was created) the tables of
/// the node with the most migrations, as that node's `SHOW CREATE TABLE` has them, and its
/// `schema_migrations` rows. Replaying the migrations from the first would fail there: a
/// replicated table's columns must match the ones its ZooKeeper path holds, which later
/// migrations' `ALTER`s changed. The new replica then fetches the rows by itself.
async fn join_fresh_replicas(nodes: &[Client], database: &str) -> Result<(), MigrationError> {
    let mut states = Vec::with_capacity(nodes.len());
    for node in nodes {
        // an unreachable node is skipped here and reported by the migration that follows
        states.push(replica_state(node, database).await.ok());
    }
    let Some(source) = (0..nodes.len())
        .filter(|&i| {
            states[i]
                .as_ref()
                .is_some_and(|(_, tables)| !tables.is_empty())
        })
        .max_by_key(|&i| states[i].as_ref().map_or(0, |(versions, _)| versions.len()))
    else {
        return Ok(());
    };
    let (versions, tables) = states[source].clone().expect("source is reachable");
    for (i, node) in nodes.iter().enumerate() {
        if !states[i]
            .as_ref()
            .is_some_and(|(_, tables)| tables.is_empty())
        {
            continue;
        }
        tracing::info!(
            node = i + 1,
            from = source + 1,
            "new replica: creating its tables as the other replica has them"
        );
        let node_error = |source| MigrationError::OnShard {
            shard: i + 1,
            source: Box::new(source),
        };
        for table in &tables {
            let create: String = nodes[source]
                .query(&format!("SHOW CREATE TABLE `{database}`.`{table}`"))
                .fetch_one()
                .await
                .map_err(|e| node_error(MigrationError::Bookkeeping(e)))?;
            let create = create.replacen("CREATE TABLE ", CREATE_TABLE, 1);
            node.query(&create).execute().await.map_err(|source| {
                node_error(MigrationError::Statement {
                    version: 0,
                    name: "the other replica's tables",
                    source,
                })
            })?;
        }
        let db = node.clone().with_database(database);
        for version in &versions {
            let name = MIGRATIONS
                .iter()
                .find(|m| m.version == *version)
                .map_or("unknown", |m| m.name);
            db.query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())",
            )
            .bind(version)
            .bind(name)
            .execute()
            .await
            .map_err(|e| node_error(MigrationError::Bookkeeping(e)))?;
        }
    }
    Ok(())
}

/// A node's recorded migrations and its tables in `database` but `schema_migrations`
/// (created here if missing, so the answer never depends on the database existing).
async fn replica_state(
    node: &Client,
    database: &str,
) -> Result<(Vec<u32>, Vec<String>), clickhouse::error::Error> {
    node.query(&format!("CREATE DATABASE IF NOT EXISTS `{database}`"))
        .execute()
        .await?;
    let db = node.clone().with_database(database);
    db.query(MIGRATIONS_TABLE).execute().await?;
    let versions = db
        .query("SELECT DISTINCT version FROM schema_migrations ORDER BY version")
        .fetch_all()
        .await?;
    let tables = node
        .query(
            "SELECT name FROM system.tables WHERE database = ? AND name != 'schema_migrations' \
             ORDER BY name",
        )
        .bind(database)
        .fetch_all()
        .await?;
    Ok((versions, tables))
}

/// Fails if an event table on this node has the wrong engine for the layout: not
/// Distributed in a cluster (the database was migrated for one server), or not replicated
/// where replicas are configured (the tables were created before replication was, and
/// would never be copied).
async fn check_engines(
    node: &Client,
    database: &str,
    layout: Layout<'_>,
    replicated: bool,
) -> Result<(), MigrationError> {
    let tables: Vec<(String, String)> = node
        .query("SELECT name, engine FROM system.tables WHERE database = ?")
        .bind(database)
        .fetch_all()
        .await
        .map_err(MigrationError::Bookkeeping)?;
    let event_table = |table: &str| SHARDING_KEYS.iter().any(|(t, _)| *t == table);
    for (table, engine) in tables {
        let (stored, expected) = match layout {
            Layout::Shard { .. } => (
                table.strip_suffix(LOCAL_SUFFIX).filter(|t| event_table(t)),
                event_table(&table).then_some("Distributed"),
            ),
            Layout::Single => (event_table(&table).then_some(table.as_str()), None),
        };
        if expected.is_some_and(|expected| engine != expected) {
            return Err(MigrationError::NotDistributed {
                database: database.to_owned(),
                table,
                engine,
            });
        }
        if replicated && stored.is_some() && !engine.starts_with("Replicated") {
            return Err(MigrationError::NotReplicated {
                database: database.to_owned(),
                table,
                engine,
            });
        }
    }
    Ok(())
}

/// Creates `database` if needed and applies every migration not yet recorded.
/// Returns the versions applied by this call.
///
/// `client` must not have a database set; the database is passed explicitly so the
/// same function serves tests that use a fresh database each.
pub async fn migrate(client: &Client, database: &str) -> Result<Vec<u32>, MigrationError> {
    migrate_to(client, database, u32::MAX).await
}

/// Like [`migrate`], applying only the migrations up to version `last`.
pub async fn migrate_to(
    client: &Client,
    database: &str,
    last: u32,
) -> Result<Vec<u32>, MigrationError> {
    apply(client, database, Layout::Single, false, last).await
}

async fn apply(
    client: &Client,
    database: &str,
    layout: Layout<'_>,
    replicated: bool,
    last: u32,
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
    let pending = MIGRATIONS
        .iter()
        .filter(|m| m.version <= last && !applied.contains(&m.version));
    for m in pending {
        let stmts = node_statements(m, database, layout, replicated)?;
        if is_done(&db, m).await? {
            tracing::info!(
                version = m.version,
                name = m.name,
                "migration found in place"
            );
        } else {
            for stmt in stmts {
                if let Err(source) = db.query(&stmt).execute().await {
                    if already_applied(&stmt, &source.to_string()) {
                        tracing::info!(version = m.version, statement = %stmt, "already applied");
                        continue;
                    }
                    // Another consumer may have completed it meanwhile (its RENAME came
                    // first): then this statement's failure is not an error.
                    if is_done(&db, m).await? {
                        tracing::info!(version = m.version, "migration completed by another run");
                        break;
                    }
                    return Err(MigrationError::Statement {
                        version: m.version,
                        name: m.name,
                        source,
                    });
                }
            }
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

/// Whether `m`'s effect is in place already (see [`Migration::done_when`]).
async fn is_done(db: &Client, m: &Migration) -> Result<bool, MigrationError> {
    let Some(check) = m.done_when else {
        return Ok(false);
    };
    let done: u8 = db
        .query(check)
        .fetch_one()
        .await
        .map_err(MigrationError::Bookkeeping)?;
    Ok(done == 1)
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
            cluster_statements(m.sql, "db", "pipeline")
                .unwrap_or_else(|e| panic!("migration {}: {e}", m.version));
        }
    }

    #[test]
    fn creating_tables_gives_local_and_distributed_tables() {
        for m in &MIGRATIONS[..1] {
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
    fn moving_tables_copies_and_renames_per_shard_and_recreates_distributed_tables() {
        let sql = "CREATE TABLE IF NOT EXISTS commerce_events_0002 (event_id UUID) \
                   ENGINE = Log;\n\
                   INSERT INTO commerce_events_0002 SELECT toUUID(event_id) FROM commerce_events;\n\
                   RENAME TABLE commerce_events TO commerce_events_0001, \
                   commerce_events_0002 TO commerce_events;";
        let key = SHARDING_KEYS[0].1;
        assert_eq!(
            cluster_statements(sql, "db", "c").unwrap(),
            [
                "CREATE TABLE IF NOT EXISTS commerce_events_0002_local (event_id UUID) ENGINE = Log"
                    .to_owned(),
                "INSERT INTO commerce_events_0002_local SELECT toUUID(event_id) FROM \
                 commerce_events_local"
                    .to_owned(),
                "RENAME TABLE commerce_events_local TO commerce_events_0001_local, \
                 commerce_events_0002_local TO commerce_events_local"
                    .to_owned(),
                "DROP TABLE IF EXISTS commerce_events".to_owned(),
                format!(
                    "CREATE TABLE IF NOT EXISTS commerce_events AS commerce_events_local ENGINE = \
                     Distributed('c', 'db', 'commerce_events_local', {key})"
                ),
            ]
        );
        // column names are not tables: event_id stays event_id
        assert_eq!(
            localised("SELECT event_id FROM probe_results"),
            "SELECT event_id FROM probe_results_local"
        );
        assert!(!is_event_table_family("commerce_events_"));
        assert!(!is_event_table_family("commerce"));
    }

    #[test]
    fn commerce_and_probes_are_sharded_by_event_id() {
        let key = |table| SHARDING_KEYS.iter().find(|(t, _)| *t == table).unwrap().1;
        assert_eq!(key(COMMERCE_TABLE), "cityHash64(toString(event_id))");
        assert_eq!(key(PROBE_TABLE), "cityHash64(toString(event_id))");
        assert!(key(REJECTED_TABLE).contains("stream_entry_id"));
    }

    #[test]
    fn alters_change_the_local_table_then_the_distributed_one() {
        let got = cluster_statements(
            "ALTER TABLE probe_results ADD COLUMN x UInt8 DEFAULT 0",
            "d",
            "c",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "ALTER TABLE probe_results_local ADD COLUMN x UInt8 DEFAULT 0",
                "ALTER TABLE probe_results ADD COLUMN x UInt8 DEFAULT 0",
            ]
        );
        let m3 = MIGRATIONS.iter().find(|m| m.version == 3).unwrap();
        assert_eq!(
            cluster_statements(m3.sql, "d", "c").unwrap().len(),
            2 * statements(m3.sql).len()
        );
        let err = cluster_statements("ALTER TABLE other ADD COLUMN x UInt8", "d", "c").unwrap_err();
        assert!(
            err.reason.contains("\"other\" has no sharding key"),
            "{err}"
        );
    }

    #[test]
    fn only_an_existing_added_column_counts_as_applied() {
        let add = "ALTER TABLE probe_results ADD COLUMN x UInt8";
        let old = "Code: 44, e.displayText() = DB::Exception: Cannot add column x: column with \
                   this name already exists";
        let new = "Code: 15. DB::Exception: Cannot add column `x`: column with this name \
                   already exists. (DUPLICATE_COLUMN)";
        assert!(already_applied(add, old));
        assert!(already_applied(add, new));
        assert!(!already_applied(
            add,
            "Code: 60. Table probe_results doesn't exist"
        ));
        assert!(!already_applied(
            "CREATE TABLE IF NOT EXISTS t (x UInt8)",
            new
        ));
        assert!(!already_applied(
            "ALTER TABLE probe_results DROP COLUMN x",
            new
        ));
    }

    #[test]
    fn statements_without_a_cluster_form_are_refused() {
        let err = cluster_statements("TRUNCATE TABLE commerce_events", "d", "c").unwrap_err();
        assert!(
            err.reason.contains("only `CREATE TABLE IF NOT EXISTS"),
            "{err}"
        );
        assert!(err.statement.starts_with("TRUNCATE TABLE"));
        // an ALTER of a table that is not an event table
        assert!(cluster_statements("ALTER TABLE x DELETE WHERE 1", "d", "c").is_err());
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
    fn replicas_get_the_replicated_engine_with_explicit_path_and_replica() {
        let stmt = "CREATE TABLE IF NOT EXISTS commerce_events (a UInt8) \
                    ENGINE = ReplacingMergeTree(received_at) ORDER BY a";
        assert_eq!(
            replicated_statement(stmt, "db"),
            "CREATE TABLE IF NOT EXISTS commerce_events (a UInt8) ENGINE = \
             ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/commerce_events', \
             '{replica}', received_at) ORDER BY a"
        );
        let plain = "CREATE TABLE IF NOT EXISTS rejected_events_local (a UInt8)\nENGINE = MergeTree\nORDER BY a";
        assert_eq!(
            replicated_statement(plain, "d"),
            "CREATE TABLE IF NOT EXISTS rejected_events_local (a UInt8)\nENGINE = \
             ReplicatedMergeTree('/clickhouse/tables/{shard}/d/rejected_events_local', \
             '{replica}')\nORDER BY a"
        );
        for unchanged in [
            "CREATE TABLE IF NOT EXISTS t AS t_local ENGINE = Distributed('c', 'd', 't_local', rand())",
            "ALTER TABLE probe_results ADD COLUMN x UInt8 DEFAULT 0",
            "RENAME TABLE a TO b",
            "CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a",
        ] {
            assert_eq!(replicated_statement(unchanged, "d"), unchanged);
        }
        // every migration: each MergeTree engine it creates, and nothing else, is replicated
        for m in MIGRATIONS {
            for stmt in statements(m.sql) {
                let replicated = replicated_statement(&stmt, "d");
                let creates_merge_tree =
                    stmt.starts_with(CREATE_TABLE) && stmt.contains("MergeTree");
                assert_eq!(replicated != stmt, creates_merge_tree, "{stmt}");
                assert_eq!(
                    replicated.contains("ENGINE = Replicated"),
                    creates_merge_tree
                );
            }
        }
    }

    #[test]
    fn names_are_quoted_as_string_literals() {
        assert_eq!(quote("it's"), "'it\\'s'");
        assert_eq!(quote("a\\b"), "'a\\\\b'");
    }
}
