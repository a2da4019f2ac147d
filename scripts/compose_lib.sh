# shellcheck shell=bash
# Shared by scripts/compose_test.sh and scripts/compose_ha_test.sh (sourced, not run): the
# settings of a throwaway stack, its healthcheck wait and its teardown. Each script defines
# `compose` (docker-compose with its project, env file and compose files), `fail`, and
# $work, $project before calling these.
# shellcheck disable=SC2154 # work and project are the caller's

# stack_settings: random secrets and a generated stores file (no example tokens) in $work,
# and $work/env with them; sets $redis_password and $clickhouse_password. The gateway is
# published on a free loopback port only. The caller appends its own settings to $work/env.
stack_settings() {
    local token_secret
    random() { openssl rand -hex 16; }
    redis_password="$(random)"
    clickhouse_password="$(random)"
    token_secret="$(random)"
    # the compose file mounts it into the gateway, which runs as uid 10001
    docker run --rm --read-only "${PIPELINE_IMAGE:-marketplace-pipeline:local}" simulator stores-file \
        --stores-per-region 2 --token-secret "$token_secret" >"$work/stores.toml"
    chmod 0755 "$work"
    chmod 0644 "$work/stores.toml"
    cat >"$work/env" <<ENV
REDIS_PASSWORD=$redis_password
REDIS_GATEWAY_PASSWORD=$(random)
REDIS_CONSUMER_PASSWORD=$(random)
CLICKHOUSE_USER=pipeline
CLICKHOUSE_PASSWORD=$clickhouse_password
CLICKHOUSE_GRAFANA_PASSWORD=$(random)
AWS_ACCESS_KEY_ID=$(random)
AWS_SECRET_ACCESS_KEY=$(random)
GRAFANA_ADMIN_PASSWORD=$(random)
GATEWAY_STORES_SOURCE=$work/stores.toml
GATEWAY_PUBLISH=127.0.0.1:0
# plaintext gRPC, published on loopback only; the gateway inside sees 0.0.0.0 and would refuse
GATEWAY_INSECURE_DEMO=i-understand-this-gateway-is-unsafe
SIMULATOR_TOKEN_SECRET=$token_secret
SIMULATOR_STORES_PER_REGION=2
CLICKHOUSE_NOFILE=$(ulimit -Hn)
REDIS_MAXMEMORY=256mb
ENV
}

# stack_wait_healthy SECONDS: until every container runs and is healthy (one-shots exited 0)
stack_wait_healthy() {
    local deadline=$((SECONDS + $1)) unhealthy id state name status health code
    while :; do
        unhealthy=()
        for id in $(compose ps -q); do
            # a container gone since the listing (a `run --rm` one-shot that just ended,
            # such as a simulator run) is skipped
            state="$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}}' "$id" 2>/dev/null)" ||
                continue
            read -r name status health code <<<"$state"
            case "$status/$health" in
                running/healthy) ;;
                exited/-) [ "$code" = 0 ] || fail "$name exited with $code" ;;
                *) unhealthy+=("$name:$status/$health") ;;
            esac
        done
        [ "${#unhealthy[@]}" -eq 0 ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || fail "not healthy within $1 s: ${unhealthy[*]}"
        sleep 2
    done
}

# stack_containers: the names of the stack's containers, for a log line
stack_containers() {
    # shellcheck disable=SC2046 # one argument per container id
    docker inspect -f '{{.Name}}' $(compose ps -q) | sed 's#^/##' | paste -sd ' ' -
}

# stack_teardown RC NAME: after a failure (RC not 0) the containers' state and last logs;
# then everything down, volumes included, unless KEEP_STACK=1
stack_teardown() {
    if [ "$1" -ne 0 ]; then
        compose ps >&2 || true
        compose logs --tail 30 >&2 || true
    fi
    if [ "${KEEP_STACK:-0}" = 1 ]; then
        echo "$2: stack left up (project $project, env file $work/env): take it down with its docker-compose files and 'down --volumes'" >&2
    else
        compose --profile demo down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
        rm -rf "$work"
    fi
}
