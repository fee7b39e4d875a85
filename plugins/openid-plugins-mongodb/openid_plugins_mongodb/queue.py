"""``MongoQueue``: OP endpoint URLs that need an association, in one MongoDB collection.

A waiting item has ``lease_until = 0`` and a ``wait_key`` (digest of its URL) whose unique
sparse index makes ``put`` an idempotent upsert. ``claim`` takes items one
``find_one_and_update`` at a time: the server matches and updates each document atomically,
so two claimers never get the same item; it sets a fresh claimant and a lease expiry and
drops ``wait_key`` (a ``put`` arriving during the claim is a new need and inserts a new
item). An item whose lease ran out matches the claim query again: a crashed fetcher loses
nothing. ``ack`` and ``release`` act only while the claim is still the caller's.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from bson import Binary, ObjectId
from bson.errors import InvalidId
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, OperationFailure

from openid_plugins.contracts import Queue, QueueItem, StoreOptions, check_server_url
from openid_plugins.errors import QueueError

from .client import Handle, digest
from .schema import QUEUE

log = logging.getLogger("openid_plugins.mongodb.queue")

#: Longest single wait for a change event; claimability (leases running out) is re-checked
#: at least this often.
_AWAIT_MS = 500
#: Sleep between checks when the server offers no change streams (a standalone server).
_POLL_SECONDS = 0.25
_CHANGES = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]


class MongoQueue(Queue):
    """A ``Queue`` on a MongoDB collection (``<prefix>queue``)."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        super().__init__(options)
        self._handle = Handle(url, options, QueueError)
        self.target = self._handle.target
        #: None until the first wait() finds out whether the server has change streams.
        self._change_streams: bool | None = None

    def __repr__(self) -> str:
        return f"MongoQueue({self.target.display!r}, prefix={self.target.prefix!r})"

    def _run(self, doing: str, work: Callable[[Collection], Any]) -> Any:
        with self._handle.errors(doing):
            return work(self._handle.collection(QUEUE))

    def put(self, server_url: str) -> None:
        check_server_url(server_url, QueueError)
        wait_key = Binary(digest(server_url))
        waiting = {
            "wait_key": wait_key,
            "server_url": server_url,
            "lease_until": 0.0,
            "claimant": None,
            "put_at": self.clock.now(),
        }

        def work(c: Collection) -> None:
            # DuplicateKeyError: a concurrent put inserted it first, so it waits already.
            with contextlib.suppress(DuplicateKeyError):
                c.update_one({"wait_key": wait_key}, {"$setOnInsert": waiting}, upsert=True)

        self._run("queueing a server URL", work)

    def claim(self, limit: int = 100, lease: float = 60.0) -> list[QueueItem]:
        now = self.clock.now()

        def work(c: Collection) -> list[QueueItem]:
            items: list[QueueItem] = []
            while len(items) < limit:
                claimant = uuid.uuid4().hex
                doc = c.find_one_and_update(
                    {"lease_until": {"$lte": now}},
                    {
                        "$set": {"lease_until": now + lease, "claimant": claimant},
                        "$unset": {"wait_key": ""},
                    },
                    projection={"server_url": 1},
                    sort=[("lease_until", 1), ("_id", 1)],
                    return_document=ReturnDocument.AFTER,
                )
                if doc is None:
                    break
                items.append(QueueItem(doc["server_url"], f"{doc['_id']}.{claimant}"))
            return items

        return self._run("claiming queue items", work)

    def ack(self, items: Iterable[QueueItem]) -> None:
        claims = [_claim_of(item) for item in items]
        if claims:
            self._run("acknowledging queue items", lambda c: c.delete_many({"$or": claims}))

    def release(self, items: Iterable[QueueItem]) -> None:
        def work(c: Collection) -> None:
            for item in items:
                claim = _claim_of(item)
                back = {
                    "lease_until": 0.0,
                    "claimant": None,
                    "wait_key": Binary(digest(item.server_url)),
                }
                try:
                    c.update_one(claim, {"$set": back})
                except DuplicateKeyError:
                    # The URL was queued again meanwhile and waits already: one is enough.
                    c.delete_one(claim)

        self._run("releasing queue items", work)

    def pending(self) -> int:
        return self._run("counting queue items", lambda c: c.count_documents({}))

    def _claimable(self, c: Collection) -> bool:
        return c.find_one({"lease_until": {"$lte": self.clock.now()}}, {"_id": 1}) is not None

    def wait(self, timeout: float) -> bool:
        """Block until an item may be claimable: woken by the change stream of a replica
        set at once, else by polling. The stream is opened before the first check, so a
        ``put`` between the check and the wait is not missed."""
        deadline = time.monotonic() + max(0.0, timeout)
        await_ms = int(min(_AWAIT_MS, max(1.0, timeout * 1000)))

        def work(c: Collection) -> bool:
            stream = self._open_stream(c, await_ms)
            try:
                while True:
                    if self._claimable(c):
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    if stream is not None:
                        stream.try_next()  # an event, or None after await_ms: check again
                    else:
                        time.sleep(min(_POLL_SECONDS, left))
            finally:
                if stream is not None:
                    stream.close()

        return self._run("waiting for queue items", work)

    def _open_stream(self, c: Collection, await_ms: int) -> Any:
        if self._change_streams is False:
            return None
        try:
            stream = c.watch(_CHANGES, max_await_time_ms=await_ms)
        except OperationFailure as exc:
            # A standalone server has no oplog to stream from (code 40573).
            log.info("%s offers no change streams (%s); polling", self.target.display, exc.code)
            self._change_streams = False
            return None
        self._change_streams = True
        return stream

    def close(self) -> None:
        self._handle.close()


def _claim_of(item: QueueItem) -> dict[str, Any]:
    """The query matching ``item`` only while its claim is current."""
    oid, _, claimant = item.token.partition(".")
    try:
        return {"_id": ObjectId(oid), "claimant": claimant}
    except (InvalidId, TypeError) as exc:
        raise QueueError(f"{item.token!r} is not a token this queue handed out") from exc
