#!/usr/bin/env bash
# Side-by-side throughput of two gateway binaries: this checkout's release gateway and
# BENCH_BASELINE_GATEWAY (a release build of an older commit), alternated run by run on one
# private Redis so that both see the same (possibly busy) machine. Only the gateways, the
# simulator and Redis run: no consumer, no ClickHouse; each run's stream is deleted before
# it, and Redis keeps no AOF, so both binaries pay the same Redis cost.
#
#   git worktree add /var/tmp/wt-before 74b36ac
#   (cd /var/tmp/wt-before && CARGO_TARGET_DIR=/var/tmp/target-before cargo build --release -p gateway)
#   BENCH_BASELINE_GATEWAY=/var/tmp/target-before/release/gateway scripts/bench_gateway.sh
#
# Per run it prints the events the gateway accepted per second of sending, and the gateway's
# CPU time per accepted event (µs), which a busy machine disturbs less than the rate; then the
# medians and the ratios this build / baseline. Writes docs/bench/<stamp>-gateway-ab.json.
#
# Knobs: BENCH_BASELINE_GATEWAY (required), BENCH_ROUNDS (3: each binary runs once per round,
# the order alternating), BENCH_SECONDS (8 per run), BENCH_BATCH (2000), BENCH_CONCURRENCY
# (64), BENCH_STORES (stores per region, 10), BENCH_PORT_BASE (28000: Redis +379, gateways
# +51 and +52), BENCH_NO_BUILD=1 to use the release binaries already built. GATEWAY_* variables
# of the environment reach both gateways (a baseline ignores those it does not know).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"

baseline="${BENCH_BASELINE_GATEWAY:?set BENCH_BASELINE_GATEWAY to the gateway binary to compare with}"
rounds="${BENCH_ROUNDS:-3}"
seconds="${BENCH_SECONDS:-8}"
batch="${BENCH_BATCH:-2000}"
concurrency="${BENCH_CONCURRENCY:-64}"
stores="${BENCH_STORES:-10}"
base="${BENCH_PORT_BASE:-28000}"
redis_port=$((base + 379))

log() { echo "bench_gateway: $*" >&2; }
now() { date +%s.%N; }
# require_executables; cpu_ticks (a gateway forks no children, so the children's ticks it
# adds are 0)
# shellcheck source=scripts/bench_lib.sh
. "$repo/scripts/bench_lib.sh"

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building release binaries"
    cargo build --release --quiet -p gateway -p simulator
fi
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
require_executables "$bin/gateway" "$bin/simulator" "$baseline"

work="$(mktemp -d)"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

"$bin/simulator" stores-file --token-secret bench --stores-per-region "$stores" >"$work/stores.toml"
declare -A binary=([new]="$bin/gateway" [baseline]="$baseline")
declare -A port=([new]=$((base + 51)) [baseline]=$((base + 52)))
declare -A pid
for which in new baseline; do
    REDIS_URL="redis://127.0.0.1:$redis_port" STREAM_KEY="events-$which" \
        GATEWAY_LISTEN="127.0.0.1:${port[$which]}" GATEWAY_STORES_FILE="$work/stores.toml" \
        RUST_LOG=warn "${binary[$which]}" >"$work/gateway-$which.log" 2>&1 &
    pid[$which]=$!
    pids+=("$!")
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/${port[$which]}") 2>/dev/null && break
        sleep 0.1
    done
done

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
: >"$work/runs.tsv"
for round in $(seq 1 "$rounds"); do
    order="new baseline"
    [ $((round % 2)) = 0 ] && order="baseline new"
    for which in $order; do
        redis-cli -p "$redis_port" del "events-$which" >/dev/null
        c0="$(cpu_ticks "${pid[$which]}")"
        t0="$(now)"
        "$bin/simulator" run --gateway "http://127.0.0.1:${port[$which]}" --token-secret bench \
            --rate 0 --stores-per-region "$stores" --duration "$seconds" --batch-size "$batch" \
            --concurrency "$concurrency" --clock-rate 1000000 --forget-ids --quiet \
            --truth-out "$work/truth.json" >"$work/simulator.out" 2>&1 ||
            log "simulator: $(tail -n 1 "$work/simulator.out")"
        t1="$(now)"
        c1="$(cpu_ticks "${pid[$which]}")"
        read -r accepted retried < <(python3 -c 'import json,sys; t = json.load(open(sys.argv[1])); print(t["accepted"], t["retried_requests"])' "$work/truth.json")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$which" "$accepted" "$(python3 -c "print($t1 - $t0)")" \
            "$((c1 - c0))" "$retried" >>"$work/runs.tsv"
        log "round $round, $which: $accepted events in $(python3 -c "print(round($t1 - $t0, 2))") s"
    done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

stamp="$(date -u +%Y-%m-%d-%H%M%S)"
mkdir -p docs/bench
python3 - "$work/runs.tsv" "docs/bench/$stamp-gateway-ab.json" <<EOF
import json, os, statistics, subprocess, sys
ticks = os.sysconf("SC_CLK_TCK")
runs = []
for line in open(sys.argv[1]):
    rnd, which, accepted, secs, cpu, retried = line.split()
    accepted, secs, cpu = int(accepted), float(secs), int(cpu) / ticks
    runs.append({"round": int(rnd), "gateway": which, "accepted": accepted, "seconds": round(secs, 2),
                 "events_per_second": round(accepted / secs), "retried_requests": int(retried),
                 "gateway_cpu_us_per_event": round(cpu * 1e6 / accepted, 3) if accepted else None})
med = lambda which, key: statistics.median(r[key] for r in runs if r["gateway"] == which and r[key] is not None)
summary = {w: {"median_events_per_second": round(med(w, "events_per_second")),
               "median_gateway_cpu_us_per_event": round(med(w, "gateway_cpu_us_per_event"), 3)} for w in ("new", "baseline")}
summary["ratio_events_per_second"] = round(summary["new"]["median_events_per_second"] / summary["baseline"]["median_events_per_second"], 3)
summary["ratio_cpu_per_event"] = round(summary["new"]["median_gateway_cpu_us_per_event"] / summary["baseline"]["median_gateway_cpu_us_per_event"], 3)
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
result = {"date": "$stamp", "rev": rev, "baseline": "$baseline",
          "machine": {"nproc": os.cpu_count(), "cpu_model": model, "loadavg_before": "$load_before", "loadavg_after": "$load_after"},
          "settings": {"rounds": $rounds, "seconds": $seconds, "batch": $batch, "concurrency": $concurrency, "stores_per_region": $stores},
          "runs": runs, "summary": summary}
json.dump(result, open(sys.argv[2], "w"), indent=2)
print("| round | gateway | events/s | gateway CPU µs/event | requests retried |")
print("|---|---|---|---|---|")
for r in runs:
    print(f"| {r['round']} | {r['gateway']} | {r['events_per_second']/1000:.0f}k | {r['gateway_cpu_us_per_event']} | {r['retried_requests']} |")
print(json.dumps(summary, indent=2))
EOF
log "done: docs/bench/$stamp-gateway-ab.json"
