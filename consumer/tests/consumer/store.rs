//! A gateway running in the test process, and a store publishing to it the way a store
//! backend does: requests of fresh events, a failed request retried with the same event ids,
//! and a record of the ids the gateway answered OK for.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use clap::Parser;
use pipeline::proto::ingest::{PublishRequest, ingest_service_client::IngestServiceClient};
use tokio::sync::watch;
use tonic::{Code, Request, transport::Channel};

use crate::helpers::{event_ids, queued_batch};

/// The token of the one store, `eu-1` in Europe, that the gateway knows.
const TOKEN: &str = "chaos-test-token";

/// How long a store keeps retrying one request before it gives up on it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// A store's wait before retrying a failed request.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// A gateway running in this process until dropped.
pub struct Gateway {
    server: gateway::Background,
    /// Holds the stores file for the life of the gateway.
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway on a free port for `stream_key`, knowing the store `eu-1` only.
    pub async fn start(redis_url: &str, stream_key: &str) -> Gateway {
        Gateway::start_with(redis_url, stream_key, &[]).await
    }

    /// Like [`Gateway::start`], with extra flags.
    pub async fn start_with(redis_url: &str, stream_key: &str, extra: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let stores = dir.path().join("stores.toml");
        let toml = format!(
            "[[store]]\nid = \"eu-1\"\nregion = \"europe\"\ntoken_sha256 = \"{}\"\n",
            gateway::auth::token_sha256(TOKEN)
        );
        std::fs::write(&stores, toml).unwrap();
        let stores = stores.display().to_string();
        let mut args = vec![
            "gateway",
            "--stores-file",
            &stores,
            "--redis-url",
            redis_url,
            "--stream-key",
            stream_key,
        ];
        args.extend_from_slice(extra);
        let settings = gateway::Settings::try_parse_from(args).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = gateway::Background::spawn(listener, settings).unwrap();
        Gateway { server, _dir: dir }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Sends the shutdown signal and waits for the server to drain.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        Ok(self.server.shutdown().await?)
    }
}

/// What the store was told.
#[derive(Debug, Default)]
pub struct Published {
    /// The ids of every event of every request the gateway answered OK for.
    pub ok: Vec<String>,
    /// Requests answered OK.
    pub requests_ok: usize,
    /// Failed attempts that were retried, by gRPC code.
    pub retries: BTreeMap<String, usize>,
    /// The ids of requests given up on after [`GIVE_UP_AFTER`]: the gateway may have queued
    /// them and lost only the answer, so they may be loaded, but at most once.
    pub abandoned: Vec<String>,
}

impl Published {
    pub fn retried(&self) -> usize {
        self.retries.values().sum()
    }
}

/// Publishes requests of `per_request` fresh valid purchases from `senders` concurrent
/// loops, each pausing `pause` between its requests, until `stop` turns true; requests in
/// flight are still retried to their end.
pub async fn publish_until(
    gateway_url: &str,
    senders: usize,
    per_request: usize,
    pause: Duration,
    stop: watch::Receiver<bool>,
) -> Published {
    let client = connect(gateway_url).await;
    let loops = (0..senders).map(|_| send_until(client.clone(), per_request, pause, stop.clone()));
    let mut published = Published::default();
    for one in futures::future::join_all(loops).await {
        published.ok.extend(one.ok);
        published.requests_ok += one.requests_ok;
        for (code, n) in one.retries {
            *published.retries.entry(code).or_default() += n;
        }
        published.abandoned.extend(one.abandoned);
    }
    published
}

/// Connects a client to the gateway at `url`.
pub async fn connect(url: &str) -> IngestServiceClient<Channel> {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    IngestServiceClient::new(channel)
}

/// One request of `events` as store `eu-1`, with a timeout.
pub async fn publish(
    client: &mut IngestServiceClient<Channel>,
    sequence: u64,
    events: Vec<pipeline::proto::ingest::Event>,
) -> Result<pipeline::proto::ingest::PublishResponse, tonic::Status> {
    let mut request = Request::new(PublishRequest {
        sequence,
        events,
        all_or_nothing: false,
    });
    request.set_timeout(Duration::from_secs(10));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    Ok(client.publish(request).await?.into_inner())
}

/// One sender: a request at a time, each retried with the same events until answered OK.
async fn send_until(
    mut client: IngestServiceClient<Channel>,
    per_request: usize,
    pause: Duration,
    mut stop: watch::Receiver<bool>,
) -> Published {
    let mut published = Published::default();
    let mut sequence = 0;
    while !*stop.borrow() {
        sequence += 1;
        let ids = event_ids(per_request);
        // The same events, ids and times included, on every attempt: a retry is the same request.
        let events = queued_batch(&ids).events;
        let started = Instant::now();
        loop {
            match publish(&mut client, sequence, events.clone()).await {
                Ok(response) => {
                    assert_eq!(response.accepted as usize, ids.len(), "{response:?}");
                    published.requests_ok += 1;
                    published.ok.extend(ids);
                    break;
                }
                Err(status) => {
                    assert!(
                        !matches!(
                            status.code(),
                            Code::InvalidArgument | Code::Unauthenticated | Code::PermissionDenied
                        ),
                        "the request itself is wrong: {status:?}"
                    );
                    if started.elapsed() > GIVE_UP_AFTER {
                        published.abandoned.extend(ids);
                        break;
                    }
                    *published
                        .retries
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
        // Wakes early when told to stop; an error means the sender is gone, so stop too.
        if let Ok(Err(_)) = tokio::time::timeout(pause, stop.changed()).await {
            break;
        }
    }
    published
}
