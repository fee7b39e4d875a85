"""The collections and indexes of a MongoDB store and queue, created idempotently (by the
first operation of each process, or by ``openid-plugins mongodb upgrade URL``), or only
checked when the process may not create them (``create_indexes`` off, maintenance commands).

- ``<prefix>associations``: unique on (server_url, handle); (server_url, issued desc,
  expires) finds the newest valid association of an OP from the index alone.
- ``<prefix>nonces``: ``_id`` is a digest of (server_url, timestamp, salt), so the ``_id``
  index, unique by definition, decides "used once" (a second insert is a DuplicateKeyError).
- ``<prefix>cache``: ``_id`` is a digest of (namespace, key).
- ``<prefix>queue``: a unique sparse index on ``wait_key`` (present only while an item
  waits unclaimed) de-duplicates ``put``; (lease_until, _id) serves claims in order.

The first three carry a TTL index on ``expire_at`` so the server deletes dead entries by
itself. ``expire_at`` is the entry's expiry as a date, and the index waits ``TTL_GRACE``
seconds more: the server's clock decides the sweep, the web servers' clocks decide validity,
and the grace covers any difference between them up to that size (a nonce must outlive its
skew window on every web server). Validity is still checked on every read: sweeps lag.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

#: Seconds the TTL sweep waits after an entry's expiry (clock differences tolerated).
TTL_GRACE = 3600

ASSOCIATIONS, NONCES, CACHE, QUEUE = "associations", "nonces", "cache", "queue"


def _ttl() -> IndexModel:
    return IndexModel([("expire_at", ASCENDING)], name="ttl", expireAfterSeconds=TTL_GRACE)


INDEXES: dict[str, list[IndexModel]] = {
    ASSOCIATIONS: [
        IndexModel(
            [("server_url", ASCENDING), ("handle", ASCENDING)],
            name="server_url_handle",
            unique=True,
        ),
        IndexModel(
            [("server_url", ASCENDING), ("issued", DESCENDING), ("expires", ASCENDING)],
            name="newest",
        ),
        _ttl(),
    ],
    NONCES: [_ttl()],
    CACHE: [_ttl()],
    QUEUE: [
        IndexModel([("wait_key", ASCENDING)], name="waiting", unique=True, sparse=True),
        IndexModel([("lease_until", ASCENDING), ("_id", ASCENDING)], name="claimable"),
    ],
}


def ensure_indexes(db: Database, prefix: str) -> list[str]:
    """Create every index that is missing (a no-op for existing identical ones); the
    qualified names of all of them."""
    names: list[str] = []
    for collection, models in INDEXES.items():
        made = db[prefix + collection].create_indexes(models)
        names.extend(f"{prefix}{collection}.{name}" for name in made)
    return names


def missing_indexes(db: Database, prefix: str) -> list[str]:
    """The qualified names of the indexes that do not exist (every one of a collection that
    does not exist). Reads only: ``listIndexes`` creates nothing."""
    missing: list[str] = []
    for collection, models in INDEXES.items():
        found = {info["name"] for info in db[prefix + collection].list_indexes()}
        missing.extend(
            f"{prefix}{collection}.{model.document['name']}"
            for model in models
            if model.document["name"] not in found
        )
    return missing
