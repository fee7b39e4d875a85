"""``MongoStore``: associations, used nonces and the TTL cache in three MongoDB collections.

Expiry is decided on every read with the configured clock (``expires``, POSIX seconds); the
server's TTL indexes remove dead entries later by themselves (``expire_at``, see schema.py),
so ``cleanup`` is rarely needed. Every write is acknowledged by a majority of a replica set
and every read goes to the primary (README, "Consistency").
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from typing import Any

from bson import Binary
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from openid_plugins.contracts import Association, Store, StoreOptions, check_server_url
from openid_plugins.errors import StoreError

from .client import Handle, digest
from .schema import ASSOCIATIONS, CACHE, NONCES

log = logging.getLogger("openid_plugins.mongodb.store")

#: A TTL date further out than this is clamped (an entry that long-lived is never swept).
_MAX_TTL_SECONDS = 10 * 365 * 86400.0


class MongoStore(Store):
    """A ``Store`` on a MongoDB database (``mongodb://host/db`` or ``mongodb+srv://...``)."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        super().__init__(options)
        self._handle = Handle(url, options, StoreError)
        self.target = self._handle.target

    def __repr__(self) -> str:
        return f"MongoStore({self.target.display!r}, prefix={self.target.prefix!r})"

    def _expire_at(self, expires: float) -> datetime:
        """``expires`` (on the configured clock) as a date on this machine's wall clock,
        for the TTL index: a clock that is not the system clock (tests, a site's own
        Clock plugin) still gets its entries swept after the same remaining time."""
        remaining = min(max(expires - self.clock.now(), -_MAX_TTL_SECONDS), _MAX_TTL_SECONDS)
        return datetime.fromtimestamp(time.time() + remaining, tz=timezone.utc)

    def _run(self, doing: str, name: str, work: Callable[[Collection], Any]) -> Any:
        with self._handle.errors(doing):
            return work(self._handle.collection(name))

    # -- associations ---------------------------------------------------------------------

    def store_association(self, server_url: str, association: Association) -> None:
        check_server_url(server_url)
        key = {"server_url": server_url, "handle": association.handle}
        doc = {
            **key,
            "secret": Binary(association.secret),
            "issued": float(association.issued),
            "lifetime": float(association.lifetime),
            "expires": float(association.expires),
            "assoc_type": association.assoc_type,
            "expire_at": self._expire_at(association.expires),
        }
        self._run("storing an association", ASSOCIATIONS, lambda c: _upsert(c, key, doc))

    def get_association(self, server_url: str, handle: str | None = None) -> Association | None:
        check_server_url(server_url)
        query: dict[str, Any] = {"server_url": server_url, "expires": {"$gt": self.clock.now()}}
        if handle is not None:
            query["handle"] = handle

        def work(c: Collection) -> Mapping[str, Any] | None:
            if handle is not None:
                return c.find_one(query)
            # Served by the "newest" index: the first live entry in issued order.
            return c.find_one(query, sort=[("issued", -1)])

        found = self._run("reading an association", ASSOCIATIONS, work)
        if found is None:
            return None
        return Association(
            handle=found["handle"],
            secret=bytes(found["secret"]),
            issued=found["issued"],
            lifetime=found["lifetime"],
            assoc_type=found["assoc_type"],
        )

    def remove_association(self, server_url: str, handle: str) -> bool:
        check_server_url(server_url)
        result = self._run(
            "removing an association",
            ASSOCIATIONS,
            lambda c: c.delete_one({"server_url": server_url, "handle": handle}),
        )
        return result.deleted_count == 1

    # -- nonces (OpenID 2.0 section 11.3) -------------------------------------------------

    def use_nonce(self, server_url: str, timestamp: float, salt: str) -> bool:
        """True the first time; False for a replay (the ``_id`` index refused the insert)
        or a stamp outside the skew window.

        An insert whose outcome is unknown (the connection failed after the request went
        out, a majority never confirmed it) is a ``StoreError``, never "not a replay": the
        nonce may be stored, and a login must not pass on a guess. pymongo's retryable
        writes (on by default on replica sets) resend such an insert under the same
        transaction number, and the server answers the retry with the first outcome.
        """
        check_server_url(server_url)
        if not self.nonce_in_window(timestamp):
            return False
        expires = float(timestamp) + self.options.nonce_skew
        doc = {
            "_id": Binary(digest(server_url, float(timestamp), salt)),
            "server_url": server_url,
            "timestamp": float(timestamp),
            "salt": salt,
            "expires": expires,
            "expire_at": self._expire_at(expires),
        }
        with self._handle.errors("recording a nonce (treat it as used)"):
            nonces = self._handle.collection(NONCES)
            try:
                nonces.insert_one(doc)
            except DuplicateKeyError:
                return False
        return True

    def nonce_seen(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        if not math.isfinite(timestamp):
            return False
        key = Binary(digest(server_url, float(timestamp), salt))
        found = self._run(
            "looking up a nonce", NONCES, lambda c: c.find_one({"_id": key}, {"_id": 1})
        )
        return found is not None

    # -- cache ----------------------------------------------------------------------------

    def cache_get(self, namespace: str, key: str) -> Any | None:
        query = {"_id": Binary(digest(namespace, key)), "expires": {"$gt": self.clock.now()}}
        found = self._run("reading the cache", CACHE, lambda c: c.find_one(query, {"value": 1}))
        return None if found is None else json.loads(found["value"])

    def cache_set(self, namespace: str, key: str, value: Any, ttl: float) -> None:
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cache values must be JSON-serializable: {exc}") from exc
        expires = self.clock.now() + float(ttl)
        ident = {"_id": Binary(digest(namespace, key))}
        doc = {
            **ident,
            "namespace": namespace,
            "key": key,
            "value": text,
            "expires": expires,
            "expire_at": self._expire_at(expires),
        }
        self._run("writing the cache", CACHE, lambda c: _upsert(c, ident, doc))

    def cache_delete(self, namespace: str, key: str) -> None:
        ident = {"_id": Binary(digest(namespace, key))}
        self._run("deleting from the cache", CACHE, lambda c: c.delete_one(ident))

    # -- housekeeping ---------------------------------------------------------------------

    def cleanup(self) -> int:
        """Delete what expired by the configured clock now (the TTL indexes do this anyway,
        after their grace period); how many entries this call removed."""
        now = self.clock.now()
        removed = 0
        # A nonce is kept while its stamp is inside the window (expires == now included).
        for name, expired in (
            (ASSOCIATIONS, {"$lte": now}),
            (NONCES, {"$lt": now}),
            (CACHE, {"$lte": now}),
        ):
            delete = partial(Collection.delete_many, filter={"expires": expired})
            result = self._run("cleaning up", name, delete)
            removed += result.deleted_count
        return removed

    def close(self) -> None:
        self._handle.close()


def _upsert(collection: Collection, key: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
    """Replace the document matching ``key`` or insert ``doc``.

    Two processes upserting the same new key at once can both try to insert; the loser
    gets a DuplicateKeyError (servers before 4.2 do not retry it themselves), after which
    the document exists and the replace succeeds.
    """
    try:
        collection.replace_one(key, doc, upsert=True)
    except DuplicateKeyError:
        collection.replace_one(key, doc, upsert=True)
