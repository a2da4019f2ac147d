//! The event rules, one table, shared by the gateway (on requests) and the consumer (on
//! stream entries written by producers it cannot trust).
//!
//! Each rule in [`RULES`] has a name, the contract it enforces and a check. A failing check
//! reports a [`Violation`] whose field path is relative to the request
//! (`events[3].commerce.price.units`) and whose description says what is wrong and what
//! is allowed. Valid events cost no allocation: paths and texts are built only on failure.

use std::{borrow::Cow, fmt::Write as _, time::Duration};

use crate::{
    proto::ingest::{CommerceEventType, Event, event::Payload},
    region::Region,
    view::{CommerceView, EventView, MoneyView, PayloadView, ProbeView},
};

/// Longest `store_id`.
pub const MAX_STORE_ID_LEN: usize = 64;
/// Longest `category_code`, `brand` and `session_id`.
pub const MAX_TEXT_LEN: usize = 128;
/// Longest probe `target`.
pub const MAX_TARGET_LEN: usize = 256;
/// Largest quantity of one line; far above real carts, low enough to catch corrupt data.
pub const MAX_QUANTITY: u32 = 10_000;
/// Largest unit price in whole units (ClickHouse `Decimal(18, 9)` holds up to ~9.2e9).
pub const MAX_PRICE_UNITS: i64 = 1_000_000_000;
/// Largest line total, `price × quantity`, in whole units: a trillion, far above any real
/// order line even in currencies of small units (VND, IDR), so that a line is a bounded
/// term of every sum. Sums are `Decimal(38, 9)` in ClickHouse and `i128` nanos in Rust,
/// exact up to ~1.7e29 units: more than 1e17 maximal lines per day and currency (the
/// README's table of money limits).
pub const MAX_LINE_TOTAL_UNITS: i64 = 1_000_000_000_000;

/// Most bytes one event may take as its store encoded it: the gateway refuses a request
/// holding a larger one (`EVENT_TOO_LARGE`), so that every event, and every rejected event's
/// raw bytes, fits a stream entry ([`crate::entry::MAX_BATCH_BYTES`]). Every rule here keeps
/// a valid event under 2 KiB (texts of at most [`MAX_TEXT_LEN`]); the rest is room for fields
/// a newer client adds.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Most bytes of a value the store sent that a description (or a rejected event's id) echoes
/// back: a 4 MiB currency code must not become a 4 MiB violation, in the response and again
/// in the queued entry.
pub const MAX_ECHO_BYTES: usize = 256;

/// What ends a value cut at [`MAX_ECHO_BYTES`].
const CUT_MARKER: &str = "…";

/// `value`, or its first bytes up to [`MAX_ECHO_BYTES`] in all (cut at a character boundary)
/// followed by `…` when it is longer.
pub fn truncated(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_ECHO_BYTES {
        return value.into();
    }
    let mut end = MAX_ECHO_BYTES - CUT_MARKER.len();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_MARKER}", &value[..end]).into()
}

/// `value` quoted and escaped as Rust's `{:?}` writes it, at most [`MAX_ECHO_BYTES`]
/// bytes: a longer one is cut (inside the quotes) and ends with `…`.
pub fn echo(value: &str) -> String {
    // escaping can make each byte several (`\u{1}`), so cut before and after escaping
    let quoted = format!("{:?}", &*truncated(value));
    truncated(&quoted).into_owned()
}

/// Configurable limits of the rules.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How far in the future `occurred_at` may be, for clock skew.
    pub max_future_skew: Duration,
    /// How far in the past `occurred_at` may be.
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_future_skew: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Limits {
    /// No time window: the consumer's limits. How old or how far ahead an event may be is
    /// the gateway's admission policy (`GATEWAY_MAX_EVENT_AGE`, `GATEWAY_MAX_FUTURE_SKEW`),
    /// decided once, at receipt, with the settings only the gateway has; checking it again
    /// later with other settings rejected events the gateway had acknowledged
    /// (ARCHITECTURE.md, "One source of limits"). Every other rule, and the range a
    /// `DateTime` column holds, is free of settings and applies in both.
    pub fn unbounded() -> Limits {
        Limits {
            max_future_skew: Duration::MAX,
            max_age: Duration::MAX,
        }
    }
}

/// One broken rule of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path relative to the request, e.g. `events[3].commerce.price.units`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub description: String,
}

