"""Throughput of the SQL store (openid-plugins-sql) per dialect, next to the raw INSERT rate
of each database, so the store's overhead over the database itself is visible.

    .venv/bin/python benchmarks/bench_sql_stores.py [--ops 3000] [--rounds 5]
        [--dialects sqlite,postgresql,mysql] [--out PATH]

Writes benchmarks/results/sql_stores.json. Server URLs come from
OPENID_PLUGINS_TEST_POSTGRESQL_URL / OPENID_PLUGINS_TEST_MYSQL_URL (defaults: the local test
servers); an unreachable server is reported and skipped. Every measurement uses a fresh
random table prefix whose tables are dropped afterwards.

The single-client measurements take turns: each gets ``ops / rounds`` calls per round, in
alternating order, so load from other processes on the machine falls on all of them alike.
Reported per measurement: ops/s over all its calls and the median of its per-round rates;
ratios to the raw rate are medians of the per-round ratios.

- raw_insert: the DB-API driver alone, one INSERT of a small row per call in autocommit
  mode (SQLite: WAL, synchronous=NORMAL), sequential keys: the rate benchmarks/run.py
  calls the backend's raw single-client rate;
- raw_insert_store_table: the same driver call into the store's own nonce table with the
  store's key (a sha256 digest): what the schema costs, without the store's Python;
- nonce_use: ``use_nonce`` with fresh nonces;
- complete_store_part: what ``complete()`` asks of the store for a response signed with a
  known association, ``get_association(server_url, handle)`` then ``use_nonce``;
- raw_complete_statements: the driver alone running the same two statements (the
  association SELECT, the nonce INSERT) on the store's tables;
- association_lookup: ``get_association(server_url)`` (newest valid; 100 OPs x 3 each);
- nonce_use_8_threads (on its own, after the rest): ``use_nonce`` from 8 threads sharing
  one store.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from openid_plugins_sql import SQLStore
from openid_plugins_sql.target import parse_target

from openid_plugins.contracts import Association, StoreOptions

from .fixtures import (
    RESULTS,
    SERVER_URLS,
    connect_server,
    connect_sqlite,
    drop_tables,
    new_prefix,
    server_version,
    with_prefix,
)
from .rounds import Contender, ratio, take_turns

OP = "https://op.example/openid/server"


def raw_connection(dialect: str, url: str) -> tuple[Any, str]:
    """A DB-API connection in autocommit mode (SQLite: WAL, synchronous=NORMAL) and its
    parameter mark."""
    if dialect == "sqlite":
        return connect_sqlite(parse_target(url).url.database, wal=True), "?"
    return connect_server(dialect, url), "%s"


def bench(dialect: str, url: str, ops: int, rounds: int) -> dict[str, Any]:
    """Every measurement of the module docstring on one database, in fresh tables."""
    prefix = new_prefix()
    store = SQLStore(with_prefix(url, prefix), StoreOptions())
    conn, mark = raw_connection(dialect, url)
    cursor = conn.cursor()
    raw_table = f"{prefix}raw"
    try:
        now = time.time()
        store.use_nonce(OP, now, "warm-up")  # creates the schema
        servers = [f"https://op{i}.example/openid/server" for i in range(100)]
        for server in servers:
            for k in range(3):
                store.store_association(
                    server, Association(f"h{k}", b"s" * 32, now - k, 3600.0, "HMAC-SHA256")
                )
        cursor.execute(
            f"CREATE TABLE {raw_table} (k CHAR(64) PRIMARY KEY, expires DOUBLE PRECISION)"
        )
        raw_insert = f"INSERT INTO {raw_table} (k, expires) VALUES ({mark}, {mark})"
        store_insert = f"INSERT INTO {prefix}nonces (nonce_hash, expires) VALUES ({mark}, {mark})"
        lookup = (
            f"SELECT handle, secret, issued, lifetime, assoc_type FROM {prefix}associations"
            f" WHERE server_hash = {mark} AND server_url = {mark} AND expires > {mark}"
            f" AND handle = {mark}"
        )
        hashes = [hashlib.sha256(server.encode()).hexdigest() for server in servers]

        def raw_complete_statements(i: int) -> None:
            cursor.execute(lookup, (hashes[i % 100], servers[i % 100], now, "h1"))
            assert cursor.fetchone() is not None
            cursor.execute(store_insert, (hashlib.sha256(b"rawc%d" % i).hexdigest(), now + 300))

        def association_lookup(i: int) -> None:
            assert store.get_association(servers[i % 100]).handle == "h0"

        def complete_store_part(i: int) -> None:
            server = servers[i % 100]
            assert store.get_association(server, "h1") is not None
            assert store.use_nonce(server, now, f"c{i}") is True

        contenders = [
            Contender("raw_insert", lambda i: cursor.execute(raw_insert, (f"{i:064d}", 1.0))),
            Contender(
                "raw_insert_store_table",
                lambda i: cursor.execute(
                    store_insert, (hashlib.sha256(b"raw%d" % i).hexdigest(), now + 300)
                ),
            ),
            Contender("nonce_use", lambda i: store.use_nonce(OP, now, f"n{i}")),
            Contender("raw_complete_statements", raw_complete_statements),
            Contender("complete_store_part", complete_store_part),
            Contender("association_lookup", association_lookup),
        ]
        take_turns(contenders, ops, rounds)  # its warm-up fills statement caches
        results: dict[str, Any] = {c.name: c.report() for c in contenders}
        by_name = {c.name: c for c in contenders}
        for contender in contenders[1:]:
            results[contender.name]["ratio_to_raw_insert"] = ratio(contender, contenders[0])
        results["complete_store_part"]["ratio_to_raw_complete_statements"] = ratio(
            by_name["complete_store_part"], by_name["raw_complete_statements"]
        )

        def threaded() -> None:
            def worker(t: int) -> None:
                for i in range(ops // 8):
                    store.use_nonce(OP, now, f"t{t}-{i}")

            threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        started = time.perf_counter()
        threaded()
        seconds = time.perf_counter() - started
        results["nonce_use_8_threads"] = {
            "ops": ops // 8 * 8,
            "seconds": round(seconds, 4),
            "per_second": round(ops // 8 * 8 / seconds, 1),
        }
        return results
    finally:
        store.close()
        cursor.execute(f"DROP TABLE IF EXISTS {raw_table}")
        conn.close()
        if dialect != "sqlite":
            drop_tables(url, [prefix])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="turns the calls are split into")
    parser.add_argument("--dialects", default="sqlite,postgresql,mysql")
    parser.add_argument("--out", type=Path, default=RESULTS / "sql_stores.json")
    args = parser.parse_args(argv)

    report: dict[str, Any] = {
        "benchmark": "bench_sql_stores",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "sqlite": sqlite3.sqlite_version,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_at_start": os.getloadavg(),
        "ops_per_measurement": args.ops,
        "rounds": args.rounds,
        "dialects": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for dialect in args.dialects.split(","):
            url = f"sqlite:///{tmp}/bench.db" if dialect == "sqlite" else SERVER_URLS[dialect]
            try:
                entry: dict[str, Any] = {"url": parse_target(url).display}
                if dialect != "sqlite":
                    entry["server"] = server_version(url)
                    if entry["server"] is None:
                        raise ConnectionError(f"{entry['url']} is unreachable")
                entry.update(bench(dialect, url, args.ops, args.rounds))
            except Exception as exc:  # report and go on with the other dialects
                entry = {"url": url, "error": f"{type(exc).__name__}: {exc}"}
            report["dialects"][dialect] = entry
            sys.stdout.write(f"{dialect}: {json.dumps(entry, indent=1)}\n")
    report["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(f"wrote {args.out}\n")
    return 0
