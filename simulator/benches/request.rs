//! The simulator's CPU cost per event of `simulator run --rate 0`: generating a request,
//! encoding it, and recording the gateway's answer in the ground truth. In `scripts/bench`
//! the simulator shares the machine with the pipeline, so this cost counts against it.
//!
//! Run: `cargo bench -p simulator --bench request -- --warm-up-time 1 --measurement-time 5`.
//! Throughput is in events: criterion prints the time of one request of 2,000 events
//! (`BENCH_BATCH`'s default) and events/s. Group `drafted` is what `run` does; group `built`
//! builds prost messages first, as `run` did before (and as replay still does), for
//! comparison. Figures: docs/bench/simulator-profile.md.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pipeline::proto::ingest::PublishRequest;
use prost::Message as _;
use simulator::{
    fleet::fleet,
    generate::Generator,
    request,
    request::Generated,
    truth::{Tally, Truth},
};

const BATCH: usize = 2_000;
const TIME_BASE: i64 = 1_800_000_000;

fn truth() -> Truth {
    Truth {
        forget_ids: true,
        ..Truth::default()
    }
}

fn drafted(c: &mut Criterion) {
    let stores = fleet(2, "bench");
    let mut g = c.benchmark_group("drafted");
    g.throughput(Throughput::Elements(BATCH as u64));

    let mut generator = Generator::new(42, TIME_BASE);
    let mut next = 0;
    g.bench_function("generate", |b| {
        b.iter(|| {
            next += 1;
            let mut drafts = Vec::with_capacity(BATCH);
            generator.drafts(&stores[next % stores.len()], BATCH, &mut drafts);
            black_box(drafts)
        })
    });

    let sample = Generated::new(&mut Generator::new(42, TIME_BASE), &stores[0], BATCH);
    g.bench_function("encode", |b| {
        b.iter(|| black_box(request::encode(&sample.model, &stores[0], &sample.drafts)))
    });

    let (mut t, mut tally) = (truth(), Tally::default());
    g.bench_function("truth", |b| {
        b.iter(|| t.accept_drafts(&mut tally, &sample.model, &stores[0], &sample.drafts))
    });

    let mut generator = Generator::new(42, TIME_BASE);
    let (mut t, mut tally) = (truth(), Tally::default());
    let mut next = 0;
    g.bench_function("all", |b| {
        b.iter(|| {
            next += 1;
            let store = &stores[next % stores.len()];
            let generated = Generated::new(&mut generator, store, BATCH);
            t.accept_drafts(&mut tally, &generated.model, store, &generated.drafts);
            black_box(generated.encoded)
        })
    });
    g.finish();
}

fn built(c: &mut Criterion) {
    let stores = fleet(2, "bench");
    let mut g = c.benchmark_group("built");
    g.throughput(Throughput::Elements(BATCH as u64));

    let mut generator = Generator::new(42, TIME_BASE);
    let mut next = 0;
    g.bench_function("generate", |b| {
        b.iter(|| {
            next += 1;
            black_box(generator.batch(&stores[next % stores.len()], BATCH))
        })
    });

    let events = Generator::new(42, TIME_BASE).batch(&stores[0], BATCH);
    let req = PublishRequest {
        sequence: 0,
        events: events.clone(),
        all_or_nothing: false,
    };
    g.bench_function("encode", |b| b.iter(|| black_box(req.encode_to_vec())));

    let mut t = truth();
    g.bench_function("truth", |b| {
        b.iter(|| {
            for e in &events {
                t.accept(e);
            }
        })
    });

    g.bench_function("drop", |b| {
        b.iter_batched(|| events.clone(), drop, BatchSize::SmallInput)
    });

    let mut generator = Generator::new(42, TIME_BASE);
    let mut t = truth();
    let mut next = 0;
    g.bench_function("all", |b| {
        b.iter(|| {
            next += 1;
            let events = generator.batch(&stores[next % stores.len()], BATCH);
            let req = PublishRequest {
                sequence: 0,
                events,
                all_or_nothing: false,
            };
            let bytes = bytes::Bytes::from(req.encode_to_vec());
            for e in &req.events {
                t.accept(e);
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, drafted, built);
criterion_main!(benches);
