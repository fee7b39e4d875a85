"""Schema version row, refusal of newer schemas, migrations, the ``openid-plugins db``
command, and schema creation racing across forked processes."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import sqlalchemy as sa
from conftest import admin_connection, table_names
from openid_plugins_sql import SCHEMA_VERSION, SchemaError, SQLQueue, SQLStore, schema
from openid_plugins_sql import engine as engines
from openid_plugins_sql.target import parse_target

from openid_plugins.cli import main
from openid_plugins.contracts import StoreOptions

OP = "https://op.example/server"


def version_rows(url: str, prefix: str) -> list[tuple[int, int]]:
    with admin_connection(url) as conn:
        rows = conn.execute(sa.text(f"SELECT id, version FROM {prefix}schema_version"))
        return [tuple(r) for r in rows]


def set_version(url: str, prefix: str, version: int) -> None:
    with admin_connection(url) as conn:
        conn.execute(sa.text(f"UPDATE {prefix}schema_version SET version = {version}"))


def test_first_use_creates_the_tables_and_records_the_version(
    url: str, prefix: str, options: StoreOptions
) -> None:
    assert table_names(url, prefix) == []
    with SQLStore(url, options) as store:
        store.cache_set("ns", "k", 1, 60)
    assert table_names(url, prefix) == sorted(
        f"{prefix}{name}" for name in ("associations", "cache", "nonces", "queue", "schema_version")
    )
    assert version_rows(url, prefix) == [(1, SCHEMA_VERSION)]


def test_a_newer_schema_is_refused(
    url: str, prefix: str, options: StoreOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    with SQLQueue(url, options) as queue:
        queue.put(OP)
    set_version(url, prefix, SCHEMA_VERSION + 1)
    store, queue = SQLStore(url, options), SQLQueue(url, options)
    with pytest.raises(SchemaError, match="newer") as info:
        store.get_association(OP)
    assert "upgrade openid-plugins-sql" in str(info.value)
    with pytest.raises(SchemaError, match="newer"):
        queue.pending()
    store.close()
    queue.close()
    assert main(["db", "upgrade", url]) == 1
    assert "newer" in capsys.readouterr().err


def test_with_create_schema_off_the_upgrade_command_makes_the_tables(
    url: str, prefix: str, options: StoreOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    managed = StoreOptions(clock=options.clock, extra={"create_schema": False})
    with (
        SQLStore(url, managed) as store,
        pytest.raises(SchemaError, match="openid-plugins db upgrade"),
    ):
        store.use_nonce(OP, options.clock.now(), "s")
    assert table_names(url, prefix) == []

    assert main(["db", "version", url]) == 0
    assert "no schema" in capsys.readouterr().out
    assert main(["db", "upgrade", url]) == 0
    out = capsys.readouterr().out
    assert f"schema version {SCHEMA_VERSION} (was none)" in out
    assert "password" not in out
    assert main(["db", "upgrade", url]) == 0
    assert "already current" in capsys.readouterr().out
    assert main(["db", "version", url]) == 0
    assert f"schema version {SCHEMA_VERSION} (current)" in capsys.readouterr().out

    with SQLStore(url, managed) as store:
        assert store.use_nonce(OP, options.clock.now(), "s") is True


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_upgrade_command_takes_the_prefix_as_an_option(
    url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = url.split("?")[0]
    assert main(["db", "upgrade", base, "--table-prefix", prefix]) == 0
    assert f"prefix {prefix!r}" in capsys.readouterr().out
    assert version_rows(url, prefix) == [(1, SCHEMA_VERSION)]
    assert main(["db", "upgrade", url, "--table-prefix", "other_"]) == 1
    assert "one place" in capsys.readouterr().err


def test_upgrade_runs_each_missing_step_and_records_it(
    url: str, prefix: str, options: StoreOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SQLStore(url, options) as store:
        store.cache_set("ns", "k", "kept", 600)
    current, following = SCHEMA_VERSION, SCHEMA_VERSION + 1
    steps: list[int] = []

    def add_column(conn: sa.Connection, t: schema.Tables) -> None:
        steps.append(following)
        conn.execute(sa.text(f"ALTER TABLE {t.cache.name} ADD COLUMN hits INTEGER"))

    monkeypatch.setattr(schema, "SCHEMA_VERSION", following)
    monkeypatch.setattr(schema, "UPGRADES", {**schema.UPGRADES, following: add_column})
    target = parse_target(url)
    engine = engines.acquire(target)
    try:
        upgraded = schema.upgrade(engine, schema.tables(prefix), time.time(), url)
        assert upgraded == (current, following)
        again = schema.upgrade(engine, schema.tables(prefix), time.time(), url)
        assert again == (following, following)
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(f"{prefix}cache")}
    finally:
        engines.release(target)
    assert steps == [following]
    assert "hits" in columns
    assert version_rows(url, prefix) == [(1, following)]


def test_version_1_nonces_survive_the_upgrade_to_version_2(
    url: str, prefix: str, options: StoreOptions, dialect: str
) -> None:
    now = options.clock.now()
    with SQLStore(url, options) as store:
        assert store.use_nonce(OP, now, "before") is True
    table = f"{prefix}nonces"
    with admin_connection(url) as conn:
        if dialect == "sqlite":
            # Back to version 1's shape: a rowid table with an index on expires.
            conn.execute(sa.text(f"ALTER TABLE {table} RENAME TO {table}_old"))
            conn.execute(
                sa.text(
                    f"CREATE TABLE {table} (nonce_hash VARCHAR(64) NOT NULL, "
                    "expires FLOAT NOT NULL, PRIMARY KEY (nonce_hash))"
                )
            )
            conn.execute(sa.text(f"CREATE INDEX {prefix}nonce_expires ON {table} (expires)"))
            conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM {table}_old"))
            conn.execute(sa.text(f"DROP TABLE {table}_old"))
        conn.execute(sa.text(f"UPDATE {prefix}schema_version SET version = 1"))

    with SQLStore(url, options) as store:
        assert store.use_nonce(OP, now, "before") is False  # still known after the upgrade
        assert store.use_nonce(OP, now, "after") is True
        assert store.use_nonce(OP, now, "after") is False
    assert version_rows(url, prefix) == [(1, SCHEMA_VERSION)]
    assert table_names(url, prefix) == sorted(
        f"{prefix}{name}" for name in ("associations", "cache", "nonces", "queue", "schema_version")
    )
    if dialect == "sqlite":
        with admin_connection(url) as conn:
            ddl = conn.scalar(
                sa.text("SELECT sql FROM sqlite_master WHERE name = :name"), {"name": table}
            )
            indexes = sa.inspect(conn).get_indexes(table)
        assert "WITHOUT ROWID" in ddl
        assert indexes == []


def _first_use(url: str, timestamp: float, barrier, results) -> None:  # noqa: ANN001
    """In a forked child: race the siblings to the first use of a fresh prefix."""
    store = SQLStore(url, StoreOptions())
    barrier.wait(30)
    try:
        results.put(("won" if store.use_nonce(OP, timestamp, "race") else "lost", None))
    except Exception as exc:
        results.put(("error", repr(exc)))
    finally:
        store.close()


def test_processes_racing_to_create_the_schema_all_succeed_after_fork(
    url: str, prefix: str, options: StoreOptions
) -> None:
    # The parent's engine has pooled connections when the children fork: they must drop
    # them (not use or close the parent's sockets), and the parent keeps working after.
    sibling = url.replace(prefix, prefix + "p_")
    parent = SQLStore(sibling, options)
    assert parent.use_nonce(OP, options.clock.now(), "parent") is True

    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(5), ctx.Queue()
    args = (url, time.time(), barrier, results)
    children = [ctx.Process(target=_first_use, args=args) for _ in range(5)]
    for child in children:
        child.start()
    outcomes = sorted(results.get(timeout=60) for _ in children)
    for child in children:
        child.join(60)
    assert [c.exitcode for c in children] == [0] * 5
    assert outcomes == [("lost", None)] * 4 + [("won", None)]
    assert version_rows(url, prefix) == [(1, SCHEMA_VERSION)]

    assert parent.use_nonce(OP, options.clock.now(), "parent") is False
    assert parent.use_nonce(OP, options.clock.now(), "parent-after") is True
    parent.close()
