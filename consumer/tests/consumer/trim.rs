//! The consumer trims the stream, but never below what some group still needs.

use std::time::Duration;

use fred::interfaces::StreamsInterface;

use crate::helpers::*;

type Read = fred::types::streams::XReadResponse<String, String, String, bytes::Bytes>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_second_group_never_loses_entries() {
    let env = Env::shared().await;
    let redis = testkit::shared_redis();
    // A second group, e.g. an archiver, that is far behind: it has read nothing yet.
    redis
        .cli(&["XGROUP", "CREATE", &env.stream, "slow", "0", "MKSTREAM"])
        .unwrap();
    env.publish_many(20, 5).await;

    let mut worker = consumer::Worker::connect(&env.settings("c1", &[]))
        .await
        .unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0 && env.rows().await == 100
    })
    .await;
    trim_twice_more(&env, &mut worker).await;
    assert_eq!(env.rows().await, 102);
    assert_eq!(
        env.xlen().await,
        22,
        "nothing the slow group has not read is trimmed"
    );

    // The slow group reads 10 and acknowledges 5: its lowest pending entry is the bound.
    let read: Read = env
        .redis
        .xreadgroup_map("slow", "s1", Some(10), None, false, &env.stream, ">")
        .await
        .unwrap();
    let read: Vec<String> = read.into_values().flatten().map(|(id, _)| id).collect();
    assert_eq!(read.len(), 10);
    let _: u64 = env
        .redis
        .xack(&env.stream, "slow", read[..5].to_vec())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.publish(&event_ids(1)).await;
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0
    })
    .await;
    assert_eq!(
        env.xlen().await,
        23 - 5,
        "trimmed exactly up to the slow group's lowest pending entry"
    );
    let rest: Read = env
        .redis
        .xreadgroup_map("slow", "s1", None, None, false, &env.stream, "0")
        .await
        .unwrap();
    assert_eq!(
        rest.into_values().flatten().count(),
        5,
        "its unacknowledged entries are all still readable"
    );
    let new: Read = env
        .redis
        .xreadgroup_map("slow", "s1", None, None, false, &env.stream, ">")
        .await
        .unwrap();
    assert_eq!(
        new.into_values().flatten().count(),
        23 - 10,
        "and so are its unread ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_group_keeps_entries_before_its_reader_starts() {
    let env = Env::shared().await;
    let mut worker = loaded_with_archiver_retained(&env).await;
    trim_twice_more(&env, &mut worker).await;
    assert_eq!(
        env.xlen().await,
        12,
        "nothing is trimmed before the archiver read it"
    );
    let read: Read = env
        .redis
        .xreadgroup_map("archiver", "a1", None, None, false, &env.stream, ">")
        .await
        .unwrap();
    assert_eq!(
        read.into_values().flatten().count(),
        12,
        "its group starts at the beginning"
    );
}

/// `CONSUMER_RETAIN_GROUPS=` (empty, as an env file leaves it) names no group: it parsed as
/// one empty name, and the consumer created a group `""` that no reader acknowledges for,
/// which kept every entry from trimming until Redis filled and the gateway refused writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_retain_groups_setting_retains_nothing() {
    let env = Env::shared().await;
    env.publish_many(10, 2).await;
    let mut worker = consumer::Worker::connect(&env.settings("c1", &["--retain-groups", ""]))
        .await
        .unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0 && env.rows().await == 20
    })
    .await;
    let groups = testkit::shared_redis()
        .cli(&["XINFO", "GROUPS", &env.stream])
        .unwrap();
    let lines: Vec<&str> = groups.lines().map(str::trim).collect();
    let names: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0] == "name")
        .map(|w| w[1])
        .collect();
    assert_eq!(names, ["loader"], "{groups}");
    trim_twice_more(&env, &mut worker).await;
    // 12 entries loaded: all trimmed but at most the last, loaded after the last trim
    let left = env.xlen().await;
    assert!(left <= 1, "{left} of 12 loaded entries left untrimmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_consumer_trims_what_a_slower_group_read_after_its_last_load() {
    let env = Env::shared().await;
    let mut worker = loaded_with_archiver_retained(&env).await;
    assert_eq!(env.xlen().await, 10, "the archiver has read nothing yet");
    // The archiver reads and acknowledges everything after the consumer's last load; nothing
    // is published after it (as when a full Redis has the gateway refuse every write), so
    // only idle steps can trim.
    let read: Read = env
        .redis
        .xreadgroup_map("archiver", "a1", None, None, false, &env.stream, ">")
        .await
        .unwrap();
    let read: Vec<String> = read.into_values().flatten().map(|(id, _)| id).collect();
    assert_eq!(read.len(), 10);
    let _: u64 = env.redis.xack(&env.stream, "archiver", read).await.unwrap();
    drive(&mut worker, Duration::from_secs(10), || async {
        env.xlen().await == 1
    })
    .await;
    // `XTRIM MINID` keeps the bound itself: the last entry both groups delivered
    assert_eq!(env.rows().await, 20, "idle steps load nothing");
}

/// A consumer that retains the archiver's group and has loaded 10 entries of 2 events each;
/// the archiver has never run: its group exists only because the consumer retains it.
async fn loaded_with_archiver_retained(env: &Env) -> consumer::Worker {
    env.publish_many(10, 2).await;
    let mut worker =
        consumer::Worker::connect(&env.settings("c1", &["--retain-groups", "archiver"]))
            .await
            .unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0 && env.rows().await == 20
    })
    .await;
    worker
}

/// Trimming runs after a flush, at most once a second: two more chances, each a second
/// later with one more entry (of one event) published and loaded.
async fn trim_twice_more(env: &Env, worker: &mut consumer::Worker) {
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        env.publish(&event_ids(1)).await;
        drive(worker, Duration::from_secs(30), || async {
            env.pending("loader").await == 0
        })
        .await;
    }
}
