//! Chaos: the archiver binary killed with SIGKILL again and again and S3 stopped for a while
//! during a run; at the end the lake is exactly what the gateway acknowledged, once.
//!
//! The short form runs with every test run; `ARCHIVER_CHAOS_LONG=1` runs the long one (more
//! events, more kills, S3 down for 30 s).

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use archiver::layout::Kind;
use rand::Rng;

use crate::helpers::*;

fn spawn(env: &Env, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(
            &env.args(&[
                "--object-bytes",
                "131072",
                "--roll-every",
                "1s",
                "--read-count",
                "20",
            ])[1..],
        )
        .envs(env.aws_env())
        .env("RUST_LOG", "archiver=info,consumer=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_an_s3_outage_leave_the_archive_equal_to_what_was_acknowledged() {
    let long = std::env::var_os("ARCHIVER_CHAOS_LONG").is_some();
    let (total, rate, kills, outage) = if long {
        (40_000, 1_000, 30, Duration::from_secs(30))
    } else {
        (4_000, 800, 6, Duration::from_secs(5))
    };
    let started = Instant::now();
    let mut s3 = testkit::S3::start().unwrap();
    let env = Arc::new(Env::on(&s3));
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("archiver.log");
    let mut archiver = spawn(&env, &log);

    let publisher = {
        let env = env.clone();
        tokio::spawn(async move { env.publish(total, rate, 21).await })
    };
    let mut rng = rand::rng();
    for i in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        if i == kills / 2 {
            s3.stop().unwrap();
            tokio::time::sleep(outage).await;
            s3.restart().unwrap();
        }
        archiver.kill().unwrap(); // SIGKILL
        archiver.wait().unwrap();
        archiver = spawn(&env, &log);
    }
    let (truth, base) = publisher.await.unwrap();
    let date = e2e::utc_date(base);
    let deadline = Instant::now() + Duration::from_secs(180);
    while env.archiver_backlog() != 0 {
        assert!(
            Instant::now() < deadline,
            "the archiver did not catch up; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    archiver.kill().unwrap();
    archiver.wait().unwrap();

    env.load(total).await;
    let store = env.store().await;
    let v = archiver::verify::verify(&store, &env.clickhouse(), date)
        .await
        .unwrap();
    assert!(v.is_clean(), "{}", v.report());

    // No duplicates: every archived row is a distinct event, and the archive is exactly
    // what the gateway acknowledged.
    let day = archiver::read::day(&store, date, &[Kind::Commerce, Kind::Probes])
        .await
        .unwrap();
    let rows: usize = day
        .objects
        .iter()
        .flat_map(|o| &o.batches)
        .map(|b| b.num_rows())
        .sum();
    let (archived, _) = archiver::verify::archived(&store, date).await.unwrap();
    assert_eq!(rows, archived.len(), "an event is in one object only");
    let ids: BTreeSet<String> = archived.into_keys().map(|(_, id)| id).collect();
    let acknowledged: BTreeSet<String> = truth.accepted_ids.iter().cloned().collect();
    assert_eq!(ids, acknowledged);

    // The segments' entry ranges never overlap.
    let manifest = archiver::manifest::read(&store, date)
        .await
        .unwrap()
        .unwrap();
    let mut ranges: Vec<((u64, u64), (u64, u64))> = manifest
        .objects
        .iter()
        .map(|o| {
            (
                consumer::source::parse_id(&o.first_entry).unwrap(),
                consumer::source::parse_id(&o.last_entry).unwrap(),
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 < pair[1].0, "segments overlap: {pair:?}");
    }
    eprintln!(
        "chaos: {total} events at {rate}/s, {kills} SIGKILLs, S3 stopped {outage:?}: \
         {} segments, {} objects, verify clean, in {:?}",
        ranges.len(),
        manifest.objects.len(),
        started.elapsed()
    );
}
