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

echo "deploy_test: $passed cases passed"