/// Who a request was authenticated as.
#[derive(Clone, Copy, Debug)]
pub enum Sender<'a> {
    /// A store: every event is its own, so events must not claim another store or region.
    Store { store_id: &'a str, region: Region },
    /// A prober (`role = "prober"` in the gateway's stores file) taking probes from
    /// `region`: it publishes probe results only, each for a known store, with `region` as
    /// the vantage region.
    Prober {
        prober_id: &'a str,
        region: Region,
        /// The stores it may probe. `None` in the consumer, which trusts the gateway's
        /// check against its stores file (it has no stores file).
        stores: Option<&'a dyn KnownStores>,
    },
}

/// The stores a prober may publish probe results for, and their regions.
pub trait KnownStores: std::fmt::Debug + Sync {
    /// The region of store `store_id`, or `None` when there is no such store.
    fn region_of(&self, store_id: &str) -> Option<Region>;
}

/// The context the rules are checked in.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub limits: &'a Limits,
    /// "Now", in Unix seconds: the gateway's clock. The consumer passes the entry's
    /// `received_at`, though with [`Limits::unbounded`] no rule of its reads it.
    pub now_unix: i64,
    /// The authenticated sender, when known.
    pub sender: Option<Sender<'a>>,
}

/// A rule: a name for tests and docs, the contract, and the check.
pub struct Rule {
    pub name: &'static str,
    pub contract: &'static str,
    check: fn(&Context<'_>, &EventView<'_>, &mut Collector<'_>),
}

/// Collects the violations of one event, building paths only on failure.
struct Collector<'a> {
    index: usize,
    out: &'a mut Vec<Violation>,
    /// The event's id as [`parse_canonical_uuid`] reads it: parsed once for the `event_id`
    /// rule and the duplicate-id rule, which sorts by it.
    canonical_id: Option<u128>,
}

impl Collector<'_> {
    fn fail(&mut self, field: &str, description: impl Into<String>) {
        let mut path = String::with_capacity(field.len() + 12);
        let _ = write!(path, "events[{}].{field}", self.index);
        self.out.push(Violation {
            field: path,
            description: description.into(),
        });
    }
}

/// Every rule, in the order violations are reported.
pub static RULES: &[Rule] = &[
    Rule {
        name: "event_id",
        contract: "event_id is a UUID in canonical lowercase form",
        check: check_event_id,
    },
    Rule {
        name: "occurred_at",
        contract: "occurred_at is set, within the allowed skew and age",
        check: check_occurred_at,
    },
    Rule {
        name: "store_id",
        contract: "store_id is set, at most 64 bytes, and is the authenticated store",
        check: check_store_id,
    },
    Rule {
        name: "region",
        contract: "region is set and is the authenticated store's region",
        check: check_region,
    },
    Rule {
        name: "payload",
        contract: "exactly one payload: commerce or probe; a prober sends probes only",
        check: check_payload,
    },
    Rule {
        name: "commerce",
        contract: "commerce events: type set, ids non-zero, texts bounded, price and quantity valid",
        check: check_commerce,
    },
    Rule {
        name: "probe",
        contract: "probes: target set, status_code 100..=599 (or 0 when down without a \
                   response), cpu_load within 0..=1, \
                   vantage_region known (a prober's own region when a prober sends), \
                   tls_handshake_ms and time_to_first_byte_ms at most response_time_ms",
        check: check_probe,
    },
];

/// What the rules read: an event, owned or borrowed, seen as an [`EventView`]. The rules
/// are written once, over views; an owned prost [`Event`] is viewed by borrowing its
/// strings, a view decoded from an entry's bytes (`entry::BatchView`) is one already.
pub trait AsView {
    fn view(&self) -> Cow<'_, EventView<'_>>;
    /// `view().event_id`, without making a view of an owned event.
    fn event_id(&self) -> &str;
    /// `view().region`, likewise.
    fn region(&self) -> i32;
    /// `view().occurred_at`, likewise.
    fn occurred_at(&self) -> Option<prost_types::Timestamp>;
}

impl AsView for Event {
    fn view(&self) -> Cow<'_, EventView<'_>> {
        Cow::Owned(self.into())
    }
    fn event_id(&self) -> &str {
        &self.event_id
    }
    fn region(&self) -> i32 {
        self.region
    }
    fn occurred_at(&self) -> Option<prost_types::Timestamp> {
        self.occurred_at
    }
}

impl AsView for EventView<'_> {
    fn view(&self) -> Cow<'_, EventView<'_>> {
        Cow::Borrowed(self)
    }
    fn event_id(&self) -> &str {
        self.event_id
    }
    fn region(&self) -> i32 {
        self.region
    }
    fn occurred_at(&self) -> Option<prost_types::Timestamp> {
        self.occurred_at
    }
}

