//! A generated request written straight from drafts into the protobuf bytes of a
//! `PublishRequest`, field by field as prost would write them, without building the
//! messages: building them cost a `String` per text field per event. The test
//! `drafts_encode_to_the_bytes_prost_writes` holds the bytes equal to prost's.

use std::sync::Arc;

use bytes::Bytes;
use pipeline::proto::ingest::Event;
use prost::encoding::encoded_len_varint;

use crate::{
    fleet::Store,
    generate::{Body, Draft, EventId, Generator, Model, Product},
};

/// One generated request: its drafts, kept for the ground truth, and its bytes, sent (and
/// resent on retries) as they are.
pub struct Generated {
    pub model: Arc<Model>,
    pub drafts: Vec<Draft>,
    pub encoded: Bytes,
}

impl Generated {
    /// The next `n` events of `store`.
    pub fn new(generator: &mut Generator, store: &Store, n: usize) -> Generated {
        let mut drafts = Vec::with_capacity(n);
        generator.drafts(store, n, &mut drafts);
        let model = generator.model().clone();
        let encoded = encode(&model, store, &drafts);
        Generated {
            model,
            drafts,
            encoded,
        }
    }

    /// The events as messages, for `PublishStream`.
    pub fn events(&self, store: &Store) -> Vec<Event> {
        self.drafts
            .iter()
            .map(|d| self.model.event(store, d))
            .collect()
    }
}

/// A generated request kept to be sent again and again with fresh event ids (`simulator run
/// --reuse-requests`): a load generator that costs less per event than the gateway it
/// drives, so that a benchmark measures the pipeline. Each send copies the bytes and the
/// drafts and overwrites every event's id in both; drawing and encoding the events is done
/// once. The events differ from the first send's in their ids only, and the ground truth
/// counts each send's own drafts.
pub struct Reusable {
    generated: Generated,
    /// Where each event's 36-byte id sits in the bytes
    ids_at: Vec<usize>,
}

impl Reusable {
    pub fn new(generated: Generated) -> Reusable {
        let ids_at = id_offsets(&generated.encoded);
        assert_eq!(ids_at.len(), generated.drafts.len(), "an id per draft");
        Reusable { generated, ids_at }
    }

    /// The request again, with ids drawn from `rng`.
    pub fn fresh(&self, rng: &mut impl rand::Rng) -> Generated {
        let mut bytes = self.generated.encoded.to_vec();
        let mut drafts = self.generated.drafts.clone();
        for (draft, &at) in drafts.iter_mut().zip(&self.ids_at) {
            draft.event_id = EventId::from_random(rng.random());
            bytes[at..at + 36].copy_from_slice(draft.event_id.as_bytes());
        }
        Generated {
            model: self.generated.model.clone(),
            drafts,
            encoded: Bytes::from(bytes),
        }
    }
}

/// The offsets of the event ids in a request [`encode`] wrote: every field of the request is
/// an event (`REQUEST_EVENTS`), whose first field is its 36-byte id.
fn id_offsets(mut bytes: &[u8]) -> Vec<usize> {
    let total = bytes.len();
    let mut offsets = Vec::new();
    while !bytes.is_empty() {
        // once per reused request: a layout other than encode's would overwrite other bytes
        let tag = prost::encoding::decode_varint(&mut bytes).expect("encode's own bytes");
        assert_eq!(tag, u64::from(REQUEST_EVENTS << 3 | LEN), "an event");
        let len = prost::encoding::decode_varint(&mut bytes).expect("encode's own bytes") as usize;
        assert_eq!(bytes[..2], [(EVENT_ID << 3 | LEN) as u8, 36], "an id first");
        offsets.push(total - bytes.len() + 2);
        bytes = &bytes[len..];
    }
    offsets
}

// Field numbers of marketplace/ingest/v1/ingest.proto.
const REQUEST_EVENTS: u32 = 2;
const EVENT_ID: u32 = 1;
const EVENT_OCCURRED_AT: u32 = 2;
const EVENT_STORE_ID: u32 = 3;
const EVENT_REGION: u32 = 4;
const EVENT_COMMERCE: u32 = 10;
const EVENT_PROBE: u32 = 11;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// The bytes of `PublishRequest { sequence: 0, events, all_or_nothing: false }` for the
/// events `drafts` stand for, sent by `store`.
pub fn encode(model: &Model, store: &Store, drafts: &[Draft]) -> Bytes {
    let fixed = Fixed {
        store_id: store.id.as_bytes(),
        region: store.region.to_proto() as i32 as u64,
        currency: model.currency(store.region).as_bytes(),
    };
    let lens: Vec<Lens> = drafts.iter().map(|d| Lens::of(model, &fixed, d)).collect();
    let total = lens.iter().map(|l| head_len(l.event) + l.event).sum();
    let mut buf = Vec::with_capacity(total);
    for (d, l) in drafts.iter().zip(&lens) {
        head(&mut buf, REQUEST_EVENTS, l.event);
        event(&mut buf, model, &fixed, d, l);
    }
    debug_assert_eq!(buf.len(), total);
    Bytes::from(buf)
}

