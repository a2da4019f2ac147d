//! The gRPC sender: requests in flight over several connections, paced to a rate, retried
//! with the same event ids when the gateway says to come back later.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::proto::ingest::{Event, PublishRequest, ingest_service_client::IngestServiceClient};
use tonic::{Code, Request, transport::Channel};
use tonic_types::StatusExt;

use crate::{
    config::RunArgs,
    fleet::{Store, fleet},
    generate::Generator,
    truth::Truth,
};

/// How often one request is retried before its events count as failed.
const MAX_ATTEMPTS: u32 = 30;

struct Job {
    store: usize,
    events: Vec<Event>,
}

/// Runs the simulation described by `args`; returns the ground truth.
pub async fn run(args: &RunArgs) -> anyhow::Result<Truth> {
    let stores = Arc::new(fleet(
        args.fleet.stores_per_region,
        &args.fleet.token_secret,
    ));
    let time_base = args.time_base.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64
    });
    let truth = Arc::new(Mutex::new(Truth::default()));
    let bar = progress(args);
    let (tx, rx) = async_channel(args.concurrency.max(1) * 2);
    let mut senders = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let channel = Channel::from_shared(args.gateway.clone())
            .context("gateway url")?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        let client = IngestServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024);
        senders.push(tokio::spawn(sender(
            client,
            rx.clone(),
            stores.clone(),
            truth.clone(),
            bar.clone(),
        )));
    }
    drop(rx);

    let mut generator = Generator::new(args.seed, time_base);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let batch = args.batch_size.max(1);
    let mut produced = 0u64;
    let mut next_store = 0usize;
    loop {
        let n = match args.total {
            Some(total) if produced >= total => break,
            Some(total) => batch.min((total - produced) as usize),
            None if Instant::now() >= deadline => break,
            None => batch,
        };
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(produced as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let store = next_store % stores.len();
        next_store += 1;
        let events = generator.batch(&stores[store], n);
        produced += n as u64;
        if tx.send(Job { store, events }).await.is_err() {
            break;
        }
    }
    drop(tx);
    for s in senders {
        s.await??;
    }
    bar.finish();
    let truth =
        Arc::try_unwrap(truth).map_err(|_| anyhow::anyhow!("senders still hold the truth"))?;
    Ok(truth.into_inner().expect("truth lock"))
}

fn progress(args: &RunArgs) -> ProgressBar {
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        match args.total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        }
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos} events ({per_sec}) {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// A bounded multi-consumer channel from tokio primitives.
fn async_channel(
    capacity: usize,
) -> (
    tokio::sync::mpsc::Sender<Job>,
    Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (tx, Arc::new(tokio::sync::Mutex::new(rx)))
}

async fn sender(
    mut client: IngestServiceClient<Channel>,
    jobs: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>,
    stores: Arc<Vec<Store>>,
    truth: Arc<Mutex<Truth>>,
    bar: ProgressBar,
) -> anyhow::Result<()> {
    loop {
        let job = { jobs.lock().await.recv().await };
        let Some(job) = job else { return Ok(()) };
        let store = &stores[job.store];
        let n = job.events.len() as u64;
        let request = PublishRequest {
            sequence: 0,
            events: job.events,
            all_or_nothing: false,
        };
        let mut attempt = 0;
        loop {
            let mut req = Request::new(request.clone());
            req.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", store.token)
                    .parse()
                    .context("token as metadata")?,
            );
            match client.publish(req).await {
                Ok(response) => {
                    let response = response.into_inner();
                    let mut t = truth.lock().expect("truth lock");
                    t.sent += n;
                    t.rejected += response.rejected.len() as u64;
                    let mut bad = response
                        .rejected
                        .iter()
                        .map(|r| r.index as usize)
                        .peekable();
                    for (i, event) in request.events.iter().enumerate() {
                        if bad.next_if_eq(&i).is_none() {
                            t.accept(event);
                        }
                    }
                    let msg = format!(
                        "accepted {} rejected {} retried {}",
                        t.accepted, t.rejected, t.retried_requests
                    );
                    drop(t);
                    bar.inc(n);
                    bar.set_message(msg);
                    break;
                }
                Err(status)
                    if attempt < MAX_ATTEMPTS
                        && matches!(
                            status.code(),
                            Code::Unavailable
                                | Code::ResourceExhausted
                                | Code::DeadlineExceeded
                                | Code::Aborted
                        ) =>
                {
                    attempt += 1;
                    truth.lock().expect("truth lock").retried_requests += 1;
                    let hinted = status
                        .get_error_details()
                        .retry_info()
                        .and_then(|r| r.retry_delay);
                    let backoff = Duration::from_millis(100 * 2u64.pow(attempt.min(6)));
                    tokio::time::sleep(hinted.unwrap_or(backoff).min(Duration::from_secs(10)))
                        .await;
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "request failed");
                    let mut t = truth.lock().expect("truth lock");
                    t.sent += n;
                    t.failed += n;
                    bar.inc(n);
                    break;
                }
            }
        }
    }
}
