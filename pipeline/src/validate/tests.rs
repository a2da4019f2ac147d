//! One passing and at least one failing case per rule, as a table.

use super::*;
use crate::proto::ingest::{CommerceEvent, Money, ProbeResult};

const NOW: i64 = 1_800_000_000;
const ID: &str = "0b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10";

fn commerce() -> Event {
    Event {
        event_id: ID.into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: NOW - 60,
            nanos: 0,
        }),
        store_id: "eu-1".into(),
        region: Region::Europe.to_proto() as i32,
        payload: Some(Payload::Commerce(CommerceEvent {
            r#type: CommerceEventType::Purchase as i32,
            product_id: 1,
            category_id: 2,
            category_code: "electronics.smartphone".into(),
            brand: "acme".into(),
            seller_id: 3,
            price: Some(Money {
                currency_code: "EUR".into(),
                units: 19,
                nanos: 990_000_000,
            }),
            quantity: 2,
            user_id: 4,
            session_id: "s-1".into(),
        })),
    }
}

fn probe() -> Event {
    Event {
        payload: Some(Payload::Probe(ProbeResult {
            target: "checkout".into(),
            up: true,
            status_code: 200,
            response_time_ms: 120,
            network_latency_ms: 30,
            bandwidth_bytes_per_second: 1_000_000,
            cpu_load: 0.5,
            vantage_region: 0,
            tls_handshake_ms: 25,
            time_to_first_byte_ms: 90,
        })),
        ..commerce()
    }
}

fn c(e: &mut Event) -> &mut CommerceEvent {
    match e.payload.as_mut() {
        Some(Payload::Commerce(c)) => c,
        _ => unreachable!(),
    }
}

fn p(e: &mut Event) -> &mut ProbeResult {
    match e.payload.as_mut() {
        Some(Payload::Probe(p)) => p,
        _ => unreachable!(),
    }
}

fn check(event: &Event) -> Vec<Violation> {
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        now_unix: NOW,
        sender: Some(Sender::Store {
            store_id: "eu-1",
            region: Region::Europe,
        }),
    };
    let mut out = vec![];
    check_event(&ctx, 3, event, &mut out);
    out
}

type Case = (&'static str, fn() -> Event, Option<&'static str>);

