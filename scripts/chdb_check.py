#!/usr/bin/env python3
"""Runs SQL statements on a current ClickHouse engine (chdb, in-process).

Reads a JSON list of {"name", "sql"} on stdin, runs each in order in one fresh session and
database, and prints {"version": ..., "results": [{"name", "ok", "output"?, "error"?}], "tables":
[[name, engine], ...]} on stdout; "output" is what the statement returned, as TabSeparated.

--cluster NAME declares a two-shard cluster NAME in the session's config, on 127.0.0.1
ports nothing listens on: creating a Distributed table checks that its cluster exists but
connects to no shard, and ClickHouse refuses a Distributed table over an unknown cluster.
The output then also has "shards": the shards the session sees in NAME.

Used by the e2e tests `shipped_sql_runs_on_a_current_clickhouse`,
`cluster_migrations_run_on_a_current_clickhouse` and the dashboards' chdb test.
"""
import argparse
import json
import os
import sys
import tempfile

from chdb import session


def cluster_config(name: str) -> str:
    shards = "".join(
        f"<shard><replica><host>127.0.0.1</host><port>{port}</port></replica></shard>"
        for port in (1, 2)
    )
    return f"<clickhouse><remote_servers><{name}>{shards}</{name}></remote_servers></clickhouse>"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", help="declare a two-shard cluster of this name")
    args = parser.parse_args()
    statements = json.load(sys.stdin)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.mkdir(data)
        path = data
        if args.cluster:
            config = os.path.join(tmp, "config.xml")
            with open(config, "w") as f:
                f.write(cluster_config(args.cluster))
            path = data + "?config-file=" + config
        s = session.Session(path)
        out["version"] = str(s.query("SELECT version()", "CSV")).strip().strip('"')
        if args.cluster:
            count = f"SELECT count() FROM system.clusters WHERE cluster = '{args.cluster}'"
            out["shards"] = int(str(s.query(count, "CSV")).strip())
        s.query("CREATE DATABASE IF NOT EXISTS shipped")
        s.query("USE shipped")
        results = []
        for item in statements:
            try:
                output = str(s.query(item["sql"], "TabSeparated"))
                results.append({"name": item["name"], "ok": True, "output": output})
            except Exception as e:  # chdb raises its own error type per failure
                results.append({"name": item["name"], "ok": False, "error": str(e)})
        out["results"] = results
        tables = str(s.query(
            "SELECT name, engine FROM system.tables WHERE database = 'shipped' ORDER BY name",
            "JSONCompact",
        ))
        out["tables"] = json.loads(tables)["data"]
        s.close()
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
