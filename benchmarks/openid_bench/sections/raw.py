"""Section 6, ``raw``: single-client rates of this machine's databases and file system, and
each of our stores' ``use_nonce`` rate as a fraction of its backend's.

A store cannot beat the backend it writes to, so "within 1.5x of the raw rate" is how the
stores are judged: SQLite INSERT (default journal; WAL with synchronous=NORMAL, as our store
sets it), PostgreSQL and MariaDB autocommit INSERT through the drivers our store uses, and
``O_CREAT|O_EXCL`` file creation with and without the directory fsync our file store does by
default. Each store takes turns with its backend's raw loops.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..context import Context, failure, say, show
from ..fixtures import SERVER_URLS, Runner, connect_server, connect_sqlite, interleave, log

#: What each server's raw loop is called in the report.
RAW_SERVER_NAMES = {
    "postgresql": "raw PostgreSQL INSERT autocommit (psycopg 3)",
    "mysql": "raw MariaDB INSERT autocommit (PyMySQL)",
}


def raw_sqlite(ctx: Context, wal: bool) -> Runner:
    """One INSERT per call into a fresh SQLite file, autocommit."""
    path = ctx.tmp / f"raw-{'wal' if wal else 'default'}-{secrets.token_hex(3)}.db"
    conn = connect_sqlite(path, wal=wal)
    ctx.cleanups.append(conn.close)
    conn.execute("CREATE TABLE nonces (k TEXT PRIMARY KEY, expires REAL)")
    label = "WAL, synchronous=NORMAL" if wal else "default journal"
    return Runner(
        f"raw SQLite INSERT autocommit ({label})",
        lambda i: conn.execute("INSERT INTO nonces VALUES (?, ?)", (f"{i:064d}", 1.0)),
    )


def raw_server(ctx: Context, dialect: str) -> Runner:
    """One autocommit INSERT per call into a fresh table on the ``dialect`` server, through
    the driver our SQL store uses there."""
    conn = connect_server(dialect, SERVER_URLS[dialect])
    ctx.cleanups.append(conn.close)
    prefix = ctx.track_prefix(dialect)
    cursor = conn.cursor()
    columns = "k VARCHAR(64) PRIMARY KEY, expires DOUBLE PRECISION"
    cursor.execute(f"CREATE TABLE {prefix}raw ({columns})")
    insert = f"INSERT INTO {prefix}raw VALUES (%s, %s)"
    return Runner(RAW_SERVER_NAMES[dialect], lambda i: cursor.execute(insert, (f"{i:064d}", 1.0)))


def raw_files(ctx: Context, fsync_dir: bool) -> Runner:
    """One exclusive file creation per call, what our file store does for a nonce; with
    ``fsync_dir``, also the directory fsync that makes it survive a crash."""
    directory = ctx.tmp / f"raw-files-{secrets.token_hex(3)}"
    directory.mkdir()
    dir_fd = os.open(directory, os.O_RDONLY)
    ctx.cleanups.append(lambda: os.close(dir_fd))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL

    def create(i: int) -> None:
        os.close(os.open(directory / f"{i:064d}", flags, 0o600))
        if fsync_dir:
            os.fsync(dir_fd)

    label = " + fsync(dir)" if fsync_dir else ""
    return Runner(f"raw O_CREAT|O_EXCL file creation{label}", create)


def our_nonce_rate(ctx: Context, label: str, url: str) -> Runner:
    """``use_nonce`` with fresh nonces on one of our stores, its tables already made."""
    store = ctx.rp(url).store
    server = "https://op.example/server"
    now = time.time()
    store.use_nonce(server, now, "warm-up")  # creates tables and directories
    return Runner(f"ours {label} use_nonce", lambda i: store.use_nonce(server, now, f"n{i}"))


def run(ctx: Context) -> dict[str, Any]:
    say("raw single-client rates of this machine, and our stores' nonce rates")
    sizes = ctx.sizes
    # Each of our stores takes turns with its backend's raw rate: (store label, URL,
    # {raw key: raw runner factory}, the raw key its fraction is taken of).
    groups: list[tuple[str, str | None, dict[str, Callable[[], Runner]], str | None]] = [
        ("memory", "memory://", {}, None),
        (
            "file",
            (ctx.tmp / "nonce-file").as_uri(),
            {
                "file": lambda: raw_files(ctx, fsync_dir=False),
                "file_fsync_dir": lambda: raw_files(ctx, fsync_dir=True),
            },
            "file_fsync_dir",
        ),
        (
            "sqlite",
            ctx.sqlite_url("nonce.db"),
            {
                "sqlite_default": lambda: raw_sqlite(ctx, wal=False),
                "sqlite_wal": lambda: raw_sqlite(ctx, wal=True),
            },
            "sqlite_wal",
        ),
        (
            "postgresql",
            ctx.db_url("postgresql"),
            {"postgresql": lambda: raw_server(ctx, "postgresql")},
            "postgresql",
        ),
        ("mysql", ctx.db_url("mysql"), {"mysql": lambda: raw_server(ctx, "mysql")}, "mysql"),
    ]
    raw: dict[str, Any] = {}
    nonce: dict[str, Any] = {}
    fractions: dict[str, Any] = {}
    complete = ctx.results.get("complete", {}).get("ours", {})
    for label, url, raw_factories, backend in groups:
        if url is None:
            continue
        try:
            mine = our_nonce_rate(ctx, label, url)
            raws = {key: factory() for key, factory in raw_factories.items()}
            runners = [mine, *raws.values()]
            interleave(runners, sizes.raw, sizes.raw_seconds * len(runners))
        except Exception as exc:  # a database going away mid-run: report, go on
            log.exception("raw rates for %s failed", label)
            nonce[label] = failure(exc)
            continue
        nonce[label] = show(mine.timing)
        raw.update({key: show(runner.timing) for key, runner in raws.items()})
        if backend:
            raw_rate = raw[backend]["ops_per_second"]
            fractions[label] = {
                "backend": backend,
                "nonce_fraction_of_raw": round(nonce[label]["ops_per_second"] / raw_rate, 3),
                "complete_fraction_of_raw": (
                    round(complete[label]["ops_per_second"] / raw_rate, 3)
                    if complete.get(label, {}).get("ops_per_second")
                    else None
                ),
            }
            say(f"    {label}: {fractions[label]}")
    raw["memcached"] = {"skipped": "no memcached server or store plugin yet"}
    return {"raw": raw, "ours_use_nonce": nonce, "fraction_of_raw": fractions}