/// (rule name, event, the violated field or None for a valid event)
fn cases() -> Vec<Case> {
    vec![
        ("event_id", commerce, None),
        (
            "event_id",
            || Event {
                event_id: "".into(),
                ..commerce()
            },
            Some("events[3].event_id"),
        ),
        (
            "event_id",
            || Event {
                event_id: "not-a-uuid".into(),
                ..commerce()
            },
            Some("events[3].event_id"),
        ),
        (
            "event_id",
            || Event {
                event_id: ID.to_uppercase(),
                ..commerce()
            },
            Some("events[3].event_id"),
        ),
        ("occurred_at", probe, None),
        (
            "occurred_at",
            || Event {
                occurred_at: None,
                ..commerce()
            },
            Some("events[3].occurred_at"),
        ),
        (
            "occurred_at",
            || Event {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: NOW + 301,
                    nanos: 0,
                }),
                ..commerce()
            },
            Some("events[3].occurred_at"),
        ),
        (
            "occurred_at",
            || Event {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: NOW + 299,
                    nanos: 0,
                }),
                ..commerce()
            },
            None,
        ),
        (
            "occurred_at",
            || Event {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: NOW - 8 * 86_400,
                    nanos: 0,
                }),
                ..commerce()
            },
            Some("events[3].occurred_at"),
        ),
        (
            "occurred_at",
            || Event {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: NOW,
                    nanos: -1,
                }),
                ..commerce()
            },
            Some("events[3].occurred_at.nanos"),
        ),
        (
            "store_id",
            || Event {
                store_id: "eu-1".into(),
                ..probe()
            },
            None,
        ),
        (
            "store_id",
            || Event {
                store_id: "".into(),
                ..commerce()
            },
            Some("events[3].store_id"),
        ),
        (
            "store_id",
            || Event {
                store_id: "us-1".into(),
                ..commerce()
            },
            Some("events[3].store_id"),
        ),
        (
            "store_id",
            || Event {
                store_id: "x".repeat(65),
                ..commerce()
            },
            Some("events[3].store_id"),
        ),
        (
            "region",
            || Event {
                region: Region::Europe.to_proto() as i32,
                ..probe()
            },
            None,
        ),
        (
            "region",
            || Event {
                region: 0,
                ..commerce()
            },
            Some("events[3].region"),
        ),
        (
            "region",
            || Event {
                region: 9,
                ..commerce()
            },
            Some("events[3].region"),
        ),
        (
            "region",
            || Event {
                region: Region::Asia.to_proto() as i32,
                ..commerce()
            },
            Some("events[3].region"),
        ),
        ("payload", probe, None),
        (
            "payload",
            || Event {
                payload: None,
                ..commerce()
            },
            Some("events[3].payload"),
        ),
        ("commerce", commerce, None),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).r#type = 0;
                e
            },
            Some("events[3].commerce.type"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).r#type = 77;
                e
            },
            Some("events[3].commerce.type"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).product_id = 0;
                e
            },
            Some("events[3].commerce.product_id"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).category_id = 0;
                e
            },
            Some("events[3].commerce.category_id"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).seller_id = 0;
                e
            },
            Some("events[3].commerce.seller_id"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).user_id = 0;
                e
            },
            Some("events[3].commerce.user_id"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).category_code = String::new();
                c(&mut e).brand = String::new();
                e
            },
            None,
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).category_code = "a".repeat(129);
                e
            },
            Some("events[3].commerce.category_code"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).brand = "b".repeat(129);
                e
            },
            Some("events[3].commerce.brand"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).session_id = String::new();
                e
            },
            Some("events[3].commerce.session_id"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).quantity = 0;
                e
            },
            Some("events[3].commerce.quantity"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).quantity = 0;
                c(&mut e).r#type = CommerceEventType::View as i32;
                e
            },
            None,
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).quantity = 0;
                c(&mut e).r#type = CommerceEventType::Cart as i32;
                e
            },
            Some("events[3].commerce.quantity"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).quantity = 0;
                c(&mut e).r#type = CommerceEventType::RemoveFromCart as i32;
                e
            },
            Some("events[3].commerce.quantity"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).quantity = MAX_QUANTITY + 1;
                e
            },
            Some("events[3].commerce.quantity"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price = None;
                e
            },
            Some("events[3].commerce.price"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().currency_code = "EURO".into();
                e
            },
            Some("events[3].commerce.price.currency_code"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().currency_code = "eur".into();
                e
            },
            Some("events[3].commerce.price.currency_code"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().currency_code = String::new();
                e
            },
            Some("events[3].commerce.price.currency_code"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().units = -1;
                e
            },
            Some("events[3].commerce.price.units"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().units = MAX_PRICE_UNITS + 1;
                e
            },
            Some("events[3].commerce.price.units"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().nanos = 1_000_000_000;
                e
            },
            Some("events[3].commerce.price.nanos"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().nanos = -5;
                e
            },
            Some("events[3].commerce.price.nanos"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                *c(&mut e).price.as_mut().unwrap() = Money {
                    currency_code: "JPY".into(),
                    units: 0,
                    nanos: 0,
                };
                e
            },
            None,
        ),
        (
            "commerce",
            || {
                // the largest line total allowed: the largest price, a thousand times
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().units = MAX_PRICE_UNITS;
                c(&mut e).price.as_mut().unwrap().nanos = 0;
                c(&mut e).quantity = 1_000;
                e
            },
            None,
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().units = MAX_PRICE_UNITS;
                c(&mut e).price.as_mut().unwrap().nanos = 1;
                c(&mut e).quantity = 1_000;
                e
            },
            Some("events[3].commerce.quantity"),
        ),
        (
            "commerce",
            || {
                let mut e = commerce();
                c(&mut e).price.as_mut().unwrap().units = MAX_PRICE_UNITS;
                c(&mut e).quantity = MAX_QUANTITY;
                e
            },
            Some("events[3].commerce.quantity"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).target = String::new();
                e
            },
            Some("events[3].probe.target"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).target = "t".repeat(257);
                e
            },
            Some("events[3].probe.target"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).status_code = 99;
                e
            },
            Some("events[3].probe.status_code"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).status_code = 600;
                e
            },
            Some("events[3].probe.status_code"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).status_code = 503;
                p(&mut e).up = false;
                e
            },
            None,
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).cpu_load = 1.01;
                e
            },
            Some("events[3].probe.cpu_load"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).cpu_load = -0.1;
                e
            },
            Some("events[3].probe.cpu_load"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).cpu_load = f64::NAN;
                e
            },
            Some("events[3].probe.cpu_load"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).cpu_load = 1.0;
                e
            },
            None,
        ),
        (
            "probe",
            || {
                // down without a response: a timeout or a refused connection
                let mut e = probe();
                p(&mut e).up = false;
                p(&mut e).status_code = 0;
                e
            },
            None,
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).status_code = 0;
                e
            },
            Some("events[3].probe.status_code"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).vantage_region = Region::Asia.to_proto() as i32;
                e
            },
            None,
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).vantage_region = 9;
                e
            },
            Some("events[3].probe.vantage_region"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).tls_handshake_ms = 121;
                e
            },
            Some("events[3].probe.tls_handshake_ms"),
        ),
        (
            "probe",
            || {
                let mut e = probe();
                p(&mut e).time_to_first_byte_ms = 121;
                e
            },
            Some("events[3].probe.time_to_first_byte_ms"),
        ),
    ]
}

