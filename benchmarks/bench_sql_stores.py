"""Throughput of the SQL store (openid-plugins-sql) per dialect, next to the raw INSERT rate
of each database, so the store's overhead over the database itself is visible.

    .venv/bin/python benchmarks/bench_sql_stores.py [--ops 3000] [--dialects sqlite,mysql]

Writes benchmarks/results/sql_stores.json. Server URLs come from
OPENID_PLUGINS_TEST_POSTGRESQL_URL / OPENID_PLUGINS_TEST_MYSQL_URL (defaults: the local test
servers); an unreachable server is reported and skipped. Every measurement uses a fresh
random table prefix whose tables are dropped afterwards.

What is measured (single thread unless noted; each store call is its own transaction):
- nonce_use: ``use_nonce`` with fresh nonces (one INSERT + COMMIT each);
- nonce_use_8_threads: the same from 8 threads sharing one store;
- association_lookup: ``get_association(server_url)`` (newest valid; 100 OPs x 3 each);
- raw_insert_commit: the DB-API driver alone, INSERT + COMMIT of one small row per call, with
  the same connection settings (SQLite: WAL, synchronous=NORMAL);
- raw_insert_batch: the driver alone, all rows in one transaction (executemany).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from openid_plugins_sql import SQLStore
from openid_plugins_sql.target import parse_target

from openid_plugins.contracts import Association, StoreOptions

RESULTS = Path(__file__).parent / "results" / "sql_stores.json"
SERVERS = {
    "postgresql": os.environ.get(
        "OPENID_PLUGINS_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("OPENID_PLUGINS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}


def rate(count: int, run: Callable[[], None]) -> dict[str, float]:
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    return {"ops": count, "seconds": round(seconds, 4), "per_second": round(count / seconds, 1)}


def drop(url: str, prefix: str) -> None:
    engine = sa.create_engine(parse_target(url).url)
    with engine.begin() as conn:
        for name in sa.inspect(conn).get_table_names():
            if name.startswith(prefix):
                conn.execute(sa.text(f"DROP TABLE {name}"))
    engine.dispose()


def bench_store(url: str, ops: int) -> dict[str, dict[str, float]]:
    prefix = f"bench{secrets.token_hex(3)}_"
    store = SQLStore(f"{url}{'&' if '?' in url else '?'}table_prefix={prefix}", StoreOptions())
    try:
        now = time.time()
        store.use_nonce("https://op.example/", now, "warm-up")  # creates the schema
        results = {}
        results["nonce_use"] = rate(
            ops, lambda: [store.use_nonce("https://op.example/", now, f"n{i}") for i in range(ops)]
        )

        def threaded() -> None:
            def worker(t: int) -> None:
                for i in range(ops // 8):
                    store.use_nonce("https://op.example/", now, f"t{t}-{i}")

            threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        results["nonce_use_8_threads"] = rate(ops // 8 * 8, threaded)

        servers = [f"https://op{i}.example/openid/server" for i in range(100)]
        for server in servers:
            for k in range(3):
                store.store_association(
                    server, Association(f"h{k}", b"s" * 32, now - k, 3600.0, "HMAC-SHA256")
                )

        def lookups() -> None:
            for i in range(ops):
                assert store.get_association(servers[i % 100]).handle == "h0"

        results["association_lookup"] = rate(ops, lookups)
        return results
    finally:
        store.close()
        drop(url, prefix)


def bench_raw(dialect: str, url: str, ops: int) -> dict[str, dict[str, float]]:
    """The driver alone: what the database can do, without SQLAlchemy or the store."""
    table = f"bench_raw_{secrets.token_hex(3)}"
    if dialect == "sqlite":
        conn = sqlite3.connect(parse_target(url).url.database, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        placeholder, begin, commit = "?", conn.execute, conn.execute
        cursor = conn.cursor()
    elif dialect == "postgresql":
        import psycopg

        conninfo = parse_target(url).url.set(drivername="postgresql").render_as_string(False)
        conn = psycopg.connect(conninfo, autocommit=True)
        placeholder, cursor = "%s", conn.cursor()
        begin, commit = cursor.execute, cursor.execute
    else:
        import pymysql

        u = parse_target(url).url
        conn = pymysql.connect(
            host=u.host,
            port=u.port or 3306,
            user=u.username,
            password=u.password or "",
            database=u.database,
            autocommit=True,
        )
        placeholder, cursor = "%s", conn.cursor()
        begin, commit = cursor.execute, cursor.execute
    try:
        cursor.execute(f"CREATE TABLE {table} (k CHAR(64) PRIMARY KEY, expires DOUBLE PRECISION)")
        insert = f"INSERT INTO {table} (k, expires) VALUES ({placeholder}, {placeholder})"
        results = {}
        results["raw_insert_commit"] = rate(
            ops, lambda: [cursor.execute(insert, (f"{i:064d}", 1.0)) for i in range(ops)]
        )

        def batch() -> None:
            begin("BEGIN")
            cursor.executemany(insert, [(f"b{i:063d}", 1.0) for i in range(ops)])
            commit("COMMIT")

        results["raw_insert_batch"] = rate(ops, batch)
        return results
    finally:
        cursor.execute(f"DROP TABLE {table}")
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="operations per measurement")
    parser.add_argument("--dialects", default="sqlite,postgresql,mysql")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    report: dict = {
        "benchmark": "bench_sql_stores",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "sqlite": sqlite3.sqlite_version,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "ops_per_measurement": args.ops,
        "dialects": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for dialect in args.dialects.split(","):
            url = f"sqlite:///{tmp}/bench.db" if dialect == "sqlite" else SERVERS[dialect]
            try:
                entry = {"url": parse_target(url).display}
                if dialect != "sqlite":
                    engine = sa.create_engine(parse_target(url).url)
                    with engine.connect() as conn:
                        entry["server"] = conn.scalar(sa.text("SELECT version()"))
                    engine.dispose()
                entry.update(bench_store(url, args.ops))
                entry.update(bench_raw(dialect, url, args.ops))
            except Exception as exc:  # report and go on with the other dialects
                entry = {"url": url, "error": f"{type(exc).__name__}: {exc}"}
            report["dialects"][dialect] = entry
            sys.stdout.write(f"{dialect}: {json.dumps(entry, indent=1)}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
