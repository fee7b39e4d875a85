"""One SQLAlchemy engine per database per process, shared by every store and queue on it,
made lazily, disposed when the last user closes, and reset in a forked child."""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from openid_plugins.errors import ConfigurationError

from .target import Target

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("openid_plugins.sql.engine")

#: How long a SQLite connection waits for another writer before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Seconds the client waits past a server's own statement timeout before it gives up on
#: the connection: an alive server cancels the statement itself (the connection stays
#: usable); only a frozen or cut-off one meets the client-side bound.
CLIENT_GRACE = 1.0
#: Seconds a pooled server connection may sit unused before its next checkout pings it.
PING_IDLE_AFTER = 2.0
#: SQLite connections kept checked out between hot-path operations (see HotPath).
IDLE_SQLITE_CONNECTIONS = 4
#: Execution option read by the ``begin`` listener (SQLite's BEGIN mode).
_SQLITE_BEGIN = "openid_sqlite_begin"
#: Keys in a pooled connection's ``info``.
_BORN, _USED, _CURSOR = "openid_born", "openid_used", "openid_cursor"


@dataclass
class _Entry:
    engine: Engine
    hot: HotPath
    users: int = 0
    #: Table prefixes whose schema was checked in this process.
    ready: set[str] = field(default_factory=set)


_lock = threading.Lock()
_entries: dict[str, _Entry] = {}
#: Connections a forked child inherited: kept referenced, never used or closed (closing
#: would end the parent's sessions, or release its SQLite locks).
_inherited: list[PoolProxiedConnection] = []


def acquire(target: Target) -> Engine:
    """The process's engine for ``target``'s database, counting one more user."""
    with _lock:
        entry = _entries.get(target.engine_key)
        if entry is None:
            engine = _create(target)
            entry = _entries[target.engine_key] = _Entry(engine, HotPath(engine))
        entry.users += 1
        return entry.engine


def hot_path(target: Target) -> HotPath:
    """The hot-path connection handling of ``target``'s engine (after ``acquire``)."""
    with _lock:
        return _entries[target.engine_key].hot