/// The stores a prober in these tests may probe.
#[derive(Debug)]
struct TwoStores;

impl KnownStores for TwoStores {
    fn region_of(&self, store_id: &str) -> Option<Region> {
        match store_id {
            "eu-1" => Some(Region::Europe),
            "asia-1" => Some(Region::Asia),
            _ => None,
        }
    }
}

/// The fields a prober in asia breaks with `event`, checked as the gateway (knowing the
/// stores) or the consumer (not knowing them) checks.
fn prober_fields(event: &Event, knows_stores: bool) -> Vec<String> {
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        now_unix: NOW,
        sender: Some(Sender::Prober {
            prober_id: "probe-asia",
            region: Region::Asia,
            stores: knows_stores.then_some(&TwoStores as &dyn KnownStores),
        }),
    };
    let mut out = vec![];
    check_event(&ctx, 3, event, &mut out);
    out.into_iter().map(|v| v.field).collect()
}

#[test]
fn a_prober_publishes_probes_of_known_stores_from_its_own_region() {
    let from_asia = || {
        let mut e = probe();
        p(&mut e).vantage_region = Region::Asia.to_proto() as i32;
        e
    };
    // another store than the sender's, in another region: fine for a prober
    assert_eq!(prober_fields(&from_asia(), true), Vec::<String>::new());
    let unknown = Event {
        store_id: "us-9".into(),
        ..from_asia()
    };
    assert_eq!(prober_fields(&unknown, true), ["events[3].store_id"]);
    // the consumer has no stores file: it trusts the gateway's check
    assert_eq!(prober_fields(&unknown, false), Vec::<String>::new());
    let wrong_region = Event {
        region: Region::America.to_proto() as i32,
        ..from_asia()
    };
    assert_eq!(prober_fields(&wrong_region, true), ["events[3].region"]);
    // the vantage region is the prober's, required
    assert_eq!(
        prober_fields(&probe(), true),
        ["events[3].probe.vantage_region"]
    );
    let mut from_europe = from_asia();
    p(&mut from_europe).vantage_region = Region::Europe.to_proto() as i32;
    assert_eq!(
        prober_fields(&from_europe, false),
        ["events[3].probe.vantage_region"]
    );
    // no commerce events, whoever they claim to be from
    let sale = Event {
        store_id: "asia-1".into(),
        region: Region::Asia.to_proto() as i32,
        ..commerce()
    };
    assert_eq!(prober_fields(&sale, true), ["events[3].commerce"]);
    assert_eq!(prober_fields(&sale, false), ["events[3].commerce"]);
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        now_unix: NOW,
        sender: Some(Sender::Prober {
            prober_id: "probe-asia",
            region: Region::Asia,
            stores: Some(&TwoStores),
        }),
    };
    let mut out = vec![];
    check_event(&ctx, 0, &sale, &mut out);
    assert_eq!(
        out[0].description,
        "is not allowed: prober \"probe-asia\" may publish probe results only"
    );
}

