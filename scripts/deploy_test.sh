#!/usr/bin/env bash
# Tests scripts/deploy.sh's preflight, offline (DEPLOY_OFFLINE=1: no terraform init, so no
# provider download and no cloud API): a complete configuration passes and says that
# `terraform validate` did not run; each unsafe or incomplete one is refused with a message
# naming what to fix. Every case runs on a copy of terraform/ in a temp dir. Part of
# scripts/test.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0

# A fresh copy of terraform/ with a complete, valid-looking configuration.
fixture() {
    rm -rf "$work/tf"
    cp -r terraform "$work/tf"
    rm -f "$work/tf/terraform.tfvars"
    mkdir -p "$work/tf/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
        -subj /CN=ingest.test -keyout "$work/tf/tls/ingest.key" -out "$work/tf/tls/ingest.crt" 2>/dev/null
    printf '[[store]]\nid = "s1"\nregion = "europe"\ntoken_sha256 = "%s"\n' \
        "$(openssl rand -hex 32)" >"$work/tf/stores.toml"
    # every placeholder replaced by a value of the same shape
    sed -E \
        -e "s/\"CHANGE_ME[^\"]*\"/\"$(openssl rand -hex 16)\"/g" \
        -e 's/PLACEHOLDER[A-Z]*/AAAAkeyAAAA/' \
        -e 's/alice@example.com/alice@ops/' \
        -e 's#ghcr.io/example-org/#registry.test/ops/#' \
        -e 's#203\.0\.113\.7/32#192.0.2.0/24#' \
        -e 's#"198\.51\.100\.0/24", "2001:db8::/32"#"192.0.2.128/25"#' \
        -e 's#tls/ingest.example.com#tls/ingest#' \
        terraform/terraform.tfvars.example >"$work/tf/terraform.tfvars"
    terraform fmt "$work/tf/terraform.tfvars" >/dev/null 2>&1
    # 192.0.2.0/24 is a documentation range too, but not one the example file uses
}

# expect ok|refused PATTERN: runs the preflight, checks the outcome and that the output matches.
expect() {
    local want="$1" pattern="$2" out rc=0
    out="$(DEPLOY_OFFLINE=1 DEPLOY_TF_DIR="$work/tf" HCLOUD_TOKEN="${token-x}" \
        bash scripts/deploy.sh preflight 2>&1)" || rc=$?
    case "$want" in
        ok) [ "$rc" -eq 0 ] || { echo "deploy_test: $case: refused, expected ok:" >&2; echo "$out" >&2; exit 1; } ;;
        refused) [ "$rc" -ne 0 ] || { echo "deploy_test: $case: passed, expected refused:" >&2; echo "$out" >&2; exit 1; } ;;
    esac
    grep -q -E -- "$pattern" <<<"$out" ||
        { echo "deploy_test: $case: output lacks /$pattern/:" >&2; echo "$out" >&2; exit 1; }
    passed=$((passed + 1))
}

case="complete configuration"
fixture
expect ok "terraform validate NOT run: it needs the hcloud provider"

case="no tfvars"
fixture
rm "$work/tf/terraform.tfvars"
expect refused "terraform.tfvars is missing"

case="no api token"
fixture
token="" expect refused "no Hetzner API token"

case="example placeholders left"
fixture
cp terraform/terraform.tfvars.example "$work/tf/terraform.tfvars"
expect refused "placeholders .*redis_password"

case="example stores file"
fixture
cp deploy/stores.example.toml "$work/tf/stores.toml"
expect refused "example stores' tokens"

case="no tls"
fixture
sed -i '/^gateway_tls_/d' "$work/tf/terraform.tfvars"
expect refused "gateway_tls_cert_file and gateway_tls_key_file must both be set"

case="tls key of another certificate"
fixture
openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out "$work/tf/tls/ingest.key" 2>/dev/null
expect refused "is not the key of"

case="tls certificate about to expire"
fixture
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3 \
    -subj /CN=ingest.test -keyout "$work/tf/tls/ingest.key" -out "$work/tf/tls/ingest.crt" 2>/dev/null
expect refused "expires within 14 days"

case="terraform fmt"
fixture
printf 'locals {\nx=1\n}\n' >"$work/tf/unformatted.tf"
expect refused "terraform fmt would change"

case="plan refuses to run offline"
fixture
out="$(DEPLOY_OFFLINE=1 DEPLOY_TF_DIR="$work/tf" bash scripts/deploy.sh plan 2>&1)" &&
    { echo "deploy_test: $case: plan ran offline" >&2; exit 1; }
grep -q "unset DEPLOY_OFFLINE" <<<"$out" || { echo "$out" >&2; exit 1; }
passed=$((passed + 1))

