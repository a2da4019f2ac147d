//! Reading the lake: the Parquet files open in a current ClickHouse (chdb) with `file()` and
//! `s3()`, their columns are the tables' columns, and their values load into the tables.

use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_files_open_in_a_current_clickhouse_with_the_tables_schema() {
    let env = Env::shared();
    let (_, base) = env.publish(1000, 0, 5).await;
    let date = e2e::utc_date(base);
    let mut worker = env.worker(&[]).await;
    drain(&mut worker).await;
    env.load(1000).await;
    let store = env.store().await;

    // The day's objects as files, one directory per table.
    let dir = tempfile::tempdir().unwrap();
    for kind in ["commerce", "probes"] {
        std::fs::create_dir(dir.path().join(kind)).unwrap();
        for (i, listed) in store
            .list(&format!("archive/{kind}/date={date}/"))
            .await
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let body = store.get(&listed.key).await.unwrap();
            std::fs::write(dir.path().join(kind).join(format!("{i}.parquet")), body).unwrap();
        }
    }
    // An object as the archiver wrote it before 2026-12-06, the event id as its text, beside
    // the same object as it is written now: one glob over both kinds.
    std::fs::create_dir(dir.path().join("mixed")).unwrap();
    let first = std::fs::read(dir.path().join("commerce/0.parquet")).unwrap();
    std::fs::write(dir.path().join("mixed/new.parquet"), &first).unwrap();
    std::fs::write(
        dir.path().join("mixed/old.parquet"),
        with_text_ids(first.into()),
    )
    .unwrap();
    let files = |kind: &str| format!("file('{}/{kind}/*.parquet', Parquet)", dir.path().display());
    let mut statements: Vec<serde_json::Value> = e2e::migration_statements()
        .into_iter()
        .map(|(name, sql)| json!({"name": name, "sql": sql}))
        .collect();
    let migrations = statements.len();
    let checks = [
        ("file columns commerce", format!("DESCRIBE {}", files("commerce"))),
        ("table columns commerce", "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'commerce_events' ORDER BY position".to_owned()),
        ("file columns probes", format!("DESCRIBE {}", files("probes"))),
        ("table columns probes", "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'probe_results' ORDER BY position".to_owned()),
        ("load commerce", format!("INSERT INTO commerce_events SELECT * FROM {}", files("commerce"))),
        ("load probes", format!("INSERT INTO probe_results SELECT * FROM {}", files("probes"))),
        ("commerce figures", FIGURES_COMMERCE.to_owned()),
        ("probe figures", FIGURES_PROBES.to_owned()),
        ("mixed", format!(
            "SELECT concat(toString(count()), ' ', toString(uniqExact(event_id)), ' ', toTypeName(any(event_id))) FROM {}",
            files("mixed")
        )),
        ("one object", format!("SELECT count() FROM file('{}/mixed/new.parquet', Parquet)", dir.path().display())),
        ("s3", format!(
            "SELECT count() FROM s3('{}/{}/archive/*/date={date}/*/*/*.parquet', 'test', 'test', 'Parquet')",
            env.s3_endpoint, env.bucket
        )),
    ];
    statements.extend(
        checks
            .iter()
            .map(|(name, sql)| json!({"name": name, "sql": sql})),
    );
    let (version, results) = e2e::run_on_chdb(&statements);
    let out: Vec<String> = results[migrations..]
        .iter()
        .map(|r| {
            assert_eq!(r["ok"], true, "{r} on chdb {version}");
            r["output"].as_str().unwrap().to_owned()
        })
        .collect();
    // DESCRIBE's lines are `name<TAB>type<TAB>...`: the names, and the types the files declare
    let described = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .map(|l| {
                let mut f = l.split('\t');
                let name = f.next().unwrap_or_default().to_owned();
                (name, f.next().unwrap_or_default().to_owned())
            })
            .collect()
    };
    let names = |text: &str| -> Vec<String> { text.lines().map(str::to_owned).collect() };
    let (commerce, probes) = (described(&out[0]), described(&out[2]));
    let file_names = |d: &[(String, String)]| d.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        file_names(&commerce),
        names(&out[1]),
        "the commerce files have the table's columns, in order"
    );
    assert_eq!(
        file_names(&probes),
        names(&out[3]),
        "the probe files have the table's columns, in order"
    );
    let type_of = |d: &[(String, String)], name: &str| {
        d.iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        type_of(&commerce, "occurred_at"),
        r"DateTime64(3, \'UTC\')", // TabSeparated escapes the quotes
        "{commerce:?}"
    );
    // Parquet's UUID logical type, read as the tables' type
    assert_eq!(type_of(&commerce, "event_id"), "UUID", "{commerce:?}");
    assert_eq!(type_of(&probes, "event_id"), "UUID", "{probes:?}");
    assert_eq!(type_of(&commerce, "price"), "Decimal(18, 9)");
    assert_eq!(type_of(&commerce, "product_id"), "UInt64");
    assert_eq!(type_of(&probes, "status_code"), "UInt16");
    assert_eq!(type_of(&probes, "cpu_load"), "Float64");

    // The figures on the current engine, loaded from the files, are 18.16's from the stream.
    let client = env.clickhouse();
    let on_1816 = |sql: &'static str| {
        let client = client.clone();
        async move {
            let sql = sql
                .replace("commerce_events", "commerce_events FINAL")
                .replace("probe_results", "probe_results FINAL");
            client.query(&sql).fetch_one::<String>().await.unwrap()
        }
    };
    assert_eq!(out[6].trim(), on_1816(FIGURES_COMMERCE).await);
    assert_eq!(out[7].trim(), on_1816(FIGURES_PROBES).await);
    let rows: u64 = out[9].trim().parse().unwrap();
    assert!(rows > 0);
    assert_eq!(
        out[8].trim(),
        format!("{} {rows} UUID", 2 * rows),
        "old objects' text ids and new objects' UUIDs read as the same ids"
    );
    assert_eq!(out[10].trim(), "1000", "s3() reads the whole day");
}