/// An event that passed every rule of a batch: an owned [`Event`] (the gateway's) or an
/// [`EventView`] (the consumer's). Only [`check_batch`] makes one, so code that takes an
/// `Accepted` (the row conversion, the gateway's queued batch) has no "what if it is
/// invalid" branch: a payload and `occurred_at` are there.
///
/// `repr(transparent)`: turning the accepted events back into `Event`s reuses their
/// vector's allocation.
#[derive(Clone, Debug, PartialEq)]
#[repr(transparent)]
pub struct Accepted<E = Event>(E);

impl<E> Accepted<E> {
    pub fn event(&self) -> &E {
        &self.0
    }

    /// The event, to be moved into the queued batch.
    pub fn into_event(self) -> E {
        self.0
    }
}

impl Accepted<Event> {
    /// The payload, which the `payload` rule requires.
    pub fn payload(&self) -> &Payload {
        match &self.0.payload {
            Some(payload) => payload,
            None => unreachable!("check_batch accepts no event without a payload"),
        }
    }
}

impl<'a> Accepted<EventView<'a>> {
    /// The payload, which the `payload` rule requires.
    pub fn payload(&self) -> &PayloadView<'a> {
        match &self.0.payload {
            Some(payload) => payload,
            None => unreachable!("check_batch accepts no event without a payload"),
        }
    }
}

impl<E: AsView> Accepted<E> {
    /// The event's id as a UUID, which the `event_id` rule requires (canonical lowercase, so
    /// `to_string` gives back the text the store sent).
    pub fn event_id(&self) -> uuid::Uuid {
        match uuid::Uuid::try_parse(self.0.event_id()) {
            Ok(id) => id,
            Err(_) => unreachable!("check_batch accepts no event whose id is not a UUID"),
        }
    }

    /// The event's region (its store's), which the `region` rule requires.
    pub fn region(&self) -> Region {
        match Region::from_proto(self.0.region()) {
            Some(region) => region,
            None => unreachable!("check_batch accepts no event without a known region"),
        }
    }

    /// When the event happened, in Unix seconds; the `occurred_at` rule requires it.
    pub fn occurred_at(&self) -> i64 {
        self.0.occurred_at().map_or(0, |t| t.seconds)
    }
}

/// An event that broke at least one rule, with its index in the batch and every
/// violation.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected<E = Event> {
    pub index: usize,
    pub event: E,
    pub violations: Vec<Violation>,
}

impl<E> Rejected<E> {
    /// The violations as the `reason` text of a rejected row.
    pub fn reason(&self) -> String {
        reason(&self.violations)
    }
}

/// A batch split by the rules: what may be loaded, and what may not and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked<E = Event> {
    /// Accepted events, in batch order.
    pub accepted: Vec<Accepted<E>>,
    /// Rejected events, in batch order.
    pub rejected: Vec<Rejected<E>>,
    /// The id of each accepted event, in the same order, as the rules parsed it: the rows
    /// take it from here instead of parsing the text again (#19). Private, so that it
    /// always matches `accepted` ([`Checked::with_ids`]).
    ids: Vec<u128>,
}

impl<E> Default for Checked<E> {
    fn default() -> Self {
        Checked {
            accepted: Vec::new(),
            rejected: Vec::new(),
            ids: Vec::new(),
        }
    }
}

impl<E> Checked<E> {
    pub fn is_clean(&self) -> bool {
        self.rejected.is_empty()
    }

    /// Each accepted event with its id, in batch order: [`Accepted::event_id`] without
    /// parsing the id again.
    ///
    /// # Panics
    /// If `accepted` was changed since the check (it is public): a zip of unequal lists
    /// would pair events with the wrong ids, or drop some, without a word.
    pub fn with_ids(&self) -> impl Iterator<Item = (&Accepted<E>, uuid::Uuid)> {
        assert_eq!(
            self.accepted.len(),
            self.ids.len(),
            "Checked::accepted changed after the check"
        );
        self.accepted
            .iter()
            .zip(self.ids.iter().map(|&bits| uuid::Uuid::from_u128(bits)))
    }
}

