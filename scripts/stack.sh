#!/usr/bin/env bash
# A private local stack for development: Redis, ClickHouse 18.16 and SeaweedFS S3 on 127.0.0.1,
# with all data and logs under .stack/ in the repo root (git-ignored).
#
#   scripts/stack.sh start    start whatever is not running and wait until each one answers
#   scripts/stack.sh stop     stop all (SIGTERM, then SIGKILL after a grace period)
#   scripts/stack.sh status   show what runs where; exit status 3 if anything is down
#   scripts/stack.sh env      print export lines for the services (eval "$(scripts/stack.sh env)")
#
# Ports come from the environment, with these defaults:
#   REDIS_PORT=6379 CLICKHOUSE_HTTP_PORT=8123 CLICKHOUSE_TCP_PORT=9000
#   CLICKHOUSE_INTERSERVER_PORT=9009 S3_PORT=8333
#   SEAWEED_MASTER_PORT=17333 SEAWEED_VOLUME_PORT=17080 SEAWEED_FILER_PORT=17888 (internals)
#   SEAWEED_MASTER_GRPC_PORT, SEAWEED_VOLUME_GRPC_PORT, SEAWEED_FILER_GRPC_PORT, S3_GRPC_PORT:
#   the HTTP port + 1 by default, always passed explicitly because weed's default is + 10000
# The ports of a running stack are remembered in .stack/ports.env, so status, env and stop
# need no environment. The stack never uses the system services that Debian's packages may
# have started: a port held by anything not ours is an error that names the variable to change.
# Tests do not need this stack: testkit starts its own servers on free ports.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stack="$root/.stack"
ports_file="$stack/ports.env"

if [ -f "$ports_file" ]; then
    # shellcheck source=/dev/null
    . "$ports_file"
fi
REDIS_PORT="${REDIS_PORT:-6379}"
CLICKHOUSE_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
CLICKHOUSE_TCP_PORT="${CLICKHOUSE_TCP_PORT:-9000}"
CLICKHOUSE_INTERSERVER_PORT="${CLICKHOUSE_INTERSERVER_PORT:-9009}"
S3_PORT="${S3_PORT:-8333}"
SEAWEED_MASTER_PORT="${SEAWEED_MASTER_PORT:-17333}"
SEAWEED_VOLUME_PORT="${SEAWEED_VOLUME_PORT:-17080}"
SEAWEED_FILER_PORT="${SEAWEED_FILER_PORT:-17888}"
SEAWEED_MASTER_GRPC_PORT="${SEAWEED_MASTER_GRPC_PORT:-$((SEAWEED_MASTER_PORT + 1))}"
SEAWEED_VOLUME_GRPC_PORT="${SEAWEED_VOLUME_GRPC_PORT:-$((SEAWEED_VOLUME_PORT + 1))}"
SEAWEED_FILER_GRPC_PORT="${SEAWEED_FILER_GRPC_PORT:-$((SEAWEED_FILER_PORT + 1))}"
S3_GRPC_PORT="${S3_GRPC_PORT:-$((S3_PORT + 1))}"
S3_BUCKET="${S3_BUCKET:-reports}"

services=(redis clickhouse s3)

die() {
    echo "stack: $*" >&2
    exit 1
}

# --- helpers ----------------------------------------------------------------------------------

pidfile() {
    echo "$stack/$1/$1.pid"
}

# The pid of our server for a service, if it runs; the command-line check guards against a
# stale pidfile whose pid now belongs to some other process.
running_pid() {
    local file pid
    file="$(pidfile "$1")"
    [ -f "$file" ] || return 1
    pid="$(cat "$file")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    case "$1" in
    redis) grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null || return 1 ;;
    clickhouse) grep -q clickhouse "/proc/$pid/cmdline" 2>/dev/null || return 1 ;;
    s3) grep -q weed "/proc/$pid/cmdline" 2>/dev/null || return 1 ;;
    esac
    echo "$pid"
}

# True if something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp, no curl needed).
listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the response (head and body) of GET $2 on port $1, with a 3 s limit.
http_get() {
    # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n" "${3:-GET}" "$2" >&3
        cat <&3' http_get "$@" 2>/dev/null
}

# The status code of a request ($1 port, $2 path, $3 method). Responses are captured whole
# rather than piped into grep -q or head, which would end the reader early and, under
# pipefail, fail the probe at random.
http_status() {
    local response
    response="$(http_get "$@")" || return 1
    response="${response%%$'\n'*}"
    response="${response#* }"
    echo "${response%% *}"
}

# Fails unless every named port variable points at a free port.
require_free() {
    local var
    for var in "$@"; do
        if listening "${!var}"; then
            die "port ${!var} ($var) is already in use by another process: set $var to a free port"
        fi
    done
}

