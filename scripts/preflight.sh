#!/usr/bin/env bash
# Refuses an unsafe gateway configuration before anything starts: a gateway listening beyond
# loopback without TLS, or with stores whose tokens derive from the published demo secret
# (deploy/stores.example.toml), unless GATEWAY_INSECURE_DEMO=i-understand-this-gateway-is-unsafe.
# Also checks that the stores file loads, the TLS files are readable and REDIS_URL is usable.
# Exit 0 and "preflight: ok" when the gateway would start; non-zero and the reasons otherwise.
#
#   scripts/preflight.sh                                   # the gateway of ./compose.yaml
#   scripts/preflight.sh -f deploy/compose.edge.yaml       # an edge gateway (deploy/.env)
#   GATEWAY_BIN=target/release/gateway scripts/preflight.sh   # no Docker: the binary with
#                                                          # the GATEWAY_* settings of this shell
#
# It runs the gateway's own check (`gateway --preflight`, gateway/src/preflight.rs), which
# every gateway also runs at startup, with exactly the environment and mounts Compose gives
# the service: one rule, in one place. Arguments go to `docker compose` before `run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${GATEWAY_BIN:-}" ]; then
    exec "$GATEWAY_BIN" --preflight
fi
exec docker compose "$@" run --rm --no-deps -T gateway gateway --preflight