/// Checks every event of a batch, plus the batch-wide rule that event ids are unique, and
/// splits the batch by the verdict. Events are moved, not copied.
pub fn check_batch<E: AsView>(ctx: &Context<'_>, events: Vec<E>) -> Checked<E> {
    let (bad, canonical) = violations(ctx, &events);
    if bad.is_empty() {
        // The common case, every event valid: `Accepted` is `Event` underneath
        // (`repr(transparent)`), so this collect reuses the request's allocation in place
        // instead of copying every event into a new one (gateway/benches/hot_path.rs).
        // Every id is then canonical, one per event: the ids the rules parsed, moved.
        return Checked {
            accepted: events.into_iter().map(Accepted).collect(),
            rejected: Vec::new(),
            ids: canonical,
        };
    }
    let mut bad = bad.into_iter().peekable();
    let mut checked = Checked {
        accepted: Vec::with_capacity(events.len()),
        rejected: Vec::new(),
        ids: Vec::with_capacity(events.len()),
    };
    for (index, event) in events.into_iter().enumerate() {
        match bad.next_if(|(i, _)| *i == index) {
            None => {
                // `canonical` holds the ids of rejected events too: the accepted ones'
                // parsed again, in this rare case
                match parse_canonical_uuid(event.event_id()) {
                    Some(bits) => checked.ids.push(bits),
                    None => unreachable!("the event_id rule accepts only canonical ids"),
                }
                checked.accepted.push(Accepted(event));
            }
            Some((_, violations)) => checked.rejected.push(Rejected {
                index,
                event,
                violations,
            }),
        }
    }
    checked
}

/// Every rejected event's index and violations, in index order; and the canonical ids
/// (one per event when none is rejected).
fn violations<E: AsView>(
    ctx: &Context<'_>,
    events: &[E],
) -> (Vec<(usize, Vec<Violation>)>, Vec<u128>) {
    let mut rejected = Vec::new();
    let mut canonical: Vec<u128> = Vec::with_capacity(events.len());
    let mut other: Vec<(&str, usize)> = Vec::new();
    let mut violations = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let id = event.event_id();
        let canonical_id = parse_canonical_uuid(id);
        check_parsed(ctx, index, &event.view(), canonical_id, &mut violations);
        match canonical_id {
            Some(bits) => canonical.push(bits),
            None if id.is_empty() => {}
            None => other.push((id, index)),
        }
        if !violations.is_empty() {
            rejected.push((index, std::mem::take(&mut violations)));
        }
    }
    // which events repeat an id only when one does, which almost never happens: the ids
    // then are parsed again, with their indexes
    let indexed = if any_repeat(&canonical) {
        events
            .iter()
            .enumerate()
            .filter_map(|(index, e)| parse_canonical_uuid(e.event_id()).map(|id| (id, index)))
            .collect()
    } else {
        Vec::new()
    };
    let repeats = repeats(indexed, other);
    if repeats.is_empty() {
        return (rejected, canonical);
    }
    // each repeat's violation after its event's others, the events in index order
    let mut merged = Vec::with_capacity(rejected.len() + repeats.len());
    let mut rejected = rejected.into_iter().peekable();
    for (index, first) in repeats {
        merged.extend(std::iter::from_fn(|| rejected.next_if(|&(i, _)| i < index)));
        let mut violations = rejected
            .next_if(|&(i, _)| i == index)
            .map_or_else(Vec::new, |(_, violations)| violations);
        Collector {
            index,
            out: &mut violations,
            canonical_id: None,
        }
        .fail(
            "event_id",
            format!(
                "duplicates events[{first}].event_id; event ids must be unique within a request"
            ),
        );
        merged.push((index, violations));
    }
    merged.extend(rejected);
    (merged, canonical)
}

/// Every event whose non-empty id an earlier event of the batch has, as (its index, the
/// index of the first event with that id), in index order, from the events' ids: the
/// canonical ones as their bits, the others as text, each with its event's index.
///
/// Ids are compared as text, found by sorting rather than hashing: no hash function that
/// a store choosing its ids could flood, O(n log n) whatever the ids. A canonical UUID (the
/// one spelling the `event_id` rule accepts) is sorted as its 128 bits, which compare in a
/// few instructions where the text takes a `memcmp`; the bits and the text are one-to-one
/// for canonical ids, and no other text is one, so any other id (rejected by the
/// `event_id` rule anyway, and still reported as a duplicate) is sorted as text, apart.
/// An id in upper case or without hyphens is therefore not a duplicate of its canonical
/// spelling, as when ids were compared as text in a `HashMap`.
fn repeats(
    mut canonical: Vec<(u128, usize)>,
    mut other: Vec<(&str, usize)>,
) -> Vec<(usize, usize)> {
    // by id, then by index: the first of a run of equal ids is the first event with it
    canonical.sort_unstable();
    other.sort_unstable();
    let mut found = Vec::new();
    for_each_repeat(&canonical, &mut found);
    for_each_repeat(&other, &mut found);
    found.sort_unstable();
    found
}

