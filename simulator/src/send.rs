//! The gRPC sender: requests in flight over several connections, paced to a rate, each
//! delivered by a `client::Client`, which retries per the contract with the identical bytes
//! (so the same event ids) and sends over unary `Publish`, or `PublishStream` with
//! `--streaming` (falling back to unary, with a warning, on a gateway that answers
//! UNIMPLEMENTED).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use client::{Batch, Client, Compression, Rejected, RetryPolicy, SendOptions};
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::proto::ingest::Event;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

use crate::{
    config::{RunArgs, SendArgs},
    fleet::{Store, scenario_fleet},
    generate::Generator,
    request::{Generated, Reusable},
    scenario::Scenario,
    truth::{Tally, Truth},
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

/// A job's batch while it is delivered: encoded once, so every retry sends the same bytes.
struct Pending {
    batch: Batch,
    events: Events,
}

impl Pending {
    fn new(events: Events) -> Pending {
        let batch = match &events {
            Events::Built(events) => Batch::new(events),
            Events::Generated(g) => Batch::from_encoded(g.encoded.clone(), g.drafts.len()),
        };
        Pending { batch, events }
    }

    /// Records in `truth` the events not in `rejected` (indices in ascending order).
    fn accept(&self, truth: &mut Truth, tally: &mut Tally, store: &Store, rejected: &[Rejected]) {
        let mut bad = rejected.iter().map(|r| r.index).peekable();
        let accepted = (0..self.batch.len()).filter(move |&i| bad.next_if_eq(&i).is_none());
        match &self.events {
            Events::Built(events) => accepted.for_each(|i| truth.accept(&events[i])),
            Events::Generated(g) => {
                truth.accept_drafts(tally, &g.model, store, accepted.map(|i| &g.drafts[i]))
            }
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
        let options = SendOptions {
            // the simulator shares the machine with the pipeline in benchmarks: loopback
            // needs no compression, and its cost would count against the gateway's figures
            compression: Compression::None,
            streaming: args.streaming,
            retry: RetryPolicy {
                max_attempts: Some(MAX_ATTEMPTS),
                ..RetryPolicy::default()
            },
            ..SendOptions::default()
        };
        let mut senders = Vec::new();
        anyhow::ensure!(!args.gateway.is_empty(), "no gateway url");
        let channel = |url: &str| {
            client::Config::new(url, "")
                .channel()
                .context("gateway url")
        };
        // every sender's clients derive from this one, so the streaming fallback is learnt once
        let token = stores.first().map_or("", |s| s.token.as_str());
        let base = Client::new(channel(&args.gateway[0])?, token, options)?;
        for i in 0..concurrency {
            let prototype = base.on_channel(channel(&args.gateway[i % args.gateway.len()])?);
            let sender = Sender {
                prototype,
                clients: HashMap::new(),
                stores: stores.clone(),
                truth: truth.clone(),
                bar: bar.clone(),
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
    let batch = args.send.batch_size.max(1);
    let held = args.reuse_requests.saturating_mul(batch);
    anyhow::ensure!(
        held <= crate::config::MAX_HELD_EVENTS,
        "--reuse-requests {} of --batch-size {batch} would hold {held} events in memory; at most \
         {} (fewer requests, or smaller ones)",
        args.reuse_requests,
        crate::config::MAX_HELD_EVENTS
    );
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

    let reused: Vec<(usize, Reusable)> = (0..args.reuse_requests)
        .map(|k| {
            let store = k % stores.len();
            let request = Generated::new(&mut generator, &stores[store], batch);
            (store, Reusable::new(request))
        })
        .collect();
    let mut fresh_ids = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(1));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
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
        let (store, events) = match reused.get(next_store % reused.len().max(1)) {
            Some((store, request)) if n == batch => (*store, request.fresh(&mut fresh_ids)),
            _ => {
                let store = next_store % stores.len();
                (store, Generated::new(&mut generator, &stores[store], n))
            }
        };
        next_store += 1;
        let events = Events::Generated(events);
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

/// One connection's worth of sending.
struct Sender {
    /// This connection's client; the stores' clients are made from it.
    prototype: Client,
    /// One client per store (the token is per call, and a stream per client).
    clients: HashMap<usize, Client>,
    stores: Arc<Vec<Store>>,
    truth: Arc<Mutex<Truth>>,
    bar: ProgressBar,
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

    /// Sends one job until it is answered; the client retries retriable refusals.
    async fn deliver(&mut self, job: Job) -> anyhow::Result<()> {
        let pending = Pending::new(job.events);
        let n = pending.batch.len() as u64;
        let stores = self.stores.clone();
        let store = &stores[job.store];
        let client = match self.clients.entry(job.store) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.prototype.with_token(&store.token)?)
            }
        };
        let result = client.send(&pending.batch).await;
        let mut t = self.truth.lock().expect("truth lock");
        t.sent += n;
        match result {
            Ok(ack) => {
                t.retried_requests += u64::from(ack.attempts.saturating_sub(1));
                t.rejected += ack.rejected.len() as u64;
                pending.accept(&mut t, &mut self.tally, store, &ack.rejected);
            }
            Err(err) => {
                tracing::warn!(code = ?err.code(), error = %err, "request failed");
                if let client::SendError::GaveUp { attempts, .. } = &err {
                    t.retried_requests += u64::from(attempts.saturating_sub(1));
                }
                t.fail(n, &err);
            }
        }
        let msg = progress_message(&t);
        drop(t);
        self.bar.inc(n);
        self.bar.set_message(msg);
        Ok(())
    }
}

fn progress_message(t: &Truth) -> String {
    format!(
        "accepted {} rejected {} retried {}",
        t.accepted, t.rejected, t.retried_requests
    )
}