case="a prober on a gateway node"
# What a gateway node gets for its prober, rendered offline by modules/prober (no provider),
# written as cloud-init would (.env, prober/targets.toml beside deploy/compose.edge.yaml),
# and read back by Compose: the prober service starts with the node's region, token and TLS
# settings. (The module's refusals are its own `terraform test`, in scripts/test.sh.)
node="$work/node" && rm -rf "$node" && mkdir -p "$node/render" "$node/prober"
cat >"$node/render/main.tf" <<HCL
module "probers" {
  source       = "$PWD/terraform/modules/prober"
  gateways     = { sin-1 = { region = "asia" } }
  targets_toml = file("$PWD/deploy/prober/targets.example.toml")
  tokens       = { asia = "asia-prober-token" }
  stores_toml  = "[[store]]\nid = \"prober-asia\"\nregion = \"asia\"\nrole = \"prober\"\ntoken_sha256 = \"\${sha256("asia-prober-token")}\"\n"
  tls_enabled  = true
  tls_domain   = "ingest.test"
}
output "dotenv" {
  value     = join("", [for k, v in module.probers.env["sin-1"] : "\${k}=\${v}\n"])
  sensitive = true
}
output "targets" {
  value = module.probers.files["sin-1"]["/opt/marketplace/prober/targets.toml"].content
}
HCL
(
    export TF_DATA_DIR="$node/render/.terraform"
    terraform -chdir="$node/render" init -input=false -no-color >/dev/null 2>&1
    terraform -chdir="$node/render" apply -auto-approve -input=false -no-color >/dev/null 2>&1
    terraform -chdir="$node/render" output -raw dotenv >"$node/.env"
    terraform -chdir="$node/render" output -raw targets >"$node/prober/targets.toml"
) || { echo "deploy_test: $case: modules/prober did not render" >&2; exit 1; }
cp deploy/compose.edge.yaml "$node/compose.yaml"
printf 'METRICS_PUBLISH_IP=10.99.0.120\n' >>"$node/.env"
cmp -s deploy/prober/targets.example.toml "$node/prober/targets.toml" ||
    { echo "deploy_test: $case: targets.toml differs from the targets given" >&2; exit 1; }
if command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose); else compose=(docker compose); fi
services="$(cd "$node" && "${compose[@]}" config --services 2>&1 | sort | paste -sd ' ' -)"
[ "$services" = "gateway prober" ] || { echo "deploy_test: $case: services: $services" >&2; exit 1; }
config="$(cd "$node" && "${compose[@]}" config 2>&1)"
for want in "PROBER_REGION: asia" "PROBER_TOKEN: asia-prober-token" "PROBER_GATEWAY: https://gateway:50051" \
    "PROBER_GATEWAY_TLS_DOMAIN: ingest.test" "PROBER_GATEWAY_CA_FILE: /etc/ssl/certs/ca-certificates.crt" \
    "10.99.0.120:9101:9100" "$node/prober:/etc/marketplace/prober:ro"; do
    grep -q -F -- "$want" <<<"$config" || { echo "deploy_test: $case: compose config lacks $want:" >&2; echo "$config" >&2; exit 1; }
done
passed=$((passed + 1))

