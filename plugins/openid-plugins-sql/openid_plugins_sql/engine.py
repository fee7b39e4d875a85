"""One SQLAlchemy engine per database per process, shared by every store and queue on it,
made lazily, disposed when the last user closes, and reset in a forked child."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from openid_plugins.errors import ConfigurationError

from .target import Target

log = logging.getLogger("openid_plugins.sql.engine")

#: How long a SQLite connection waits for another writer before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Seconds to wait for a PostgreSQL or MariaDB server to accept a connection: a server
#: that is down must fail the operation, not hang the login.
CONNECT_TIMEOUT = 10
#: Execution option read by the SQLite ``begin`` listener.
_SQLITE_BEGIN = "openid_sqlite_begin"


@dataclass
class _Entry:
    engine: Engine
    users: int = 0
    #: Table prefixes whose schema was checked in this process.
    ready: set[str] = field(default_factory=set)


_lock = threading.Lock()
_entries: dict[str, _Entry] = {}


def acquire(target: Target) -> Engine:
    """The process's engine for ``target``'s database, counting one more user."""
    with _lock:
        entry = _entries.get(target.engine_key)
        if entry is None:
            entry = _entries[target.engine_key] = _Entry(_create(target))
        entry.users += 1
        return entry.engine


def release(target: Target) -> None:
    """One user fewer; the last one out closes the pooled connections."""
    with _lock:
        entry = _entries.get(target.engine_key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0:
            del _entries[target.engine_key]
            entry.engine.dispose()


def schema_ready(target: Target) -> bool:
    with _lock:
        entry = _entries.get(target.engine_key)
        return entry is not None and target.prefix in entry.ready


def mark_schema_ready(target: Target) -> None:
    with _lock:
        entry = _entries.get(target.engine_key)
        if entry is not None:
            entry.ready.add(target.prefix)


def writing(conn: Connection) -> Connection:
    """Make ``conn``'s next transaction take SQLite's write lock at BEGIN (``BEGIN
    IMMEDIATE``), so a read-then-write transaction never fails halfway with "database is
    locked"; other databases lock rows themselves and ignore this."""
    if conn.dialect.name == "sqlite":
        conn.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
    return conn


def _create(target: Target) -> Engine:
    kwargs: dict = {
        "pool_pre_ping": True,
        # Every use of these engines ends its transaction itself (commit, or rollback on any
        # error: see backend._run and schema.upgrade), so the pool's ROLLBACK on return
        # would only add a round trip to each operation.
        "pool_reset_on_return": None,
    }
    if target.dialect == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        # READ COMMITTED on both servers: MariaDB's default REPEATABLE READ takes gap locks
        # that make concurrent puts and claims deadlock.
        kwargs["isolation_level"] = "READ COMMITTED"
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
        if target.dialect == "mysql":
            # The server drops idle connections after wait_timeout (8 h by default).
            kwargs["pool_recycle"] = 3600
    try:
        engine = sa.create_engine(target.url, **kwargs)
    except ImportError as err:
        extra = "postgresql" if target.dialect == "postgresql" else "mysql"
        raise ConfigurationError(
            f"the database driver for {target.display} is not installed ({err}); "
            f'install it with: pip install "openid-plugins-sql[{extra}]"'
        ) from err
    if target.dialect == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    log.debug("created engine for %s", target.display)
    return engine


def _sqlite_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # We emit BEGIN ourselves (see _sqlite_begin); sqlite3's implicit one skips SELECTs and
    # DDL, which breaks transactional schema creation and read consistency.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL: readers never block the writer and other processes see a consistent file;
        # NORMAL sync is durable across application crashes (an OS crash may lose the last
        # commits, never corrupt the database).
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def is_retryable(error: exc.DBAPIError) -> bool:
    """A deadlock or serialization failure: the database rolled the whole transaction back,
    so running it again is safe."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) in ("40P01", "40001"):  # PostgreSQL
        return True
    args = getattr(orig, "args", ())
    # MariaDB/MySQL: ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT.
    return bool(args) and args[0] in (1213, 1205)


def _after_fork_in_child() -> None:
    """A forked child must not talk over its parent's sockets: drop the inherited pools
    without closing them (closing would end the parent's sessions too)."""
    global _lock
    _lock = threading.Lock()
    for entry in _entries.values():
        entry.engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)
