//! `consumer dead-letters` lists dead-lettered entries; `consumer replay` puts them back.

use std::{process::Command, time::Duration};

use consumer::{config, dead_letter::DeadLetters};

use crate::helpers::*;

/// Runs the real binary with this test's stream and the shared servers, as an operator does
/// beside a running consumer (`docker compose exec consumer consumer dead-letters`): with
/// its environment, so `METRICS_LISTEN` names a port that is already taken. A command must
/// not try to serve metrics there.
fn consumer_cli(env: &Env, args: &[&str]) -> String {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(args)
        .env("REDIS_URL", &env.redis_url)
        .env("STREAM_KEY", &env.stream)
        .env("METRICS_LISTEN", taken.local_addr().unwrap().to_string())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed() {
    let env = Env::shared().await;
    let ids = event_ids(5);
    let good = env.publish(&ids).await;
    let settings = env.settings("c1", &["--max-deliveries", "1"]);
    // The consumer died once while loading it, and the limit is one: dead-lettered.
    env.die_loading("c1", 1).await;
    env.xadd(&garbage_entry()).await;
    let mut worker = consumer::Worker::connect(&settings).await.unwrap();
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0
    })
    .await;
    assert_eq!(env.rows().await, 0);

    let listed = consumer_cli(&env, &["dead-letters"]);
    let lines: Vec<Vec<&str>> = listed.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert_eq!(lines[0][1], good, "original id: {listed}");
    assert_eq!(lines[0][2], "2", "delivery count: {listed}");
    assert!(lines[0][3].starts_with("left unloaded by 1 consumer crashes"));
    assert_eq!(lines[1][2], "1");
    assert!(lines[1][3].starts_with("undecodable stream entry"));
    let letters = DeadLetters::connect(&settings.redis).await.unwrap();

    // The cause is fixed; the operator replays the first one and it loads.
    let replayed = consumer_cli(&env, &["replay", lines[0][0]]);
    assert_eq!(replayed.trim(), "replayed 1 entries");
    drive(&mut worker, Duration::from_secs(30), || async {
        env.rows().await == 5
    })
    .await;
    assert_eq!(
        env.count("SELECT count() FROM commerce_events FINAL").await,
        5
    );
    let left = letters.list().await.unwrap();
    assert_eq!(
        left.len(),
        1,
        "the replayed one left the dead-letter stream"
    );

    // Replaying garbage dead-letters it again, with a new original id.
    let parsed = clap::Parser::try_parse_from(["consumer", "replay", "--all"]);
    let parsed: consumer::Settings = parsed.unwrap();
    assert!(matches!(
        parsed.command,
        Some(config::Command::Replay { all: true, .. })
    ));
    let again = letters.replay(None).await.unwrap();
    assert_eq!(again.len(), 1);
    drive(&mut worker, Duration::from_secs(30), || async {
        env.pending("loader").await == 0
            && letters
                .list()
                .await
                .unwrap()
                .first()
                .is_some_and(|l| l.original_id == again[0])
    })
    .await;
    assert_eq!(letters.list().await.unwrap().len(), 1);
}

/// With a sharded stream, each shard's worker dead-letters into its shard's own dead-letter
/// stream; listing covers every shard and a replay goes back to the shard it came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_every_shard_are_listed_and_replayed_to_their_shard() {
    use fred::interfaces::StreamsInterface;
    let env = Env::shared().await;
    let settings = env.settings("c1", &["--stream-shards", "2"]);
    let shards = settings.redis.shards();
    for key in shards.keys() {
        let _: String = env
            .redis
            .xadd(key, false, None, "*", garbage_entry().pairs())
            .await
            .unwrap();
    }
    consumer::worker::migrate(&settings).await.unwrap();
    for key in shards.keys() {
        let mut worker = consumer::Worker::open_shard(&settings, key).await.unwrap();
        worker.step().await.unwrap();
        assert!(matches!(
            worker.flush().await.unwrap(),
            consumer::Outcome::Flushed(w) if w.dead_letters == 1
        ));
    }
    let letters = DeadLetters::connect(&settings.redis).await.unwrap();
    let listed = letters.list().await.unwrap();
    let streams: Vec<&str> = listed.iter().map(|l| l.stream.as_str()).collect();
    assert_eq!(
        streams,
        shards.keys(),
        "one letter per shard, shard by shard"
    );

    assert_eq!(letters.replay(None).await.unwrap().len(), 2);
    for key in shards.keys() {
        let len: u64 = env.redis.xlen(key).await.unwrap();
        assert_eq!(len, 2, "{key}: the original and its replay");
        let dead: u64 = env
            .redis
            .xlen(consumer::dead_letter::dead_key(key))
            .await
            .unwrap();
        assert_eq!(
            dead, 0,
            "{key}: replayed letters leave the dead-letter stream"
        );
    }
}
