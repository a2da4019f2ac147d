#!/usr/bin/env bash
# The HA profile, run for real on this machine's Docker engine (issue 18): brings compose.yaml
# up with deploy/compose.ha.yaml (`--profile ha`: a Redis replica and three sentinels, the
# gateway acknowledging only what the replica has, two ClickHouse replicas and a keeper) on
# the local images (deploy/compose.local-images.yaml, deploy/compose.ha-local-images.yaml),
# waits for every healthcheck, and while the simulator publishes at a steady rate through the
# gateway:
#   1. SIGKILLs the Redis primary's container, waits for the sentinels to promote the replica,
#      starts the old primary again and checks that it comes back as a replica, and that
#      loading goes on, with no change to any other service;
#   2. SIGKILLs the ClickHouse server the consumer loads through, checks that loading goes on
#      through the other replica, starts it again and checks that it catches up.
# Then every event the simulator was told was accepted must be in ClickHouse once on BOTH
# replicas (uniqExact(event_id) and count(), without FINAL and with), nothing dead-lettered,
# nothing pending in the consumer group. Prints how long writes were refused during the
# failover (from the simulator's retries) and how long loading paused. Takes everything down,
# volumes included, also when a check fails. Part of scripts/test.sh, after compose_test.sh.
#
#   scripts/compose_ha_test.sh    # KEEP_STACK=1 leaves the stack up for a look afterwards
#
# COMPOSE_IMAGES_READY=1 skips scripts/images.sh (scripts/test.sh: compose_test.sh built them).
# Every wait below is a bound on a loaded 2-core machine with a message, not a timed assertion.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
step="images"
trap 'echo "compose_ha_test: step \"$step\" failed after $((SECONDS - started)) s" >&2' ERR

say() {
    printf 'compose_ha_test: %s (%d s)\n' "$*" "$((SECONDS - started))"
}

fail() {
    echo "compose_ha_test: $*" >&2
    return 1
}

export PIPELINE_IMAGE="${PIPELINE_IMAGE:-marketplace-pipeline:local}"
if [ "${COMPOSE_IMAGES_READY:-0}" != 1 ]; then
    bash scripts/images.sh all
    say "images ready"
fi

# Each simulator run: events per second, in requests of BATCH (so a store sends RATE/BATCH
# requests a second, and a refusal shows within a fraction of a second), for DURATION
# seconds: the kill comes once rows flow, a few seconds in, and the run goes on publishing
# through the failure and after it.
RATE="${HA_TEST_RATE:-200}"
BATCH="${HA_TEST_BATCH:-10}"
DURATION="${HA_TEST_DURATION:-40}"

# --- settings: random secrets, a generated stores file --------------------------------------
step="settings"
work="$(mktemp -d)"
project="mktha$$"
# shellcheck source=scripts/compose_lib.sh
. scripts/compose_lib.sh
stack_settings
compose() {
    docker-compose --project-name "$project" --env-file "$work/env" \
        -f compose.yaml -f deploy/compose.local-images.yaml \
        -f deploy/compose.ha.yaml -f deploy/compose.ha-local-images.yaml --profile ha "$@"
}

cleanup() {
    local rc=$? log
    # simulators still running in the background
    jobs -p | xargs -r kill 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        for log in "$work"/sim*.log; do
            [ -f "$log" ] || continue
            echo "--- $log" >&2
            grep -v '"level":"DEBUG"' "$log" | tail -n 10 >&2
        done
    fi
    stack_teardown "$rc" compose_ha_test
    exit "$rc"
}
trap cleanup EXIT

container() { compose ps -q "$1"; }

# ch SERVICE QUERY: a query on one ClickHouse replica
ch() {
    compose exec -T "$1" clickhouse-client --user pipeline --password "$clickhouse_password" \
        --database marketplace --query "$2"
}
# events on a replica, each counted once (0 while it does not answer)
events_on() {
    ch "$1" "SELECT (SELECT uniqExact(event_id) FROM commerce_events) + (SELECT uniqExact(event_id) FROM probe_results)" 2>/dev/null || echo 0
}
# redis-cli in the first sentinel's container: `sentinel ARGS` asks the sentinel, `redis_at
# HOST ARGS` asks a Redis node as admin
sentinel() { compose exec -T sentinel-1 redis-cli -p 26379 "$@"; }
redis_at() {
    # shellcheck disable=SC2016 # expanded in the container
    compose exec -T sentinel-1 sh -c 'host="$1"; shift; REDISCLI_AUTH="$REDIS_PASSWORD" exec redis-cli --user admin -h "$host" "$@"' sh "$@"
}
primary() { sentinel --raw SENTINEL get-master-addr-by-name pipeline 2>/dev/null | head -n 1; }
address_of() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(container "$1")"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# until_more SERVICE THAN SECONDS WHAT: waits until SERVICE holds more events than THAN
until_more() {
    local deadline=$((SECONDS + $3)) rows
    while :; do
        rows="$(events_on "$1")"
        [ "$rows" -gt "$2" ] && { echo "$rows"; return 0; }
        [ "$SECONDS" -lt "$deadline" ] || fail "$4: $1 still holds $rows events (had $2) after $3 s"
        sleep 0.5
    done
}

