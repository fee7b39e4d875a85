"""One ``MongoClient`` per connection string per process, shared by every store and queue
on it, made on first use, closed when the last user closes, and never reused in a forked
child (pymongo clients are not fork-safe); and the translation of pymongo's errors into the
core's typed ones.

pymongo reconnects by itself: after a server restart or failover the next operation selects
a server again (waiting at most ``serverSelectionTimeoutMS``), so nothing here retries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import bson.errors
import pymongo
from pymongo import ReadPreference, WriteConcern, errors
from pymongo.collection import Collection
from pymongo.database import Database

from openid_plugins.contracts import StoreOptions
from openid_plugins.errors import ConfigurationError, OpenIDError

from .schema import ensure_indexes, missing_indexes
from .target import DEFAULT_PREFIX, Target, parse_target

log = logging.getLogger("openid_plugins.mongodb.client")


@dataclass
class _Entry:
    #: Made by the first operation, not by ``acquire``.
    client: pymongo.MongoClient | None = None
    users: int = 0
    #: (database, prefix) pairs whose indexes were ensured by this process.
    ready: set[tuple[str, str]] = field(default_factory=set)


_lock = threading.Lock()
_entries: dict[str, _Entry] = {}
_pid = os.getpid()


def _forget_inherited() -> None:
    """In a forked child: drop the parent's clients without closing them (closing would
    touch the parent's sockets); the child makes its own."""
    global _pid
    if os.getpid() != _pid:
        _entries.clear()
        _pid = os.getpid()


def acquire(target: Target) -> None:
    """Count one more user of ``target``'s client (made lazily by ``database``)."""
    with _lock:
        _forget_inherited()
        _entries.setdefault(target.client_key, _Entry()).users += 1


def release(target: Target) -> None:
    """One user fewer; the last one out closes the client and its connections."""
    with _lock:
        _forget_inherited()
        entry = _entries.get(target.client_key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0:
            del _entries[target.client_key]
            if entry.client is not None:
                entry.client.close()


def database(target: Target, error: type[OpenIDError], *, prepare: bool = True) -> Database:
    """``target``'s database on the shared client, its indexes ensured once per process:
    created, or (``create_indexes`` false) checked, and their absence an ``error`` naming
    the command that creates them. ``prepare`` false: neither (the upgrade command)."""
    with _lock:
        _forget_inherited()
        entry = _entries.get(target.client_key)
        if entry is None:
            raise error(f"{target.display}: used after close")
        if entry.client is None:
            entry.client = _create(target)
        key = (target.database, target.prefix)
        ready = key in entry.ready
    db = entry.client.get_database(target.database)
    if ready or not prepare:
        return db
    if target.create_indexes:
        with translated(target, error, "creating indexes"):
            ensure_indexes(db, target.prefix)
    else:
        with translated(target, error, "checking indexes"):
            missing = missing_indexes(db, target.prefix)
        if missing:
            option = f" --collection-prefix {target.prefix}"
            prefix = "" if target.prefix == DEFAULT_PREFIX else option
            raise error(
                f"{target.display} lacks the indexes {', '.join(missing)} and does not create"
                " them here (create_indexes is off, or a maintenance command such as cleanup"
                f" or associate); run: openid-plugins mongodb upgrade {target.display}{prefix}"
            )
    with _lock:
        entry.ready.add(key)
    return db


def _create(target: Target) -> pymongo.MongoClient:
    # connect=False: no monitor threads and no DNS (mongodb+srv) until the first operation.
    try:
        return pymongo.MongoClient(target.uri, connect=False, **target.client_options())
    except (errors.ConfigurationError, errors.InvalidURI, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{target.display}: {exc}") from exc


@contextmanager
def translated(target: Target, error: type[OpenIDError], doing: str) -> Iterator[None]:
    """Run a block of pymongo calls; any pymongo failure becomes ``error`` (StoreError or
    QueueError) with a message that says what to check."""
    try:
        yield
    except errors.ServerSelectionTimeoutError as exc:
        raise error(
            f"{doing}: no MongoDB server at {target.display} was reachable within the "
            f"server selection timeout ({_first_line(exc)})"
        ) from exc
    except (errors.AutoReconnect, errors.NetworkTimeout, errors.ExecutionTimeout) as exc:
        raise error(
            f"{doing}: the connection to {target.display} failed mid-operation; its outcome "
            f"is unknown (pymongo reconnects on the next operation): {_first_line(exc)}"
        ) from exc
    except errors.WriteConcernError as exc:
        raise error(
            f"{doing}: {target.display} did not confirm the write to a majority of the "
            f"replica set: {_first_line(exc)}"
        ) from exc
    except errors.PyMongoError as exc:
        raise error(f"{doing}: {target.display}: {_first_line(exc)}") from exc
    except bson.errors.BSONError as exc:
        raise error(f"{doing}: a value cannot be stored in MongoDB: {exc}") from exc
    except UnicodeEncodeError as exc:
        # BSON strings are UTF-8; a lone surrogate fails while the command is encoded,
        # before anything is sent, so the outcome is known: nothing was written.
        raise error(f"{doing}: the text has no UTF-8 form ({exc.reason})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


#: Every write waits for a majority of a replica set (see README, "Consistency"), at most
#: this long; past it the write's fate is unknown and the operation fails.
WTIMEOUT_MS = 5000


class Handle:
    """What a store or queue holds: its target, its share of the process's client, and its
    collections with the write concern and read preference every operation uses."""

    def __init__(self, url: str, options: StoreOptions, error: type[OpenIDError]) -> None:
        self.target = parse_target(url, options.extra, create=options.create)
        self.error = error
        self._collections: dict[str, Collection] = {}
        self._pid = os.getpid()
        self._closed = False
        acquire(self.target)

    def collection(self, name: str) -> Collection:
        """``<prefix><name>``: majority writes, primary reads (one lookup per name)."""
        if self._closed:
            raise self.error(f"{self.target.display}: used after close")
        if self._pid != os.getpid():
            # Forked: the cached collections use the parent's client; this handle becomes a
            # user of the child's own.
            self._collections.clear()
            self._pid = os.getpid()
            acquire(self.target)
        found = self._collections.get(name)
        if found is None:
            with self.errors("connecting"):
                db = database(self.target, self.error)
            found = self._collections[name] = db.get_collection(
                self.target.prefix + name,
                write_concern=WriteConcern(w="majority", wtimeout=WTIMEOUT_MS),
                read_preference=ReadPreference.PRIMARY,
            )
        return found

    def errors(self, doing: str) -> AbstractContextManager[None]:
        return translated(self.target, self.error, doing)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._collections.clear()
            release(self.target)


def digest(*parts: str | float) -> bytes:
    """A fixed-size ``_id`` for a tuple of strings and numbers: the JSON array is unambiguous
    (no separator games between parts), ASCII-only (lone surrogates included) and hashed so
    that a 2047-byte URL costs the index 32 bytes."""
    return hashlib.sha256(json.dumps(parts).encode("ascii")).digest()