# Waits until $2 (a command) succeeds, for at most $3 seconds; on failure shows the tails of the
# logs named after that. Whether the server is still there is asked of the pid just started, not
# of its command line (`running_pid`): until the subshell that starts it has exec'd the server,
# the pid's command line is this script's, and a loaded machine (a build beside it) made that
# window long enough to call a starting SeaweedFS "exited", with nothing in its log.
wait_ready() {
    local service="$1" probe="$2" timeout="$3" start="$EPOCHREALTIME" pid
    shift 3
    pid="$(cat "$(pidfile "$service")" 2>/dev/null || true)"
    local deadline=$((SECONDS + timeout)) problem=""
    until $probe; do
        if ! kill -0 "$pid" 2>/dev/null; then
            problem="exited during start-up"
        elif [ "$SECONDS" -ge "$deadline" ]; then
            problem="not ready after ${timeout}s"
        fi
        if [ -n "$problem" ]; then
            echo "stack: $service $problem; log tails:" >&2
            tail -n 30 "$@" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    local took
    took="$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
    echo "stack: $service ready (${took}s)"
}

# --- redis ------------------------------------------------------------------------------------

redis_ready() {
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
}

start_redis() {
    local dir="$stack/redis"
    command -v redis-server >/dev/null || die "redis-server not found: run scripts/install.sh"
    mkdir -p "$dir"
    require_free REDIS_PORT
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" \
        --appendonly yes --appendfsync everysec \
        --maxmemory 1gb --maxmemory-policy noeviction --rdbcompression no \
        --auto-aof-rewrite-percentage 400 \
        --daemonize yes --pidfile "$(pidfile redis)" --logfile "$dir/redis.log" ||
        die "redis-server refused to start; see $dir/redis.log"
    # --daemonize writes the pidfile a moment after the command returns
    local tries=50
    until [ -s "$(pidfile redis)" ] || [ "$tries" -eq 0 ]; do
        tries=$((tries - 1))
        sleep 0.1
    done
    wait_ready redis redis_ready 30 "$dir/redis.log"
}

# --- clickhouse -------------------------------------------------------------------------------

clickhouse_ready() {
    local response
    response="$(http_get "$CLICKHOUSE_HTTP_PORT" "/?query=SELECT%201")" || return 1
    [[ "$response" == *$'\r\n\r\n'1 ]]
}

clickhouse_server() {
    if command -v clickhouse-server >/dev/null; then
        echo clickhouse-server
    elif [ -x /usr/sbin/clickhouse-server ]; then
        echo /usr/sbin/clickhouse-server
    else
        die "clickhouse-server not found: run scripts/install.sh"
    fi
}

# Debian's config.xml, rewritten for a private server: comments go first because the default
# listen_host, https_port and tcp_port_secure lines sit inside comments; then paths move into
# .stack/clickhouse, and the ports, listen address and (smaller) caches are set by us.
write_clickhouse_config() {
    local dir="$1"
    [ -f /etc/clickhouse-server/config.xml ] || die "/etc/clickhouse-server/config.xml missing: run scripts/install.sh"
    cp /etc/clickhouse-server/users.xml "$dir/users.xml"
    # an empty substitutions file, so that /etc/metrika.xml cannot leak into the private server
    printf '<?xml version="1.0"?>\n<yandex/>\n' >"$dir/metrika.xml"
    DIR="$dir" HTTP="$CLICKHOUSE_HTTP_PORT" TCP="$CLICKHOUSE_TCP_PORT" \
        INTERSERVER="$CLICKHOUSE_INTERSERVER_PORT" perl -0777 -pe '
        s/<!--.*?-->//gs;
        s{/var/lib/clickhouse/}{$ENV{DIR}/data/}g;
        s{/var/log/clickhouse-server/}{$ENV{DIR}/log/}g;
        for my $tag (qw(http_port tcp_port interserver_http_port https_port tcp_port_secure
                        listen_host include_from mark_cache_size uncompressed_cache_size)) {
            s{\s*<$tag(\s[^>]*)?>.*?</$tag>}{}gs;
            s{\s*<$tag(\s[^>]*)?/>}{}gs;
        }
        my $ours = join "", map { "    $_\n" }
            "<http_port>$ENV{HTTP}</http_port>",
            "<tcp_port>$ENV{TCP}</tcp_port>",
            "<interserver_http_port>$ENV{INTERSERVER}</interserver_http_port>",
            "<listen_host>127.0.0.1</listen_host>",
            "<include_from>$ENV{DIR}/metrika.xml</include_from>",
            "<mark_cache_size>268435456</mark_cache_size>",
            "<uncompressed_cache_size>268435456</uncompressed_cache_size>";
        s{</(yandex|clickhouse)>\s*$}{$ours</$1>\n}s;
    ' /etc/clickhouse-server/config.xml >"$dir/config.xml"
}