/// A commerce object's bytes with its `event_id` column as the canonical text, as the
/// archiver wrote it before 2026-12-06.
fn with_text_ids(body: bytes::Bytes) -> Vec<u8> {
    use std::sync::Arc;

    use arrow_array::{Array, RecordBatch, StringArray, cast::AsArray};
    use arrow_schema::{DataType, Field, Schema};

    let batches: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let schema = batches[0].schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    assert_eq!(fields[0].name(), "event_id");
    fields[0] = Field::new("event_id", DataType::Utf8, false);
    let schema = Arc::new(Schema::new(fields));
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(Vec::new(), schema.clone(), None).unwrap();
    for batch in &batches {
        let ids = batch.column(0).as_fixed_size_binary();
        let text: StringArray = (0..ids.len())
            .map(|i| Some(uuid::Uuid::from_slice(ids.value(i)).unwrap().to_string()))
            .collect();
        let mut columns = batch.columns().to_vec();
        columns[0] = Arc::new(text);
        writer
            .write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
            .unwrap();
    }
    writer.into_inner().unwrap()
}

/// Figures over every column, as one string, the same on both engines.
const FIGURES_COMMERCE: &str = "SELECT concat(toString(count()), ' ', toString(uniqExact(event_id)), ' ', \
     toString(toInt64(sum(price) * 100)), ' ', toString(sum(quantity)), ' ', toString(sum(product_id + category_id + seller_id + user_id)), ' ', \
     toString(sum(toUInt32(occurred_at))), ' ', toString(sum(toUInt32(received_at))), ' ', \
     toString(sum(toInt8(region) * 10 + toInt8(type))), ' ', toString(uniqExact(store_id, category_code, brand, currency, session_id))) \
     FROM commerce_events";
const FIGURES_PROBES: &str = "SELECT concat(toString(count()), ' ', toString(uniqExact(event_id)), ' ', \
     toString(sum(up + status_code + response_time_ms + network_latency_ms + bandwidth_bytes_per_second)), ' ', \
     toString(round(sum(cpu_load), 6)), ' ', toString(sum(toInt8(vantage_region) + tls_handshake_ms + time_to_first_byte_ms)), ' ', \
     toString(sum(toUInt32(occurred_at))), ' ', toString(uniqExact(store_id, target))) FROM probe_results";
