"""The one schema (SQLAlchemy Core) for all three dialects, its version row, and creating or
upgrading it safely while other processes may be doing the same."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

from openid_plugins.errors import QueueError, StoreError

from .engine import writing

log = logging.getLogger("openid_plugins.sql.schema")

#: Bump with every change to the tables below, and add the step to ``UPGRADES``.
#: 2: SQLite keeps used nonces in a WITHOUT ROWID table with no index on ``expires``.
SCHEMA_VERSION = 2

#: sha256 hex digests: fixed width, ASCII, so every index on them stays small (MariaDB caps
#: index keys at 3072 bytes; OP endpoint URLs may be 2047 bytes, OpenID 2.0 section 5.2.1).
_HASH = sa.String(64).with_variant(mysql.CHAR(64, charset="ascii", collation="ascii_bin"), "mysql")
#: Up to 16 MiB on MySQL/MariaDB, whose plain TEXT stops at 64 KiB (XRDS-derived cache values).
_JSON_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
#: InnoDB, utf8mb4, and a binary collation: MySQL's default collations compare case- and
#: accent-insensitively, and two URLs or handles that differ only in case are different.
_MYSQL_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


class SchemaError(StoreError, QueueError):
    """The tables are missing, or were made by a newer openid-plugins-sql than this one."""


@dataclass(frozen=True)
class Tables:
    """Every table of one prefix."""

    prefix: str
    metadata: sa.MetaData
    version: sa.Table
    associations: sa.Table
    nonces: sa.Table
    cache: sa.Table
    queue: sa.Table


@functools.lru_cache(maxsize=64)
def tables(prefix: str) -> Tables:
    """The schema with every table and index name starting with ``prefix``."""
    md = sa.MetaData()
    version = sa.Table(
        f"{prefix}schema_version",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("upgraded", sa.Double, nullable=False),
        **_MYSQL_OPTIONS,
    )
    # OpenID 2.0 section 8: one row per (OP endpoint, handle). The full URL is kept and
    # compared as well, so even a hash collision could not hand out another OP's secret.
    associations = sa.Table(
        f"{prefix}associations",
        md,
        sa.Column("server_hash", _HASH, primary_key=True),
        sa.Column("handle", sa.String(255), primary_key=True),
        sa.Column("server_url", sa.Text, nullable=False),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("issued", sa.Double, nullable=False),
        sa.Column("lifetime", sa.Double, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        sa.Column("assoc_type", sa.String(64), nullable=False),
        sa.Index(f"{prefix}assoc_newest", "server_hash", "issued"),
        sa.Index(f"{prefix}assoc_expires", "expires"),
        **_MYSQL_OPTIONS,
    )
    # OpenID 2.0 section 11.3: the primary key is what makes "used once" atomic.
    nonces = _nonces_table(prefix, md)
    cache = sa.Table(
        f"{prefix}cache",
        md,
        sa.Column("key_hash", _HASH, primary_key=True),
        sa.Column("namespace", sa.Text, nullable=False),
        sa.Column("value", _JSON_TEXT, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        sa.Index(f"{prefix}cache_expires", "expires"),
        **_MYSQL_OPTIONS,
    )
    queue = sa.Table(
        f"{prefix}queue",
        md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("server_url", sa.Text, nullable=False),
        sa.Column("url_hash", _HASH, nullable=False),
        # url_hash while the row waits unclaimed, NULL once claimed: the unique key makes a
        # put of a waiting URL a no-op, while a URL being worked on can be asked for again.
        # (A NULL never collides, on every dialect; MySQL has no partial indexes.)
        sa.Column("waiting_hash", _HASH, nullable=True),
        # 0 = waiting; a time = claimed until then (claimable again afterwards).
        sa.Column("claimed_until", sa.Double, nullable=False, server_default=sa.text("0")),
        sa.Column("token", sa.String(32), nullable=True),
        sa.Column("queued", sa.Double, nullable=False),
        sa.UniqueConstraint("waiting_hash", name=f"{prefix}queue_waiting"),
        sa.Index(f"{prefix}queue_claimable", "claimed_until", "id"),
        **_MYSQL_OPTIONS,
    )
    return Tables(prefix, md, version, associations, nonces, cache, queue)


def _nonces_table(prefix: str, md: sa.MetaData, name: str | None = None) -> sa.Table:
    """The used-nonce table. Every login inserts one row with a random key, so on SQLite,
    where the INSERT is the whole cost, it is one B-tree: WITHOUT ROWID (the key is the
    row) and no index on ``expires`` (cleanup walks the key order instead; see
    ``SQLStore.cleanup``). That is half the page writes of a rowid table plus two indexes.
    """
    return sa.Table(
        name or f"{prefix}nonces",
        md,
        sa.Column("nonce_hash", _HASH, primary_key=True),
        sa.Column("expires", sa.Double, nullable=False),
        # A tuple of dialect names is documented for ddl_if; SQLAlchemy's stub says str only.
        sa.Index(f"{prefix}nonce_expires", "expires").ddl_if(
            dialect=("postgresql", "mysql")  # type: ignore[arg-type]
        ),
        sqlite_with_rowid=False,
        **_MYSQL_OPTIONS,
    )


def _sqlite_nonces_without_rowid(conn: Connection, t: Tables) -> None:
    """Version 2: rebuild SQLite's nonce table in its new shape, every row kept as it is
    (a nonce used before the upgrade is still refused after it). Other dialects' tables
    are unchanged. SQLite DDL is transactional: the rebuild is all or nothing."""
    if conn.dialect.name != "sqlite":
        return
    old = t.nonces.name
    new = _nonces_table(t.prefix, sa.MetaData(), name=f"{old}_v2")
    new.create(conn)
    conn.execute(sa.insert(new).from_select(["nonce_hash", "expires"], sa.select(t.nonces)))
    conn.execute(sa.text(f"DROP TABLE {old}"))  # its expires index goes with it
    conn.execute(sa.text(f"ALTER TABLE {new.name} RENAME TO {old}"))


#: ``UPGRADES[n]`` turns a version ``n - 1`` schema into version ``n`` (ALTER TABLE, new
#: indexes, data moves). A fresh database gets the current tables directly and skips them.
UPGRADES: dict[int, Callable[[Connection, Tables], None]] = {2: _sqlite_nonces_without_rowid}


def read_version(conn: Connection, t: Tables) -> int | None:
    """The recorded schema version, None when no schema exists under this prefix."""
    if not sa.inspect(conn).has_table(t.version.name):
        return None
    return conn.scalar(sa.select(t.version.c.version).where(t.version.c.id == 1))


def check_version(found: int | None, display: str, prefix: str) -> None:
    """Refuse a schema we do not know how to read."""
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaError(
            f"the tables with prefix {prefix!r} at {display} are at schema version {found}, "
            f"newer than the {SCHEMA_VERSION} this openid-plugins-sql understands; upgrade "
            "openid-plugins-sql on this host (downgrading a schema is not supported)"
        )


def upgrade(engine: Engine, t: Tables, now: float, display: str) -> tuple[int | None, int]:
    """Create or upgrade the tables of ``t``; return (version before, version after).

    Safe when several processes run it at once: each dialect serializes it with a lock that
    is held until the work is committed (an advisory lock, a named lock, or SQLite's write
    lock), and the first one does the work.
    """
    with engine.connect() as conn, _named_lock(conn, t), writing(conn).begin():
        if conn.dialect.name == "postgresql":
            # Released when this transaction ends; PostgreSQL DDL is transactional.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(t)})
        before = read_version(conn, t)
        check_version(before, display, t.prefix)
        if before is None:
            t.metadata.create_all(conn, checkfirst=True)
            conn.execute(sa.insert(t.version).values(id=1, version=SCHEMA_VERSION, upgraded=now))
            log.info(
                "created schema version %s (prefix %r) at %s", SCHEMA_VERSION, t.prefix, display
            )
        else:
            for step in range(before + 1, SCHEMA_VERSION + 1):
                UPGRADES[step](conn, t)
                conn.execute(
                    sa.update(t.version)
                    .where(t.version.c.id == 1)
                    .values(version=step, upgraded=now)
                )
                log.info("upgraded schema (prefix %r) at %s to version %s", t.prefix, display, step)
    return before, SCHEMA_VERSION


def _lock_key(t: Tables) -> int:
    digest = hashlib.sha256(f"openid_plugins_sql:{t.prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _named_lock(conn: Connection, t: Tables) -> Iterator[None]:
    """MySQL/MariaDB only: DDL commits implicitly, so no transaction can hold the schema
    lock. A named lock belongs to the session instead; it is taken before the transaction
    and released only after its COMMIT, so the next process sees the finished schema."""
    if conn.dialect.name != "mysql":
        yield
        return
    database = conn.scalar(sa.text("SELECT DATABASE()"))
    # Named locks are server-wide: the database is part of the name (64 characters at most).
    name = (
        "openid_plugins_sql." + hashlib.sha256(f"{database}.{t.prefix}".encode()).hexdigest()[:40]
    )
    got = conn.scalar(sa.text("SELECT GET_LOCK(:name, 60)"), {"name": name})
    conn.commit()  # end the implicit transaction; the lock stays with the session
    if got != 1:
        raise SchemaError(
            f"could not get the schema lock {name!r} within 60 s; another process is "
            "creating or upgrading the tables - retry when it is done"
        )
    try:
        yield
    finally:
        conn.scalar(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
        conn.commit()