start_clickhouse() {
    local dir="$stack/clickhouse" server
    server="$(clickhouse_server)"
    mkdir -p "$dir/data" "$dir/log"
    # shellcheck disable=SC2046 # one word per variable name
    require_free $(port_vars clickhouse)
    write_clickhouse_config "$dir"
    # no --daemon: nohup and a pidfile of our own keep the pid exact
    (cd "$dir" && exec nohup "$server" --config-file="$dir/config.xml" >"$dir/stdout.log" 2>&1 </dev/null) &
    echo $! >"$(pidfile clickhouse)"
    wait_ready clickhouse clickhouse_ready 30 "$dir/stdout.log" "$dir/log/clickhouse-server.err.log"
}

# --- s3 (SeaweedFS) ---------------------------------------------------------------------------

s3_ready() {
    # a write needs a registered volume server, the gateway needs the filer
    local master
    master="$(http_get "$SEAWEED_MASTER_PORT" /dir/status)" || return 1
    [[ "$master" == *'"DataNodes":[{'* ]] &&
        [[ "$(http_status "$SEAWEED_FILER_PORT" /)" == [234]?? ]] &&
        [[ "$(http_status "$S3_PORT" /)" == [234]?? ]]
}

start_s3() {
    local dir="$stack/s3" weed
    weed="$(command -v weed)" || die "weed not found: run scripts/install.sh"
    mkdir -p "$dir"
    # shellcheck disable=SC2046 # one word per variable name
    require_free $(port_vars s3)
    # the master reads master.toml from its working directory: grow one volume per new bucket
    # instead of seven
    printf '[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n' >"$dir/master.toml"
    # -logtostderr: glog would otherwise write log files into /tmp; TMPDIR keeps Go's temp files
    # here; iceberg/lance side servers off (fixed ports 8181/9101); no telemetry from dev machines;
    # a lone master restarting on old state otherwise waits ~13 s for a leader election
    # weed turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY into an admin identity, which switches
    # auth on for everyone else (and `eval "$(scripts/stack.sh env)"` sets them); it also reads
    # any WEED_* variable as configuration
    local unset_env=(-u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN
        -u AWS_ACCESS_KEY -u AWS_SECRET_KEY) var
    for var in $(compgen -e); do
        case "$var" in WEED_*) unset_env+=(-u "$var") ;; esac
    done
    (cd "$dir" && TMPDIR="$dir" exec nohup env "${unset_env[@]}" \
        "$weed" -logtostderr server -dir="$dir" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$SEAWEED_MASTER_PORT" -master.port.grpc="$SEAWEED_MASTER_GRPC_PORT" \
        -volume.port="$SEAWEED_VOLUME_PORT" -volume.port.grpc="$SEAWEED_VOLUME_GRPC_PORT" \
        -filer -filer.port="$SEAWEED_FILER_PORT" -filer.port.grpc="$SEAWEED_FILER_GRPC_PORT" \
        -filer.localSocket="$dir/filer.sock" \
        -s3 -s3.port="$S3_PORT" -s3.port.grpc="$S3_GRPC_PORT" -s3.localSocket="$dir/s3.sock" \
        -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.telemetry=false -volume.preStopSeconds=0 -master.electionTimeout=1s \
        -master.volumeSizeLimitMB=1024 -volume.max=100 \
        >"$dir/weed.log" 2>&1 </dev/null) &
    echo $! >"$(pidfile s3)"
    wait_ready s3 s3_ready 60 "$dir/weed.log"
    # without an identities file the gateway takes unsigned requests; 409 means it exists
    local status
    status="$(http_status "$S3_PORT" "/$S3_BUCKET" PUT)" || status="no answer"
    [[ "$status" == 200 || "$status" == 409 ]] ||
        die "could not create bucket $S3_BUCKET (http $status)"
}

# --- commands ---------------------------------------------------------------------------------

# The variables holding the ports a service binds.
port_vars() {
    case "$1" in
    redis) echo REDIS_PORT ;;
    clickhouse) echo CLICKHOUSE_HTTP_PORT CLICKHOUSE_TCP_PORT CLICKHOUSE_INTERSERVER_PORT ;;
    s3)
        echo S3_PORT S3_GRPC_PORT SEAWEED_MASTER_PORT SEAWEED_MASTER_GRPC_PORT \
            SEAWEED_VOLUME_PORT SEAWEED_VOLUME_GRPC_PORT SEAWEED_FILER_PORT SEAWEED_FILER_GRPC_PORT
        ;;
    esac
}

