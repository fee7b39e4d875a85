"""``SQLStore``: associations, used nonces and the TTL cache in SQLite, PostgreSQL or
MariaDB/MySQL."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from openid_plugins.contracts import Association, Store, StoreOptions, check_server_url
from openid_plugins.errors import OpenIDError, StoreError

from .backend import SQLBackend
from .schema import tables
from .sql import Renderer

log = logging.getLogger("openid_plugins.sql.store")

#: Rows deleted per statement by ``cleanup``: each batch is its own short transaction, so
#: purging a large backlog never holds locks for long.
CLEANUP_BATCH = 1000


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def text_value(value: str, what: str, error: type[OpenIDError] = StoreError) -> str:
    """``value``, if a text column can hold it: a lone surrogate has no UTF-8 form, and
    the driver would raise UnicodeEncodeError, which is no StoreError."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"refused {what} {value[:60]!r}: it has no UTF-8 form") from None
    return value


@dataclass(frozen=True)
class _Statements:
    """The hot-path SQL of one prefix in one dialect (see ``sql.Renderer``)."""

    store_association: str
    newest: str
    by_handle: str
    remove: str
    use_nonce: str
    nonce_seen: str
    cache_get: str
    cache_set: str
    cache_delete: str


#: Parameter order of ``store_association`` and ``cache_set``.
_ASSOCIATION_ROW = (
    "server_hash",
    "handle",
    "server_url",
    "secret",
    "issued",
    "lifetime",
    "expires",
    "assoc_type",
)
_CACHE_ROW = ("key_hash", "namespace", "value", "expires")


#: The full URL is compared as well as its hash: even a hash collision could not hand out
#: another OP's secret. Never an expired association (contracts.Store).
_VALID = (
    "SELECT handle, secret, issued, lifetime, assoc_type FROM {associations}"
    " WHERE server_hash = ? AND server_url = ? AND expires > ?"
)


def _statements(prefix: str, dialect: Dialect) -> _Statements:
    r = Renderer(dialect, tables(prefix))
    return _Statements(
        store_association=r.upsert("associations", _ASSOCIATION_ROW, ("server_hash", "handle")),
        # The newest valid one in a single query on the (server_hash, issued) index.
        newest=r(_VALID + " ORDER BY issued DESC LIMIT 1"),
        by_handle=r(_VALID + " AND handle = ?"),
        remove=r(
            "DELETE FROM {associations} WHERE server_hash = ? AND server_url = ? AND handle = ?"
        ),
        use_nonce=r("INSERT INTO {nonces} (nonce_hash, expires) VALUES (?, ?)"),
        nonce_seen=r("SELECT 1 FROM {nonces} WHERE nonce_hash = ?"),
        cache_get=r("SELECT value FROM {cache} WHERE key_hash = ? AND expires > ?"),
        cache_set=r.upsert("cache", _CACHE_ROW, ("key_hash",)),
        cache_delete=r("DELETE FROM {cache} WHERE key_hash = ?"),
    )