/// Whether two of `ids` are equal, in about linear time when their lowest bits differ (those
/// of random ids, version 4 or 7, and of sequential ones): the ids are spread into buckets
/// by their lowest bits, at least as many buckets as ids (a counting sort's two passes),
/// and each bucket of more than one is sorted on its own. Ids a store chose to share their
/// low bits land in one bucket, sorted like the whole: O(n log n) at worst, as before, and
/// still no hash to flood. About a tenth of sorting them all with their indexes (#19).
fn any_repeat(ids: &[u128]) -> bool {
    if ids.len() < 2 {
        return false;
    }
    let mask = ids.len().next_power_of_two() - 1;
    let bucket = |id: u128| id as usize & mask;
    // each bucket's size, then where it starts, then (after spreading) where it ends
    let mut ends = vec![0usize; mask + 1];
    for &id in ids {
        ends[bucket(id)] += 1;
    }
    let mut start = 0;
    for end in &mut ends {
        let size = *end;
        *end = start;
        start += size;
    }
    let mut spread = vec![0u128; ids.len()];
    for &id in ids {
        let at = &mut ends[bucket(id)];
        spread[*at] = id;
        *at += 1;
    }
    let mut start = 0;
    for &end in &ends {
        let run = &mut spread[start..end];
        if run.len() > 1 {
            run.sort_unstable();
            if run.windows(2).any(|pair| pair[0] == pair[1]) {
                return true;
            }
        }
        start = end;
    }
    false
}

/// Appends to `found` (index, first index) for every entry of `sorted` (sorted by key, then
/// index) whose key an earlier entry has.
fn for_each_repeat<K: PartialEq>(sorted: &[(K, usize)], found: &mut Vec<(usize, usize)>) {
    for run in sorted.chunk_by(|a, b| a.0 == b.0) {
        if let [(_, first), repeats @ ..] = run {
            found.extend(repeats.iter().map(|&(_, index)| (index, *first)));
        }
    }
}