#[test]
fn extreme_times_are_rejected_without_overflow() {
    for seconds in [i64::MIN, i64::MAX] {
        let e = Event {
            occurred_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            ..commerce()
        };
        let got = check(&e);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].field, "events[3].occurred_at");
    }
    // The consumer checks against an entry's received_at, which may be anything.
    let limits = Limits::default();
    for now_unix in [i64::MIN, i64::MAX] {
        let ctx = Context {
            limits: &limits,
            now_unix,
            sender: None,
        };
        let mut out = vec![];
        check_event(&ctx, 0, &commerce(), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }
}

#[test]
fn without_a_time_window_any_time_a_datetime_holds_passes_and_no_other() {
    let limits = Limits::unbounded();
    let ctx = Context {
        limits: &limits,
        now_unix: NOW,
        sender: None,
    };
    for (seconds, ok) in [
        (0, true),
        (NOW - 50 * 365 * 86_400, true),
        (NOW + 30 * 86_400, true),
        (i64::from(u32::MAX), true),
        (-1, false),
        (i64::from(u32::MAX) + 1, false),
        (i64::MIN, false),
        (i64::MAX, false),
    ] {
        let e = Event {
            occurred_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            ..commerce()
        };
        let mut out = vec![];
        check_event(&ctx, 0, &e, &mut out);
        assert_eq!(out.is_empty(), ok, "{seconds}: {out:?}");
    }
    // the gateway's window refuses the same out-of-range times, whatever it is set to
    let wide = Limits {
        max_future_skew: Duration::from_secs(u64::MAX / 2),
        max_age: Duration::from_secs(u64::MAX / 2),
    };
    let ctx = Context {
        limits: &wide,
        ..ctx
    };
    let e = Event {
        occurred_at: Some(prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        }),
        ..commerce()
    };
    let mut out = vec![];
    check_event(&ctx, 0, &e, &mut out);
    assert!(out[0].description.contains("1970-01-01"), "{out:?}");
}

#[test]
fn every_rule_has_a_passing_and_a_failing_case() {
    let cases = cases();
    for rule in RULES {
        assert!(
            cases
                .iter()
                .any(|(r, _, want)| *r == rule.name && want.is_none()),
            "rule {} lacks a passing case",
            rule.name
        );
        assert!(
            cases
                .iter()
                .any(|(r, _, want)| *r == rule.name && want.is_some()),
            "rule {} lacks a failing case",
            rule.name
        );
    }
}

#[test]
fn cases_give_the_expected_violations() {
    for (i, (rule, make, want)) in cases().into_iter().enumerate() {
        let got = check(&make());
        match want {
            None => assert!(got.is_empty(), "case {i} ({rule}) should pass, got {got:?}"),
            Some(field) => {
                assert_eq!(
                    got.len(),
                    1,
                    "case {i} ({rule}): want exactly {field}, got {got:?}"
                );
                assert_eq!(got[0].field, field, "case {i} ({rule})");
                assert!(!got[0].description.is_empty());
            }
        }
    }
}

#[test]
fn descriptions_say_what_is_allowed() {
    let mut e = commerce();
    c(&mut e).price.as_mut().unwrap().currency_code = "EURO".into();
    let got = check(&e);
    assert_eq!(
        got[0].description,
        "\"EURO\" is not an ISO 4217 currency code (e.g. EUR, USD, JPY)"
    );
    let e = Event {
        region: Region::Asia.to_proto() as i32,
        ..commerce()
    };
    assert_eq!(
        check(&e)[0].description,
        "claims asia but store \"eu-1\" is in europe"
    );
}

