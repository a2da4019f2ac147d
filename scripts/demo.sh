#!/usr/bin/env bash
# The main job, for a newcomer on a fresh Debian machine: installs what is missing, starts the
# local stack (Redis, ClickHouse, SeaweedFS S3), runs gateway and consumer, streams simulated
# events from stores in Europe, America and Asia for DEMO_SECONDS (30), archives them to the
# Parquet lake in S3 (the archiver) and verifies the lake against ClickHouse, writes the day's
# report to S3, and prints where it is with a short summary. Leaves the stack running;
# `scripts/stack.sh stop` stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEMO_SECONDS="${DEMO_SECONDS:-30}"
DEMO_RATE="${DEMO_RATE:-20000}"
DEMO_GATEWAY_PORT="${DEMO_GATEWAY_PORT:-50051}"
work=.stack/demo
mkdir -p "$work"

bash scripts/install.sh
echo "==> building (release)"
cargo build --release --quiet -p gateway -p consumer -p reporter -p archiver -p simulator
bin="${CARGO_TARGET_DIR:-target}/release"

echo "==> starting the local stack"
bash scripts/stack.sh start
eval "$(bash scripts/stack.sh env)"
export SIMULATOR_TOKEN_SECRET="${SIMULATOR_TOKEN_SECRET:-demo}"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$bin/simulator" stores-file > "$work/stores.toml"
# reflection public: grpcurl below finds the health service through it, on loopback only
GATEWAY_REFLECTION=public GATEWAY_LISTEN="127.0.0.1:$DEMO_GATEWAY_PORT" GATEWAY_STORES_FILE="$work/stores.toml" \
    "$bin/gateway" > "$work/gateway.log" 2>&1 &
pids+=($!)
CONSUMER_NAME=demo CONSUMER_RETAIN_GROUPS=archiver "$bin/consumer" > "$work/consumer.log" 2>&1 &
pids+=($!)
# the lake: segments end every 10 s here (1 h by default), so the demo's events are in it soon
ARCHIVER_NAME=demo ARCHIVER_BUCKET=lake ARCHIVER_CREATE_BUCKET=true ARCHIVER_ROLL_EVERY=10s \
    "$bin/archiver" > "$work/archiver.log" 2>&1 &
pids+=($!)

echo "==> waiting for the gateway to report SERVING"
for _ in $(seq 1 50); do
    if grpcurl -plaintext "127.0.0.1:$DEMO_GATEWAY_PORT" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
        break
    fi
    sleep 0.2
done

echo "==> streaming simulated events for ${DEMO_SECONDS}s at ${DEMO_RATE}/s"
"$bin/simulator" run --gateway "http://127.0.0.1:$DEMO_GATEWAY_PORT" --rate "$DEMO_RATE" \
    --duration "$DEMO_SECONDS" --truth-out "$work/truth.json" | tee "$work/simulator.out"
accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$work/truth.json")

echo "==> waiting for the consumer to load ${accepted} events"
ch() { curl -sf "${CLICKHOUSE_URL}/" --data-binary "$1"; }
for _ in $(seq 1 120); do
    loaded=$(ch "SELECT (SELECT count() FROM marketplace.commerce_events FINAL) + (SELECT count() FROM marketplace.probe_results FINAL)" || echo 0)
    [ "${loaded:-0}" -ge "$accepted" ] && break
    sleep 0.5
done
echo "loaded ${loaded} events into ClickHouse"

date=$(date -u +%F)
echo "==> waiting for the archiver to write every entry to the lake"
for _ in $(seq 1 120); do
    backlog=$(redis-cli -u "$REDIS_URL" XINFO GROUPS "${STREAM_KEY:-events}" 2>/dev/null |
        awk '$0 == "archiver" { g = 1 } g && ($0 == "pending" || $0 == "lag") { getline v; n += v } END { print (g ? n : -1) }')
    [ "${backlog:-1}" = 0 ] && break
    sleep 1
done
echo "==> verifying the lake of ${date} against ClickHouse"
ARCHIVER_BUCKET=lake "$bin/archiver" verify --date "$date" | tee "$work/verify.out" | head -n 5
echo "==> refused events of ${date} that today's rules would accept (replay-rejected --dry-run)"
ARCHIVER_BUCKET=lake "$bin/archiver" replay-rejected --date "$date" --dry-run | tee "$work/replay.out"

echo "==> writing the report of ${date}"
S3_CREATE_BUCKET=true "$bin/reporter" run --date "$date" > "$work/reporter.out"
json=$(grep '/marketplace/report.json$' "$work/reporter.out")
html=$(grep '/marketplace/report.html$' "$work/reporter.out")
objects=$(grep -c '^s3://' "$work/reporter.out")
# SeaweedFS without an identities file serves objects to anonymous path-style GETs.
curl -sf "${AWS_ENDPOINT_URL_S3}/${html#s3://}" -o "$work/report.html" || true
echo
echo "==> done: ${objects} objects in s3://${S3_BUCKET}/reports/${date}/"
echo "report:  ${json}"
echo "         ${html}"
[ -s "$work/report.html" ] && echo "open it: $(pwd)/$work/report.html"
echo "summary: $(tail -n1 "$work/reporter.out")"
echo "lake:    s3://lake/archive/ (Parquet; manifest s3://lake/archive/manifests/date=${date}/manifest.json)"
echo "         rebuild a day: archiver restore --date ${date}; check it: archiver verify --date ${date}"
echo "         replay refused events a relaxed rule accepts: archiver replay-rejected --date ${date}"
echo "logs and the simulator's ground truth are in $work/; stop the stack with scripts/stack.sh stop"
