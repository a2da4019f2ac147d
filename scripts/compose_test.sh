#!/usr/bin/env bash
# The deployment, run for real on this machine's Docker engine: builds the images
# (scripts/images.sh), brings compose.yaml up with deploy/compose.local-images.yaml, waits for
# every healthcheck, sends the demo simulator's events through the containerised gateway,
# checks that ClickHouse holds every accepted event, writes the day's report with the
# containerised reporter and checks its manifest (and every object it lists) in the
# containerised S3, checks with `archiver verify` that the containerised archiver wrote every
# event of each day to the lake, checks that the gateway's healthcheck fails while Redis is down and
# recovers after, then takes everything down, volumes included. Part of scripts/test.sh.
#
#   scripts/compose_test.sh        # KEEP_STACK=1 leaves the stack up for a look afterwards
#
# Secrets are random per run, the stores file is generated (no example tokens), the gateway is
# published on a free loopback port only, and the project name is unique, so runs never meet.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
step="images"
trap 'echo "compose_test: step \"$step\" failed after $((SECONDS - started)) s" >&2' ERR

say() {
    printf 'compose_test: %s (%d s)\n' "$*" "$((SECONDS - started))"
}

fail() {
    echo "compose_test: $*" >&2
    return 1
}

bash scripts/images.sh all
say "images ready"

# --- settings: random secrets, a generated stores file --------------------------------------
step="settings"
work="$(mktemp -d)"
project="mktcompose$$"
# shellcheck source=scripts/compose_lib.sh
. scripts/compose_lib.sh
stack_settings
cat >>"$work/env" <<EOF
SIMULATOR_RATE=200
SIMULATOR_DURATION=10
# the archiver seals its segments every 5 s instead of every hour, so the lake step need not wait
ARCHIVER_ROLL_EVERY=5s
EOF
compose() {
    docker-compose --project-name "$project" --env-file "$work/env" \
        -f compose.yaml -f deploy/compose.local-images.yaml "$@"
}

cleanup() {
    local rc=$?
    stack_teardown "$rc" compose_test
    exit "$rc"
}
trap cleanup EXIT

ch() {
    compose exec -T clickhouse clickhouse-client --user pipeline --password "$clickhouse_password" \
        --database marketplace --query "$1"
}

# --- up, and every healthcheck passing -------------------------------------------------------
step="up"
compose up -d >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "docker-compose up failed"; }
step="healthchecks"
stack_wait_healthy 180
say "stack up, every healthcheck passing: $(stack_containers)"

# --- events through the gateway into ClickHouse ---------------------------------------------
step="simulator"
compose --profile demo run --rm -T simulator >"$work/simulator.log" 2>&1 ||
    { tail -n 20 "$work/simulator.log" >&2; fail "the simulator failed"; }
summary="$(grep '^sent ' "$work/simulator.log")"
say "simulator: $summary"
accepted="$(sed -E 's/.* ([0-9]+) accepted.*/\1/' <<<"$summary")"
[ "$accepted" -gt 0 ] || fail "the gateway accepted no events"

step="rows in clickhouse"
deadline=$((SECONDS + 120))
while :; do
    rows="$(ch "SELECT (SELECT uniqExact(event_id) FROM commerce_events) + (SELECT uniqExact(event_id) FROM probe_results)" 2>/dev/null || echo 0)"
    [ "$rows" -eq "$accepted" ] && break
    [ "$rows" -le "$accepted" ] || fail "clickhouse holds $rows events, more than the $accepted accepted"
    [ "$SECONDS" -lt "$deadline" ] || fail "clickhouse holds $rows of $accepted accepted events after 120 s"
    sleep 2
done
say "clickhouse holds all $rows accepted events"

# --- the day's report, through the containerised reporter, into the containerised S3 -------
step="report"
day="$(date -u +%F)"
compose run --rm -T --no-deps reporter reporter run --date "$day" >"$work/reporter.log" 2>&1 ||
    { tail -n 20 "$work/reporter.log" >&2; fail "reporter run --date $day failed"; }
filer() {
    # SeaweedFS's filer holds each bucket under /buckets; read inside the s3 container
    compose exec -T s3 wget -q -O - "http://127.0.0.1:8888/buckets/${S3_BUCKET:-reports}/$1"
}
filer "reports/$day/manifest.json" >"$work/manifest.json"
python3 - "$work/manifest.json" "$day" <<'EOF' >"$work/keys"
import json, sys
manifest = json.load(open(sys.argv[1]))
assert manifest["date"] == sys.argv[2], f"manifest date {manifest['date']}"
keys = [o["key"] for o in manifest["objects"]]
assert f"reports/{sys.argv[2]}/marketplace/report.json" in keys, f"no marketplace report in {keys}"
for o in manifest["objects"]:
    print(o["key"], o["sha256"], o["bytes"])
EOF
while read -r key sha256 bytes; do
    got="$(filer "$key" | sha256sum | cut -d' ' -f1)"
    [ "$got" = "$sha256" ] || fail "$key in S3 does not match the manifest's sha256"
done <"$work/keys"
say "report in S3: manifest lists $(wc -l <"$work/keys") objects, every one present with its sha256"

# --- the lake: the containerised archiver wrote every accepted event to S3 ------------------
step="lake"
days="$(ch "SELECT DISTINCT toString(toDate(occurred_at)) AS d FROM commerce_events
            UNION ALL SELECT DISTINCT toString(toDate(occurred_at)) AS d FROM probe_results" | sort -u)"
[ -n "$days" ] || fail "no event days in clickhouse"
for d in $days; do
    # verify exits non-zero while the archive and ClickHouse differ: until the archiver has
    # sealed the day's last segment
    deadline=$((SECONDS + 120))
    # its report on stdout; its logs (stderr) only matter when it fails
    until compose exec -T archiver archiver verify --date "$d" >"$work/verify.log" 2>"$work/verify.err"; do
        [ "$SECONDS" -lt "$deadline" ] || {
            tail -n 20 "$work/verify.err" "$work/verify.log" >&2
            fail "archiver verify --date $d still differs after 120 s"
        }
        sleep 3
    done
    say "lake: archiver verify --date $d agrees with clickhouse: $(head -n 1 "$work/verify.log")"
done

step="reporter healthcheck"
reporter="$(compose ps -q reporter)"
[ "$(docker inspect -f '{{.State.Health.Status}}' "$reporter")" = healthy ] ||
    fail "the reporter is not healthy"

# --- the gateway's healthcheck tells the truth about Redis -----------------------------------
step="gateway health without redis"
probe() { compose exec -T gateway gateway-health >/dev/null 2>&1; }
# until_probe passes|fails SECONDS: waits until the gateway's healthcheck command does that
until_probe() {
    local deadline=$((SECONDS + $2)) rc
    while :; do
        rc=0
        probe || rc=$?
        case "$1/$rc" in passes/0) return 0 ;; fails/0) ;; fails/*) return 0 ;; esac
        [ "$SECONDS" -lt "$deadline" ] || fail "gateway-health never $1 within $2 s"
        sleep 1
    done
}
until_probe passes 0
compose stop --timeout 5 redis >/dev/null 2>&1
until_probe fails 30
say "redis stopped: the gateway's healthcheck fails"
compose start redis >/dev/null 2>&1
until_probe passes 60
say "redis back: the gateway's healthcheck passes again"

step="down"
say "all checks passed; taking the stack down"