port_of() {
    case "$1" in
    redis) echo "$REDIS_PORT" ;;
    clickhouse) echo "$CLICKHOUSE_HTTP_PORT" ;;
    s3) echo "$S3_PORT" ;;
    esac
}

save_ports() {
    cat >"$ports_file" <<EOF
REDIS_PORT=$REDIS_PORT
CLICKHOUSE_HTTP_PORT=$CLICKHOUSE_HTTP_PORT
CLICKHOUSE_TCP_PORT=$CLICKHOUSE_TCP_PORT
CLICKHOUSE_INTERSERVER_PORT=$CLICKHOUSE_INTERSERVER_PORT
S3_PORT=$S3_PORT
SEAWEED_MASTER_PORT=$SEAWEED_MASTER_PORT
SEAWEED_VOLUME_PORT=$SEAWEED_VOLUME_PORT
SEAWEED_FILER_PORT=$SEAWEED_FILER_PORT
SEAWEED_MASTER_GRPC_PORT=$SEAWEED_MASTER_GRPC_PORT
SEAWEED_VOLUME_GRPC_PORT=$SEAWEED_VOLUME_GRPC_PORT
SEAWEED_FILER_GRPC_PORT=$SEAWEED_FILER_GRPC_PORT
S3_GRPC_PORT=$S3_GRPC_PORT
S3_BUCKET=$S3_BUCKET
EOF
}

cmd_start() {
    mkdir -p "$stack"
    local service pid
    # check every port first, so that a clash does not leave a half-started stack behind
    for service in "${services[@]}"; do
        if ! running_pid "$service" >/dev/null; then
            # shellcheck disable=SC2046 # one word per variable name
            require_free $(port_vars "$service")
        fi
    done
    for service in "${services[@]}"; do
        if pid="$(running_pid "$service")"; then
            echo "stack: $service already running (pid $pid, port $(port_of "$service"))"
            continue
        fi
        # remember the ports before starting, so that stop finds a half-started stack
        save_ports
        "start_$service"
    done
    save_ports
}

cmd_stop() {
    local service pid pids=()
    for service in "${services[@]}"; do
        if pid="$(running_pid "$service")"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$service:$pid")
        fi
        rm -f "$(pidfile "$service")"
    done
    # all three stop in parallel, each with its own grace period. weed's filer would wait 15 s
    # for the gateway's gRPC streams to drain; its data is already written (volume files, the
    # filer's leveldb log), so 5 s is enough before SIGKILL
    local start=$SECONDS entry grace
    for entry in "${pids[@]}"; do
        service="${entry%%:*}"
        pid="${entry#*:}"
        case "$service" in
        redis) grace=10 ;;
        clickhouse) grace=20 ;;
        s3) grace=5 ;;
        esac
        while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - start)) -lt "$grace" ]; do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            echo "stack: $service stopped (killed after ${grace}s grace period)"
        else
            echo "stack: $service stopped"
        fi
    done
    # weed puts its gRPC unix sockets in /tmp whatever TMPDIR says
    rm -f "/tmp/seaweedfs-master-grpc-$SEAWEED_MASTER_GRPC_PORT.sock" \
        "/tmp/seaweedfs-volume-grpc-$SEAWEED_VOLUME_GRPC_PORT.sock" \
        "/tmp/seaweedfs-filer-grpc-$SEAWEED_FILER_GRPC_PORT.sock" \
        "/tmp/seaweedfs-s3-grpc-$S3_GRPC_PORT.sock"
    rm -f "$ports_file"
    [ "${#pids[@]}" -gt 0 ] || echo "stack: nothing running"
}

cmd_status() {
    local service pid down=0
    for service in "${services[@]}"; do
        if pid="$(running_pid "$service")"; then
            if "${service}_ready"; then
                echo "$service: running (pid $pid, 127.0.0.1:$(port_of "$service"))"
            else
                echo "$service: running but not answering (pid $pid, 127.0.0.1:$(port_of "$service"))"
                down=1
            fi
        else
            echo "$service: stopped"
            down=1
        fi
    done
    return $((down * 3))
}

cmd_env() {
    cat <<EOF
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export CLICKHOUSE_URL=http://127.0.0.1:$CLICKHOUSE_HTTP_PORT
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=any
export AWS_SECRET_ACCESS_KEY=any
export AWS_REGION=us-east-1
export S3_BUCKET=$S3_BUCKET
EOF
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    echo "usage: scripts/stack.sh start|stop|status|env" >&2
    exit 2
    ;;
esac
