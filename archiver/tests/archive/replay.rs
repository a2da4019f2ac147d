//! Replaying refused events: events the gateway refused under a strict rule are archived
//! under archive/rejected/; once the rule is relaxed, `archiver replay-rejected` appends
//! them to the stream again and each is loaded exactly once, however often it is run.
//! Hostile input: a missing day, malformed dates and bounds, a foreign object among the
//! day's, S3 down.

use std::process::{Command, Output};

use crate::helpers::*;

/// Runs the real binary as an operator does beside the running archiver (`docker compose
/// exec archiver archiver replay-rejected …`): with its environment, so `METRICS_LISTEN`
/// names a port already taken, which a one-day command must leave alone.
fn archiver(env: &Env, args: &[&str]) -> Output {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(&env.args(args)[1..])
        .envs(env.aws_env())
        .env("METRICS_LISTEN", taken.local_addr().unwrap().to_string())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `N` of "again in N entries" in a replay's report.
fn entries(out: &Output) -> u64 {
    let text = stdout(out);
    let after = text
        .split("again in ")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    after.split(' ').next().unwrap().parse().unwrap()
}

/// Entries ever appended to the stream (`XINFO STREAM`'s `entries-added`): what a replay
/// appends, whatever the consumer's trimming has removed since (its length would not tell).
fn entries_added(env: &Env) -> u64 {
    let info = testkit::shared_redis()
        .cli(&["XINFO", "STREAM", &env.stream])
        .unwrap();
    let lines: Vec<&str> = info.lines().map(str::trim).collect();
    lines
        .windows(2)
        .find(|w| w[0] == "entries-added")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or_else(|| panic!("no entries-added in {info}"))
}

/// Publishes `total` events three hours old through a gateway that accepts one hour at
/// most: every one is refused and kept with its bytes; archives and loads the stream.
/// Returns the day they were received.
async fn refused_day(env: &Env, total: u64) -> time::Date {
    let base = e2e::event_time_base() - 3 * 3600;
    let truth = env
        .publish_at(total, 0, 51, base, 50, &["--max-event-age", "1h"])
        .await;
    assert_eq!(
        (truth.accepted, truth.rejected),
        (0, total),
        "every event refused"
    );
    let mut worker = env.worker(&[]).await;
    drain(&mut worker).await;
    env.load_all().await;
    assert_eq!(env.event_rows().await, 0);
    e2e::utc_date(time::OffsetDateTime::now_utc().unix_timestamp())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_is_loaded_exactly_once_after_the_rule_is_relaxed_and_replayed() {
    let env = Env::shared();
    let today = refused_day(&env, 300).await;
    let date = today.to_string();
    let added = entries_added(&env);

    // Under the strict rule nothing is valid yet.
    let out = archiver(
        &env,
        &["replay-rejected", "--date", &date, "--max-event-age", "1h"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("300 rejected rows: 0 events queued"),
        "{}",
        stdout(&out)
    );

    // Relaxed (the default 7 days): a dry run counts and appends nothing ...
    let out = archiver(&env, &["replay-rejected", "--date", &date, "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("300 events would be queued again in"),
        "{}",
        stdout(&out)
    );
    let appended = entries(&out);
    assert!(appended > 0);
    assert_eq!(entries_added(&env), added);

    // ... the replay appends every one, and the consumer loads each once.
    let out = archiver(&env, &["replay-rejected", "--date", &date]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "300 events queued again in {appended} entries, 0 already replayed"
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(entries_added(&env), added + appended);
    env.load_all().await;
    assert_eq!(env.event_rows().await, 300);

    // Twice is once: the second replay appends nothing, the tables keep one row each.
    let out = archiver(&env, &["replay-rejected", "--date", &date]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 events queued again in 0 entries, 300 already replayed"),
        "{}",
        stdout(&out)
    );
    assert_eq!(entries_added(&env), added + appended);
    env.load_all().await;
    assert_eq!(env.event_rows().await, 300);
    let distinct: u64 = env
        .clickhouse()
        .query("SELECT count() FROM (SELECT DISTINCT store_id, event_id FROM commerce_events UNION ALL SELECT DISTINCT store_id, event_id FROM probe_results)")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(distinct, 300);

    // The replayed entries are archived like any: the events' day now verifies clean.
    let mut worker = env.worker(&[]).await;
    drain(&mut worker).await;
    let events_day = e2e::utc_date(e2e::event_time_base() - 3 * 3600);
    let v = archiver::verify::verify(&env.store().await, &env.clickhouse(), events_day)
        .await
        .unwrap();
    assert!(v.is_clean(), "{}", v.report());
    assert_eq!(v.archived, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rejected_refuses_a_missing_day_bad_input_a_foreign_object_and_s3_down() {
    let mut s3 = testkit::S3::start().unwrap();
    let env = Env::on(&s3);
    let today = refused_day(&env, 50).await;
    let date = today.to_string();
    let added = entries_added(&env);

    // A day with nothing archived is an error, not an empty success.
    let out = archiver(&env, &["replay-rejected", "--date", "2001-01-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("nothing is archived for 2001-01-01"),
        "{}",
        stderr(&out)
    );
    // Malformed dates and bounds are refused before anything runs.
    for args in [
        &["replay-rejected", "--date", "2026-13-01"][..],
        &["replay-rejected", "--date", "yesterday"],
        &["replay-rejected"],
        &[
            "replay-rejected",
            "--date",
            &date,
            "--max-event-age",
            "soon",
        ],
        &["--object-bytes", "1000", "verify", "--date", &date],
        &["--object-bytes", "lots", "manifest", "--date", &date],
    ] {
        let out = archiver(&env, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }

    // A foreign object under the day's prefix (a malformed key, not Parquet, not in the
    // manifest): the replay refuses the damaged day and appends nothing.
    let store = env.store().await;
    let junk = format!("archive/rejected/date={date}/hour=xx/junk.parquet");
    store
        .put_verified(
            &junk,
            bytes::Bytes::from_static(b"not parquet"),
            &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"not parquet")),
            "application/octet-stream",
            &[],
        )
        .await
        .unwrap();
    let out = archiver(&env, &["replay-rejected", "--date", &date]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stderr(&out).contains(&junk), "{}", stderr(&out));
    assert_eq!(entries_added(&env), added, "nothing appended");

    // S3 down: an error naming S3, nothing appended.
    s3.stop().unwrap();
    let out = archiver(&env, &["replay-rejected", "--date", &date]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stderr(&out).contains("s3://"), "{}", stderr(&out));
    assert_eq!(entries_added(&env), added);
    s3.restart().unwrap();
}
