"""What the SQL store and queue share: lazy engine and schema, and running each operation
as one short transaction on a pooled connection, with database errors reported as
``StoreError``/``QueueError``.

Unlike python3-openid's SQLStore, nothing is shared between calls (no cursor, no open
transaction), and the caller's own transactions are never touched."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import ClassVar, TypeVar

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

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


class SQLBackend:
    """Base of ``SQLStore`` and ``SQLQueue``."""

    _error: ClassVar[type[OpenIDError]]
    _kind: ClassVar[str]

    def __init__(self, url: str, options: StoreOptions) -> None:
        self.target: Target = parse_target(url, options.extra)
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
                self._engine = engine
            return self._engine

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
                    f"(this openid-plugins-sql needs version {SCHEMA_VERSION}) and "
                    "create_schema is off; run: openid-plugins db upgrade URL"
                )
            try:
                upgrade_schema(engine, self.tables, self._now(), self.target.display)
            except exc.SQLAlchemyError as err:
                raise self._failure("creating the schema", err) from err
        engines.mark_schema_ready(self.target)

    def _run(
        self,
        what: str,
        work: Callable[[Connection], T],
        *,
        write: bool = True,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> T:
        """``work`` in one transaction on a pooled connection; committed if it returns.

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
                if attempt < _ATTEMPTS and engines.is_retryable(err):
                    log.info("%s on %s: retrying after %s", what, self.target.display, err.orig)
                    continue
                raise self._failure(what, err) from err
            except exc.SQLAlchemyError as err:
                raise self._failure(what, err) from err

    def _failure(self, what: str, err: exc.SQLAlchemyError) -> OpenIDError:
        orig = getattr(err, "orig", None) or err
        reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return self._error(
            f"{what} on {self.target.display} failed ({type(orig).__name__}: {reason}); "
            "its transaction did not complete, so nothing is half-written. Check that the "
            "database is reachable and healthy; the next call reconnects."
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