#[test]
fn batch_rejects_repeated_event_ids_after_the_first() {
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        now_unix: NOW,
        sender: None,
    };
    let events = vec![commerce(), probe(), commerce()];
    let checked = check_batch(&ctx, events);
    assert_eq!(checked.rejected.len(), 2);
    assert_eq!(checked.rejected[0].index, 1);
    assert_eq!(
        checked.rejected[0].violations[0].field,
        "events[1].event_id"
    );
    assert!(
        checked.rejected[0].violations[0]
            .description
            .contains("duplicates events[0].event_id")
    );
    assert_eq!(checked.rejected[1].index, 2);
    assert_eq!(checked.accepted, [Accepted(commerce())]);
}

#[test]
fn accepted_events_come_with_the_ids_the_uuid_crate_reads() {
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        now_unix: NOW,
        sender: None,
    };
    let with = |id: String| Event {
        event_id: id,
        ..commerce()
    };
    let ids = |checked: &Checked| {
        checked
            .with_ids()
            .map(|(accepted, id)| {
                assert_eq!(id, accepted.event_id());
                id
            })
            .collect::<Vec<_>>()
    };
    // every event valid: the ids the rules parsed, one per event
    let expected: Vec<String> = (0..16).map(nth_id).collect();
    let clean = check_batch(&ctx, expected.iter().cloned().map(with).collect());
    assert!(clean.is_clean());
    let text = |ids: Vec<uuid::Uuid>| ids.iter().map(uuid::Uuid::to_string).collect::<Vec<_>>();
    assert_eq!(text(ids(&clean)), expected);
    // some rejected: the accepted ones' ids, in order
    let batch: Vec<Event> = expected
        .iter()
        .cloned()
        .map(with)
        .chain([
            // rejected with a canonical id, with another, and a repeat
            Event {
                region: 0,
                ..with("11111111-2222-4333-8444-555555555555".into())
            },
            with("NOT-A-UUID".into()),
            with(nth_id(3)),
            with("22222222-2222-4333-8444-555555555555".into()),
        ])
        .collect();
    let checked = check_batch(&ctx, batch);
    assert_eq!(checked.rejected.len(), 3);
    let accepted: Vec<String> = expected
        .iter()
        .cloned()
        .chain(["22222222-2222-4333-8444-555555555555".to_string()])
        .collect();
    assert_eq!(text(ids(&checked)), accepted);
}

#[test]
fn a_valid_batch_is_clean_and_several_violations_are_all_reported() {
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        now_unix: NOW,
        sender: None,
    };
    assert!(check_batch(&ctx, vec![commerce()]).is_clean());
    let bad = Event {
        event_id: "".into(),
        region: 0,
        payload: None,
        ..commerce()
    };
    let checked = check_batch(&ctx, vec![commerce(), bad.clone()]);
    assert_eq!(
        checked.rejected[0].event, bad,
        "the rejected event is kept whole"
    );
    let fields: Vec<_> = checked.rejected[0]
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "events[1].event_id",
            "events[1].region",
            "events[1].payload"
        ]
    );
}

#[test]
fn iso4217_table_is_sorted_and_strict() {
    assert!(ISO4217.windows(2).all(|w| w[0] < w[1]));
    assert!(ISO4217_PACKED.windows(2).all(|w| w[0] < w[1]));
    // the packed search finds exactly the table's codes among every three capitals
    for code in (0..26 * 26 * 26).map(|n: u32| {
        let letter = |k: u32| char::from(b'A' + (n / k % 26) as u8);
        [letter(676), letter(26), letter(1)]
            .iter()
            .collect::<String>()
    }) {
        assert_eq!(
            is_iso4217(&code),
            ISO4217.contains(&code.as_str()),
            "{code}"
        );
    }
    for ok in ["EUR", "USD", "JPY", "SGD", "CNY", "GBP"] {
        assert!(is_iso4217(ok), "{ok}");
    }
    for bad in ["", "EU", "eur", "XXX", "XTS", "ABC"] {
        assert!(!is_iso4217(bad), "{bad}");
    }
}