def release(target: Target) -> None:
    """One user fewer; the last one out closes the pooled connections."""
    with _lock:
        entry = _entries.get(target.engine_key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0:
            del _entries[target.engine_key]
            entry.hot.close()
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


class HotPath:
    """How hot-path operations get and give back pooled connections of one engine.

    Server connections are checked out of SQLAlchemy's pool for every operation, with
    ``Liveness`` watching them. SQLite's whole INSERT costs about as much CPU as a pool
    checkout and checkin, so up to ``IDLE_SQLITE_CONNECTIONS`` connections stay checked
    out between operations, on a stack any thread takes them from (``list.pop`` and
    ``append`` are atomic). They still count against the pool's size; a file database
    has no disconnects to watch for.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.liveness = None if engine.dialect.name == "sqlite" else Liveness(engine)
        self._idle: list[PoolProxiedConnection] | None = (
            [] if engine.dialect.name == "sqlite" else None
        )

    def checkout(self) -> PoolProxiedConnection:
        if self._idle:
            try:
                return self._idle.pop()
            except IndexError:  # another thread took the last one
                pass
        return self._engine.pool.connect()

    def checkin(self, connection: PoolProxiedConnection) -> None:
        """Give back a connection whose operation succeeded (or ended its transaction)."""
        if self._idle is not None and len(self._idle) < IDLE_SQLITE_CONNECTIONS:
            self._idle.append(connection)
        else:
            connection.close()

    def discard(self, connection: PoolProxiedConnection, error: BaseException | None) -> None:
        """Drop a connection in an unknown state (interrupted, or its rollback failed)."""
        connection.invalidate(error)
        connection.close()

    def lost(self, connection: PoolProxiedConnection, error: BaseException) -> None:
        """``connection`` met a disconnect: the server may have restarted."""
        self.discard(connection, error)
        if self.liveness is not None:
            self.liveness.lost()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def forked(self) -> None:
        while self._idle:
            _inherited.append(self._idle.pop())


class Liveness:
    """Disconnect handling for one engine's pool, cheaper than ``pool_pre_ping``.

    Pessimistic: a connection idle for longer than ``PING_IDLE_AFTER`` is pinged when it is
    checked out, and a dead one is replaced before the operation uses it (SQLAlchemy's
    documented ``checkout``-event recipe). A connection in steady use is not pinged: a
    ``SELECT 1`` before every operation would double PostgreSQL's round trips.

    Optimistic: an operation that meets a disconnect calls ``lost()``; every connection
    made before that moment is replaced at its next checkout, so one server restart costs
    at most the operations in flight.
    """

    def __init__(self, engine: Engine) -> None:
        self._dialect = engine.dialect
        self._lost_at = -math.inf
        event.listen(engine, "connect", self._connect)
        event.listen(engine, "checkout", self._checkout)

    def lost(self) -> None:
        """A connection of this pool was found dead: the server may have restarted."""
        self._lost_at = time.monotonic()

    def _connect(self, _dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_BORN] = record.info[_USED] = time.monotonic()

    def _checkout(self, dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: object) -> None:
        info = record.info
        now = time.monotonic()
        if info[_BORN] <= self._lost_at:
            # Raising this makes the pool replace the connection and check out again.
            raise exc.DisconnectionError("connection made before the server was lost")
        idle, info[_USED] = now - info[_USED], now
        if idle <= PING_IDLE_AFTER:
            return
        try:
            self._dialect.do_ping(dbapi_connection)
        except self._dialect.loaded_dbapi.Error as err:
            if self._dialect.is_disconnect(err, dbapi_connection, None):
                log.info("pooled connection found dead after %.1f s idle: %s", idle, err)
                self._lost_at = now
                raise exc.InvalidatePoolError(str(err)) from err
            raise


def is_retryable(error: BaseException | None) -> bool:
    """A deadlock or serialization failure: the database rolled the whole transaction back,
    so running it again is safe. ``error`` is the DB-API driver's exception (None when
    SQLAlchemy wrapped none)."""
    if getattr(error, "sqlstate", None) in ("40P01", "40001"):  # PostgreSQL
        return True
    args: tuple[Any, ...] = getattr(error, "args", ())
    # MariaDB/MySQL: ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT.
    return bool(args) and args[0] in (1213, 1205)


def _create(target: Target) -> Engine:
    kwargs: dict = {
        # Every use of these engines ends its transaction itself (commit, or rollback on any
        # error: see backend.py and schema.upgrade), so the pool's ROLLBACK on return
        # would only add a round trip to each operation.
        "pool_reset_on_return": None,
    }
    limit = target.statement_timeout + CLIENT_GRACE
    if target.dialect == "sqlite":
        if not target.url.query.get("uri"):
            _private_sqlite_file(target.url.database or "")
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    elif target.dialect == "postgresql":
        # psycopg bounds the whole connection set-up (it rounds up to whole seconds).
        kwargs["connect_args"] = {"connect_timeout": max(1, math.ceil(target.connect_timeout))}
    else:
        # PyMySQL drops connect_timeout once TCP is up, before the server's greeting: a
        # listener that never greets held the login for 120 s. read_timeout bounds every
        # read from then on (the greeting included), write_timeout every write.
        kwargs["connect_args"] = {
            "connect_timeout": target.connect_timeout,
            "read_timeout": limit,
            "write_timeout": limit,
        }
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
    if target.dialect == "postgresql":
        event.listen(engine, "do_connect", _bounded_psycopg_connect(limit))
    connect = {"sqlite": _sqlite_connect, "postgresql": _postgresql_connect}
    on_connect = connect.get(target.dialect, _mysql_connect)
    event.listen(engine, "connect", functools.partial(on_connect, target=target))
    event.listen(engine, "connect", _keep_cursor)
    event.listen(engine, "begin", _begin)
    log.debug("created engine for %s", target.display)
    return engine


def _private_sqlite_file(path: str) -> None:
    """Create the database file 0600 before SQLite does (0644 under a usual umask): it
    holds association secrets, which let whoever reads them forge logins. SQLite creates
    the -wal and -shm files with the database file's permissions. An existing file that
    others can read is reported, not changed: its owner may have reasons."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            return
        if mode & 0o077:
            log.warning(
                "%s is readable by other users (mode %03o) and holds association secrets:"
                " chmod 600 it (and its -wal and -shm files)",
                path,
                mode,
            )
        return
    except OSError as err:
        raise ConfigurationError(f"cannot create the SQLite database {path}: {err}") from err
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
    finally:
        os.close(fd)


def cursor(connection: PoolProxiedConnection) -> Any:
    """The DB-API cursor kept with a pooled connection (made once per connection)."""
    return connection.info[_CURSOR]


# Every connection runs in the driver's autocommit mode: a single-statement operation (a
# nonce INSERT, a lookup) is one round trip, with no BEGIN/COMMIT pair around it. Work that
# needs a transaction says BEGIN itself: SQLAlchemy's through the ``begin`` event below,
# the hot path's through backend.transaction().