/// The violations of one event as the `reason` text of a rejected row: `field: description`,
/// one per line.
pub fn reason(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks one event against every rule, appending violations to `out`.
pub fn check_event(ctx: &Context<'_>, index: usize, event: &Event, out: &mut Vec<Violation>) {
    check_view(ctx, index, &event.view(), out);
}

/// Checks one event, owned or borrowed, against every rule, appending violations to `out`.
pub fn check_view(
    ctx: &Context<'_>,
    index: usize,
    event: &EventView<'_>,
    out: &mut Vec<Violation>,
) {
    check_parsed(ctx, index, event, parse_canonical_uuid(event.event_id), out);
}

/// [`check_view`] of an event whose id [`parse_canonical_uuid`] read already.
fn check_parsed(
    ctx: &Context<'_>,
    index: usize,
    event: &EventView<'_>,
    canonical_id: Option<u128>,
    out: &mut Vec<Violation>,
) {
    let mut sink = Collector {
        index,
        out,
        canonical_id,
    };
    for rule in RULES {
        (rule.check)(ctx, event, &mut sink);
    }
}

fn check_event_id(_: &Context<'_>, e: &EventView<'_>, sink: &mut Collector<'_>) {
    if e.event_id.is_empty() {
        sink.fail(
            "event_id",
            "is required: a UUID chosen by the store, reused on retries",
        );
    } else if sink.canonical_id.is_none() {
        sink.fail(
            "event_id",
            "must be a UUID in canonical lowercase form, e.g. 0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10",
        );
    }
}

/// The 128 bits of `s` when it is a UUID written as the `event_id` rule requires,
/// `8-4-4-4-12` lowercase hex digits, else `None`: one spelling per id, so that equal ids
/// are equal texts and equal bits alike.
pub fn parse_canonical_uuid(s: &str) -> Option<u128> {
    let b: &[u8; 36] = s.as_bytes().try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    // the 32 digits side by side, then each one's value: one loop of the same steps per
    // byte, which LLVM turns into a few vector instructions (about a quarter fewer
    // instructions per id than words of eight checked in scalar steps, BENCHMARKS.md)
    let mut digits = [0u8; 32];
    digits[..8].copy_from_slice(&b[..8]);
    digits[8..12].copy_from_slice(&b[9..13]);
    digits[12..16].copy_from_slice(&b[14..18]);
    digits[16..20].copy_from_slice(&b[19..23]);
    digits[20..].copy_from_slice(&b[24..]);
    let mut not_hex = 0u8;
    for digit in &mut digits {
        let decimal = digit.wrapping_sub(b'0');
        let letter = digit.wrapping_sub(b'a');
        not_hex |= u8::from(decimal >= 10 && letter >= 6);
        *digit = if decimal < 10 {
            decimal
        } else {
            letter.wrapping_add(10)
        };
    }
    if not_hex != 0 {
        return None;
    }
    let (words, _) = digits.as_chunks::<8>();
    Some(words.iter().fold(0u128, |bits, word| {
        bits << 32 | u128::from(pack_nibbles(u64::from_le_bytes(*word)))
    }))
}

/// Eight values of 0 to 15, one per byte (the first in the lowest), as the 32 bits they
/// spell, the first value highest.
fn pack_nibbles(v: u64) -> u32 {
    // pairs of bytes, pairs of pairs and the two halves put together, first digits high
    let v = ((v & 0x000f_000f_000f_000f) << 4) | ((v >> 8) & 0x000f_000f_000f_000f);
    let v = ((v & 0x0000_00ff_0000_00ff) << 8) | ((v >> 16) & 0x0000_00ff_0000_00ff);
    (((v & 0xffff) << 16) | ((v >> 32) & 0xffff)) as u32
}

fn check_occurred_at(ctx: &Context<'_>, e: &EventView<'_>, sink: &mut Collector<'_>) {
    let Some(ts) = &e.occurred_at else {
        sink.fail(
            "occurred_at",
            "is required: when the event happened at the store",
        );
        return;
    };
    if !(0..1_000_000_000).contains(&ts.nanos) {
        sink.fail("occurred_at.nanos", "must be within 0..=999999999");
        return;
    }
    // What the tables' DateTime holds, whatever the limits: a consumer with no time window
    // must refuse what the gateway refuses here too, and stores nothing clamped.
    if !(0..=i64::from(u32::MAX)).contains(&ts.seconds) {
        sink.fail(
            "occurred_at",
            "must be within 1970-01-01T00:00:00Z..=2106-02-07T06:28:15Z",
        );
        return;
    }
    // Saturating and abs_diff: `seconds` is whatever the store sent (i64::MIN included),
    // and in the consumer `now_unix` is an entry's received_at, which a broken producer
    // may set to anything. Found by the fuzz target `publish_request`.
    let skew = i64::try_from(ctx.limits.max_future_skew.as_secs()).unwrap_or(i64::MAX);
    let age = i64::try_from(ctx.limits.max_age.as_secs()).unwrap_or(i64::MAX);
    if ts.seconds > ctx.now_unix.saturating_add(skew) {
        sink.fail(
            "occurred_at",
            format!(
                "is {} s in the future; at most {skew} s of clock skew is allowed",
                ts.seconds.abs_diff(ctx.now_unix)
            ),
        );
    } else if ts.seconds < ctx.now_unix.saturating_sub(age) {
        sink.fail(
            "occurred_at",
            format!(
                "is {} s old; events older than {age} s are not accepted",
                ctx.now_unix.abs_diff(ts.seconds)
            ),
        );
    }
}

fn check_store_id(ctx: &Context<'_>, e: &EventView<'_>, sink: &mut Collector<'_>) {
    if e.store_id.is_empty() {
        sink.fail("store_id", "is required: the sending store's id");
    } else if e.store_id.len() > MAX_STORE_ID_LEN {
        sink.fail(
            "store_id",
            format!(
                "is {} bytes long; at most {MAX_STORE_ID_LEN} are allowed",
                e.store_id.len()
            ),
        );
    } else {
        match ctx.sender {
            Some(Sender::Store { store_id, .. }) if e.store_id != store_id => sink.fail(
                "store_id",
                format!(
                    "claims store {} but the caller is authenticated as {store_id:?}",
                    echo(e.store_id),
                ),
            ),
            Some(Sender::Prober {
                prober_id,
                stores: Some(stores),
                ..
            }) if stores.region_of(e.store_id).is_none() => sink.fail(
                "store_id",
                format!(
                    "{} is not a known store; prober {prober_id:?} may probe known stores only",
                    echo(e.store_id),
                ),
            ),
            _ => {}
        }
    }
}

fn check_region(ctx: &Context<'_>, e: &EventView<'_>, sink: &mut Collector<'_>) {
    match Region::from_proto(e.region) {
        None if e.region == 0 => sink.fail(
            "region",
            "is required: REGION_EUROPE, REGION_AMERICA or REGION_ASIA",
        ),
        None => sink.fail(
            "region",
            format!(
                "has unknown value {}; allowed: REGION_EUROPE, REGION_AMERICA, REGION_ASIA",
                e.region
            ),
        ),
        Some(region) => {
            // where the event's store is, when the sender lets us know
            let store = match ctx.sender {
                Some(Sender::Store { store_id, region }) => Some((store_id, region)),
                Some(Sender::Prober {
                    stores: Some(stores),
                    ..
                }) => stores
                    .region_of(e.store_id)
                    .map(|known| (e.store_id, known)),
                _ => None,
            };
            if let Some((store_id, known)) = store
                && region != known
            {
                sink.fail(
                    "region",
                    format!("claims {region} but store {store_id:?} is in {known}"),
                );
            }
        }
    }
}

fn check_payload(ctx: &Context<'_>, e: &EventView<'_>, sink: &mut Collector<'_>) {
    match (&e.payload, ctx.sender) {
        (None, _) => sink.fail("payload", "is required: exactly one of commerce or probe"),
        (Some(PayloadView::Commerce(_)), Some(Sender::Prober { prober_id, .. })) => sink.fail(
            "commerce",
            format!("is not allowed: prober {prober_id:?} may publish probe results only"),
        ),
        _ => {}
    }
}

fn check_commerce(_: &Context<'_>, e: &EventView<'_>, sink: &mut Collector<'_>) {
    let Some(PayloadView::Commerce(c)) = &e.payload else {
        return;
    };
    let kind = CommerceEventType::try_from(c.r#type);
    match kind {
        Ok(CommerceEventType::Unspecified) => sink.fail(
            "commerce.type",
            "is required: VIEW, CART, REMOVE_FROM_CART or PURCHASE",
        ),
        Err(_) => sink.fail(
            "commerce.type",
            format!(
                "has unknown value {}; allowed: VIEW, CART, REMOVE_FROM_CART, PURCHASE",
                c.r#type
            ),
        ),
        Ok(_) => {}
    }
    for (field, value) in [
        ("commerce.product_id", c.product_id),
        ("commerce.category_id", c.category_id),
        ("commerce.seller_id", c.seller_id),
        ("commerce.user_id", c.user_id),
    ] {
        if value == 0 {
            sink.fail(field, "is required and must be non-zero");
        }
    }
    check_text(
        sink,
        "commerce.category_code",
        c.category_code,
        MAX_TEXT_LEN,
        false,
    );
    check_text(sink, "commerce.brand", c.brand, MAX_TEXT_LEN, false);
    check_text(
        sink,
        "commerce.session_id",
        c.session_id,
        MAX_TEXT_LEN,
        true,
    );
    check_quantity(sink, c, kind.ok());
    match &c.price {
        None => sink.fail("commerce.price", "is required: the unit price"),
        Some(price) => {
            check_price(sink, price);
            check_line_total(sink, price, c.quantity);
        }
    }
}

/// `price × quantity` at most [`MAX_LINE_TOTAL_UNITS`]; computed in `i128` nanos, which
/// cannot overflow for any `i64` units and `u32` quantity.
fn check_line_total(sink: &mut Collector<'_>, price: &MoneyView<'_>, quantity: u32) {
    const NANOS: i128 = 1_000_000_000;
    let line = (i128::from(price.units) * NANOS + i128::from(price.nanos)) * i128::from(quantity);
    if line > i128::from(MAX_LINE_TOTAL_UNITS) * NANOS {
        sink.fail(
            "commerce.quantity",
            format!(
                "makes a line total (price × quantity) of {} units; at most \
                 {MAX_LINE_TOTAL_UNITS} is allowed",
                line / NANOS
            ),
        );
    }
}

fn check_quantity(sink: &mut Collector<'_>, c: &CommerceView<'_>, kind: Option<CommerceEventType>) {
    let needs_units = matches!(
        kind,
        Some(
            CommerceEventType::Cart
                | CommerceEventType::RemoveFromCart
                | CommerceEventType::Purchase
        )
    );
    if needs_units && c.quantity == 0 {
        sink.fail(
            "commerce.quantity",
            "must be at least 1 for CART, REMOVE_FROM_CART and PURCHASE",
        );
    } else if c.quantity > MAX_QUANTITY {
        sink.fail(
            "commerce.quantity",
            format!("is {}; at most {MAX_QUANTITY} is allowed", c.quantity),
        );
    }
}

fn check_price(sink: &mut Collector<'_>, price: &MoneyView<'_>) {
    if price.currency_code.is_empty() {
        sink.fail(
            "commerce.price.currency_code",
            "is required: an ISO 4217 code such as EUR",
        );
    } else if !is_iso4217(price.currency_code) {
        sink.fail(
            "commerce.price.currency_code",
            format!(
                "{} is not an ISO 4217 currency code (e.g. EUR, USD, JPY)",
                echo(price.currency_code)
            ),
        );
    }
    if price.units < 0 {
        sink.fail(
            "commerce.price.units",
            "must be >= 0: prices are not negative",
        );
    } else if price.units > MAX_PRICE_UNITS {
        sink.fail(
            "commerce.price.units",
            format!("is {}; at most {MAX_PRICE_UNITS} is allowed", price.units),
        );
    }
    if !(-999_999_999..=999_999_999).contains(&price.nanos) {
        sink.fail(
            "commerce.price.nanos",
            "must be within -999999999..=999999999",
        );
    } else if price.nanos < 0 {
        sink.fail(
            "commerce.price.nanos",
            "must be >= 0: it has the sign of units, and prices are not negative",
        );
    }
}

fn check_probe(ctx: &Context<'_>, e: &EventView<'_>, sink: &mut Collector<'_>) {
    let Some(PayloadView::Probe(p)) = &e.payload else {
        return;
    };
    check_probe_fields(sink, p);
    check_vantage(ctx, sink, p);
}

/// A store's own probe may name any vantage region or none; a prober's names its own.
fn check_vantage(ctx: &Context<'_>, sink: &mut Collector<'_>, p: &ProbeView<'_>) {
    let vantage = Region::from_proto(p.vantage_region);
    if vantage.is_none() && p.vantage_region != 0 {
        sink.fail(
            "probe.vantage_region",
            format!(
                "has unknown value {}; allowed: REGION_EUROPE, REGION_AMERICA, REGION_ASIA",
                p.vantage_region
            ),
        );
        return;
    }
    if let Some(Sender::Prober {
        prober_id, region, ..
    }) = ctx.sender
        && vantage != Some(region)
    {
        sink.fail(
            "probe.vantage_region",
            format!(
                "must be the prober's region: prober {prober_id:?} is in {region}, \
                 the probe claims {}",
                vantage.map_or("no region", Region::as_str)
            ),
        );
    }
}

fn check_probe_fields(sink: &mut Collector<'_>, p: &ProbeView<'_>) {
    check_text(sink, "probe.target", p.target, MAX_TARGET_LEN, true);
    // 0: a down probe that got no HTTP response (timeout, refused or dropped connection)
    if !(100..=599).contains(&p.status_code) && (p.up || p.status_code != 0) {
        sink.fail(
            "probe.status_code",
            format!(
                "is {}; an HTTP status within 100..=599 is required (0 only when down \
                 without a response)",
                p.status_code
            ),
        );
    }
    if !(0.0..=1.0).contains(&p.cpu_load) {
        sink.fail(
            "probe.cpu_load",
            format!("is {}; a load within 0..=1 is required", p.cpu_load),
        );
    }
    // phases of one probe, each timed from its start, cannot outlast the whole probe
    for (field, phase) in [
        ("probe.tls_handshake_ms", p.tls_handshake_ms),
        ("probe.time_to_first_byte_ms", p.time_to_first_byte_ms),
    ] {
        if phase > p.response_time_ms {
            sink.fail(
                field,
                format!(
                    "is {phase}; a phase of the probe is at most its response_time_ms ({})",
                    p.response_time_ms
                ),
            );
        }
    }
}

fn check_text(sink: &mut Collector<'_>, field: &str, value: &str, max: usize, required: bool) {
    if required && value.is_empty() {
        sink.fail(field, "is required");
    } else if value.len() > max {
        sink.fail(
            field,
            format!("is {} bytes long; at most {max} are allowed", value.len()),
        );
    }
}

/// Active ISO 4217 codes, sorted for binary search; XXX and XTS (no currency, testing) left out.
const ISO4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XDR", "XOF",
    "XPD", "XPF", "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
];

/// [`ISO4217`]'s codes as big-endian integers, which sort as the text does: one integer
/// comparison per step of the search, the table's side packed once, at compile time.
static ISO4217_PACKED: [u32; ISO4217.len()] = {
    let mut packed = [0; ISO4217.len()];
    let mut i = 0;
    while i < packed.len() {
        let code = ISO4217[i].as_bytes();
        packed[i] = (code[0] as u32) << 16 | (code[1] as u32) << 8 | code[2] as u32;
        i += 1;
    }
    packed
};

/// Whether `code` is an active ISO 4217 currency code (uppercase, as the standard writes it).
pub fn is_iso4217(code: &str) -> bool {
    match code.as_bytes() {
        &[a, b, c] => ISO4217_PACKED
            .binary_search(&(u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c)))
            .is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
