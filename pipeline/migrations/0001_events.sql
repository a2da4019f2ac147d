-- The three event tables. Every statement is idempotent (IF NOT EXISTS), so two consumers
-- starting at once, or a rerun after a partial failure, converge on the same schema.
--
-- commerce_events and probe_results are ReplacingMergeTree ordered by (day, event_id):
-- rows with the same event_id on the same day are one event (a redelivered stream entry or a
-- store's retry), merged away in the background and collapsed at query time with FINAL.
-- DateTime('UTC') keeps day boundaries the same on every server whatever its time zone.

CREATE TABLE IF NOT EXISTS commerce_events
(
    event_id      String,
    occurred_at   DateTime('UTC'),
    received_at   DateTime('UTC'),
    region        Enum8('europe' = 1, 'america' = 2, 'asia' = 3),
    store_id      String,
    type          Enum8('view' = 1, 'cart' = 2, 'remove_from_cart' = 3, 'purchase' = 4),
    product_id    UInt64,
    category_id   UInt64,
    category_code String,
    brand         String,
    seller_id     UInt64,
    currency      String,
    price         Decimal(18, 9),
    quantity      UInt32,
    user_id       UInt64,
    session_id    String
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), event_id);

CREATE TABLE IF NOT EXISTS probe_results
(
    event_id                   String,
    occurred_at                DateTime('UTC'),
    received_at                DateTime('UTC'),
    region                     Enum8('europe' = 1, 'america' = 2, 'asia' = 3),
    store_id                   String,
    target                     String,
    up                         UInt8,
    status_code                UInt16,
    response_time_ms           UInt32,
    network_latency_ms         UInt32,
    bandwidth_bytes_per_second UInt64,
    cpu_load                   Float64
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), event_id);

-- Bad rows, never silently dropped: events the gateway refused (source = 'gateway') and
-- stream entries the consumer could not load (source = 'consumer'), with the raw bytes.
CREATE TABLE IF NOT EXISTS rejected_events
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    received_at     DateTime('UTC'),
    region          Enum8('unspecified' = 0, 'europe' = 1, 'america' = 2, 'asia' = 3),
    store_id        String,
    source          Enum8('gateway' = 1, 'consumer' = 2),
    reason          String,
    raw             String,
    delivery_count  UInt32,
    stream_entry_id String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, source);
