//! `pipeline::native` against the real ClickHouse 18.16: the same rows of every event
//! table, inserted as Native blocks into one database and as RowBinary (serde rows through
//! `clickhouse::insert::Insert`, as the consumer sent them before #19) into another, read
//! back identical, the Native blocks sent compressed with LZ4 and uncompressed
//! (`CLICKHOUSE_COMPRESSION`), by the client, or by `NativeInsert::with_compression` in
//! frames of its own (LZ4, or stored as they are). Values at the edges of their types, text
//! longer than one length byte and a row larger than one sent piece included.

use pipeline::{
    config::Compression,
    native::{NativeInsert, NativeRow},
    rows::{
        COMMERCE_TABLE, CommerceRow, CommerceSource, PROBE_TABLE, ProbeRow, REJECTED_TABLE,
        RejectedRow,
    },
    schema,
    view::{CommerceView, MoneyView},
};

/// A migrated database of its own on the shared server, reached with `compression`.
async fn database(prefix: &str, compression: clickhouse::Compression) -> clickhouse::Client {
    let server = clickhouse::Client::default()
        .with_url(testkit::shared_clickhouse().url())
        .with_compression(compression)
        .with_validation(false);
    let db = testkit::unique_name(prefix);
    schema::migrate(&server, &db).await.unwrap();
    server.with_database(&db)
}

