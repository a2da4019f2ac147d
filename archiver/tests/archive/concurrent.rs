//! Two archivers (two names in the group) sealing segments of the same day, each rewriting
//! the day's manifest: neither loses the other's objects, even when one writes a manifest
//! collected before the other's upload (the race a plain rewrite loses).

use archiver::{Outcome, manifest};

use crate::helpers::*;

/// The day's objects as listed, without the manifest, and as the manifest lists them.
async fn listed_and_manifest(env: &Env, date: time::Date) -> (Vec<String>, Vec<String>) {
    let store = env.store().await;
    let listed: Vec<String> = objects(&store, "archive/")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.starts_with("archive/manifests/"))
        .collect();
    let m = manifest::read(&store, date).await.unwrap().unwrap();
    (listed, m.objects.into_iter().map(|o| o.key).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_archivers_sealing_the_same_day_never_lose_each_other_s_objects() {
    let env = Env::shared();
    let (_, base) = env.publish(2000, 0, 41).await;
    let date = e2e::utc_date(base);
    let store = env.store().await;

    // A reads and uploads a segment; its manifest is collected now, before B's upload ...
    let small = ["--read-count", "5", "--object-bytes", "131072"];
    let mut a = env.worker_as("a", &small).await;
    let mut b = env.worker_as("b", &small).await;
    // a first read asks for one entry (no size is known yet), the next for the count
    for worker in [&mut a, &mut b] {
        assert_eq!(worker.step().await.unwrap(), Outcome::Read(1));
        assert_eq!(worker.step().await.unwrap(), Outcome::Read(5));
    }
    assert!(matches!(
        a.archive_now().await.unwrap(),
        Outcome::Uploaded(_)
    ));
    let stale = manifest::collect(&store, date).await.unwrap();
    // ... B uploads its own segment and writes the manifest ...
    assert!(matches!(
        b.archive_now().await.unwrap(),
        Outcome::Uploaded(_)
    ));
    assert!(matches!(b.step().await.unwrap(), Outcome::Archived(_)));
    let (listed, _) = listed_and_manifest(&env, date).await;
    assert!(
        stale.objects.len() < listed.len(),
        "the stale manifest lacks B's objects: the race is real"
    );
    // ... and then A's manifest, collected before, lands last: settling writes it again
    // from a new listing, so B's objects stay listed.
    let settled = manifest::settle(&store, date, stale).await.unwrap();
    let (listed, in_manifest) = listed_and_manifest(&env, date).await;
    assert_eq!(
        in_manifest, listed,
        "the manifest lists both archivers' objects"
    );
    assert_eq!(settled.objects.len(), listed.len());

    // Both archivers draining the rest at once, each sealing many small segments.
    let rest = |mut w: archiver::Worker| async move { drain(&mut w).await };
    let (ra, rb) = tokio::join!(tokio::spawn(rest(a)), tokio::spawn(rest(b)));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        !ra.is_empty() && !rb.is_empty(),
        "both archived: {ra:?} {rb:?}"
    );
    assert_eq!(env.archiver_backlog(), 0);
    let (listed, in_manifest) = listed_and_manifest(&env, date).await;
    assert_eq!(in_manifest, listed, "the manifest lists every object");
    let m = manifest::read(&store, date).await.unwrap().unwrap();
    assert_eq!(
        m.rows.get("commerce").copied().unwrap_or(0) + m.rows.get("probes").copied().unwrap_or(0),
        2000
    );
}
