#!/usr/bin/env bash
# Generates the Python (grpcio) and Node (@grpc/grpc-js) stubs of the ingest contract into
# OUT (default: gen/ at the repository root) with `buf generate` and buf.gen.yaml, then compiles
# the Node stubs (TypeScript from ts-proto) to CommonJS with the example's own `tsc`:
#   OUT/python/marketplace/ingest/v1/ingest_pb2{,_grpc}.py   (put OUT/python on PYTHONPATH)
#   OUT/node/marketplace/ingest/v1/ingest.js                 (require it; GEN_DIR=OUT/node)
# Every plugin is local (scripts/install.sh installs them), so no network is needed. The stubs
# are generated, not committed, so they can never be stale.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/gen}" && cd "${1:-$root/gen}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# only the public contract: marketplace.queue.v1 is internal to the pipeline
(cd "$root" && buf generate --template buf.gen.yaml --path proto/marketplace/ingest -o "$work")
rm -rf "$out/python" "$out/node"
mv "$work/gen/python" "$out/python"
# the stubs import @grpc/grpc-js and @bufbuild/protobuf/wire (a subpath export, hence node16
# resolution): both are the example's dependencies
ln -sfn "$root/examples/node/node_modules" "$work/gen/node/node_modules"
"$root/examples/node/node_modules/.bin/tsc" --outDir "$out/node" --rootDir "$work/gen/node" \
    --target es2020 --module node16 --moduleResolution node16 --esModuleInterop --skipLibCheck \
    $(find "$work/gen/node" -name '*.ts' -not -path '*/node_modules/*')
# and so do the compiled ones, wherever OUT is
ln -sfn "$root/examples/node/node_modules" "$out/node/node_modules"
