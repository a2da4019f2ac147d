#!/bin/sh
# What the upstream image's entrypoint does, for 18.16: the user CLICKHOUSE_USER with
# CLICKHOUSE_PASSWORD (stored as a SHA-256, never in clear), and the database CLICKHOUSE_DB,
# both before the server accepts its first connection; then the server in the foreground.
set -eu

config=/etc/clickhouse-18
data=/var/lib/clickhouse

if [ -n "${CLICKHOUSE_USER:-}" ]; then
    : "${CLICKHOUSE_PASSWORD:?is empty: set it together with CLICKHOUSE_USER}"
    hash="$(printf '%s' "$CLICKHOUSE_PASSWORD" | sha256sum | cut -d' ' -f1)"
    cat >"$config/users.d/pipeline-user.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <users>
        <${CLICKHOUSE_USER}>
            <password_sha256_hex>${hash}</password_sha256_hex>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </${CLICKHOUSE_USER}>
    </users>
</yandex>
XML
fi

# An Ordinary database is a metadata file plus two directories; created on disk, it exists
# from the server's first moment (no window in which the healthcheck passes but it is missing).
db="${CLICKHOUSE_DB:-}"
if [ -n "$db" ] && [ ! -e "$data/metadata/$db.sql" ]; then
    mkdir -p "$data/metadata/$db" "$data/data/$db"
    printf 'ATTACH DATABASE %s\nENGINE = Ordinary\n' "$db" >"$data/metadata/$db.sql"
fi

# The one file compose mounts under /etc/clickhouse-server that 18.16 reads as it is:
# deploy/clickhouse/replication.xml (the HA profile's keeper, macros from
# CLICKHOUSE_REPLICA_NAME, interserver_http_host; from_env and the <clickhouse> root work on
# 18.16 too). The others there need the current engine (see the Dockerfile).
replication=/etc/clickhouse-server/config.d/replication.xml
if [ -f "$replication" ]; then
    cp "$replication" "$config/config.d/replication.xml"
else
    rm -f "$config/config.d/replication.xml"
fi

exec clickhouse-server --config-file="$config/config.xml" "$@"
