# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run): a process's CPU and ClickHouse's counters,
# measured the same way in every bench.

# utime + stime of process $1 and of its reaped children, in clock ticks (fields 14 to 17 of
# /proc/<pid>/stat; the command name in field 2 may hold spaces, so count from the closing
# parenthesis); 0 when there is no such process, or no pid (an empty one would read
# /proc//stat, which is the machine's /proc/stat). The children are Redis's: its AOF rewrites
# run in a forked process.
cpu_ticks() {
    [ -n "$1" ] || { echo 0; return; }
    awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# The whole machine's CPU so far, from the `cpu` line of /proc/stat, in clock ticks summed
# over its cores: "busy idle", busy being user, nice, system, irq, softirq and steal, idle
# being idle and iowait. Every process and kernel thread is in it, the ones no bench names
# (the kernel's writeback, softirqs run outside a process's time, other tenants) too.
host_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat
}

# Exits 2 unless each argument is an executable file, naming the first that is not: run
# against a missing binary, a bench would start nothing and wait on a port (the gateway's and
# the consumer's) or leave the simulator retrying against nothing (the archiver's).
require_executables() {
    local binary
    for binary in "$@"; do
        [ -x "$binary" ] || {
            echo "${0##*/}: no executable $binary (build it: cargo build --release)" >&2
            exit 2
        }
    done
}

# Peak RSS (VmHWM) of process $1 in KiB; 0 when there is no such process or no pid. A zombie
# (exited, not yet reaped) still has a status file, without VmHWM: 0 then too.
peak_rss_kib() {
    [ -n "$1" ] || { echo 0; return; }
    awk '/^VmHWM:/ { v = $2 } END { print v + 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# Of those, the reaped children's alone (fields 16 and 17): Redis's AOF rewrites. A child is
# counted once it has exited, so a rewrite still running is counted by the next reading.
children_ticks() { awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# Field $3 of section $2 of `INFO` from the Redis on 127.0.0.1 port $1, without the reply's \r.
redis_info() {
    redis-cli -h 127.0.0.1 -p "$1" INFO "$2" | tr -d '\r' | awk -F: -v k="$3" '$1 == k { print $2 }'
}

# ClickHouse's counters so far (system.events) at the HTTP endpoint $1, on one line: its query
# threads' CPU in µs (the inserts, parsing, sorting and writing the parts; not the background
# merges, which are not queries), the rows inserted, the rows merged, the parts the inserts
# wrote, and how many of those came sorted by the table's key, so that it did not sort them.
clickhouse_counters() {
    curl -sf "$1/" --data-binary "SELECT
        sumIf(value, event IN ('UserTimeMicroseconds', 'SystemTimeMicroseconds')),
        sumIf(value, event = 'InsertedRows'), sumIf(value, event = 'MergedRows'),
        sumIf(value, event = 'MergeTreeDataWriterBlocks'),
        sumIf(value, event = 'MergeTreeDataWriterBlocksAlreadySorted')
        FROM system.events FORMAT TSV" | tr '\t' ' '
}

# Whether process $1 is running: it exists and is not a zombie (exited, not yet reaped).
running() {
    [ -n "$1" ] && awk '{ sub(/^.*\) /, ""); exit ($1 == "Z") }' "/proc/$1/stat" 2>/dev/null
}

# Runs the command after `--` while process $1 keeps running, checking every half second. If
# $1 exits first, stops the command, prints the last lines of log $2 and returns 3; otherwise
# returns the command's status. A phase whose load depends on another process (the bench's
# replica, which must confirm every write) then fails at once with that process's last words,
# instead of leaving the load retrying against a server that can no longer succeed.
run_while_running() {
    local watched="$1" log="$2" cmd
    shift 2
    [ "${1:-}" = -- ] && shift
    "$@" &
    cmd=$!
    while running "$cmd"; do
        if ! running "$watched"; then
            kill "$cmd" 2>/dev/null || true
            wait "$cmd" 2>/dev/null || true
            echo "${0##*/}: process $watched exited while \`$*\` ran; the last lines of $log:" >&2
            tail -n 5 "$log" >&2 2>/dev/null || true
            return 3
        fi
        sleep 0.5
    done
    wait "$cmd"
}