#[test]
fn accepted_events_keep_their_order_and_give_back_their_payload() {
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        now_unix: NOW,
        sender: None,
    };
    let second = Event {
        event_id: "1b7f2b8e-6a47-4d3a-9d51-4c3f0a3f5a10".into(),
        ..probe()
    };
    let checked = check_batch(&ctx, vec![commerce(), Event::default(), second.clone()]);
    assert_eq!(checked.rejected.len(), 1);
    assert_eq!(checked.rejected[0].index, 1);
    let accepted: Vec<Event> = checked.accepted.iter().map(|a| a.event().clone()).collect();
    assert_eq!(accepted, [commerce(), second.clone()]);
    assert!(matches!(checked.accepted[1].payload(), Payload::Probe(_)));
    assert_eq!(checked.accepted[0].occurred_at(), NOW - 60);
    assert_eq!(checked.accepted[1].clone().into_event(), second);
}

#[test]
fn echoed_values_are_cut_at_a_character_boundary() {
    assert_eq!(truncated("EURO"), "EURO");
    let long = "é".repeat(1000);
    let cut = truncated(&long);
    assert!(cut.len() <= MAX_ECHO_BYTES && cut.ends_with('…'), "{cut}");
    assert!(cut.starts_with("éé"));
    assert_eq!(echo("EURO"), "\"EURO\"");
    // escaping multiplies control bytes; the echo stays within the limit all the same
    let escaped = echo(&"\u{1}".repeat(10_000));
    assert!(escaped.len() <= MAX_ECHO_BYTES, "{}", escaped.len());
    assert!(escaped.starts_with("\"\\u{1}") && escaped.ends_with('…'));

    let mut e = commerce();
    c(&mut e).price.as_mut().unwrap().currency_code = "\u{1}".repeat(4 << 20);
    let got = check(&e);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].description.len() < MAX_ECHO_BYTES + 100,
        "{}",
        got[0].description.len()
    );
}

/// The duplicate-id rule as it was written before it sorted: ids as text in a `HashMap`,
/// each repeat pointing at the first event with its id. The reference of the test below.
fn duplicates_by_hash_map(ids: &[String]) -> Vec<(usize, usize)> {
    let mut first_seen = std::collections::HashMap::new();
    let mut found = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        if id.is_empty() {
            continue;
        }
        match first_seen.get(id.as_str()) {
            Some(&first) => found.push((index, first)),
            None => {
                first_seen.insert(id.as_str(), index);
            }
        }
    }
    found
}

/// The repeats `check_batch` reports, as (index, first index), each the last violation of
/// its event.
fn duplicates(events: &[Event]) -> Vec<(usize, usize)> {
    let limits = Limits::default();
    let ctx = Context {
        limits: &limits,
        now_unix: NOW,
        sender: None,
    };
    let mut found = Vec::new();
    for (index, violations) in violations(&ctx, events).0 {
        for (i, v) in violations.iter().enumerate() {
            let Some(rest) = v.description.strip_prefix("duplicates events[") else {
                continue;
            };
            assert_eq!(v.field, format!("events[{index}].event_id"));
            assert_eq!(i, violations.len() - 1, "{violations:?}");
            found.push((index, rest.split(']').next().unwrap().parse().unwrap()));
        }
    }
    found
}

/// `ID` with its last hex digit replaced by `n`'s.
fn nth_id(n: usize) -> String {
    format!("{}{:x}", &ID[..35], n % 16)
}

#[test]
fn duplicates_are_found_as_text_whatever_the_spelling() {
    let spellings = |n: usize| {
        let id = nth_id(n);
        [
            id.clone(),
            id.to_uppercase(),
            id.replace('-', ""),
            format!("{{{id}}}"),
            format!(" {id}"),
            "not-a-uuid".to_string(),
            String::new(),
            // hex digits where a hyphen goes, and a byte past the digits
            id.replace('-', "0"),
            format!("{}g", &id[..35]),
        ]
    };
    let mut rng = testkit::mutate::Rng(19);
    let mut repeats = 0;
    for _ in 0..3_000 {
        let len = rng.below(40);
        let ids: Vec<String> = (0..len)
            .map(|_| spellings(rng.below(6))[rng.below(9)].clone())
            .collect();
        let events: Vec<Event> = ids
            .iter()
            .map(|id| Event {
                event_id: id.clone(),
                ..commerce()
            })
            .collect();
        let expected = duplicates_by_hash_map(&ids);
        repeats += expected.len();
        assert_eq!(duplicates(&events), expected, "{ids:?}");
    }
    assert!(repeats > 10_000, "{repeats}");

    // the spellings of one id are distinct ids; repeats of one spelling are not
    let events: Vec<Event> = spellings(1)
        .into_iter()
        .chain(spellings(1))
        .map(|event_id| Event {
            event_id,
            ..commerce()
        })
        .collect();
    assert_eq!(
        duplicates(&events),
        [
            (9, 0),
            (10, 1),
            (11, 2),
            (12, 3),
            (13, 4),
            (14, 5),
            (16, 7),
            (17, 8)
        ]
    );
}

