//! Archiving: every acknowledged event in the lake, in its layout, with a manifest; verify
//! against ClickHouse; a crash between upload and acknowledgement.

use std::process::Command;

use archiver::{
    Outcome,
    layout::{Kind, date_prefix, manifest_key},
    manifest,
};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_is_archived_in_the_layout_and_verify_agrees() {
    let env = Env::shared();
    let (truth, base) = env.publish(2000, 0, 3).await;
    xadd_garbage(&env).await;
    let date = e2e::utc_date(base);

    let mut worker = env.worker(&[]).await;
    let segments = drain(&mut worker).await;
    assert!(!segments.is_empty());
    assert_eq!(env.archiver_backlog(), 0, "every entry acknowledged");
    assert_eq!(
        segments.iter().map(|s| s.entries).sum::<usize>(),
        2000 / 100 + 1,
        "every entry archived once"
    );

    let store = env.store().await;
    let manifest = manifest::read(&store, date)
        .await
        .unwrap()
        .expect("a manifest");
    assert_eq!(
        manifest.rows.get("commerce").copied().unwrap_or(0)
            + manifest.rows.get("probes").copied().unwrap_or(0),
        2000
    );
    let keys: Vec<String> = manifest.objects.iter().map(|o| o.key.clone()).collect();
    for o in &manifest.objects {
        let hour = "/hour=";
        assert!(
            o.key.contains(hour) && o.key.ends_with(".parquet"),
            "{}",
            o.key
        );
        assert!(
            o.key
                .contains(&format!("part-{}-{}", o.first_entry, o.last_entry)),
            "{}",
            o.key
        );
        assert_eq!(o.sha256.len(), 64);
        if o.kind != "rejected" {
            assert!(
                o.key.starts_with(&format!(
                    "{}region=",
                    date_prefix(
                        if o.kind == "commerce" {
                            Kind::Commerce
                        } else {
                            Kind::Probes
                        },
                        date
                    )
                )),
                "{}",
                o.key
            );
        }
    }
    // the undecodable entry is kept apart, for replay
    let today = e2e::utc_date(time::OffsetDateTime::now_utc().unix_timestamp());
    let rejected = manifest::read(&store, today)
        .await
        .unwrap()
        .expect("a manifest of today");
    assert_eq!(rejected.rows.get("rejected"), Some(&1));
    assert!(rejected.objects.iter().any(|o| {
        o.key
            .starts_with(&format!("archive/rejected/date={today}/hour="))
    }));
    let listed: Vec<String> = objects(&store, &format!("archive/commerce/date={date}/"))
        .await
        .into_iter()
        .chain(objects(&store, &format!("archive/probes/date={date}/")).await)
        .map(|(k, _)| k)
        .collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    let mut events: Vec<String> = keys
        .into_iter()
        .filter(|k| !k.starts_with("archive/rejected"))
        .collect();
    events.sort();
    assert_eq!(events, listed_sorted, "the manifest lists every object");
    assert!(store.exists(&manifest_key(date)).await.unwrap());

    // ClickHouse, loaded by the consumer, agrees; a row the archive lacks is a difference
    env.load(2000).await;
    let v = archiver::verify::verify(&store, &env.clickhouse(), date)
        .await
        .unwrap();
    assert!(v.is_clean(), "{}", v.report());
    assert_eq!((v.archived, v.loaded), (2000, 2000));
    let archived: std::collections::BTreeSet<String> = archiver::verify::archived(&store, date)
        .await
        .unwrap()
        .0
        .into_keys()
        .map(|(_, id)| id)
        .collect();
    let acknowledged: std::collections::BTreeSet<String> =
        truth.accepted_ids.iter().cloned().collect();
    assert_eq!(
        archived, acknowledged,
        "the archive is what the gateway acknowledged"
    );

    let verify = |env: &Env| {
        Command::new(env!("CARGO_BIN_EXE_archiver"))
            .args(&env.args(&["verify", "--date", &date.to_string()])[1..])
            .envs(env.aws_env())
            .output()
            .unwrap()
    };
    let out = verify(&env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.clickhouse()
        .query(&format!(
            "INSERT INTO commerce_events (event_id, occurred_at, received_at, region, store_id, type) \
             VALUES (toUUID('00000000-0000-4000-8000-000000000001'), {base}, {base}, 'asia', 'as-1', 'view')"
        ))
        .execute()
        .await
        .unwrap();
    let out = verify(&env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("only in clickhouse: as-1 00000000-0000-4000-8000-000000000001"),
        "{stdout}"
    );
    assert!(
        stdout.contains("count commerce_events view asia: archive"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_upload_rewrites_the_same_objects() {
    let env = Env::shared();
    let (_, base) = env.publish(500, 0, 4).await;
    let date = e2e::utc_date(base);
    let store = env.store().await;

    // The first archiver reads everything, uploads its segment and dies before its XACK.
    let mut first = env.worker(&[]).await;
    while let Outcome::Read(_) = first.step().await.unwrap() {}
    assert!(matches!(first.archive_now().await.unwrap(), Outcome::Uploaded(n) if n > 0));
    let uploaded = objects(&store, "archive/").await;
    assert!(!uploaded.is_empty());
    drop(first);
    assert_eq!(env.archiver_backlog(), 5, "nothing acknowledged");

    // Its successor (same name) takes the sealed range back and writes it again.
    let mut second = env.worker(&[]).await;
    let segments = drain(&mut second).await;
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].entries, 5);
    assert_eq!(env.archiver_backlog(), 0);
    let written: Vec<(String, String)> = objects(&store, "archive/")
        .await
        .into_iter()
        .filter(|(k, _)| !k.starts_with("archive/manifests/"))
        .collect();
    assert_eq!(
        written, uploaded,
        "the same keys with the same bytes, and no others"
    );
    let m = manifest::read(&store, date).await.unwrap().unwrap();
    assert_eq!(m.rows.values().sum::<u64>(), 500);
}

/// A Redis that refuses every write (`MISCONF`: its last save failed, as when its disk
/// fills) is read ever more slowly: a read records the delivery, so it fails, and each
/// failure waits longer than the last, up to 10 s, where a fixed wait of at most 100 ms
/// asked at least 50 times in 5 s. Once Redis writes again, the next read goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_refuses_writes_is_read_ever_more_slowly() {
    let redis = testkit::Redis::start().unwrap();
    let mut env = Env::shared();
    env.redis_url = redis.url();
    let mut worker = env.worker(&[]).await;
    redis.refuse_writes().unwrap();
    let started = std::time::Instant::now();
    let mut reads = 0;
    while started.elapsed() < std::time::Duration::from_secs(5) {
        let outcome = worker.step().await.unwrap();
        assert!(matches!(outcome, Outcome::Idle), "{outcome:?}");
        reads += 1;
    }
    // the cap doubles from 100 ms and each wait is at least a tenth of it: 9 fit in 5 s
    assert!((1..=10).contains(&reads), "{reads} reads in 5 s");

    redis.write_again().unwrap();
    let (truth, _) = env.publish(100, 0, 8).await;
    let mut read = 0;
    for _ in 0..20 {
        if let Outcome::Read(n) = worker.step().await.unwrap() {
            read += n;
            break;
        }
    }
    assert!(read > 0, "nothing read after Redis wrote again ({truth:?})");
}