/// `$rows` (of type `$row`) into `$table` both ways, Native compressed with LZ4 and not
/// (`CLICKHOUSE_COMPRESSION`); the tables' contents, as text, in one order: the Native
/// ones, then the RowBinary one. A macro: the crate's `Insert<T>` takes rows of
/// `T::Value<'_>`, which a function generic over the borrowed row types cannot name.
macro_rules! both_ways {
    ($table:expr, $rows:expr, $row:ty) => {{
        let columns: Vec<&str> = <$row as NativeRow>::COLUMNS
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let sql = format!("SELECT * FROM {} ORDER BY {}", $table, columns.join(", "));
        let mut native = Vec::new();
        // the client's compression, or the insert's own whatever the client's (the
        // consumer's: LZ4 frames made by `pipeline::native`)
        for (compression, own) in [
            (clickhouse::Compression::Lz4, None),
            (clickhouse::Compression::None, None),
            (clickhouse::Compression::None, Some(Compression::Lz4)),
            (clickhouse::Compression::Lz4, Some(Compression::None)),
        ] {
            let client = database("native", compression).await;
            let insert = match own {
                None => NativeInsert::new::<$row>(&client, $table),
                Some(own) => NativeInsert::with_compression::<$row>(&client, $table, own),
            };
            // blocks of 7 rows: several blocks, and the last one short
            let mut insert = insert.with_block_rows(7);
            for row in $rows {
                insert.write(row).await.unwrap();
            }
            insert.end().await.unwrap();
            native.push(read(&client, &sql).await);
        }

        let rowbinary = database("rowbinary", clickhouse::Compression::Lz4).await;
        let mut insert = rowbinary.insert::<$row>($table).await.unwrap();
        for row in $rows {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
        (native, read(&rowbinary, &sql).await)
    }};
}

/// A query of every `commerce_events` row, in the order of all its columns.
fn all_commerce_rows() -> String {
    format!(
        "SELECT * FROM {COMMERCE_TABLE} ORDER BY {}",
        CommerceRow::COLUMNS
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The result of `sql` as TabSeparated text.
async fn read(client: &clickhouse::Client, sql: &str) -> String {
    let text = client
        .query(sql)
        .fetch_bytes("TabSeparated")
        .unwrap()
        .collect()
        .await
        .unwrap();
    String::from_utf8_lossy(&text).into_owned()
}

/// Text of `len` bytes, not all ASCII.
fn text(len: usize) -> String {
    "é-x".chars().cycle().take(len).collect()
}

#[tokio::test]
async fn native_and_rowbinary_inserts_of_the_same_rows_read_back_the_same() {
    let (long, huge) = (text(200), text(300 * 1024));
    // distinct ids, so that no merge collapses rows on one side and not the other
    let id = |i: usize| match i {
        0 => uuid::Uuid::nil(),
        1 => uuid::Uuid::max(),
        _ => uuid::Uuid::from_u64_pair((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), i as u64),
    };
    let commerce: Vec<CommerceRow<'_>> = (0..40)
        .map(|i| CommerceRow {
            event_id: id(i),
            occurred_at: [0, 1_768_435_200, u32::MAX - 1][i % 3] + (i as u32 % 2),
            // runs of ten rows received at once, written straight from views below
            received_at: 1_768_435_300 + (i / 10) as u32,
            region: 1 + (i % 3) as i8,
            store_id: ["", "store-1", &long][i % 3],
            r#type: 1 + (i % 4) as i8,
            product_id: [0, 7, u64::MAX][i % 3],
            category_id: i as u64,
            category_code: if i == 5 { &huge } else { "electronics.phone" },
            brand: ["acme", "", "日本"][i % 3],
            seller_id: u64::MAX - i as u64,
            currency: "EUR",
            price: [0, 19_990_000_000, -1, i64::MAX, i64::MIN][i % 5],
            quantity: [0, 1, u32::MAX][i % 3],
            user_id: i as u64 * 1_000_003,
            session_id: ["s\t1", "s\n2", ""][i % 3],
        })
        .collect();
    let (native, rowbinary) = both_ways!(COMMERCE_TABLE, &commerce, CommerceRow<'_>);
    for native in &native {
        assert_eq!(native.lines().count(), commerce.len());
        assert!(*native == rowbinary, "commerce_events differ");
    }
    // the same rows written straight from views, a column at a time (the consumer's
    // `NativeInsert::write_commerce`), each run of ten across blocks of seven
    let views: Vec<CommerceView<'_>> = commerce
        .iter()
        .map(|r| CommerceView {
            r#type: r.r#type.into(),
            product_id: r.product_id,
            category_id: r.category_id,
            category_code: r.category_code,
            brand: r.brand,
            seller_id: r.seller_id,
            price: Some(MoneyView {
                currency_code: r.currency,
                units: r.price / 1_000_000_000,
                nanos: (r.price % 1_000_000_000) as i32,
            }),
            quantity: r.quantity,
            user_id: r.user_id,
            session_id: r.session_id,
        })
        .collect();
    let sources: Vec<CommerceSource<'_, '_>> = commerce
        .iter()
        .zip(&views)
        .map(|(r, c)| CommerceSource {
            event_id: r.event_id,
            occurred_at: r.occurred_at,
            region: r.region,
            store_id: r.store_id,
            commerce: c,
        })
        .collect();
    let client = database("straight", clickhouse::Compression::None).await;
    let mut insert = NativeInsert::with_compression::<CommerceRow<'_>>(
        &client,
        COMMERCE_TABLE,
        Compression::Lz4,
    )
    .with_block_rows(7);
    for (run, rows) in sources.chunks(10).zip(commerce.chunks(10)) {
        insert
            .write_commerce(run, rows[0].received_at)
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
    let sql = all_commerce_rows();
    assert!(
        read(&client, &sql).await == rowbinary,
        "straight from views differs"
    );

    let probes: Vec<ProbeRow<'_>> = (0..20)
        .map(|i| ProbeRow {
            event_id: id(i),
            occurred_at: 1_768_435_200 + i as u32,
            received_at: 1_768_435_201,
            region: 1 + (i % 3) as i8,
            store_id: "store-2",
            target: ["https://shop.example/", "", &long][i % 3],
            up: (i % 2) as u8,
            status_code: [0, 200, u16::MAX][i % 3],
            response_time_ms: i as u32,
            network_latency_ms: u32::MAX,
            bandwidth_bytes_per_second: u64::MAX / (i as u64 + 1),
            cpu_load: [0.0, 0.25, -1.5e300, f64::INFINITY, f64::MIN_POSITIVE][i % 5],
            vantage_region: (i % 4) as i8,
            tls_handshake_ms: 3,
            time_to_first_byte_ms: i as u32 * 7,
        })
        .collect();
    let (native, rowbinary) = both_ways!(PROBE_TABLE, &probes, ProbeRow<'_>);
    for native in &native {
        assert_eq!(native.lines().count(), probes.len());
        assert_eq!(*native, rowbinary, "probe_results differ");
    }

    let raw: &[&[u8]] = &[b"", b"\x00\xff\xfe\t\n", long.as_bytes()];
    let rejected: Vec<RejectedRow<'_>> = (0..12)
        .map(|i| RejectedRow {
            event_id: ["", "not-a-uuid", "f81d4fae-7dec-41d0-a765-00a0c91e6bf6"][i % 3],
            occurred_at: 0,
            received_at: 1_768_435_200 + i as u32,
            region: (i % 4) as i8,
            store_id: "store-3",
            source: 1 + (i % 2) as i8,
            reason: &long,
            raw: raw[i % raw.len()],
            delivery_count: i as u32,
            stream_entry_id: "1768435200000-0",
        })
        .collect();
    let (native, rowbinary) = both_ways!(REJECTED_TABLE, &rejected, RejectedRow<'_>);
    for native in &native {
        assert_eq!(native.lines().count(), rejected.len());
        assert_eq!(*native, rowbinary, "rejected_events differ");
    }
}

#[tokio::test]
async fn an_insert_without_rows_sends_nothing() {
    // a request to a port nobody listens on would fail
    let nowhere = clickhouse::Client::default().with_url("http://127.0.0.1:9");
    NativeInsert::new::<CommerceRow<'_>>(&nowhere, COMMERCE_TABLE)
        .end()
        .await
        .unwrap();
}

/// A stored frame (`CLICKHOUSE_COMPRESSION=none`, method 0x02) as `pipeline::native` makes
/// it, around `data`.
fn stored_frame(data: &[u8]) -> Vec<u8> {
    let mut frame = vec![0; 16];
    frame.push(0x02);
    frame.extend_from_slice(&(9 + data.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(data.len() as u32).to_le_bytes());
    frame.extend_from_slice(data);
    let checksum = cityhash_rs::cityhash_102_128(&frame[16..]).rotate_right(64);
    frame[..16].copy_from_slice(&checksum.to_le_bytes());
    frame
}

#[tokio::test]
async fn the_server_checks_each_stored_frame_against_its_checksum() {
    let plain = database("stored", clickhouse::Compression::None).await;
    plain
        .query("CREATE TABLE one (x UInt8) ENGINE = Memory")
        .execute()
        .await
        .unwrap();
    // an insert's body is frames; a query's body is its text
    let client = plain.clone().with_setting("decompress", "1");
    // one column `x UInt8`, one row: 42
    let block = b"\x01\x01\x01x\x05UInt8\x2a";
    let send = |body: Vec<u8>| {
        let client = client.clone();
        async move {
            let mut insert = client.insert_formatted_with("INSERT INTO one FORMAT Native");
            insert.send(body.into()).await?;
            insert.end().await
        }
    };
    send(stored_frame(block)).await.unwrap();
    let mut corrupted = stored_frame(block);
    *corrupted.last_mut().unwrap() = 43;
    let refused = send(corrupted).await.unwrap_err().to_string();
    assert!(refused.contains("Checksum doesn't match"), "{refused}");
    let rows: Vec<u8> = plain.query("SELECT x FROM one").fetch_all().await.unwrap();
    assert_eq!(rows, [42], "only the intact frame's row");
}

#[tokio::test]
async fn keyed_inserts_arrive_in_the_tables_order() {
    // ids in no order (a multiplicative hash) on days of two months (a part each), ids
    // shared by stores, and copies
    let hash = |i: u32| u128::from(i + 1).wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15);
    let stores = ["store-b", "store-a", "", "store-a0"];
    let mut commerce = Vec::new();
    let mut probes = Vec::new();
    for i in 0..3000u32 {
        let id = uuid::Builder::from_random_bytes(hash(i).to_be_bytes()).into_uuid();
        // 2026-01-30 to 2026-02-02
        let occurred_at = 1_769_731_200 + ((hash(i) >> 70) % (4 * 86_400)) as u32;
        let copies: &[&str] = if i % 100 == 0 {
            &stores
        } else {
            &stores[i as usize % 3..][..1]
        };
        for store in copies {
            commerce.push(CommerceRow {
                event_id: id,
                occurred_at,
                received_at: occurred_at + 1,
                region: 1,
                store_id: store,
                r#type: 1,
                product_id: i.into(),
                category_id: 3,
                category_code: "electronics.phone",
                brand: "acme",
                seller_id: 7,
                currency: "EUR",
                price: 1_000_000_000,
                quantity: 1,
                user_id: u64::from(i % 1000),
                session_id: "f81d4fae-7dec-41d0-a765-00a0c91e6bf6",
            });
        }
        if i % 10 == 0 {
            probes.push(ProbeRow {
                event_id: id,
                occurred_at,
                received_at: occurred_at + 1,
                region: 2,
                store_id: copies[0],
                target: "https://shop.example/",
                up: 1,
                status_code: 200,
                response_time_ms: i,
                network_latency_ms: 3,
                bandwidth_bytes_per_second: 1000,
                cpu_load: 0.5,
                vantage_region: 0,
                tls_handshake_ms: 1,
                time_to_first_byte_ms: 2,
            });
        }
    }

    for keyed in [true, false] {
        for (table, rows) in [
            (COMMERCE_TABLE, commerce.len()),
            (PROBE_TABLE, probes.len()),
        ] {
            let query_id = testkit::unique_name("keyed");
            let client = database("keyed", clickhouse::Compression::None)
                .await
                .with_setting("log_queries", "1")
                .with_setting("query_id", &query_id);
            // sent in chunks of 500 rows, which ClickHouse gathers into one block a month
            let insert = if table == COMMERCE_TABLE {
                NativeInsert::with_compression::<CommerceRow<'_>>(&client, table, Compression::None)
            } else {
                NativeInsert::with_compression::<ProbeRow<'_>>(&client, table, Compression::None)
            }
            .with_block_rows(500);
            let mut insert = if keyed {
                insert
            } else {
                insert.in_appended_order()
            };
            if table == COMMERCE_TABLE {
                for row in &commerce {
                    insert.write(row).await.unwrap();
                }
            } else {
                for row in &probes {
                    insert.write(row).await.unwrap();
                }
            }
            insert.end().await.unwrap();
            let (blocks, already_sorted) = testkit::shared_clickhouse()
                .parts_written(&query_id, "INSERT")
                .unwrap();
            if keyed {
                assert_eq!(blocks, 2, "{table}: one part per month");
                assert_eq!(already_sorted, 2, "{table}: ClickHouse sorted none of them");
            } else {
                assert_eq!((blocks, already_sorted), (2, 0), "{table}: it sorted both");
            }
            let count: u64 = client
                .query(&format!("SELECT count() FROM {table}"))
                .fetch_one()
                .await
                .unwrap();
            assert_eq!(count, rows as u64, "{table}");
        }
    }
}

#[tokio::test]
async fn blocks_sent_as_whole_stored_frames_read_back_as_lz4_frames_do() {
    // 70,000 rows: a block of BLOCK_ROWS and a short one, whose columns (a MiB of ids, texts
    // past one length byte) each go out as one stored frame made in place, far above the
    // 256 KiB chunks LZ4 frames are made of
    let session: String = "0123456789abcdef".chars().cycle().take(200).collect();
    let commerce: Vec<CommerceRow<'_>> = (0..70_000u32)
        .map(|i| CommerceRow {
            event_id: uuid::Uuid::from_u128(u128::from(i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            occurred_at: 1_768_435_200 + i,
            received_at: 1_768_435_201 + i,
            region: 1 + (i % 3) as i8,
            store_id: ["store-a", "store-b"][i as usize % 2],
            r#type: 1 + (i % 4) as i8,
            product_id: u64::from(i),
            category_id: u64::from(i % 97),
            category_code: "electronics.phone",
            brand: "acme",
            seller_id: u64::from(i % 13),
            currency: "EUR",
            price: i64::from(i) * 1_000_000_007,
            quantity: i % 5 + 1,
            user_id: u64::MAX - u64::from(i),
            session_id: &session[..i as usize % 200],
        })
        .collect();
    let sql = all_commerce_rows();
    let mut read_back = Vec::new();
    for own in [Compression::None, Compression::Lz4] {
        let client = database("whole", clickhouse::Compression::None).await;
        let mut insert =
            NativeInsert::with_compression::<CommerceRow<'_>>(&client, COMMERCE_TABLE, own);
        for row in &commerce {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
        read_back.push(read(&client, &sql).await);
    }
    assert_eq!(read_back[0].lines().count(), commerce.len());
    assert!(read_back[0] == read_back[1], "stored and LZ4 frames differ");
}
