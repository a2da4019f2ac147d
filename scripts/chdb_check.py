#!/usr/bin/env python3
"""Runs SQL statements on a current ClickHouse engine (chdb, in-process).

Reads a JSON list of {"name", "sql"} on stdin, runs each in order in one fresh session and
database, and prints {"version": ..., "results": [{"name", "ok", "error"?}]} on stdout.
Used by the e2e test `shipped_sql_runs_on_a_current_clickhouse`.
"""
import json
import sys
import tempfile

from chdb import session


def main() -> int:
    statements = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as data:
        s = session.Session(data)
        version = str(s.query("SELECT version()", "CSV")).strip().strip('"')
        s.query("CREATE DATABASE IF NOT EXISTS shipped")
        s.query("USE shipped")
        results = []
        for item in statements:
            try:
                s.query(item["sql"], "CSV")
                results.append({"name": item["name"], "ok": True})
            except Exception as e:  # chdb raises its own error type per failure
                results.append({"name": item["name"], "ok": False, "error": str(e)})
        s.close()
    json.dump({"version": version, "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