# simulate NAME SEED: a simulator run in the background (its pid in $simulator), its output
# (the client's retries at debug level, JSON lines with timestamps) in $work/NAME.log. Each
# run has its own seed: the same seed makes the same event ids.
simulate() {
    compose --profile demo run --rm -T -e RUST_LOG=info,client=debug simulator \
        simulator run --gateway http://gateway:50051 --seed "$2" --rate "$RATE" \
        --batch-size "$BATCH" --duration "$DURATION" >"$work/$1.log" 2>&1 &
    simulator=$!
}

# finish NAME PID: waits for a run, checks that it gave up on no event, and adds the events
# the gateway accepted to $accepted
finish() {
    local summary ok failed
    wait "$2" || { grep -v '"level":"DEBUG"' "$work/$1.log" | tail -n 20 >&2; fail "simulator run $1 failed"; }
    summary="$(grep '^sent ' "$work/$1.log")" || fail "simulator run $1 printed no summary"
    ok="$(sed -E 's/.* ([0-9]+) accepted.*/\1/' <<<"$summary")"
    failed="$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$summary")"
    [ "$failed" = 0 ] || fail "simulator run $1 gave up on $failed events after 30 attempts each: $summary"
    [ "$ok" -gt 0 ] || fail "simulator run $1: the gateway accepted no events"
    accepted=$((accepted + ok))
    say "simulator $1: $summary"
}

# --- up, and every healthcheck passing -------------------------------------------------------
step="up"
compose up -d >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "docker-compose up failed"; }
step="healthchecks"
stack_wait_healthy 300
say "stack up, every healthcheck passing: $(stack_containers)"

step="replication"
# the consumer migrates both servers once it runs (its healthcheck passes before that)
replicated() {
    ch "$1" "SELECT count() FROM system.replicas WHERE database = 'marketplace' AND active_replicas = 2" 2>/dev/null || echo 0
}
deadline=$((SECONDS + 120))
until [ "$(replicated clickhouse)" -gt 0 ] && [ "$(replicated clickhouse-replica)" -gt 0 ]; do
    [ "$SECONDS" -lt "$deadline" ] ||
        fail "after 120 s the ClickHouse servers hold no replicated table seeing two active replicas"
    sleep 1
done
[ "$(redis_at redis --raw ROLE | head -n 1)" = master ] || fail "redis is not the primary at the start"
[ "$(redis_at redis-replica --raw ROLE | head -n 1)" = slave ] || fail "redis-replica is not a replica at the start"
say "replicated tables on both ClickHouse servers; redis primary, redis-replica its replica"

# --- 1. the Redis primary SIGKILLed under load -----------------------------------------------
step="redis failover"
rows="$(events_on clickhouse)"
accepted=0
simulate sim1 1
rows="$(until_more clickhouse "$rows" 90 "no rows loaded from the first simulator run")"
old_primary="$(primary)"
case "$old_primary" in redis | "$(address_of redis)") ;; *) fail "the sentinels name $old_primary, not redis" ;; esac
redis_killed_at="$(now)"
docker kill "$(container redis)" >/dev/null
say "redis (the primary) SIGKILLed with $rows events loaded"
deadline=$((SECONDS + 90))
while :; do
    named="$(primary)"
    case "$named" in "" | redis | "$old_primary") ;; *) break ;; esac
    [ "$SECONDS" -lt "$deadline" ] || fail "the sentinels still name $named 90 s after the kill"
    sleep 0.5
done
promoted_after="$(since "$redis_killed_at")"
[ "$named" = "$(address_of redis-replica)" ] || [ "$named" = redis-replica ] ||
    fail "the sentinels name $named, which is not redis-replica ($(address_of redis-replica))"