/// The lengths of an event's messages, measured inside out so that no message is measured
/// again for every message around it.
struct Lens {
    timestamp: usize,
    /// Zero for probes.
    money: usize,
    payload: usize,
    event: usize,
}

impl Lens {
    fn of(model: &Model, fixed: &Fixed<'_>, d: &Draft) -> Lens {
        let mut l = Lens {
            timestamp: measure(|o| timestamp(o, d.seconds, d.nanos)),
            money: 0,
            payload: 0,
            event: 0,
        };
        if let Body::Commerce { product, .. } = d.body {
            l.money = measure(|o| money(o, fixed.currency, &model.catalog[product]));
        }
        l.payload = measure(|o| payload(o, model, fixed, &d.body, &l));
        l.event = measure(|o| event(o, model, fixed, d, &l));
        l
    }
}

fn measure(write: impl FnOnce(&mut Len)) -> usize {
    let mut len = Len(0);
    write(&mut len);
    len.0
}

/// What every event of a request shares.
struct Fixed<'a> {
    store_id: &'a [u8],
    region: u64,
    currency: &'a [u8],
}

/// Where fields go: a byte counter (to learn a message's length before writing it) or a
/// buffer. One set of field functions serves both, so length and bytes cannot disagree.
trait Out {
    fn varint(&mut self, value: u64);
    fn slice(&mut self, bytes: &[u8]);
    fn fixed64(&mut self, value: u64);
}

struct Len(usize);

impl Out for Len {
    fn varint(&mut self, value: u64) {
        self.0 += encoded_len_varint(value);
    }
    fn slice(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
    fn fixed64(&mut self, _: u64) {
        self.0 += 8;
    }
}

/// A `Vec` rather than `BytesMut`: `BufMut::put_u8` on `BytesMut` checks and may grow its
/// buffer for every byte, which made varints half of the encoding time.
impl Out for Vec<u8> {
    #[inline]
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.push(value as u8);
    }
    fn slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn fixed64(&mut self, value: u64) {
        self.extend_from_slice(&value.to_le_bytes());
    }
}

fn key<O: Out>(o: &mut O, tag: u32, wire_type: u32) {
    o.varint(u64::from(tag << 3 | wire_type));
}

/// proto3 scalars: a zero is not written.
fn uint<O: Out>(o: &mut O, tag: u32, value: u64) {
    if value != 0 {
        key(o, tag, VARINT);
        o.varint(value);
    }
}

/// int32 and int64 as prost writes them: negative values sign-extended to 64 bits.
fn int<O: Out>(o: &mut O, tag: u32, value: i64) {
    uint(o, tag, value as u64);
}

fn double<O: Out>(o: &mut O, tag: u32, value: f64) {
    if value != 0.0 {
        key(o, tag, FIXED64);
        o.fixed64(value.to_bits());
    }
}

fn string<O: Out>(o: &mut O, tag: u32, value: &[u8]) {
    if !value.is_empty() {
        key(o, tag, LEN);
        o.varint(value.len() as u64);
        o.slice(value);
    }
}

/// The key and length of a present sub-message (written even when empty, as prost writes
/// `Some(default)`).
fn head<O: Out>(o: &mut O, tag: u32, len: usize) {
    key(o, tag, LEN);
    o.varint(len as u64);
}

/// Bytes of the key and length of a sub-message of a field number below 16.
fn head_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64)
}

fn event<O: Out>(o: &mut O, model: &Model, fixed: &Fixed<'_>, d: &Draft, l: &Lens) {
    string(o, EVENT_ID, d.event_id.as_bytes());
    head(o, EVENT_OCCURRED_AT, l.timestamp);
    timestamp(o, d.seconds, d.nanos);
    string(o, EVENT_STORE_ID, fixed.store_id);
    uint(o, EVENT_REGION, fixed.region);
    let tag = match d.body {
        Body::Commerce { .. } => EVENT_COMMERCE,
        Body::Probe { .. } => EVENT_PROBE,
    };
    head(o, tag, l.payload);
    payload(o, model, fixed, &d.body, l);
}

fn timestamp<O: Out>(o: &mut O, seconds: i64, nanos: i32) {
    int(o, 1, seconds);
    int(o, 2, i64::from(nanos));
}

