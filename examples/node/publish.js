// Publishing to the marketplace gateway from Node (@grpc/grpc-js), following docs/CLIENTS.md.
//
//   npm ci                      (in examples/node)
//   examples/generate.sh OUT    (buf generate: grpc-js stubs from ts-proto, compiled to JS)
//   GEN_DIR=OUT/node GATEWAY_ADDR=127.0.0.1:50051 STORE_ID=eu-1 STORE_TOKEN=... node publish.js
//
// The stubs are generated from proto/ by buf.gen.yaml, never committed, so they can never be
// stale. Set GATEWAY_CA to a PEM file for TLS. It publishes a batch, shows how a refused batch
// names the broken fields (google.rpc.BadRequest), and retries RESOURCE_EXHAUSTED after the
// google.rpc.RetryInfo delay; it exits non-zero if any step does not behave as documented
// (e2e test `python_and_node_examples_run_against_the_gateway` runs it).

'use strict';
const assert = require('node:assert');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');

const PROTO = path.join(__dirname, '..', '..', 'proto');
const GEN_DIR = process.env.GEN_DIR || path.join(__dirname, '..', '..', 'gen', 'node');
const ingest = require(path.join(GEN_DIR, 'marketplace/ingest/v1/ingest.js'));

// google.rpc.Status arrives in the `grpc-status-details-bin` trailer; its details are Anys.
const root = protobuf.loadSync(path.join(PROTO, 'vendor/google/rpc/error_details.proto'));
protobuf.parse(`syntax = "proto3"; package google.rpc;
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message Any { string type_url = 1; bytes value = 2; }`, root);

function details(error) {
  const found = {};
  const raw = error.metadata && error.metadata.get('grpc-status-details-bin')[0];
  if (!raw) return found;
  const status = root.lookupType('google.rpc.Status').decode(raw);
  for (const any of status.details) {
    const name = (any.typeUrl || any.type_url).split('/').pop();
    const type = root.lookup(name);
    if (type) found[name.replace('google.rpc.', '')] = type.decode(any.value);
  }
  return found;
}

const RETRIED = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Publishes `request`, retrying per the contract with the identical request (same event ids):
// exponential backoff with full jitter, never sooner than RetryInfo. Resolves [response, retries].
async function publish(client, token, request, attempts = 10, baseMs = 100, capMs = 10000) {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await new Promise((resolve, reject) =>
        client.publish(ingest.PublishRequest.fromPartial(request), metadata,
          { deadline: Date.now() + 10000 },
          (err, res) => (err ? reject(err) : resolve(res))));
      return [response, attempt];
    } catch (error) {
      const retryInfo = details(error).RetryInfo;
      const retriable = RETRIED.has(error.code) ||
        (error.code === grpc.status.RESOURCE_EXHAUSTED && retryInfo !== undefined);
      if (!retriable || attempt + 1 === attempts) throw error;
      let wait = Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
      if (retryInfo && retryInfo.retryDelay) {
        const d = retryInfo.retryDelay;
        wait = Math.max(wait, Number(d.seconds || 0) * 1000 + (d.nanos || 0) / 1e6);
      }
      console.log(`retrying after ${error.code}, waiting ${Math.round(wait)} ms`);
      await sleep(wait);
    }
  }
}

function probe(storeId) {
  const now = Date.now();
  return {
    eventId: crypto.randomUUID(),
    occurredAt: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 },
    storeId,
    region: ingest.Region.REGION_EUROPE,
    probe: { target: 'checkout', up: true, statusCode: 200, responseTimeMs: 12 },
  };
}

async function main() {
  const { GATEWAY_ADDR: addr, STORE_TOKEN: token, STORE_ID: store } = process.env;
  const credentials = process.env.GATEWAY_CA
    ? grpc.credentials.createSsl(fs.readFileSync(process.env.GATEWAY_CA))
    : grpc.credentials.createInsecure();
  const client = new ingest.IngestServiceClient(addr, credentials);

  // 1. a batch: every valid event is queued
  let [response] = await publish(client, token, { events: [1, 2, 3, 4, 5].map(() => probe(store)) });
  assert.strictEqual(response.accepted, 5);
  assert.strictEqual(response.rejected.length, 0);
  console.log(`published a batch: ${response.accepted} accepted`);

  // 2. an invalid event: listed with its field path, or the whole batch refused with BadRequest
  //    when all_or_nothing is set
  const bad = { ...probe(store), eventId: 'not-a-uuid' };
  [response] = await publish(client, token, { events: [probe(store), bad] });
  assert.strictEqual(response.accepted, 1);
  assert.strictEqual(response.rejected[0].index, 1);
  console.log('rejected:', response.rejected[0].violations.map((v) => `${v.field}: ${v.description}`));
  await assert.rejects(publish(client, token, { events: [bad], allOrNothing: true }), (error) => {
    assert.strictEqual(error.code, grpc.status.INVALID_ARGUMENT);
    const violations = details(error).BadRequest.fieldViolations;
    assert.strictEqual(violations[0].field, 'events[0].event_id');
    console.log('bad request:', violations.map((v) => `${v.field}: ${v.description}`));
    return true;
  });

  // 3. over the store's quota: RESOURCE_EXHAUSTED with RetryInfo, retried after the delay
  const quota = Number(process.env.STORE_QUOTA || 0);
  if (quota) {
    let retries = 0;
    for (let i = 0; i < 3; i++) {
      const events = Array.from({ length: quota }, () => probe(store));
      const [answer, retried] = await publish(client, token, { events });
      assert.strictEqual(answer.accepted, quota);
      retries += retried;
    }
    assert.ok(retries > 0, "three seconds' worth at once must meet the quota");
    console.log(`quota: every batch accepted after ${retries} retries`);
  }
  client.close();
  console.log('node example: ok');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