#[test]
fn a_canonical_uuid_parses_to_the_bits_the_uuid_crate_reads() {
    let mut rng = testkit::mutate::Rng(7);
    let mut canonical = 0;
    for _ in 0..20_000 {
        let bits = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
        let mut text = uuid::Uuid::from_u128(bits)
            .hyphenated()
            .to_string()
            .into_bytes();
        // a quarter of the texts with one byte changed to any byte, a quarter with one
        // changed to a byte at or next to the edges of the digits' and the hyphen's ranges
        match rng.below(4) {
            0 => text[rng.below(36)] = rng.next_u64() as u8,
            1 => text[rng.below(36)] = b"09afgAF-/:`@G"[rng.below(13)],
            _ => {}
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        let old_rule = text.len() == 36
            && text.bytes().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
            });
        let expected = old_rule.then(|| uuid::Uuid::try_parse(&text).unwrap().as_u128());
        assert_eq!(parse_canonical_uuid(&text), expected, "{text}");
        canonical += usize::from(old_rule);
    }
    assert!((5_000..15_000).contains(&canonical), "{canonical}");
    assert_eq!(
        parse_canonical_uuid(ID),
        Some(0x0b7f2b8e_6a47_4d3a_9d51_4c3f0a3f5a10)
    );
    for bad in [
        "",
        &ID[..35],
        &format!("{ID}0"),
        &ID.to_uppercase(),
        &ID.replace('-', ""),
    ] {
        assert_eq!(parse_canonical_uuid(bad), None, "{bad}");
    }
}

#[test]
fn a_uuid_with_any_byte_anywhere_parses_as_the_uuid_crate_reads_it() {
    // every byte at every position of a canonical id: only a digit or a lowercase letter
    // a-f in a digit's place, and only a hyphen in a hyphen's, leaves it canonical
    let mut canonical = 0;
    for pos in 0..36 {
        for byte in 0..=255u8 {
            let mut text = ID.as_bytes().to_vec();
            text[pos] = byte;
            let Ok(text) = String::from_utf8(text) else {
                continue;
            };
            let expected = match pos {
                8 | 13 | 18 | 23 => byte == b'-',
                _ => byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte),
            }
            .then(|| uuid::Uuid::try_parse(&text).unwrap().as_u128());
            assert_eq!(parse_canonical_uuid(&text), expected, "{text}");
            canonical += usize::from(expected.is_some());
        }
    }
    assert_eq!(canonical, 32 * 16 + 4);
}

#[test]
fn any_repeat_agrees_with_sorting_whatever_the_bits() {
    let mut rng = testkit::mutate::Rng(23);
    let mut found = 0;
    for round in 0..3_000 {
        let len = rng.below(300);
        let mut id = || {
            let bits = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
            match round % 3 {
                // random ids, each bucket of about one
                0 => bits,
                // ids that share their low bits: one bucket, sorted whole
                1 => bits << 16,
                // few distinct ids: repeats in most rounds
                _ => bits % 8,
            }
        };
        let mut ids: Vec<u128> = (0..len).map(|_| id()).collect();
        if round % 5 == 0 && len > 1 {
            // one repeat placed anywhere
            let (from, to) = (rng.below(len), rng.below(len));
            ids[to] = ids[from];
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        let expected = sorted.windows(2).any(|pair| pair[0] == pair[1]);
        found += usize::from(expected);
        assert_eq!(any_repeat(&ids), expected, "{ids:?}");
    }
    assert!(found > 1_000, "{found}");
}
