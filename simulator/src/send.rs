//! The gRPC sender: requests in flight over several connections, paced to a rate, retried
//! with the same event ids when the gateway says to come back later. Requests go over
//! unary `Publish`, or `PublishStream` with `--streaming` (falling back to unary, with a
//! warning, on a gateway that answers UNIMPLEMENTED).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::proto::ingest::{
    Event, PublishRequest, PublishResponse, Rejection, ingest_service_client::IngestServiceClient,
};
use prost::Message as _;
use tonic::{Code, Request, Status, Streaming, transport::Channel};
use tonic_types::StatusExt;

use crate::{
    config::{RunArgs, SendArgs},
    fleet::{Store, scenario_fleet},
    generate::Generator,
    request::Generated,
    scenario::Scenario,
    truth::{Tally, Truth},
    wire::EncodedClient,
};

/// How often one request is retried before its events count as failed.
const MAX_ATTEMPTS: u32 = 30;

/// One request's worth of events for one store.
pub struct Job {
    pub store: usize,
    pub events: Events,
}

/// A job's events.
pub enum Events {
    /// Messages, e.g. replayed from a file.
    Built(Vec<Event>),
    /// Generated: drafts and their encoded request, which no `Event` was built for.
    Generated(Generated),
}

/// A job's request while it is delivered.
enum Pending {
    /// `encoded` is filled at most once, however often the request is retried.
    Built {
        request: PublishRequest,
        encoded: Option<Bytes>,
    },
    Generated(Generated),
}

impl Pending {
    fn len(&self) -> usize {
        match self {
            Pending::Built { request, .. } => request.events.len(),
            Pending::Generated(g) => g.drafts.len(),
        }
    }

    /// The request's protobuf bytes, for unary `Publish`.
    fn encoded(&mut self) -> Bytes {
        match self {
            Pending::Built { request, encoded } => encoded
                .get_or_insert_with(|| Bytes::from(request.encode_to_vec()))
                .clone(),
            Pending::Generated(g) => g.encoded.clone(),
        }
    }

    /// The request as a message numbered `sequence`, for `PublishStream`.
    fn message(&self, store: &Store, sequence: u64) -> PublishRequest {
        match self {
            Pending::Built { request, .. } => PublishRequest {
                sequence,
                ..request.clone()
            },
            Pending::Generated(g) => PublishRequest {
                sequence,
                events: g.events(store),
                all_or_nothing: false,
            },
        }
    }

    /// Records in `truth` the events not in `rejected` (indices in ascending order).
    fn accept(&self, truth: &mut Truth, tally: &mut Tally, store: &Store, rejected: &[Rejection]) {
        let mut bad = rejected.iter().map(|r| r.index as usize).peekable();
        let accepted = (0..self.len()).filter(move |&i| bad.next_if_eq(&i).is_none());
        match self {
            Pending::Built { request, .. } => {
                accepted.for_each(|i| truth.accept(&request.events[i]));
            }
            Pending::Generated(g) => truth.accept_drafts(
                tally,
                &g.model,
                store.region,
                accepted.map(|i| &g.drafts[i]),
            ),
        }
    }
}

type Jobs = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>;

/// The senders of a run: hand them jobs, then collect the ground truth.
pub struct Delivery {
    jobs: tokio::sync::mpsc::Sender<Job>,
    senders: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    truth: Arc<Mutex<Truth>>,
    bar: ProgressBar,
}

impl Delivery {
    /// Starts `--concurrency` senders, each on its own connection.
    pub fn start(
        args: &SendArgs,
        stores: Arc<Vec<Store>>,
        total: Option<u64>,
    ) -> anyhow::Result<Delivery> {
        let truth = Arc::new(Mutex::new(Truth {
            forget_ids: args.forget_ids,
            ..Truth::default()
        }));
        let bar = progress(args.quiet, total);
        let concurrency = args.concurrency.max(1);
        let (jobs, rx) = tokio::sync::mpsc::channel(concurrency * 2);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        // one flag for every sender, so the fallback warning appears once
        let unary_only = Arc::new(AtomicBool::new(!args.streaming));
        let mut senders = Vec::new();
        anyhow::ensure!(!args.gateway.is_empty(), "no gateway url");
        for i in 0..concurrency {
            let url = args.gateway[i % args.gateway.len()].clone();
            let channel = Channel::from_shared(url)
                .context("gateway url")?
                .connect_timeout(Duration::from_secs(5))
                .connect_lazy();
            let client = IngestServiceClient::new(channel.clone())
                .max_decoding_message_size(16 * 1024 * 1024);
            let sender = Sender {
                client,
                unary: EncodedClient::new(channel),
                stores: stores.clone(),
                truth: truth.clone(),
                bar: bar.clone(),
                unary_only: unary_only.clone(),
                streams: HashMap::new(),
                tally: Tally::default(),
            };
            senders.push(tokio::spawn(sender.run(rx.clone())));
        }
        Ok(Delivery {
            jobs,
            senders,
            truth,
            bar,
        })
    }

