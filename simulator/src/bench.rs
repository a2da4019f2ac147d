//! What `scripts/bench` measures besides the pipeline itself: the physical references
//! (pipelined XADD of the gateway's entry bytes into Redis; one bulk insert of the
//! consumer's rows into ClickHouse, RowBinary or Native as the consumer sends them; the
//! seed's one INSERT per event) and the received→queryable latency probe. Each prints one
//! JSON object.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use fred::interfaces::{ClientLike, KeysInterface, StreamsInterface};
use futures::StreamExt;
use pipeline::{
    entry::{Fields, encode_batch},
    native::{EventKey, NativeInsert, Spare},
    proto::{
        ingest::{
            Event, PublishRequest, event::Payload, ingest_service_client::IngestServiceClient,
        },
        queue::QueuedBatch,
    },
    rows::{COMMERCE_TABLE, CommerceRow, EventRow, event_row},
    validate::{Accepted, Context, Limits, check_batch},
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::{
    config::{
        BenchClickhouseArgs, BenchFormat, BenchIds, BenchLatencyArgs, BenchRedisArgs, BenchRows,
    },
    fleet::{fleet, scenario_fleet},
    generate::Generator,
    scenario::Scenario,
    send::now_unix,
    truth::quantile_exact,
};

/// Pipelined XADDs of gateway entries' bytes (each a `QueuedBatch` of `batch_size` generated
/// events), as many as `events` needs, `in_flight` at a time on one connection: one entry
/// written again and again, or with `--distinct` every entry its own, generated first.
pub async fn redis(args: &BenchRedisArgs) -> anyhow::Result<String> {
    let batch_size = args.batch_size.max(1);
    let entries = args.events.div_ceil(batch_size as u64);
    let stores = fleet(1, "bench");
    let mut generator = Generator::new(1, now_unix());
    let mut entry = |n: usize| {
        let store = &stores[n % stores.len()];
        Fields::new(
            encode_batch(&QueuedBatch {
                store_id: store.id.clone(),
                region: store.region.to_proto() as i32,
                received_at: Some(prost_types::Timestamp {
                    seconds: now_unix(),
                    nanos: 0,
                }),
                events: generator.batch(store, batch_size),
                ..QueuedBatch::default()
            }),
            None,
        )
    };
    // one entry written `entries` times, or `entries` entries of their own
    let written: Vec<Fields> = if args.distinct {
        (0..entries as usize).map(&mut entry).collect()
    } else {
        vec![entry(0)]
    };
    let client = fred::clients::Client::new(
        fred::types::config::Config::from_url(&args.redis_url)?,
        None,
        None,
        None,
    );
    client.init().await.context("connecting to redis")?;
    if !args.append {
        let _: i64 = client.del(&args.stream_key).await?;
    }
    let started = Instant::now();
    let results: Vec<Result<String, fred::error::Error>> = futures::stream::iter(0..entries)
        .map(|n| {
            let fields = &written[n as usize % written.len()];
            client.xadd(&*args.stream_key, false, None, "*", fields.pairs())
        })
        .buffer_unordered(args.in_flight.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    if !args.keep {
        let _: i64 = client.del(&args.stream_key).await?;
    }
    if let Some(err) = results.into_iter().find_map(Result::err) {
        anyhow::bail!("xadd failed: {err}");
    }
    let events = entries * batch_size as u64;
    let bytes: u64 = (0..entries)
        .map(|n| {
            let fields = &written[n as usize % written.len()];
            fields.batch.as_ref().map_or(0, |b| b.len() as u64)
        })
        .sum();
    Ok(json!({
        "entries": entries,
        "events": events,
        "entry_bytes": bytes / entries.max(1),
        "seconds": seconds,
        "entries_per_second": entries as f64 / seconds,
        "events_per_second": events as f64 / seconds,
        "bytes_per_second": bytes as f64 / seconds,
    })
    .to_string())
}

/// The events of `events` that pass the rules, as rows are made only of those. The
/// simulated clock runs ahead of the wall clock, so the future skew is widened.
fn valid(events: Vec<Event>) -> Vec<Accepted> {
    let limits = Limits {
        max_future_skew: Duration::from_secs(86_400),
        ..Limits::default()
    };
    let ctx = Context {
        limits: &limits,
        now_unix: now_unix(),
        sender: None,
    };
    check_batch(&ctx, events).accepted
}

/// The event ids of the ClickHouse reference's rows, by [`BenchIds`].
pub struct IdSource {
    ids: BenchIds,
    /// Seeded, so that two runs insert the same ids
    rng: ChaCha8Rng,
    /// `RandomSorted`'s ids, drawn up front and sorted
    sorted: Vec<uuid::Uuid>,
}

impl IdSource {
    /// The ids of `rows` rows.
    pub fn new(ids: BenchIds, rows: usize) -> IdSource {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let sorted = if ids == BenchIds::RandomSorted {
            let mut sorted: Vec<_> = (0..rows).map(|_| random_id(&mut rng)).collect();
            sorted.sort_unstable_by_key(|id| EventKey::new(0, id));
            sorted
        } else {
            Vec::new()
        };
        IdSource { ids, rng, sorted }
    }

    /// The id of the `i`-th row: ascending with `i` (in ClickHouse's UUID order too: only
    /// the last 8 bytes differ), a random version-4 UUID (`Random`, `RandomEachSorted`), or
    /// the `i`-th of the random ones in ClickHouse's order of a UUID
    /// (`pipeline::native::EventKey`, on one day).
    pub fn id(&mut self, i: usize) -> uuid::Uuid {
        match self.ids {
            BenchIds::Sequential => {
                uuid::Uuid::from_u128(0xbe9c_0000_0000_4000_8000_0000_0000_0000 | i as u128)
            }
            BenchIds::Random | BenchIds::RandomEachSorted => random_id(&mut self.rng),
            BenchIds::RandomSorted => self.sorted[i % self.sorted.len().max(1)],
        }
    }
}

/// A version-4 UUID drawn from `rng`.
fn random_id(rng: &mut ChaCha8Rng) -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// A bulk insert of `rows` commerce rows (RowBinary, or Native blocks as the consumer sends
/// them, by `args.format`; one insert, or one per `args.insert_rows` as the consumer's
/// flushes), then `single_inserts` one-row RowBinary inserts
/// (one HTTP request each, the seed's one-INSERT-per-event approach), into a scratch
/// database with the pipeline's schema. The rows' ids are `args.ids`: sequential ids come
/// sorted by the key, random ones (seeded, so runs compare) must be sorted by ClickHouse as
/// the pipeline's are.
pub async fn clickhouse(args: &BenchClickhouseArgs) -> anyhow::Result<String> {
    let server = clickhouse::Client::default()
        .with_url(&args.clickhouse_url)
        .with_compression(args.compression.client())
        .with_validation(false);
    server
        .query(&format!("DROP DATABASE IF EXISTS `{}`", args.database))
        .execute()
        .await
        .context("dropping the scratch database")?;
    pipeline::schema::migrate(&server, &args.database).await?;
    let client = server.clone().with_database(&args.database);

    let pool = reference_pool(args)?;
    anyhow::ensure!(!pool.is_empty(), "no generated event passes the rules");
    let received = now_unix() as u32;
    let mut ids = IdSource::new(args.ids, args.rows);
    let mut row = |i: usize| -> CommerceRow<'_> {
        let EventRow::Commerce(mut row) = event_row(&pool[i % pool.len()], received) else {
            unreachable!("the pool holds commerce events only")
        };
        row.event_id = ids.id(i);
        row
    };

    let server_before = query_thread_micros(&server).await?;
    let client_before = own_cpu_seconds();
    let started = Instant::now();
    // the consumer's way: one insert per flush, the blocks' buffers kept between them
    let spare = Spare::default();
    let per_insert = args.insert_rows.unwrap_or(args.rows).max(1);
    for first in (0..args.rows).step_by(per_insert) {
        let rows = first..args.rows.min(first + per_insert);
        match args.format {
            BenchFormat::Rowbinary => {
                let mut insert = client.insert::<CommerceRow<'_>>(COMMERCE_TABLE).await?;
                for i in rows {
                    insert.write(&row(i)).await?;
                }
                insert.end().await?;
            }
            BenchFormat::Native => {
                let mut insert = NativeInsert::with_compression::<CommerceRow<'_>>(
                    &client,
                    COMMERCE_TABLE,
                    args.compression,
                )
                .with_block(spare.take::<CommerceRow<'_>>())
                .with_block_rows(args.block_rows);
                // random ids as they come, for the server to sort: the reference of an
                // insert's cost before the consumer sorted its inserts (#19)
                if args.ids == BenchIds::Random {
                    insert = insert.in_appended_order();
                }
                for i in rows {
                    insert.write(&row(i)).await?;
                }
                spare.put(insert.finish().await?);
            }
        }
    }
    let bulk_seconds = started.elapsed().as_secs_f64();
    let client_cpu = own_cpu_seconds() - client_before;
    // the counter query itself is a query too: a few hundred µs, against the bulk's seconds
    let server_cpu = (query_thread_micros(&server).await? - server_before) as f64 / 1e6;
    let (loaded, loaded_stores): (u64, u64) = client
        .query(&format!(
            "SELECT count(), uniqExact(store_id) FROM {COMMERCE_TABLE}"
        ))
        .fetch_one()
        .await?;

    let started = Instant::now();
    for i in 0..args.single_inserts {
        let mut insert = client.insert::<CommerceRow<'_>>(COMMERCE_TABLE).await?;
        insert.write(&row(i)).await?;
        insert.end().await?;
    }
    let single_seconds = started.elapsed().as_secs_f64();
    server
        .query(&format!("DROP DATABASE IF EXISTS `{}`", args.database))
        .execute()
        .await?;
    Ok(json!({
        "ids": clap::ValueEnum::to_possible_value(&args.ids).map(|v| v.get_name().to_owned()),
        "rows_from": clap::ValueEnum::to_possible_value(&args.rows_from)
            .map(|v| v.get_name().to_owned()),
        "pool_rows": pool.len(),
        "bulk_rows": args.rows,
        "loaded_rows": loaded,
        "loaded_stores": loaded_stores,
        "bulk_seconds": bulk_seconds,
        "bulk_rows_per_second": args.rows as f64 / bulk_seconds,
        "format": clap::ValueEnum::to_possible_value(&args.format).map(|v| v.get_name().to_owned()),
        "compression": clap::ValueEnum::to_possible_value(&args.compression)
            .map(|v| v.get_name().to_owned()),
        "bulk_query_cpu_microseconds_per_row": server_cpu / args.rows.max(1) as f64 * 1e6,
        "bulk_client_cpu_microseconds_per_row": client_cpu / args.rows.max(1) as f64 * 1e6,
        "single_inserts": args.single_inserts,
        "single_seconds": single_seconds,
        "single_rows_per_second": (args.single_inserts > 0)
            .then(|| args.single_inserts as f64 / single_seconds),
    })
    .to_string())
}

/// The distinct commerce events of the ClickHouse reference, by `args.rows_from`: for
/// `fleet`, generated as `simulator run` generates its load (the default scenario at its
/// own clock, which `scripts/bench` runs faster, so only the events' times differ; the
/// fleet's stores in turn, `args.batch` events each; probes left out as they go to the
/// other table).
fn reference_pool(args: &BenchClickhouseArgs) -> anyhow::Result<Vec<Accepted>> {
    match args.rows_from {
        BenchRows::OneStore => {
            let stores = fleet(1, "bench");
            Ok(valid(
                Generator::new(2, now_unix()).commerce_batch(&stores[0], 10_000),
            ))
        }
        BenchRows::Fleet => {
            let stores = fleet(args.stores_per_region.max(1), "bench");
            let mut generator = Generator::new(42, now_unix());
            let rows = args.pool_rows.max(1);
            let mut pool = Vec::with_capacity(rows);
            while pool.len() < rows {
                // a turn of every store: one that adds nothing would add nothing for ever
                let before = pool.len();
                for store in &stores {
                    if pool.len() >= rows {
                        break;
                    }
                    let events = generator.batch(store, args.batch.max(1));
                    pool.extend(
                        valid(events)
                            .into_iter()
                            .filter(|a| matches!(a.event().payload, Some(Payload::Commerce(_)))),
                    );
                }
                anyhow::ensure!(
                    pool.len() > before,
                    "a turn of the fleet's {} stores generated no valid commerce event",
                    stores.len()
                );
            }
            pool.truncate(rows);
            Ok(pool)
        }
    }
}

/// The CPU time of the server's query threads so far (`system.events`, µs): inserts,
/// not background merges.
async fn query_thread_micros(server: &clickhouse::Client) -> anyhow::Result<u64> {
    Ok(server
        .query(
            "SELECT toUInt64(sum(value)) FROM system.events \
             WHERE event IN ('UserTimeMicroseconds', 'SystemTimeMicroseconds')",
        )
        .fetch_one::<u64>()
        .await?)
}

/// This process's CPU time so far (user + system, /proc/self/stat at 100 ticks a second).
fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
            let ticks: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((ticks + stime) as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Id {
    id: String,
}

/// Publishes one marker event every `interval_ms` for `duration` seconds and polls
/// ClickHouse every 20 ms for the markers not yet seen; a marker's latency runs from just
/// before its Publish to the first poll that finds it, so it includes the gateway, Redis,
/// the consumer's batching and the insert, plus up to one poll interval. Beside the
/// quantiles, `timeline_ms` has one `[sent, accepted, queryable]` triple per marker, in ms:
/// when it was sent (from the start), how long its Publish took, and its latency (`null` if
/// refused or never seen), so that a stall can be placed in time and split between the
/// gateway's side (Publish) and the consumer's (queued → queryable).
pub async fn latency(args: &BenchLatencyArgs) -> anyhow::Result<String> {
    let scenario = Scenario::load(args.fleet.scenario.as_deref())?;
    let stores = scenario_fleet(
        &scenario,
        args.fleet.stores_per_region,
        &args.fleet.token_secret,
    );
    let store = stores.first().context("the fleet has no stores")?.clone();
    let channel = tonic::transport::Channel::from_shared(args.gateway.clone())?.connect_lazy();
    let mut gateway = IngestServiceClient::new(channel);
    let client = clickhouse::Client::default()
        .with_url(&args.clickhouse_url)
        .with_database(&args.database)
        .with_validation(false);
    // a marker's id → when it was sent and its index
    let pending: Arc<Mutex<HashMap<String, (Instant, usize)>>> = Arc::default();
    // (index, latency in ms) of each marker seen
    let latencies: Arc<Mutex<Vec<(usize, u32)>>> = Arc::default();

    let poll_error: Arc<Mutex<Option<String>>> = Arc::default();
    let poller = {
        let (pending, latencies, poll_error) =
            (pending.clone(), latencies.clone(), poll_error.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let ids: Vec<String> = pending.lock().expect("lock").keys().cloned().collect();
                if ids.is_empty() {
                    continue;
                }
                // the primary key starts (day, event_id): this reads a few granules, not the
                // table; ids are the simulator's own UUIDs, so nothing needs quoting
                let list = ids
                    .iter()
                    .map(|id| format!("toUUID('{id}')"))
                    .collect::<Vec<_>>()
                    .join(",");
                let sql = format!(
                    "SELECT toString(event_id) AS id FROM {COMMERCE_TABLE} \
                     WHERE toDate(occurred_at) = toDate(now()) AND event_id IN ({list})"
                );
                let found = match client.query(&sql).fetch_all::<Id>().await {
                    Ok(found) => found,
                    Err(err) => {
                        // kept, so that a query that cannot work shows in the result instead
                        // of every marker looking lost
                        *poll_error.lock().expect("lock") = Some(err.to_string());
                        continue;
                    }
                };
                let now = Instant::now();
                let mut pending = pending.lock().expect("lock");
                for Id { id } in found {
                    if let Some((sent, index)) = pending.remove(&id) {
                        latencies
                            .lock()
                            .expect("lock")
                            .push((index, (now - sent).as_millis() as u32));
                    }
                }
            }
        })
    };

    let mut generator = Generator::new(3, now_unix());
    let started = Instant::now();
    // per marker: sent (ms from the start) and how long its Publish took (None if refused)
    let mut sends: Vec<(u64, Option<u64>)> = Vec::new();
    while started.elapsed() < Duration::from_secs(args.duration) {
        let mut event = generator.commerce_batch(&store, 1).remove(0);
        event.occurred_at = Some(prost_types::Timestamp {
            seconds: now_unix(),
            nanos: 0,
        });
        if let Some(Payload::Commerce(c)) = &mut event.payload {
            c.session_id = "bench-latency-marker".into();
        }
        let id = event.event_id.clone();
        let mut request = tonic::Request::new(PublishRequest {
            sequence: 0,
            events: vec![event],
            all_or_nothing: true,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", store.token).parse()?);
        let sent = Instant::now();
        pending
            .lock()
            .expect("lock")
            .insert(id.clone(), (sent, sends.len()));
        let accepted = if gateway.publish(request).await.is_err() {
            pending.lock().expect("lock").remove(&id);
            None
        } else {
            Some(sent.elapsed().as_millis() as u64)
        };
        sends.push(((sent - started).as_millis() as u64, accepted));
        tokio::time::sleep_until(
            (started + Duration::from_millis(args.interval_ms * sends.len() as u64)).into(),
        )
        .await;
    }
    let drain = Instant::now();
    while !pending.lock().expect("lock").is_empty() && drain.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    poller.abort();
    let lost = pending.lock().expect("lock").len();
    let by_marker = latencies.lock().expect("lock").clone();
    let mut queryable: Vec<Option<u32>> = vec![None; sends.len()];
    for &(index, ms) in &by_marker {
        queryable[index] = Some(ms);
    }
    let timeline: Vec<_> = sends
        .iter()
        .zip(&queryable)
        .map(|(&(sent, accepted), &latency)| json!([sent, accepted, latency]))
        .collect();
    let mut seen: Vec<u32> = by_marker.iter().map(|&(_, ms)| ms).collect();
    seen.sort_unstable();
    let refused = sends
        .iter()
        .filter(|(_, accepted)| accepted.is_none())
        .count();
    Ok(json!({
        "markers": sends.len(),
        "refused": refused,
        "not_seen_within_30s": lost,
        "interval_ms": args.interval_ms,
        "p50_ms": quantile_exact(&seen, 0.5),
        "p99_ms": quantile_exact(&seen, 0.99),
        "max_ms": seen.last(),
        "last_poll_error": poll_error.lock().expect("lock").clone(),
        "timeline_ms": timeline,
    })
    .to_string())
}