fn payload<O: Out>(o: &mut O, model: &Model, fixed: &Fixed<'_>, body: &Body, l: &Lens) {
    match *body {
        Body::Commerce {
            kind,
            product,
            quantity,
            user_id,
            session,
        } => {
            let p = &model.catalog[product];
            int(o, 1, kind as i64);
            uint(o, 2, p.id);
            uint(o, 3, p.category_id);
            string(o, 4, p.category_code.as_bytes());
            string(o, 5, p.brand.as_bytes());
            uint(o, 6, p.seller_id);
            head(o, 7, l.money);
            money(o, fixed.currency, p);
            uint(o, 8, u64::from(quantity));
            uint(o, 9, user_id);
            string(o, 10, &session_id(session));
        }
        Body::Probe { .. } => probe(o, model, body),
    }
}

fn money<O: Out>(o: &mut O, currency: &[u8], p: &Product) {
    let (units, nanos) = p.price();
    string(o, 1, currency);
    int(o, 2, units);
    int(o, 3, i64::from(nanos));
}

fn probe<O: Out>(o: &mut O, model: &Model, body: &Body) {
    let Body::Probe {
        target,
        vantage,
        up,
        status_code,
        response_time_ms,
        network_latency_ms,
        bandwidth_bytes_per_second,
        cpu_load,
    } = *body
    else {
        unreachable!("called for probe drafts")
    };
    string(o, 1, model.target(target).as_bytes());
    uint(o, 2, u64::from(up));
    uint(o, 3, u64::from(status_code));
    uint(o, 4, u64::from(response_time_ms));
    uint(o, 5, u64::from(network_latency_ms));
    uint(o, 6, bandwidth_bytes_per_second);
    double(o, 7, cpu_load);
    uint(o, 8, vantage.map_or(0, |v| v.to_proto() as u64));
}

/// `s-` and 16 lowercase hex digits, as [`crate::generate::session_id`] writes it, on the
/// stack.
fn session_id(session: u64) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = *b"s-0000000000000000";
    for (i, c) in text[2..].iter_mut().enumerate() {
        *c = HEX[(session >> (60 - 4 * i) & 0xf) as usize];
    }
    text
}

#[cfg(test)]
mod tests {
    use pipeline::proto::ingest::PublishRequest;
    use prost::Message as _;

    use super::*;
    use crate::{fleet::fleet, generate::Generator};

    #[test]
    fn drafts_encode_to_the_bytes_prost_writes() {
        let stores = fleet(2, "s");
        let mut g = Generator::new(11, 1_800_000_000);
        let mut probes = 0;
        for (round, store) in stores.iter().cycle().take(12).enumerate() {
            let mut drafts = Vec::new();
            g.drafts(store, 300 + round, &mut drafts);
            let events: Vec<_> = drafts.iter().map(|d| g.model().event(store, d)).collect();
            probes += events
                .iter()
                .filter(|e| {
                    matches!(
                        e.payload,
                        Some(pipeline::proto::ingest::event::Payload::Probe(_))
                    )
                })
                .count();
            let prost = PublishRequest {
                sequence: 0,
                events,
                all_or_nothing: false,
            }
            .encode_to_vec();
            assert_eq!(encode(g.model(), store, &drafts), prost, "round {round}");
        }
        assert!(probes > 0);
    }

    /// A reused request is the first one with other ids: the same events otherwise, in the
    /// same order, each id fresh, distinct and the one its draft holds (so the truth counts
    /// what was sent).
    #[test]
    fn reused_requests_differ_from_the_first_in_their_ids_only() {
        let stores = fleet(1, "s");
        let mut g = Generator::new(12, 1_800_000_000);
        let first = Generated::new(&mut g, &stores[2], 700);
        let original = PublishRequest::decode(&first.encoded[..]).unwrap();
        let reusable = Reusable::new(first);
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let again = reusable.fresh(&mut rng);
            let sent = PublishRequest::decode(&again.encoded[..]).unwrap();
            assert_eq!(sent.events.len(), original.events.len());
            for ((e, o), d) in sent.events.iter().zip(&original.events).zip(&again.drafts) {
                assert_ne!(e.event_id, o.event_id);
                assert_eq!(e.event_id, d.event_id.as_str());
                assert!(
                    uuid::Uuid::parse_str(&e.event_id)
                        .unwrap()
                        .get_version_num()
                        == 4
                );
                assert!(seen.insert(e.event_id.clone()), "an id sent twice");
                let mut same = e.clone();
                same.event_id = o.event_id.clone();
                assert_eq!(&same, o);
            }
        }
    }

    #[test]
    fn session_ids_match_the_formatted_ones() {
        for session in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(
                session_id(session).as_slice(),
                crate::generate::session_id(session).as_bytes()
            );
        }
    }
}
