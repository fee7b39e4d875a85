"""``SQLQueue``: the association queue as a table, claimed with row locks so that several
fetchers on several hosts never take the same item."""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect

from openid_plugins.contracts import Queue, QueueItem, StoreOptions, check_server_url
from openid_plugins.errors import QueueError

from .backend import SQLBackend
from .engine import CLIENT_GRACE, bounded_psycopg_connection
from .sql import Renderer
from .store import sha256_hex, text_value

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("openid_plugins.sql.queue")

#: Seconds between checks when waiting without LISTEN/NOTIFY (SQLite, MariaDB).
POLL_INTERVAL = 0.25
#: Longest single block on LISTEN before looking at the table again: expired leases make
#: items claimable without any NOTIFY.
LISTEN_SLICE = 1.0
#: Tries of a release that races a put of the same URL.
_RELEASE_ATTEMPTS = 3
#: Claimed rows marked per UPDATE (SQLite before 3.32 allows 999 parameters).
_MARK_BATCH = 500


class SQLQueue(SQLBackend, Queue):
    """A ``Queue`` in a table; ``wait`` blocks on LISTEN/NOTIFY on PostgreSQL."""

    _error: ClassVar[type[QueueError]] = QueueError
    _kind: ClassVar[str] = "queue"

    def __init__(self, url: str, options: StoreOptions) -> None:
        Queue.__init__(self, options)
        SQLBackend.__init__(self, url, options)
        self._channel = f"{self.target.prefix}queue"
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_pid = 0
        self._listen_lock = threading.Lock()

    def _prepare(self, dialect: Dialect) -> None:
        r = Renderer(dialect, self.tables)
        # Concurrent claimers skip each other's rows instead of queueing behind them;
        # SQLite instead serializes claims with BEGIN IMMEDIATE (see transaction()).
        lock = "FOR UPDATE SKIP LOCKED" if self._skip_locked(dialect) else "FOR UPDATE"
        if self.dialect == "postgresql":
            # One statement, one round trip: the NOTIFY goes out only for a new row, and at
            # COMMIT, so a woken waiter finds the row.
            self._put = r(
                "WITH added AS (INSERT INTO {queue} (server_url, url_hash, waiting_hash,"
                " claimed_until, token, queued) VALUES (?, ?, ?, 0, NULL, ?)"
                " ON CONFLICT (waiting_hash) DO NOTHING RETURNING id)"
                " SELECT pg_notify(?, '') FROM added"
            )
            # Picked and marked in one statement too, each row locked as it is picked.
            self._claim = r(
                "WITH picked AS (SELECT id FROM {queue} WHERE claimed_until <= ?"
                " ORDER BY id LIMIT ? {lock})"
                " UPDATE {queue} SET claimed_until = ?, token = ?, waiting_hash = NULL"
                " FROM picked WHERE {queue}.id = picked.id"
                " RETURNING {queue}.id, {queue}.server_url",
                lock=lock,
            )
        elif self.dialect == "sqlite":
            self._put = r(
                "INSERT INTO {queue} (server_url, url_hash, waiting_hash, claimed_until,"
                " token, queued) VALUES (?, ?, ?, 0, NULL, ?)"
                " ON CONFLICT (waiting_hash) DO NOTHING"
            )
            self._claim = r(
                "SELECT id, server_url FROM {queue} WHERE claimed_until <= ? ORDER BY id LIMIT ?"
            )
        else:
            # A no-op update rather than INSERT IGNORE, which would also turn real errors
            # (truncation, bad values) into warnings.
            self._put = r(
                "INSERT INTO {queue} (server_url, url_hash, waiting_hash, claimed_until,"
                " token, queued) VALUES (?, ?, ?, 0, NULL, ?)"
                " ON DUPLICATE KEY UPDATE waiting_hash = VALUES(waiting_hash)"
            )
            self._claim = r(
                "SELECT id, server_url FROM {queue} WHERE claimed_until <= ?"
                " ORDER BY id LIMIT ? {lock}",
                lock=lock,
            )
        self._mark = r(
            "UPDATE {queue} SET claimed_until = ?, token = ?, waiting_hash = NULL WHERE id IN "
        )
        self._placeholder = r.mark

    def put(self, server_url: str) -> None:
        check_server_url(server_url, QueueError)
        url_hash = sha256_hex(server_url)
        text = text_value(server_url, "server_url", QueueError)
        row: tuple[Any, ...] = (text, url_hash, url_hash, self.clock.now())
        if self.dialect == "postgresql":
            row += (self._channel,)
        # Not retried after a disconnect: the row may be in, and may be claimed already.
        self._call("queueing an association request", lambda cursor: cursor.execute(self._put, row))

    def claim(self, limit: int = 100, lease: float = 60.0) -> list[QueueItem]:
        if limit <= 0:
            return []
        now = self.clock.now()
        token = secrets.token_hex(16)
        mark = (now + lease, token)

        def one_statement(cursor: Any) -> list[Any]:
            cursor.execute(self._claim, (now, limit, *mark))
            return sorted(cursor.fetchall())

        def pick_then_mark(cursor: Any) -> list[Any]:
            with self.transaction(cursor):
                cursor.execute(self._claim, (now, limit))
                rows = cursor.fetchall()
                for start in range(0, len(rows), _MARK_BATCH):
                    ids = [row[0] for row in rows[start : start + _MARK_BATCH]]
                    marks = ", ".join([self._placeholder] * len(ids))
                    cursor.execute(f"{self._mark}({marks})", (*mark, *ids))
            return rows

        work = one_statement if self.dialect == "postgresql" else pick_then_mark
        rows = self._call("claiming queue items", work)
        return [QueueItem(server_url, f"{row_id}:{token}") for row_id, server_url in rows]

    def ack(self, items: Iterable[QueueItem]) -> None:
        claims = self._claims(items)
        if claims:
            t = self.tables.queue
            stmt = sa.delete(t).where(
                t.c.id == sa.bindparam("b_id"), t.c.token == sa.bindparam("b_token")
            )
            self._run("acknowledging queue items", lambda conn: conn.execute(stmt, claims))

    def release(self, items: Iterable[QueueItem]) -> None:
        claims = self._claims(items)
        if not claims:
            return
        t = self.tables.queue
        held = sa.select(t.c.url_hash).where(
            t.c.id == sa.bindparam("b_id"), t.c.token == sa.bindparam("b_token")
        )
        if self.dialect != "sqlite":
            held = held.with_for_update()
        waiting = sa.select(t.c.id).where(t.c.waiting_hash == sa.bindparam("b_hash"))
        drop = sa.delete(t).where(t.c.id == sa.bindparam("b_id"))
        back = (
            sa.update(t)
            .where(t.c.id == sa.bindparam("b_id"))
            .values(claimed_until=0.0, token=None, waiting_hash=sa.bindparam("b_hash"))
        )

        def work(conn: Connection) -> None:
            for claim in claims:
                url_hash = conn.scalar(held, claim)
                if url_hash is None:  # acked, or the lease ran out and another claim took it
                    continue
                # Put back, unless the URL was queued again meanwhile: then that row stands
                # for the need and this one goes.
                args = {"b_id": claim["b_id"], "b_hash": url_hash}
                conn.execute(drop if conn.scalar(waiting, args) else back, args)

        for attempt in range(1, _RELEASE_ATTEMPTS + 1):
            try:
                self._run("releasing queue items", work, passthrough=(exc.IntegrityError,))
                return
            except exc.IntegrityError as err:
                # A put of the same URL committed between our look and our update; the
                # next attempt sees it and drops this row instead.
                if attempt == _RELEASE_ATTEMPTS:
                    raise self._failure("releasing queue items", err) from err

    def pending(self) -> int:
        query = sa.select(sa.func.count()).select_from(self.tables.queue)
        return self._run(
            "counting queue items", lambda conn: conn.scalar(query) or 0, write=False
        )

    def wait(self, timeout: float) -> bool:
        """True as soon as an item is claimable (waiting, or its lease ran out); False
        after ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        # LISTEN (and forget earlier NOTIFYs) before looking, so a put between the look and
        # the block is never missed and an old one never reported.
        if self.dialect == "postgresql":
            self._listen()
            self._notified(0, stop_after=None)
        while True:
            if self._claimable():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._listener is not None:
                if self._notified(min(left, LISTEN_SLICE)):
                    return True
            else:
                time.sleep(min(POLL_INTERVAL, left))

    def close(self) -> None:
        with self._listen_lock:
            listener, self._listener = self._listener, None
            if listener is not None and self._listener_pid == os.getpid():
                listener.close()
        super().close()

    # -- internals ----------------------------------------------------------------------

    def _claimable(self) -> bool:
        t = self.tables.queue
        query = sa.select(t.c.id).where(t.c.claimed_until <= self.clock.now()).limit(1)
        found = self._run("looking at the queue", lambda conn: conn.scalar(query), write=False)
        return found is not None

    def _skip_locked(self, dialect: Dialect) -> bool:
        """SKIP LOCKED exists on PostgreSQL >= 9.5, MariaDB >= 10.6, MySQL >= 8.0.1; older
        servers get plain FOR UPDATE (correct, claims just queue behind each other)."""
        version = dialect.server_version_info or ()
        if self.dialect == "postgresql":
            return version >= (9, 5)
        if getattr(dialect, "is_mariadb", False):
            return version >= (10, 6)
        return version >= (8, 0, 1)

    def _claims(self, items: Iterable[QueueItem]) -> list[dict[str, Any]]:
        claims = []
        for item in items:
            row_id, _, token = item.token.partition(":")
            if not row_id.isdigit() or len(token) != 32:
                raise QueueError(
                    f"{item!r} was not claimed from a SQL queue; pass back the items that "
                    "this queue's claim() returned"
                )
            claims.append({"b_id": int(row_id), "b_token": token})
        return claims

    def _listen(self) -> None:
        """Make sure the dedicated connection that LISTENs for puts is open and alive (one
        round trip), reconnecting after a server restart."""
        import psycopg
        from psycopg import sql

        with self._listen_lock:
            if self._listener is not None and self._listener_pid != os.getpid():
                # Inherited over fork: the socket is the parent's; psycopg will not close it.
                self._listener = None
            if self._listener is not None:
                try:
                    self._listener.execute("SELECT 1")
                    return
                except psycopg.Error as err:
                    log.warning(
                        "LISTEN connection to %s lost (%s); reconnecting", self.target.display, err
                    )
                    self._listener.close()
                    self._listener = None

            conninfo = self.target.url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
            try:
                bounded = bounded_psycopg_connection(self.target.statement_timeout + CLIENT_GRACE)
                conn = bounded.connect(
                    conninfo,
                    autocommit=True,
                    connect_timeout=max(1, math.ceil(self.target.connect_timeout)),
                )
                try:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                except psycopg.Error:
                    conn.close()
                    raise
            except psycopg.Error as err:
                raise QueueError(
                    f"cannot LISTEN for queue items on {self.target.display} ({err}); check "
                    "that the database is reachable"
                ) from err
            self._listener, self._listener_pid = conn, os.getpid()

    def _notified(self, timeout: float, *, stop_after: int | None = 1) -> bool:
        """Block up to ``timeout`` for a NOTIFY from ``put`` (with ``stop_after=None``:
        consume every NOTIFY that arrives within ``timeout``)."""
        import psycopg

        if not self._listen_lock.acquire(timeout=timeout):
            # Another thread is blocked on the listener; it will see the same NOTIFY.
            return False
        try:
            listener = self._listener
            if listener is None:
                return False
            try:
                return bool(list(listener.notifies(timeout=timeout, stop_after=stop_after)))
            except psycopg.Error as err:
                # The server restarted or the connection broke: poll for the rest of this
                # wait(); the next one LISTENs again.
                log.warning("lost the LISTEN connection to %s: %s", self.target.display, err)
                self._listener = None
                listener.close()
                return False
        finally:
            self._listen_lock.release()
