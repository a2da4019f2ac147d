#!/usr/bin/env bash
# Refuses an unsafe gateway configuration before anything starts: a gateway listening beyond
# loopback without TLS, or with stores whose tokens derive from the published demo secret
# (deploy/stores.example.toml), unless GATEWAY_INSECURE_DEMO=i-understand-this-gateway-is-unsafe.
# Also checks that the stores file loads, the TLS files are readable and REDIS_URL is usable.
# Exit 0 and "preflight: ok" when the gateway would start; non-zero and the reasons otherwise.
#
#   GATEWAY_LISTEN=0.0.0.0:50051 GATEWAY_STORES_FILE=stores.toml scripts/preflight.sh
#       the GATEWAY_* settings of this shell, checked by a local gateway binary: GATEWAY_BIN,
#       else `gateway` on PATH, else the one in CARGO_TARGET_DIR (built if missing)
#   scripts/preflight.sh --compose [-f deploy/compose.edge.yaml]
#       the gateway service exactly as Compose would start it (environment and mounts)
#
# Either way it is the gateway's own check (`gateway --preflight`, gateway/src/preflight.rs),
# which every gateway also runs at startup: one rule, in one place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = "--compose" ]; then
    shift
    compose=(docker compose)
    if command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose); fi
    exec "${compose[@]}" "$@" run --rm --no-deps -T gateway gateway --preflight
fi

bin="${GATEWAY_BIN:-}"
if [ -z "$bin" ] && command -v gateway >/dev/null 2>&1; then
    bin="$(command -v gateway)"
fi
if [ -z "$bin" ]; then
    # built from this checkout (a no-op when fresh): a binary left in the target directory by
    # an older build may not know the checks this script relies on
    cargo build --quiet -p gateway --bin gateway >&2
    bin="${CARGO_TARGET_DIR:-target}/debug/gateway"
fi
exec "$bin" --preflight
