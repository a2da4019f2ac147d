//! `reporter serve` brings every day of its look-back window up to date: it writes the days
//! it missed, retries a failing day with backoff, rewrites a day whose data grew after its
//! manifest (late events) and records which run it superseded, keeps the closed days'
//! rollups and the closed hours' rollups built between passes, and stops on shutdown.

use std::{future, time::Duration};

use clickhouse::Client;
use pipeline::retry::Backoff;
use reporter::{
    manifest::Manifest,
    run::RunOptions,
    schedule::{CatchUp, Due, catch_up, due_days, serve},
    store::ReportStore,
};
use time::Date;

use crate::fixture::{self, DAY, Sale};

fn fast(lookback_days: u32) -> CatchUp {
    CatchUp {
        lookback_days,
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        rollup_interval: Duration::from_millis(100),
    }
}

/// One pass over one server, as `reporter serve` makes it with one `CLICKHOUSE_URL`.
async fn pass(
    client: &Client,
    store: &ReportStore,
    today: Date,
    options: &RunOptions,
    lookback_days: u32,
) -> bool {
    let clients = std::slice::from_ref(client);
    catch_up(
        clients,
        store,
        today,
        options,
        fast(lookback_days),
        future::pending(),
    )
    .await
}

fn manifest(bucket: &str, day: Date) -> Option<Manifest> {
    let key = format!("reports/{day}/manifest.json");
    fixture::keys(bucket)
        .contains(&key)
        .then(|| serde_json::from_slice(&testkit::shared_s3().get_object(bucket, &key).unwrap()))
        .map(Result::unwrap)
}

#[tokio::test]
async fn serve_stops_when_shutdown_completes() {
    let client = fixture::database().await;
    let (bucket, store) = fixture::store().await;
    let at = (time::OffsetDateTime::now_utc() - time::Duration::minutes(5)).time();
    let options = RunOptions::default();
    let run = serve(
        std::slice::from_ref(&client),
        &store,
        at,
        &options,
        fast(8),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
        },
    );
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("serve returns once shutdown completes");
    assert!(
        fixture::keys(&bucket).is_empty(),
        "an empty database has no day to report"
    );
}

#[tokio::test]
async fn missed_days_are_caught_up_once() {
    let client = fixture::seeded().await;
    let (bucket, store) = fixture::store().await;
    let options = fixture::options();
    let today = DAY + time::Duration::days(2);
    // the data: DAY - 3 (unsold window), DAY - 1 and DAY; each day's reports read its
    // previous day and the 7 days of the unsold window
    assert!(pass(&client, &store, today, &options, 8).await);
    for back in 1..=5 {
        let day = today - time::Duration::days(back);
        let m = manifest(&bucket, day).unwrap_or_else(|| panic!("{day} was not caught up"));
        assert_eq!(m.supersedes, None);
    }
    let before = today - time::Duration::days(6);
    assert!(manifest(&bucket, before).is_none(), "{before} has no data");
    // a second pass finds nothing to do
    let due = due_days(&client, &store, today, &options, 8).await.unwrap();
    assert!(due.is_empty(), "{due:?}");
}

/// `CLICKHOUSE_URL` lists the replicas, and the first is unreachable: the first attempt
/// fails on it, the next moves to the second, and the pass completes there.
#[tokio::test]
async fn a_pass_moves_to_the_next_replica_when_one_is_unreachable() {
    let client = fixture::seeded().await;
    let (bucket, store) = fixture::store().await;
    let options = fixture::options();
    let today = DAY + time::Duration::days(1);
    let dead = client
        .clone()
        .with_url(format!("http://127.0.0.1:{}", testkit::free_port()));
    assert!(
        catch_up(
            &[dead.clone(), client.clone()],
            &store,
            today,
            &options,
            fast(1),
            future::pending()
        )
        .await
    );
    assert!(
        manifest(&bucket, DAY).is_some(),
        "{DAY} was written through the second replica"
    );

    // `reporter run` does the same within one run, and tells a dead replica from a lone one
    let written = reporter::run::run_on_replicas(&[dead.clone(), client], &store, DAY, &options)
        .await
        .unwrap();
    assert_eq!(written.report.date, DAY.to_string());
    let alone = reporter::run::run_on_replicas(&[dead], &store, DAY, &options).await;
    assert!(
        matches!(&alone, Err(reporter::error::Error::Query(e)) if pipeline::retry::clickhouse_unreachable(&e.source)),
        "{alone:?}"
    );
    assert!(matches!(
        reporter::run::run_on_replicas(&[], &store, DAY, &options).await,
        Err(reporter::error::Error::NoClickHouse)
    ));
}