say "the sentinels promoted redis-replica ($named) ${promoted_after} s after the kill"
# With GATEWAY_ACK_REPLICAS=1 and one replica, the promoted primary has none, so writes are
# refused (REDIS_NOT_REPLICATED) until one is back: the old primary, started at once (what
# Docker's restart policy does for a crashed process; `docker kill` counts as a stop).
docker start "$(container redis)" >/dev/null
deadline=$((SECONDS + 90))
until [ "$(redis_at redis --raw ROLE 2>/dev/null | head -n 1)" = slave ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the restarted redis is not a replica after 90 s"
    sleep 0.5
done
replica_back_after="$(since "$redis_killed_at")"
say "the old primary is back, as a replica of the new one, ${replica_back_after} s after the kill"
rows="$(until_more clickhouse "$rows" 90 "loading did not go on after the failover")"
say "loading goes on through the new primary: $rows events in clickhouse"
finish sim1 "$simulator"

# --- 2. the ClickHouse server the consumer loads through SIGKILLed under load ---------------
step="clickhouse replica kill"
rows="$(events_on clickhouse)"
simulate sim2 2
rows="$(until_more clickhouse "$rows" 90 "no rows loaded from the second simulator run")"
rows2="$(events_on clickhouse-replica)"
killed_at="$(now)"
docker kill "$(container clickhouse)" >/dev/null
say "clickhouse (the first of the consumer's CLICKHOUSE_URLs) SIGKILLed with $rows events loaded"
rows2="$(until_more clickhouse-replica "$rows2" 180 "loading did not go on through clickhouse-replica")"
paused="$(since "$killed_at")"
say "loading goes on through clickhouse-replica: new rows ${paused} s after the kill"
# a few more batches through the survivor before its peer comes back
rows2="$(until_more clickhouse-replica "$((rows2 + 2 * RATE))" 90 "loading through clickhouse-replica stalled")"
restarted_at="$(now)"
docker start "$(container clickhouse)" >/dev/null
# caught up: it holds every event its peer held when it was started again
rows="$(until_more clickhouse "$((rows2 - 1))" 180 "the restarted clickhouse did not catch up")"
caught_up="$(since "$restarted_at")"
say "clickhouse restarted, and ${caught_up} s after its start it holds the $rows2 events clickhouse-replica held then"
stack_wait_healthy 180
finish sim2 "$simulator"

# --- every accepted event, once, on both replicas --------------------------------------------
step="every accepted event on both replicas"
deadline=$((SECONDS + 180))
for replica in clickhouse-replica clickhouse; do
    while :; do
        rows="$(events_on "$replica")"
        [ "$rows" -eq "$accepted" ] && break
        [ "$rows" -le "$accepted" ] || fail "$replica holds $rows events, more than the $accepted accepted"
        [ "$SECONDS" -lt "$deadline" ] || fail "$replica holds $rows of $accepted accepted events after 180 s"
        sleep 1
    done
done
for replica in clickhouse clickhouse-replica; do
    counts="$(ch "$replica" "SELECT
        (SELECT count() FROM commerce_events) + (SELECT count() FROM probe_results),
        (SELECT count() FROM commerce_events FINAL) + (SELECT count() FROM probe_results FINAL),
        (SELECT uniqExact(event_id) FROM commerce_events FINAL) + (SELECT uniqExact(event_id) FROM probe_results FINAL)" |
        tr '\t' ' ')"
    [ "$counts" = "$accepted $accepted $accepted" ] ||
        fail "$replica: count(), count() FINAL, uniqExact(event_id) FINAL are $counts, not $accepted each"
done
say "both replicas hold all $accepted accepted events once (count and uniqExact, with and without FINAL)"

step="nothing pending or dead-lettered"
primary_now="$(primary)"
pending="$(redis_at "$primary_now" --raw XPENDING events loader | head -n 1)"
[ "$pending" = 0 ] || fail "$pending entries pending in the consumer group loader"
dead="$(redis_at "$primary_now" --raw XLEN events:dead)"
[ "$dead" = 0 ] || fail "$dead entries dead-lettered in events:dead"
say "nothing pending in the group loader, nothing in events:dead"

# --- figures ---------------------------------------------------------------------------------
# The simulator's retries after the Redis kill (client::Client logs each at debug, with its
# status and backoff): writes were refused from the kill until the last refused request was
# sent again (its backoff included) and answered OK.
refused="$(python3 - "$work/sim1.log" "$redis_killed_at" <<'EOF'
import json, re, sys
from datetime import datetime

SCALE = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
killed_at = float(sys.argv[2])
last, retries, reasons = None, 0, set()
for line in open(sys.argv[1]):
    if "retrying batch" not in line:
        continue
    # the event's message and the status's `message` field share a key: keep both
    pairs = json.loads(line, object_pairs_hook=list)
    if ("message", "retrying batch") not in pairs:
        continue
    fields = dict(pairs)
    at = datetime.fromisoformat(fields["timestamp"].replace("Z", "+00:00")).timestamp()
    if at < killed_at:
        continue
    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", str(fields.get("wait", "")))
    resent = at + (float(m.group(1)) * SCALE[m.group(2)] if m else 0.0)
    last = (at, resent) if last is None else (max(last[0], at), max(last[1], resent))
    retries += 1
    reasons.update(v for k, v in pairs if k == "message" and v != "retrying batch")
if last is None:
    print("none")
else:
    refused, through = (t - killed_at for t in last)
    print(f"{refused:.1f} {through:.1f} {retries} {'; '.join(sorted(reasons))[:300]}")
EOF
)"
say "figures: sentinels promoted the replica ${promoted_after} s after the SIGKILL"
if [ "$refused" = none ]; then
    say "figures: no request of the simulator was refused during the failover"
else
    read -r last_refusal through retried reasons <<<"$refused"
    say "figures: writes refused until ${last_refusal} s after the SIGKILL (the simulator's last refusal; every refused request was through ${through} s after it, its backoff included); the old primary was a replica again ${replica_back_after} s after it; $retried retries: $reasons"
fi
say "figures: loading paused ${paused} s after the ClickHouse SIGKILL (to the first new row on clickhouse-replica); the restarted clickhouse caught up ${caught_up} s after its start"

step="down"
say "all checks passed; taking the stack down"
