"""``SQLStore``: associations, used nonces and the TTL cache in SQLite, PostgreSQL or
MariaDB/MySQL."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import mysql, postgresql, sqlite

from openid_plugins.contracts import Association, Store, StoreOptions, check_server_url
from openid_plugins.errors import StoreError

from .backend import SQLBackend
from .schema import tables

log = logging.getLogger("openid_plugins.sql.store")

#: Rows deleted per statement by ``cleanup``: each batch is its own short transaction, so
#: purging a large backlog never holds locks for long.
CLEANUP_BATCH = 1000


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def upsert(dialect: str, table: sa.Table, keys: Sequence[str]) -> sa.Executable:
    """INSERT a row (given at execution), or UPDATE its other columns where ``keys``
    already exist: one statement, atomic on every dialect."""
    others = [c.name for c in table.columns if c.name not in keys]
    if dialect == "mysql":
        stmt = mysql.insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in others})
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in others}
    )


@dataclass(frozen=True)
class _Statements:
    """The hot-path statements, built once per prefix and dialect with bound parameters:
    building SQLAlchemy constructs costs more CPU than running them."""

    store_association: sa.Executable
    newest: sa.Select[Any]
    by_handle: sa.Select[Any]
    remove: sa.Delete
    use_nonce: sa.Insert
    cache_get: sa.Select[Any]
    cache_set: sa.Executable
    cache_delete: sa.Delete


@functools.lru_cache(maxsize=64)
def _statements(prefix: str, dialect: str) -> _Statements:
    t = tables(prefix)
    a, c = t.associations, t.cache
    valid = sa.select(a.c.handle, a.c.secret, a.c.issued, a.c.lifetime, a.c.assoc_type).where(
        a.c.server_hash == sa.bindparam("server_hash"),
        a.c.server_url == sa.bindparam("server_url"),
        a.c.expires > sa.bindparam("now"),
    )
    return _Statements(
        store_association=upsert(dialect, a, ("server_hash", "handle")),
        # The newest valid one in a single query on the (server_hash, issued) index.
        newest=valid.order_by(a.c.issued.desc()).limit(1),
        by_handle=valid.where(a.c.handle == sa.bindparam("handle")),
        remove=sa.delete(a).where(
            a.c.server_hash == sa.bindparam("server_hash"),
            a.c.server_url == sa.bindparam("server_url"),
            a.c.handle == sa.bindparam("handle"),
        ),
        use_nonce=sa.insert(t.nonces),
        cache_get=sa.select(c.c.value).where(
            c.c.key_hash == sa.bindparam("key_hash"), c.c.expires > sa.bindparam("now")
        ),
        cache_set=upsert(dialect, c, ("key_hash",)),
        cache_delete=sa.delete(c).where(c.c.key_hash == sa.bindparam("key_hash")),
    )


class SQLStore(SQLBackend, Store):
    """A ``Store`` on one database; every method is one transaction on a pooled connection,
    so it is safe from any number of threads and processes."""

    _error: ClassVar[type[StoreError]] = StoreError
    _kind: ClassVar[str] = "store"

    def __init__(self, url: str, options: StoreOptions) -> None:
        Store.__init__(self, options)
        SQLBackend.__init__(self, url, options)
        self._sql = _statements(self.target.prefix, self.dialect)

    # -- associations -------------------------------------------------------------------

    def store_association(self, server_url: str, association: Association) -> None:
        check_server_url(server_url)
        row = {
            "server_hash": sha256_hex(server_url),
            "handle": association.handle,
            "server_url": server_url,
            "secret": association.secret,
            "issued": association.issued,
            "lifetime": association.lifetime,
            "expires": association.expires,
            "assoc_type": association.assoc_type,
        }
        stmt = self._sql.store_association
        self._run("storing an association", lambda conn: conn.execute(stmt, row))

    def get_association(self, server_url: str, handle: str | None = None) -> Association | None:
        check_server_url(server_url)
        args = {"server_hash": sha256_hex(server_url), "server_url": server_url}
        args["now"] = self.clock.now()
        if handle is None:
            query = self._sql.newest
        else:
            query, args["handle"] = self._sql.by_handle, handle
        row = self._run(
            "looking up an association",
            lambda conn: conn.execute(query, args).first(),
            write=False,
        )
        if row is None:
            return None
        return Association(
            handle=row.handle,
            secret=bytes(row.secret),
            issued=row.issued,
            lifetime=row.lifetime,
            assoc_type=row.assoc_type,
        )

    def remove_association(self, server_url: str, handle: str) -> bool:
        check_server_url(server_url)
        args = {"server_hash": sha256_hex(server_url), "server_url": server_url, "handle": handle}
        stmt = self._sql.remove
        return (
            self._run("removing an association", lambda conn: conn.execute(stmt, args).rowcount) > 0
        )

    # -- nonces -------------------------------------------------------------------------

    def use_nonce(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        now = self.clock.now()
        skew = self.options.nonce_skew
        # OpenID 2.0 section 11.3: a nonce too far from now is refused without a lookup; one
        # inside the window is remembered until it would be refused anyway.
        if not math.isfinite(timestamp) or abs(timestamp - now) > skew:
            return False
        key = sha256_hex(json.dumps([server_url, float(timestamp), salt]))
        row = {"nonce_hash": key, "expires": timestamp + skew}
        stmt = self._sql.use_nonce
        try:
            # The primary key decides: no read-then-write window between processes.
            self._run(
                "recording a nonce",
                lambda conn: conn.execute(stmt, row),
                passthrough=(exc.IntegrityError,),
            )
        except exc.IntegrityError:
            log.info("nonce replayed for %s", server_url)
            return False
        return True

    # -- cache --------------------------------------------------------------------------

    def cache_get(self, namespace: str, key: str) -> Any | None:
        query = self._sql.cache_get
        args = {"key_hash": _cache_key(namespace, key), "now": self.clock.now()}
        text = self._run("reading the cache", lambda conn: conn.scalar(query, args), write=False)
        return None if text is None else json.loads(text)

    def cache_set(self, namespace: str, key: str, value: Any, ttl: float) -> None:
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise StoreError(
                f"cache value for {namespace!r}/{key!r} is not JSON ({err}); store plain "
                "dicts, lists, strings, finite numbers, booleans and None"
            ) from err
        row = {
            "key_hash": _cache_key(namespace, key),
            "namespace": namespace,
            "value": text,
            "expires": self.clock.now() + ttl,
        }
        stmt = self._sql.cache_set
        self._run("writing the cache", lambda conn: conn.execute(stmt, row))

    def cache_delete(self, namespace: str, key: str) -> None:
        stmt, args = self._sql.cache_delete, {"key_hash": _cache_key(namespace, key)}
        self._run("deleting from the cache", lambda conn: conn.execute(stmt, args))

    # -- housekeeping -------------------------------------------------------------------

    def cleanup(self) -> int:
        now = self.clock.now()
        t = self.tables
        # Associations and cache entries are invalid from ``expires`` on; a nonce is still
        # inside the skew window at exactly ``expires`` (see use_nonce).
        removed = self._purge(t.associations, t.associations.c.expires <= now)
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


def _cache_key(namespace: str, key: str) -> str:
    return sha256_hex(json.dumps([namespace, key]))