#[tokio::test]
async fn a_failing_day_is_retried_with_backoff_until_it_succeeds() {
    let client = fixture::seeded().await;
    // the bucket does not exist yet: every upload fails until it does
    let bucket = testkit::unique_bucket();
    let store = fixture::store_for(&bucket).await;
    let options = fixture::options();
    let pass = tokio::spawn({
        let client = client.clone();
        let store = store.clone();
        let options = options.clone();
        async move { pass(&client, &store, DAY + time::Duration::days(1), &options, 1).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!pass.is_finished(), "the pass gave up on the failing day");
    testkit::shared_s3().create_bucket(&bucket).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(60), pass)
        .await
        .expect("the pass finishes once uploads work")
        .unwrap();
    assert!(done);
    assert!(manifest(&bucket, DAY).is_some());
}

/// The purchases of DAY in the marketplace report `bucket` holds.
fn purchases(bucket: &str) -> u64 {
    let key = format!("reports/{DAY}/marketplace/report.json");
    let json: serde_json::Value =
        serde_json::from_slice(&testkit::shared_s3().get_object(bucket, &key).unwrap()).unwrap();
    json["commerce"]["totals"]["purchases"].as_u64().unwrap()
}

/// A purchase `id` of product 1 at `at`, received a second later.
fn purchase(id: &str, at: u32) -> Sale {
    Sale {
        id: id.into(),
        store: "s1",
        at,
        kind: "purchase",
        product: 1,
        category: "electronics.phone",
        seller: 1,
        currency: "EUR",
        price_nanos: 10_500_000_000,
        quantity: 1,
        user: 1,
        session: format!("s-{id}"),
    }
}

/// Late events rewrite the day: one received after the report's watermark, then one received
/// before it but loaded after the report.
#[tokio::test]
async fn late_events_rewrite_the_day_and_the_manifest_names_the_run_it_replaced() {
    let client = fixture::seeded().await;
    // the fixture loads every row twice: no merge may collapse copies meanwhile and change
    // the rows counted between the passes (a rewrite of its own, with the same figures)
    for table in ["commerce_events", "probe_results"] {
        client
            .query(&format!("SYSTEM STOP MERGES {table}"))
            .execute()
            .await
            .unwrap();
    }
    let (bucket, store) = fixture::store().await;
    let options = fixture::options();
    let today = DAY + time::Duration::days(1);
    assert!(pass(&client, &store, today, &options, 1).await);
    let first = manifest(&bucket, DAY).unwrap();
    let before = purchases(&bucket);

    // a purchase of DAY that arrives after the report was written
    let late = purchase("late-1", fixture::unix(DAY, 86_000));
    fixture::insert(&client, &[], &[late]).await;
    assert!(pass(&client, &store, today, &options, 1).await);
    let second = manifest(&bucket, DAY).unwrap();
    assert!(second.watermark > first.watermark);
    let superseded = second
        .supersedes
        .expect("the rewrite names the run it replaced");
    assert_eq!(superseded.generated_at, first.generated_at);
    assert_eq!(superseded.watermark, first.watermark);
    assert_eq!(purchases(&bucket), before + 1);

    // A purchase loaded after the report but received before its watermark, as when several
    // consumers or stream shards load out of the order of receipt, or a consumer takes over a
    // dead one's entries: the watermark does not move, the rows do, and the day is written
    // again with it.
    let early = purchase("loaded-late-1", fixture::unix(DAY, 60));
    assert!(
        early.at + 1 < second.watermark,
        "received before the watermark"
    );
    fixture::insert(&client, &[], &[early]).await;
    let due = due_days(&client, &store, today, &options, 1).await.unwrap();
    assert!(
        matches!(due.as_slice(), [(day, Due::Late(_))] if *day == DAY),
        "{due:?}"
    );
    assert!(pass(&client, &store, today, &options, 1).await);
    let third = manifest(&bucket, DAY).unwrap();
    assert_eq!(third.watermark, second.watermark);
    assert!(
        third.rows > second.rows,
        "{:?} {:?}",
        third.rows,
        second.rows
    );
    assert_eq!(third.supersedes.unwrap().rows, second.rows);
    assert_eq!(purchases(&bucket), before + 2);
    let due = due_days(&client, &store, today, &options, 1).await.unwrap();
    assert!(due.is_empty(), "{due:?}");
}

/// Runs `serve` with its daily pass due in a day, so that after the start's pass only the
/// rollup ticks run, until `watch` completes (then it shuts `serve` down); `expect` says
/// what a timeout of 60 s means.
async fn serve_until(
    client: &Client,
    store: &ReportStore,
    watch: impl future::Future<Output = ()>,
    expect: &str,
) {
    let at = (time::OffsetDateTime::now_utc() - time::Duration::minutes(5)).time();
    let options = RunOptions::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = async {
        watch.await;
        stop.send(()).unwrap();
    };
    let run = serve(
        std::slice::from_ref(client),
        store,
        at,
        &options,
        fast(8),
        async {
            stopped.await.ok();
        },
    );
    tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(run, watch) })
        .await
        .expect(expect);
}

