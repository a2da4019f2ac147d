#!/usr/bin/env bash
# The one-command Hetzner deploy: Terraform's steps behind a preflight that must pass before
# anything touches the cloud.
#
#   scripts/deploy.sh preflight     # the checks only (offline, no cloud API call)
#   scripts/deploy.sh plan          # preflight, terraform init + plan -out=tfplan
#   scripts/deploy.sh apply         # preflight, terraform apply tfplan (run plan first)
#   scripts/deploy.sh destroy       # preflight, terraform destroy (asks for confirmation)
#
# The preflight refuses, naming what to fix:
#   - a missing terraform.tfvars or Hetzner API token (HCLOUD_TOKEN or hcloud_token);
#   - any placeholder left from terraform.tfvars.example (CHANGE_ME, PLACEHOLDER,
#     example-org, documentation addresses);
#   - a stores file holding the demo fleet's example tokens (deploy/stores.example.toml);
#   - missing TLS material: certificate and key must both exist, parse, match each other
#     and the certificate must not expire within 14 days;
#   - Terraform files that `terraform fmt -check` would change;
#   - `terraform validate` failing. Validate needs the hcloud provider, which `terraform init`
#     downloads from registry.terraform.io: with DEPLOY_OFFLINE=1 (tests, machines without that
#     registry) it is skipped and the preflight says so; plan/apply/destroy never skip it.
# and it runs scripts/preflight.sh (unsafe gateway settings) when that script exists.
#
# Settings: DEPLOY_TF_DIR (default terraform/), DEPLOY_TFVARS (default $DEPLOY_TF_DIR/terraform.tfvars;
# relative paths inside it resolve against DEPLOY_TF_DIR, as Terraform's file() does there).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

tf_dir="${DEPLOY_TF_DIR:-terraform}"
tfvars="${DEPLOY_TFVARS:-$tf_dir/terraform.tfvars}"
offline="${DEPLOY_OFFLINE:-0}"
tfvars_abs="$(realpath -m "$tfvars")" # terraform runs in $tf_dir
problems=()

say() {
    printf 'deploy: %s\n' "$*" >&2
}

problem() {
    problems+=("$1")
}

# The value of `name = "value"` in the tfvars file (first match; quoted strings only).
tfvar() {
    sed -n -E "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\1/p" "$tfvars" | head -n 1
}

# A path from the tfvars file, as Terraform run in $tf_dir sees it.
tf_path() {
    case "$1" in
        /*) printf '%s' "$1" ;;
        *) printf '%s/%s' "$tf_dir" "$1" ;;
    esac
}

check_secrets() {
    if [ ! -f "$tfvars" ]; then
        problem "$tfvars is missing: copy $tf_dir/terraform.tfvars.example and fill it in"
        return
    fi
    if [ -z "${HCLOUD_TOKEN:-}" ] && [ -z "$(tfvar hcloud_token)" ]; then
        problem "no Hetzner API token: export HCLOUD_TOKEN (preferred) or set hcloud_token"
    fi
    # Anything still as terraform.tfvars.example wrote it. Comments do not count.
    local leftovers
    leftovers="$(sed 's/#.*//' "$tfvars" |
        grep -n -E 'CHANGE_ME|PLACEHOLDER|example-org|example\.com|203\.0\.113\.|198\.51\.100\.|2001:db8:' |
        sed -E 's/^([0-9]+):[[:space:]]*([A-Za-z0-9_]+).*/\2 (line \1)/' | sort -u | paste -sd ',' - || true)"
    [ -z "$leftovers" ] || problem "placeholders from terraform.tfvars.example still in $tfvars: $leftovers"
}

check_stores() {
    [ -f "$tfvars" ] || return 0
    local stores
    stores="$(tfvar stores_file)"
    if [ -z "$stores" ]; then
        problem "stores_file is not set in $tfvars"
        return
    fi
    stores="$(tf_path "$stores")"
    if [ ! -f "$stores" ]; then
        problem "stores_file $stores does not exist"
        return
    fi
    # Every token hash of the example fleet: its tokens derive from a published secret.
    local example
    for example in $(sed -n -E 's/^token_sha256 = "([0-9a-f]{64})"/\1/p' deploy/stores.example.toml); do
        if grep -q "$example" "$stores"; then
            problem "$stores holds the example stores' tokens (deploy/stores.example.toml): give real stores random tokens"
            return
        fi
    done
}