class SQLStore(SQLBackend, Store):
    """A ``Store`` on one database; every method is one statement or one short transaction
    on a pooled connection, so it is safe from any number of threads and processes."""

    _error: ClassVar[type[StoreError]] = StoreError
    _kind: ClassVar[str] = "store"

    def __init__(self, url: str, options: StoreOptions) -> None:
        Store.__init__(self, options)
        SQLBackend.__init__(self, url, options)

    def _prepare(self, dialect: Dialect) -> None:
        self._sql = _statements(self.target.prefix, dialect)
        self._duplicate = dialect.loaded_dbapi.IntegrityError

    # -- associations -------------------------------------------------------------------

    def store_association(self, server_url: str, association: Association) -> None:
        check_server_url(server_url)
        row = (  # _ASSOCIATION_ROW
            sha256_hex(server_url),
            text_value(association.handle, "association handle"),
            text_value(server_url, "server_url"),
            association.secret,
            association.issued,
            association.lifetime,
            association.expires,
            association.assoc_type,
        )
        self._call(
            "storing an association",
            lambda cursor: cursor.execute(self._sql.store_association, row),
            retry=True,  # an upsert of the same row: running it twice changes nothing
        )

    def get_association(self, server_url: str, handle: str | None = None) -> Association | None:
        check_server_url(server_url)
        args: tuple[Any, ...] = (
            sha256_hex(server_url),
            text_value(server_url, "server_url"),
            self.clock.now(),
        )
        if handle is not None:
            args += (text_value(handle, "association handle"),)

        def work(cursor: Any) -> Any:
            cursor.execute(self._sql.newest if handle is None else self._sql.by_handle, args)
            return cursor.fetchone()

        row = self._call("looking up an association", work, retry=True)
        if row is None:
            return None
        handle, secret, issued, lifetime, assoc_type = row
        return Association(
            handle=handle,
            secret=bytes(secret),
            issued=issued,
            lifetime=lifetime,
            assoc_type=assoc_type,
        )

    def remove_association(self, server_url: str, handle: str) -> bool:
        check_server_url(server_url)
        args = (
            sha256_hex(server_url),
            text_value(server_url, "server_url"),
            text_value(handle, "association handle"),
        )

        def work(cursor: Any) -> bool:
            cursor.execute(self._sql.remove, args)
            return cursor.rowcount > 0

        # Not retried: a DELETE that did commit would report False the second time.
        return self._call("removing an association", work)

    # -- nonces -------------------------------------------------------------------------

    def use_nonce(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        if not self.nonce_in_window(timestamp):  # refused without a round trip
            return False
        row = (_nonce_key(server_url, timestamp, salt), timestamp + self.options.nonce_skew)

        def work(cursor: Any) -> bool:
            # The primary key decides: no read-then-write window between processes. One
            # autocommit INSERT, so there is no transaction to end after a duplicate.
            try:
                cursor.execute(self._sql.use_nonce, row)
            except self._duplicate:
                return False
            return True

        # Never retried after a disconnect: an INSERT that reached the server may have
        # committed, and running it again would call our own nonce a replay.
        if self._call("recording a nonce", work):
            return True
        log.info("nonce replayed for %s", server_url)
        return False

    def nonce_seen(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        if not math.isfinite(timestamp):
            return False
        args = (_nonce_key(server_url, timestamp, salt),)

        def work(cursor: Any) -> bool:
            cursor.execute(self._sql.nonce_seen, args)
            return cursor.fetchone() is not None

        return self._call("looking up a nonce", work, retry=True)

    # -- cache --------------------------------------------------------------------------

    def cache_get(self, namespace: str, key: str) -> Any | None:
        args = (_cache_key(namespace, key), self.clock.now())

        def work(cursor: Any) -> Any:
            cursor.execute(self._sql.cache_get, args)
            return cursor.fetchone()

        row = self._call("reading the cache", work, retry=True)
        return None if row is None else json.loads(row[0])

    def cache_set(self, namespace: str, key: str, value: Any, ttl: float) -> None:
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise StoreError(
                f"cache value for {namespace!r}/{key!r} is not JSON ({err}); store plain "
                "dicts, lists, strings, finite numbers, booleans and None"
            ) from err
        row = (  # _CACHE_ROW
            _cache_key(namespace, key),
            text_value(namespace, "cache namespace"),
            text,
            self.clock.now() + ttl,
        )
        self._call(
            "writing the cache",
            lambda cursor: cursor.execute(self._sql.cache_set, row),
            retry=True,  # an upsert of the same row: running it twice changes nothing
        )

    def cache_delete(self, namespace: str, key: str) -> None:
        args = (_cache_key(namespace, key),)
        self._call(
            "deleting from the cache",
            lambda cursor: cursor.execute(self._sql.cache_delete, args),
            retry=True,
        )

    # -- housekeeping -------------------------------------------------------------------

    def cleanup(self) -> int:
        now = self.clock.now()
        t = self.tables
        # Associations and cache entries are invalid from ``expires`` on; a nonce is still
        # inside the skew window at exactly ``expires`` (see use_nonce).
        removed = self._purge(t.associations, t.associations.c.expires <= now)
        if self.dialect == "sqlite":
            removed += self._sweep_nonces(t.nonces.c.expires < now)
        else:
            removed += self._purge(t.nonces, t.nonces.c.expires < now)
        removed += self._purge(t.cache, t.cache.c.expires <= now)
        if removed:
            log.info("cleanup removed %d expired rows from %s", removed, self.target.display)
        return removed

    def _purge(self, table: sa.Table, expired: sa.ColumnElement[bool]) -> int:
        if self.dialect == "mysql":
            stmt: sa.Executable = (
                sa.delete(table).where(expired).with_dialect_options(mysql_limit=CLEANUP_BATCH)
            )
        else:
            keys = list(table.primary_key.columns)
            batch = sa.select(*keys).where(expired).limit(CLEANUP_BATCH)
            stmt = sa.delete(table).where(sa.tuple_(*keys).in_(batch))
        total = 0
        while True:
            count = self._run(f"cleaning {table.name}", lambda conn: conn.execute(stmt).rowcount)
            total += count
            if count < CLEANUP_BATCH:
                return total

    def _sweep_nonces(self, expired: sa.ColumnElement[bool]) -> int:
        """SQLite's nonce table has no index on ``expires`` (see schema._nonces_table): walk
        its key order in ranges of ``CLEANUP_BATCH`` rows instead, each range one short
        transaction, one pass over the table in all."""
        table = self.tables.nonces
        key = table.c.nonce_hash
        total, after = 0, ""  # "" sorts before every key
        while True:
            last = sa.select(key).where(key > after).order_by(key).offset(CLEANUP_BATCH - 1)

            def work(conn: Connection, after: str = after, last: sa.Select[Any] = last) -> Any:
                upto = conn.scalar(last.limit(1))
                in_range = key > after if upto is None else sa.and_(key > after, key <= upto)
                return upto, conn.execute(sa.delete(table).where(in_range, expired)).rowcount

            upto, count = self._run(f"cleaning {table.name}", work)
            total += count
            if upto is None:
                return total
            after = upto


def _cache_key(namespace: str, key: str) -> str:
    return sha256_hex(json.dumps([namespace, key]))


def _nonce_key(server_url: str, timestamp: float, salt: str) -> str:
    return sha256_hex(json.dumps([server_url, float(timestamp), salt]))