/// Between its daily passes, `serve` rebuilds the rollups of a closed day that late rows
/// reached, without writing a report, so that the next pass reads them built.
#[tokio::test]
async fn between_passes_serve_rebuilds_the_rollups_of_a_day_late_rows_reached() {
    let client = fixture::database().await;
    let (_bucket, store) = fixture::store().await;
    let yesterday = time::OffsetDateTime::now_utc().date() - time::Duration::days(1);
    let view = |id: &str, seconds: i64| fixture::view(id, "s1", fixture::unix(yesterday, seconds));
    fixture::insert(&client, &[], &[view("first", 100)]).await;
    let views =
        "SELECT sum(events) FROM commerce_daily FINAL WHERE day = toDate(?) AND type = 'view'";
    let watch = async {
        // the start's pass reported yesterday, building its rollups
        while reporter::rollup::built_state(&client, yesterday)
            .await
            .unwrap()
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fixture::insert(&client, &[], &[view("late", 200)]).await;
        let base = reporter::rollup::base_state(&client, yesterday)
            .await
            .unwrap();
        while reporter::rollup::built_state(&client, yesterday)
            .await
            .unwrap()
            != Some(base)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    serve_until(
        &client,
        &store,
        watch,
        "serve rebuilds the day between passes",
    )
    .await;
    let views: u64 = client
        .query(views)
        .bind(yesterday.to_string())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(views, 2, "each view once, the late one included");
}

/// Between passes `serve` also keeps the closed hours of its window built for the dashboards
/// (`commerce_hourly`, recorded in `rollup_hour_builds`), rebuilds an hour that late rows
/// reached, and leaves the open hour to the events.
#[tokio::test]
async fn between_passes_serve_builds_the_closed_hours_and_rebuilds_one_late_rows_reached() {
    let client = fixture::database().await;
    let (_bucket, store) = fixture::store().await;
    let yesterday = time::OffsetDateTime::now_utc().date() - time::Duration::days(1);
    let view = |id: &str, seconds: i64| fixture::view(id, "s1", fixture::unix(yesterday, seconds));
    // yesterday between 01:00 and 02:00, every row twice (the fixture inserts each twice)
    fixture::insert(&client, &[], &[view("first", 3600 + 100)]).await;
    let hour = fixture::unix(yesterday, 3600);
    let recorded =
        format!("SELECT base_rows FROM rollup_hour_builds FINAL WHERE hour = toDateTime({hour})");
    let recorded = |client: &Client| {
        let client = client.clone();
        let sql = recorded.clone();
        async move { client.query(&sql).fetch_optional::<u64>().await.unwrap() }
    };
    let watch = async {
        while recorded(&client).await != Some(2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fixture::insert(&client, &[], &[view("late", 3600 + 200)]).await;
        while recorded(&client).await != Some(4) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let expect = "serve builds the hour and rebuilds it after the late row";
    serve_until(&client, &store, watch, expect).await;
    let views: u64 = client
        .query(&format!(
            "SELECT toUInt64(sum(views)) FROM commerce_hourly FINAL WHERE hour = toDateTime({hour})"
        ))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(views, 2, "each view once, the late one included");
    let open: u64 = client
        .query("SELECT count() FROM rollup_hour_builds FINAL WHERE hour >= toStartOfHour(now())")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(open, 0, "the open hour is left to the events");
}