check_tls() {
    [ -f "$tfvars" ] || return 0
    local cert key
    cert="$(tfvar gateway_tls_cert_file)"
    key="$(tfvar gateway_tls_key_file)"
    if [ -z "$cert" ] || [ -z "$key" ]; then
        problem "gateway_tls_cert_file and gateway_tls_key_file must both be set: stores send bearer tokens over the internet"
        return
    fi
    cert="$(tf_path "$cert")"
    key="$(tf_path "$key")"
    [ -f "$cert" ] || problem "TLS certificate $cert does not exist"
    [ -f "$key" ] || problem "TLS key $key does not exist"
    [ -f "$cert" ] && [ -f "$key" ] || return 0
    if ! openssl x509 -in "$cert" -noout 2>/dev/null; then
        problem "$cert is not a PEM certificate"
        return
    fi
    openssl x509 -in "$cert" -noout -checkend $((14 * 86400)) >/dev/null ||
        problem "$cert expires within 14 days (or has expired)"
    local cert_key key_key
    cert_key="$(openssl x509 -in "$cert" -noout -pubkey 2>/dev/null | openssl sha256)"
    key_key="$(openssl pkey -in "$key" -pubout 2>/dev/null | openssl sha256)" ||
        { problem "$key is not a PEM private key"; return; }
    [ "$cert_key" = "$key_key" ] || problem "$key is not the key of $cert"
}

# The gateway's own preflight (the "edgeops" work: unsafe gateway configs such as the example
# stores file or plaintext on a public address), run with the settings the edge gateways get.
check_gateway_config() {
    if [ ! -f scripts/preflight.sh ]; then
        say "scripts/preflight.sh (unsafe gateway settings) does not exist yet: its checks did not run"
        return
    fi
    [ -f "$tfvars" ] || return 0
    local stores cert key
    stores="$(tfvar stores_file)"
    cert="$(tfvar gateway_tls_cert_file)"
    key="$(tfvar gateway_tls_key_file)"
    GATEWAY_LISTEN=0.0.0.0:50051 \
        GATEWAY_STORES_FILE="${stores:+$(tf_path "$stores")}" \
        GATEWAY_TLS_CERT="${cert:+$(tf_path "$cert")}" \
        GATEWAY_TLS_KEY="${key:+$(tf_path "$key")}" \
        bash scripts/preflight.sh || problem "scripts/preflight.sh refused the gateway settings (above)"
}

check_terraform() {
    if ! command -v terraform >/dev/null 2>&1; then
        problem "terraform is not on PATH"
        return
    fi
    local unformatted
    unformatted="$(terraform fmt -check -recursive "$tf_dir" 2>/dev/null)" ||
        problem "terraform fmt would change: $(paste -sd ' ' - <<<"$unformatted") (run terraform fmt -recursive $tf_dir)"
    if [ "$offline" = 1 ]; then
        say "terraform validate NOT run: it needs the hcloud provider, which only 'terraform init' can download (registry.terraform.io), and DEPLOY_OFFLINE=1"
        return
    fi
    local out
    if ! out="$(terraform -chdir="$tf_dir" init -backend=false -input=false -no-color 2>&1)"; then
        problem "terraform init failed, so terraform validate could not run (it needs the hcloud provider from registry.terraform.io): $(tail -n 3 <<<"$out" | paste -sd ' ' -)"
        return
    fi
    out="$(terraform -chdir="$tf_dir" validate -no-color 2>&1)" ||
        problem "terraform validate: $(paste -sd ' ' - <<<"$out")"
}

preflight() {
    check_secrets
    check_stores
    check_tls
    check_gateway_config
    check_terraform
    if [ "${#problems[@]}" -gt 0 ]; then
        say "preflight refused, nothing was sent to the cloud:"
        printf '  - %s\n' "${problems[@]}" >&2
        exit 1
    fi
    say "preflight ok"
}

tf() {
    terraform -chdir="$tf_dir" "$@"
}

lock_note() {
    if [ ! -f "$tf_dir/.terraform.lock.hcl" ]; then
        say "note: $tf_dir/.terraform.lock.hcl is not in the repository yet; terraform init just wrote it: commit it"
    fi
}

case "${1:-}" in
    preflight)
        preflight
        ;;
    plan)
        [ "$offline" = 1 ] && { say "plan needs the provider and the Hetzner API: unset DEPLOY_OFFLINE"; exit 1; }
        preflight
        lock_note
        tf plan -input=false -var-file="$tfvars_abs" -out=tfplan
        ;;
    apply)
        [ "$offline" = 1 ] && { say "apply needs the provider and the Hetzner API: unset DEPLOY_OFFLINE"; exit 1; }
        preflight
        [ -f "$tf_dir/tfplan" ] || { say "no $tf_dir/tfplan: run scripts/deploy.sh plan first and read it"; exit 1; }
        tf apply -input=false tfplan
        rm -f "$tf_dir/tfplan"
        ;;
    destroy)
        [ "$offline" = 1 ] && { say "destroy needs the provider and the Hetzner API: unset DEPLOY_OFFLINE"; exit 1; }
        preflight
        tf destroy -var-file="$tfvars_abs"
        ;;
    *)
        echo "usage: scripts/deploy.sh preflight|plan|apply|destroy" >&2
        exit 2
        ;;
esac
