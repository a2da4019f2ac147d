#!/usr/bin/env bash
# The project's test command, what CI runs (through .ci/run) and what to run before pushing:
# install missing tools, lint the protos, check formatting, clippy with warnings as errors, then
# every test of the workspace. The tests start their own Redis, ClickHouse and S3 (testkit), so
# no stack needs to be running. Last, the deployment for real: images built from Debian
# packages and the release binaries, the compose stack up on this machine's Docker engine,
# an event through it to the report, and down (scripts/compose_test.sh; dockerd is started
# when it is not running); then the HA profile on the same images, with the Redis primary
# and a ClickHouse replica killed under load (scripts/compose_ha_test.sh). Stops at the
# first failing step. CARGO_TARGET_DIR is honoured.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step="setup"
trap 'echo "test.sh: step \"$step\" failed" >&2' ERR

section() {
    step="$1"
    printf '\n==> %s\n' "$1"
}

section "install missing tools"
bash scripts/install.sh

section "buf lint"
buf lint

# The contract store backends build against: a change that would break them (a field
# renumbered, renamed or removed, a type changed) fails here. Releasing a new contract on
# purpose means rebuilding the image in the same commit: buf build -o proto/released.binpb
section "buf breaking against the released contract"
buf breaking --against proto/released.binpb

section "alert rules (promtool)"
promtool check config deploy/prometheus/prometheus.yml
promtool test rules deploy/prometheus/alerts_test.yml

section "deployment files"
# YAML keeps the last of two equal keys silently, so a repeated service override would drop
# the first one's settings without a word from docker-compose
python3 scripts/yaml_keys.py $(git ls-files '*.yaml' '*.yml')
docker-compose -f compose.yaml config -q
docker-compose -f compose.yaml -f deploy/compose.local-images.yaml config -q
docker-compose -f compose.yaml -f deploy/compose.ha.yaml config -q
docker-compose -f compose.yaml -f deploy/compose.local-images.yaml \
    -f deploy/compose.ha.yaml -f deploy/compose.ha-local-images.yaml --profile ha config -q
if command -v terraform >/dev/null 2>&1; then
    terraform fmt -check -recursive terraform
    bash scripts/deploy_test.sh # scripts/deploy.sh's preflight, offline
    # the modules (gateway exposure rule, probers) have no provider, so their tests run offline
    for module in gateway_exposure prober core_replica; do
        tf_data="$(mktemp -d)"
        TF_DATA_DIR="$tf_data" terraform -chdir=terraform/modules/$module init -input=false >/dev/null
        TF_DATA_DIR="$tf_data" terraform -chdir=terraform/modules/$module test
        rm -rf "$tf_data"
    done
else
    echo "terraform is not on PATH (it cannot be installed from the package registries); skipping terraform fmt and scripts/deploy_test.sh" >&2
fi

section "cargo fmt --check"
cargo fmt --all --check

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo test"
echo "target dir: ${CARGO_TARGET_DIR:-target}"
log="$(mktemp)"
cargo test --workspace 2>&1 | tee "$log"
# cargo prints one summary per test binary, the last often a doc-test run with 0 tests;
# close with the totals so the run's last line tells how many tests ran.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
rm -f "$log"

section "compose stack on docker"
stack_started=$SECONDS
bash scripts/compose_test.sh
echo "compose stack step: $((SECONDS - stack_started)) s (release build, images, up, checks, down)"

# The HA profile on the same images: the Redis primary and a ClickHouse replica SIGKILLed
# under load, every accepted event once on both replicas (scripts/compose_ha_test.sh).
section "compose HA profile on docker"
stack_started=$SECONDS
COMPOSE_IMAGES_READY=1 bash scripts/compose_ha_test.sh
echo "compose HA step: $((SECONDS - stack_started)) s (up, Redis failover, ClickHouse replica kill, checks, down)"

printf '\n==> all steps passed\n'