    /// Queues a job, waiting while every sender is busy; false if the senders are gone.
    pub async fn send(&self, job: Job) -> bool {
        self.jobs.send(job).await.is_ok()
    }

    /// Waits for every queued job to be answered and returns the truth.
    pub async fn finish(self) -> anyhow::Result<Truth> {
        drop(self.jobs);
        for s in self.senders {
            s.await??;
        }
        self.bar.finish();
        let truth = Arc::try_unwrap(self.truth)
            .map_err(|_| anyhow::anyhow!("senders still hold the truth"))?;
        Ok(truth.into_inner().expect("truth lock"))
    }
}

/// Runs the simulation described by `args`; returns the ground truth.
pub async fn run(args: &RunArgs) -> anyhow::Result<Truth> {
    let scenario = Scenario::load(args.fleet.scenario.as_deref())?;
    let stores = Arc::new(scenario_fleet(
        &scenario,
        args.fleet.stores_per_region,
        &args.fleet.token_secret,
    ));
    anyhow::ensure!(!stores.is_empty(), "the scenario has no stores");
    let time_base = args.time_base.unwrap_or_else(now_unix);
    let clock = args.clock_rate.unwrap_or(if args.send.rate > 0 {
        args.send.rate as f64
    } else {
        scenario.clock.events_per_second
    });
    let mut generator = Generator::with_scenario(scenario, args.seed, time_base, clock);
    let delivery = Delivery::start(&args.send, stores.clone(), args.total)?;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let batch = args.send.batch_size.max(1);
    let mut produced = 0u64;
    let mut next_store = 0usize;
    loop {
        let n = match args.total {
            Some(total) if produced >= total => break,
            Some(total) => batch.min((total - produced) as usize),
            None if Instant::now() >= deadline => break,
            None => batch,
        };
        if args.send.rate > 0 {
            let due = started + Duration::from_secs_f64(produced as f64 / args.send.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let store = next_store % stores.len();
        next_store += 1;
        let events = Events::Generated(Generated::new(&mut generator, &stores[store], n));
        produced += n as u64;
        if !delivery.send(Job { store, events }).await {
            break;
        }
    }
    delivery.finish().await
}

/// The current Unix second.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

fn progress(quiet: bool, total: Option<u64>) -> ProgressBar {
    let bar = match (quiet, total) {
        (true, _) => ProgressBar::hidden(),
        (false, Some(total)) => ProgressBar::new(total),
        (false, None) => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos} events ({per_sec}) {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// An open `PublishStream` call for one store (the token is per call, so per store).
struct OpenStream {
    requests: tokio::sync::mpsc::Sender<PublishRequest>,
    responses: Streaming<PublishResponse>,
    next_sequence: u64,
}

/// One connection's worth of sending.
struct Sender {
    /// For PublishStream.
    client: IngestServiceClient<Channel>,
    /// For unary Publish of encoded requests.
    unary: EncodedClient,
    stores: Arc<Vec<Store>>,
    truth: Arc<Mutex<Truth>>,
    bar: ProgressBar,
    /// Set when streaming is off or the gateway turned out not to implement it.
    unary_only: Arc<AtomicBool>,
    streams: HashMap<usize, OpenStream>,
    /// Scratch space for counting a generated request's events in the truth.
    tally: Tally,
}

impl Sender {
    async fn run(mut self, jobs: Jobs) -> anyhow::Result<()> {
        loop {
            let job = { jobs.lock().await.recv().await };
            let Some(job) = job else { return Ok(()) };
            self.deliver(job).await?;
        }
    }

    /// Sends one job until it is answered, retrying retriable refusals with the same ids.
    async fn deliver(&mut self, job: Job) -> anyhow::Result<()> {
        let mut request = match job.events {
            Events::Built(events) => Pending::Built {
                request: PublishRequest {
                    sequence: 0,
                    events,
                    all_or_nothing: false,
                },
                encoded: None,
            },
            Events::Generated(g) => Pending::Generated(g),
        };
        let n = request.len();
        let stores = self.stores.clone();
        let store = &stores[job.store];
        let mut attempt = 0;
        loop {
            match self.publish(job.store, &mut request).await {
                Ok(response) => {
                    let n = n as u64;
                    let mut t = self.truth.lock().expect("truth lock");
                    t.sent += n;
                    t.rejected += response.rejected.len() as u64;
                    request.accept(&mut t, &mut self.tally, store, &response.rejected);
                    let msg = progress_message(&t);
                    drop(t);
                    self.bar.inc(n);
                    self.bar.set_message(msg);
                    return Ok(());
                }
                Err(status) if attempt < MAX_ATTEMPTS && retriable(status.code()) => {
                    attempt += 1;
                    let msg = {
                        let mut t = self.truth.lock().expect("truth lock");
                        t.retried_requests += 1;
                        progress_message(&t)
                    };
                    self.bar.set_message(msg);
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
                    let mut t = self.truth.lock().expect("truth lock");
                    t.sent += n as u64;
                    t.failed += n as u64;
                    self.bar.inc(n as u64);
                    return Ok(());
                }
            }
        }
    }

    async fn publish(
        &mut self,
        store: usize,
        request: &mut Pending,
    ) -> Result<PublishResponse, Status> {
        if !self.unary_only.load(Ordering::Relaxed) {
            match self.publish_streamed(store, request).await {
                Err(status) if status.code() == Code::Unimplemented => {
                    if !self.unary_only.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            message = status.message(),
                            "gateway does not implement PublishStream: falling back to unary Publish"
                        );
                    }
                }
                answered => return answered,
            }
        }
        let mut req = Request::new(request.encoded());
        self.authorize(store, &mut req)?;
        self.unary.publish(req).await
    }

    /// Sends over the store's open stream (opening one if needed) and waits for the answer.
    /// Any error closes the stream; the retry opens a new one.
    async fn publish_streamed(
        &mut self,
        store: usize,
        request: &Pending,
    ) -> Result<PublishResponse, Status> {
        let mut open = match self.streams.remove(&store) {
            Some(open) => {
                open.requests
                    .send(request.message(&self.stores[store], open.next_sequence))
                    .await
                    .map_err(|_| Status::unavailable("request stream closed"))?;
                open
            }
            None => {
                let (requests, rx) = tokio::sync::mpsc::channel(4);
                // queued before the call, so a gateway that waits for the first message
                // before sending headers does not deadlock us
                requests
                    .send(request.message(&self.stores[store], 1))
                    .await
                    .map_err(|_| Status::internal("request channel closed"))?;
                let mut req = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
                self.authorize(store, &mut req)?;
                let responses = self.client.publish_stream(req).await?.into_inner();
                OpenStream {
                    requests,
                    responses,
                    next_sequence: 1,
                }
            }
        };
        let sequence = open.next_sequence;
        match open.responses.message().await? {
            Some(response) if response.sequence == sequence || response.sequence == 0 => {
                open.next_sequence += 1;
                self.streams.insert(store, open);
                Ok(response)
            }
            Some(response) => Err(Status::internal(format!(
                "stream answered sequence {} to request {sequence}",
                response.sequence
            ))),
            None => Err(Status::unavailable("gateway closed the stream")),
        }
    }

    fn authorize<T>(&self, store: usize, req: &mut Request<T>) -> Result<(), Status> {
        let value = format!("Bearer {}", self.stores[store].token)
            .parse()
            .map_err(|_| Status::internal("token is not valid metadata"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(())
    }
}

/// What the gateway asks to be tried again later.
fn retriable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Aborted
    )
}

fn progress_message(t: &Truth) -> String {
    format!(
        "accepted {} rejected {} retried {}",
        t.accepted, t.rejected, t.retried_requests
    )
}
