# One image for the whole pipeline: /usr/local/bin/{gateway,consumer,reporter,archiver,simulator,prober}, and
# gateway-health, the gateway's healthcheck. compose.yaml picks the binary per service with
# `command:`.
#
#   docker build -t marketplace-pipeline:dev .
#
# Stages:
#   runtime-base – debian:bookworm-slim, CA certificates, the non-root user
#   prebuilt     – runtime-base + binaries built outside Docker (only with --target prebuilt)
#   chef         – the Rust toolchain plus cargo-chef (pinned, built from crates.io)
#   planner      – reduces the workspace to a dependency "recipe" (manifests + Cargo.lock)
#   builder      – builds the dependencies from the recipe (a cached layer that only changes
#                  when Cargo.toml/Cargo.lock change), then the binaries
#   runtime      – runtime-base + the builder's binaries: the default target, what deploys
#
# `prebuilt` is for hosts that cannot pull the Rust image (scripts/images.sh): its build
# context is a directory holding the release binaries, and the base comes as a build arg:
#
#   docker build --target prebuilt --build-arg RUNTIME_IMAGE=local/debian:bookworm \
#       -f Dockerfile -t marketplace-pipeline:local DIR_WITH_BINARIES
#
# It comes before the Rust stages so that even the classic builder (no BuildKit), which builds
# every stage up to the target, never touches them.
#
# Protobuf is compiled by protox inside proto/build.rs: no protoc in any stage.

# Pinned versions. The toolchain matches the one CI and developers use (rustc 1.95);
# Debian bookworm in both the builder and the runtime so the glibc the binaries link
# against is the one they run with.
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG CARGO_CHEF_VERSION=0.1.76

FROM ${RUNTIME_IMAGE} AS runtime-base
# ca-certificates: S3 (and any other TLS peer) is verified against the system roots.
# Not version-pinned on purpose: the trust store must follow Debian's security updates, and a
# pinned version vanishes from the archive once superseded (the base image tag is the pin).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid so host-side files the containers read (TLS keys on the edge
# gateways) can be chowned to it: 10001:10001.
RUN groupadd --system --gid 10001 pipeline \
    && useradd --system --uid 10001 --gid pipeline \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin pipeline
USER 10001:10001
# gateway gRPC, and the Prometheus endpoint every service serves (METRICS_LISTEN).
EXPOSE 50051 9100
# Services override this with `command:`; the default is the gateway.
CMD ["gateway"]

FROM runtime-base AS prebuilt
COPY gateway gateway-health consumer reporter archiver simulator prober /usr/local/bin/

FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
# Dependencies only: this layer is reused as long as the recipe is unchanged, which is
# what makes a rebuild after a source change take seconds instead of minutes. (The recipe
# carries Cargo.lock; the real build below is the one that enforces it with --locked.)
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked \
        --bin gateway --bin gateway-health --bin consumer --bin reporter --bin archiver \
        --bin simulator --bin prober \
    && mkdir /out \
    && cp target/release/gateway target/release/gateway-health target/release/consumer \
          target/release/reporter target/release/archiver target/release/simulator \
          target/release/prober /out/

FROM runtime-base AS runtime
COPY --from=builder /out/ /usr/local/bin/