def _sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry, target: Target) -> None:
    # sqlite3's own implicit BEGIN also skips SELECTs and DDL, which would break
    # transactional schema creation and read consistency; autocommit it is.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL: readers never block the writer and other processes see a consistent file;
        # NORMAL sync is durable across application crashes (an OS crash may lose the last
        # commits, never corrupt the database).
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode, once, whoever gets there first.

    Switching a database into WAL needs it to itself, and SQLite answers a connection that
    cannot have it with "database is locked" at once: the busy timeout does not apply.
    Processes opening a new database together (web workers at start-up) all asked, and
    the losers failed their first operation. Reading the mode waits like any read; so a
    connection that finds WAL already set does nothing, and one that lost the race waits
    and looks again, until the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":  # e.g. a file system without shared memory
                log.warning("SQLite kept journal_mode=%s instead of WAL", mode)
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
        time.sleep(0.005 + random.random() * 0.02)  # noqa: S311 - jitter, not secrets


# READ COMMITTED on both servers for the transactions that remain: MariaDB's default
# REPEATABLE READ takes gap locks that make concurrent puts and claims deadlock.


def _postgresql_connect(
    dbapi_connection: Any, _record: ConnectionPoolEntry, target: Target
) -> None:
    dbapi_connection.autocommit = True
    # statement_timeout: an alive server cancels a statement (a lock wait included) that
    # runs longer, and the connection stays usable.
    dbapi_connection.execute(
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED;"
        f" SET statement_timeout = {int(target.statement_timeout * 1000)}"
    )


def _mysql_connect(dbapi_connection: Any, _record: ConnectionPoolEntry, target: Target) -> None:
    dbapi_connection.autocommit(True)
    cursor = dbapi_connection.cursor()
    try:
        # InnoDB waits 50 s for a row lock by default; the server gives up first now, and
        # the client's read_timeout covers a server that does not answer at all.
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        lock_wait = max(1, math.ceil(target.statement_timeout))
        cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {lock_wait}")
    finally:
        cursor.close()


def _bounded_psycopg_connect(limit: float) -> Callable[..., Any]:
    """A ``do_connect`` listener making ``bounded_psycopg_connection(limit)`` connections."""
    connection_class = bounded_psycopg_connection(limit)

    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return connection_class.connect(*cargs, **cparams)

    return connect


@functools.cache
def bounded_psycopg_connection(limit: float) -> type[psycopg.Connection[Any]]:
    """A psycopg connection class whose every wait on the server ends after ``limit`` s.

    libpq has no client-side read timeout, and a server-side statement_timeout does
    nothing when the server process is frozen (its kernel still acknowledges our packets,
    so TCP keepalives do not notice either): without this, one ``complete()`` blocked for
    as long as the server stayed frozen. psycopg's ``Connection.wait`` takes a timeout
    (used by ``notifies``); every other call passes none, so this subclass supplies the
    limit. A connection that timed out is in an unknown state: it is closed, and the
    error is a disconnect, so the pool replaces it.
    """
    import psycopg

    # psycopg's wait functions raise this internal OperationalError subclass on timeout;
    # should it ever be renamed, every OperationalError of a wait closes the connection,
    # which is still safe.
    timed_out = getattr(psycopg.errors, "_WaitTimeout", psycopg.OperationalError)

    class BoundedConnection(psycopg.Connection[Any]):
        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            if timeout is not None:
                return super().wait(gen, interval, timeout)
            try:
                return super().wait(gen, interval, limit)
            except timed_out:
                if self.closed or self.broken:
                    raise
                self.close()
                raise psycopg.OperationalError(
                    f"the server did not answer within {limit:g} s"
                    " (statement_timeout plus a grace second); the connection was closed"
                ) from None

    return BoundedConnection


def _keep_cursor(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # Registered after the dialect's own connect handling; one cursor per connection,
    # reused by every hot-path operation on it (one thread at a time: the pool's rule).
    record.info[_CURSOR] = dbapi_connection.cursor()


def _begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}" if conn.dialect.name == "sqlite" else "BEGIN")


def _after_fork_in_child() -> None:
    """A forked child must not talk over its parent's sockets: drop the inherited pools
    without closing them (closing would end the parent's sessions too)."""
    global _lock
    _lock = threading.Lock()
    for entry in _entries.values():
        entry.hot.forked()
        entry.engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)