case="core replica: three hosts"
# What core_replica.enabled gives the core, the replica and the witness, rendered offline by
# modules/core_replica and written as cloud-init would (.env and deploy/clickhouse/hosts/
# beside the repository's compose files), then read back by Compose: each host runs its part
# (core: everything; replica: Redis, ClickHouse, a consumer; witness: a sentinel and a keeper,
# as every host does), Redis and ClickHouse publish on the host's private address only, and
# the consumers reach Redis through the three sentinels and ClickHouse through both replicas.
ha="$work/ha" && rm -rf "$ha" && mkdir -p "$ha/render"
cat >"$ha/render/main.tf" <<HCL
module "core_replica" {
  source                  = "$PWD/terraform/modules/core_replica"
  enabled                 = true
  addresses               = { core = "10.0.1.10", replica = "10.0.1.11", witness = "10.0.1.12" }
  redis_gateway_password  = "gw-pass"
  redis_consumer_password = "consumer-pass"
  base_env = { COMPOSE_PROJECT_NAME = "marketplace", REDIS_PASSWORD = "admin-pass", REDIS_GATEWAY_PASSWORD = "gw-pass",
    REDIS_CONSUMER_PASSWORD = "consumer-pass", CLICKHOUSE_USER = "pipeline", CLICKHOUSE_PASSWORD = "ch-pass",
    CLICKHOUSE_GRAFANA_PASSWORD = "gf-pass", AWS_ACCESS_KEY_ID = "k", AWS_SECRET_ACCESS_KEY = "s", GRAFANA_ADMIN_PASSWORD = "g" }
  cloud_config_template = "$PWD/terraform/cloud-init/cloud-config.yaml.tftpl"
}
output "dotenv" {
  value = { for host, env in module.core_replica.env : host => join("", [for k, v in (host == "core" ? merge(module.core_replica.env.replica, env) : env) : "\${k}=\${v}\n"]) }
  sensitive = true
}
output "files" {
  value = module.core_replica.core_files
}
HCL
(
    export TF_DATA_DIR="$ha/render/.terraform"
    terraform -chdir="$ha/render" init -input=false -no-color >/dev/null 2>&1
    terraform -chdir="$ha/render" apply -auto-approve -input=false -no-color >/dev/null 2>&1
    terraform -chdir="$ha/render" output -json dotenv >"$ha/dotenv.json"
    terraform -chdir="$ha/render" output -json files >"$ha/files.json"
) || { echo "deploy_test: $case: modules/core_replica did not render" >&2; exit 1; }
for host in core replica witness; do
    mkdir -p "$ha/$host/deploy/clickhouse/hosts"
    cp compose.yaml "$ha/$host/"
    cp deploy/compose.core.yaml deploy/compose.ha-hosts.yaml "$ha/$host/deploy/"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]], end="")' "$ha/dotenv.json" "$host" >"$ha/$host/.env"
    (cd "$ha/$host" && env -i PATH="$PATH" "${compose[@]}" -f compose.yaml -f deploy/compose.core.yaml -f deploy/compose.ha-hosts.yaml config) \
        >"$ha/$host.yaml" 2>"$ha/$host.err" || { echo "deploy_test: $case: $host: compose config failed:" >&2; cat "$ha/$host.err" >&2; exit 1; }
done
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["/opt/marketplace/deploy/clickhouse/hosts/keeper.xml"]["content"])' \
    "$ha/files.json" >"$ha/core/deploy/clickhouse/hosts/keeper.xml"
grep -q "<server_id>1</server_id>" "$ha/core/deploy/clickhouse/hosts/keeper.xml" ||
    { echo "deploy_test: $case: the core's keeper is not server 1" >&2; exit 1; }
# Which services each host starts: those without a profile, and those of its COMPOSE_PROFILES;
# none may depend on a service it does not start.
python3 - "$ha" <<'PY' || { echo "deploy_test: $case: a host runs the wrong services (above)" >&2; exit 1; }
import sys, yaml
ha = sys.argv[1]
want = {
    "core": "archiver clickhouse consumer grafana keeper preflight prometheus redis reporter s3 s3-init sentinel tempo tempo-health",
    "replica": "clickhouse consumer keeper preflight redis sentinel",
    "witness": "keeper sentinel",
}
ok = True
for host, services in want.items():
    env = dict(line.split("=", 1) for line in open(f"{ha}/{host}/.env").read().splitlines())
    profiles = {p for p in env["COMPOSE_PROFILES"].split(",") if p}
    svc = yaml.safe_load(open(f"{ha}/{host}.yaml"))["services"]
    on = {n for n, s in svc.items() if not s.get("profiles") or set(s["profiles"]) & profiles}
    missing = [(n, d) for n in on for d in (svc[n].get("depends_on") or {}) if d not in on]
    if " ".join(sorted(on)) != services or missing:
        print(f"{host}: runs {sorted(on)}, dependencies not running: {missing}", file=sys.stderr)
        ok = False
sys.exit(0 if ok else 1)
PY
for want in "core:10.0.1.10:8123:8123/tcp" "replica:10.0.1.11:8123:8123/tcp" "replica:10.0.1.11:6379:6379/tcp" "replica:REDIS_REPLICAOF: 10.0.1.10" \
    "replica:REDIS_URL: redis-sentinel://consumer:consumer-pass@10.0.1.10:26379?sentinelServiceName=pipeline&node=10.0.1.11:26379&node=10.0.1.12:26379" \
    "replica:CLICKHOUSE_URL: http://clickhouse:8123,http://10.0.1.10:8123" "core:CLICKHOUSE_URL: http://clickhouse:8123,http://10.0.1.11:8123" \
    'core:CLICKHOUSE_REPLICATED: "true"' "replica:/deploy/clickhouse/hosts/replication.xml:/etc/clickhouse-server/config.d/replication.xml:ro" "witness:HOST_PRIVATE_IP: 10.0.1.12" \
    "witness:sentinel monitor pipeline 10.0.1.10 6379 2"; do
    host="${want%%:*}" && text="${want#*:}"
    grep -q -F -- "$text" "$ha/$host.yaml" ||
        { echo "deploy_test: $case: $host's compose config lacks $text:" >&2; cat "$ha/$host.yaml" >&2; exit 1; }
done
passed=$((passed + 1))

echo "deploy_test: $passed cases passed"
