"""What the SQL store and queue share: lazy engine and schema, and running each operation
as one statement (autocommit) or one short transaction on a pooled connection, with
database errors reported as ``StoreError``/``QueueError``.

Unlike python3-openid's SQLStore, nothing is shared between concurrent calls (each one
checks a connection out of the pool), no transaction stays open between calls, and the
caller's own transactions are never touched."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.pool import PoolProxiedConnection

from openid_plugins.contracts import StoreOptions
from openid_plugins.errors import OpenIDError

from . import engine as engines
from .schema import SCHEMA_VERSION, SchemaError, Tables, check_version, read_version, tables
from .schema import upgrade as upgrade_schema
from .target import Target, parse_target

log = logging.getLogger("openid_plugins.sql.backend")

T = TypeVar("T")

#: Attempts for a transaction the database aborted to break a deadlock.
_ATTEMPTS = 3


class _Transaction:
    def __init__(self, cursor: Any, begin: str) -> None:
        self._cursor, self._begin = cursor, begin

    def __enter__(self) -> Any:
        self._cursor.execute(self._begin)
        return self._cursor

    def __exit__(
        self,
        kind: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self._cursor.execute("COMMIT")


class SQLBackend:
    """Base of ``SQLStore`` and ``SQLQueue``."""

    _error: ClassVar[type[OpenIDError]]
    _kind: ClassVar[str]
    _hot: engines.HotPath

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.target: Target = parse_target(url, options.extra, create=options.create)
        self.tables: Tables = tables(self.target.prefix)
        self._now = options.clock.now
        self._engine: Engine | None = None
        self._guard = threading.Lock()
        self._closed = False

    @property
    def dialect(self) -> str:
        return self.target.dialect

    def _ready(self) -> Engine:
        """The engine, created and the schema checked on first use."""
        engine = self._engine
        if engine is not None:
            return engine
        with self._guard:
            if self._closed:
                raise self._error(f"this {self._kind} was closed; open a new one to use it")
            if self._engine is None:
                engine = engines.acquire(self.target)
                try:
                    self._ensure_schema(engine)
                except BaseException:
                    engines.release(self.target)
                    raise
                self._hot = engines.hot_path(self.target)
                self._prepare(engine.dialect)
                self._engine = engine
            return self._engine

    def _prepare(self, dialect: Dialect) -> None:
        """Render the hot-path SQL for ``dialect`` (subclasses), once the engine exists."""

    def transaction(self, cursor: Any) -> _Transaction:
        """BEGIN ... COMMIT around hot-path work that needs more than one statement
        (``BEGIN IMMEDIATE`` on SQLite: it takes the write lock up front, so the
        transaction never fails halfway on "database is locked"). A failure leaves the
        rollback to ``_call``."""
        return _Transaction(cursor, "BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")

    def _ensure_schema(self, engine: Engine) -> None:
        if engines.schema_ready(self.target):
            return
        try:
            with engine.connect() as conn, conn.begin():
                found = read_version(conn, self.tables)
        except exc.SQLAlchemyError as err:
            raise self._failure("reading the schema version", err) from err
        check_version(found, self.target.display, self.target.prefix)
        if found != SCHEMA_VERSION:
            if not self.target.create_schema:
                state = "no tables" if found is None else f"schema version {found}"
                raise SchemaError(
                    f"{self.target.display} has {state} for prefix {self.target.prefix!r} "
                    f"(this openid-plugins-sql needs version {SCHEMA_VERSION}) and does not"
                    " create tables here (create_schema is off, or a maintenance command);"
                    f" run: openid-plugins db upgrade {self.target.display}"
                )
            try:
                upgrade_schema(engine, self.tables, self._now(), self.target.display)
            except exc.SQLAlchemyError as err:
                raise self._failure("creating the schema", err) from err
        engines.mark_schema_ready(self.target)

    def _call(self, what: str, work: Callable[[Any], T], *, retry: bool = False) -> T:
        """``work(cursor)`` on a pooled connection's DB-API cursor: the hot path.

        SQLAlchemy's execution layer (compiled-statement setup, events, result objects)
        costs more CPU than a SQLite INSERT, so these operations run pre-rendered SQL on
        the driver directly. The connection is in autocommit mode: a single statement is a
        whole operation and one round trip; ``transaction()`` brackets the rest.

        A disconnect replaces every pooled connection. ``retry`` work (reads, idempotent
        writes) then runs once more on a fresh connection; other writes are not retried,
        since one that reached the server may have committed (a nonce INSERT retried into
        a duplicate key would report a false replay). Deadlocks, which roll the statement
        or transaction back, are retried.
        """
        engine = self._engine or self._ready()
        hot = self._hot  # set before the engine is
        dialect = engine.dialect
        driver_error = dialect.loaded_dbapi.Error
        attempt = 0
        while True:
            attempt += 1
            try:
                connection = hot.checkout()
            except (driver_error, exc.SQLAlchemyError) as err:
                raise self._failure(what, err) from err
            try:
                result = work(engines.cursor(connection))
            except driver_error as err:
                if dialect.is_disconnect(err, connection.dbapi_connection, None):
                    hot.lost(connection, err)
                    again = retry and attempt == 1
                else:
                    self._end_transaction(hot, connection)
                    again = attempt < _ATTEMPTS and engines.is_retryable(err)
                if not again:
                    raise self._failure(what, err) from err
                log.info("%s on %s: retrying after %s", what, self.target.display, err)
                continue
            except BaseException as err:
                # Interrupted mid-protocol (or a bug): the connection's state is unknown.
                hot.discard(connection, err)
                raise
            hot.checkin(connection)
            return result

    @staticmethod
    def _end_transaction(hot: engines.HotPath, connection: PoolProxiedConnection) -> None:
        """Roll back whatever a failed operation left open (nothing, after a single
        statement) and give the connection back; one that cannot even do that is
        discarded."""
        try:
            dbapi = connection.dbapi_connection
            if dbapi is None:  # invalidated by the pool: nothing left to roll back or reuse
                raise ConnectionError("the connection was invalidated")
            dbapi.rollback()
        except Exception as err:
            log.warning("discarding a connection whose rollback failed: %s", err)
            hot.discard(connection, err)
        else:
            hot.checkin(connection)

    def _run(
        self,
        what: str,
        work: Callable[[Connection], T],
        *,
        write: bool = True,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> T:
        """``work`` in one transaction through SQLAlchemy Core; committed if it returns.

        For the operations that are not worth pre-rendering (cleanup, acks, counts).
        ``write`` transactions take SQLite's write lock up front. Exceptions listed in
        ``passthrough`` reach the caller as they are (after the rollback).
        """
        engine = self._ready()
        attempt = 0
        while True:
            attempt += 1
            try:
                with engine.connect() as conn:
                    if write:
                        engines.writing(conn)
                    with conn.begin():
                        return work(conn)
            except passthrough:
                raise
            except exc.DBAPIError as err:
                if attempt < _ATTEMPTS and engines.is_retryable(err.orig):
                    log.info("%s on %s: retrying after %s", what, self.target.display, err.orig)
                    continue
                raise self._failure(what, err) from err
            except exc.SQLAlchemyError as err:
                raise self._failure(what, err) from err

    def _failure(self, what: str, err: BaseException) -> OpenIDError:
        orig = getattr(err, "orig", None) or err
        reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return self._error(
            f"{what} on {self.target.display} failed ({type(orig).__name__}: {reason}); "
            "the database did all of it or none of it, so nothing is half-written. Check "
            "that the database is reachable and healthy; the next call reconnects."
        )

    def close(self) -> None:
        """Give the engine back; the last user of a database closes its connections."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            if self._engine is not None:
                self._engine = None
                engines.release(self.target)
