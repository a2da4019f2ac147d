#!/usr/bin/env bash
# Generates the Python stubs (grpcio) of the ingest contract into OUT (default:
# examples/python/gen), with grpcio-tools: `pip install grpcio grpcio-tools grpcio-status`.
# The stubs are generated, not committed, so they can never be stale.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/examples/python/gen}"
mkdir -p "$out"
python3 -m grpc_tools.protoc -I "$root/proto" \
    --python_out="$out" --grpc_python_out="$out" \
    "$root/proto/marketplace/ingest/v1/ingest.proto"
