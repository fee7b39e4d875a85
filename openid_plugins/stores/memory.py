"""Built-in plugin: an in-process store for ``memory://`` URLs.

``memory://`` gives a fresh, empty store; ``memory://NAME`` gives the data every other opener
of ``memory://NAME`` in this process sees (each opener keeps its own clock and options).
Nothing is shared between processes, so this backend suits tests, development and
single-process sites only.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import threading
from typing import Any

from ..backends import memory_name
from ..contracts import Association, Backend, Store, StoreOptions, check_server_url
from ..errors import StoreError
from ..hookspecs import hookimpl

log = logging.getLogger("openid_plugins.stores.memory")

SCHEME = "memory"

_NonceKey = tuple[str, float, str]
_CacheKey = tuple[str, str]


class _MemoryData:
    """The records of one store, shared by every ``MemoryStore`` opened on the same name.

    Expiry heaps let cleanup pop only what has expired instead of scanning every record;
    heap entries may be stale (a record replaced since) and are checked against the record.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.associations: dict[str, dict[str, Association]] = {}
        self.association_heap: list[tuple[float, str, str]] = []
        self.nonces: dict[_NonceKey, float] = {}
        self.nonce_heap: list[tuple[float, _NonceKey]] = []
        #: (namespace, key) -> (expires, JSON text); kept as text so callers never share
        #: mutable values with the store (as with every other backend).
        self.cache: dict[_CacheKey, tuple[float, str]] = {}
        self.cache_heap: list[tuple[float, _CacheKey]] = []


_named: dict[str, _MemoryData] = {}
_named_lock = threading.Lock()


def _data_for(name: str) -> _MemoryData:
    if not name:
        return _MemoryData()
    with _named_lock:
        return _named.setdefault(name, _MemoryData())


class MemoryStore(Store):
    """Thread-safe in-process ``Store``; expiry follows ``options.clock``."""

    def __init__(self, options: StoreOptions, name: str = "") -> None:
        super().__init__(options)
        self.name = name
        self._data = _data_for(name)

    # -- associations ---------------------------------------------------------------------

    def store_association(self, server_url: str, association: Association) -> None:
        check_server_url(server_url)
        if not math.isfinite(association.expires):
            raise StoreError(
                f"association {association.handle!r} has no finite expiry"
                f" (issued={association.issued!r}, lifetime={association.lifetime!r})"
            )
        data = self._data
        with data.lock:
            data.associations.setdefault(server_url, {})[association.handle] = association
            heapq.heappush(
                data.association_heap, (association.expires, server_url, association.handle)
            )
            self._expire_associations(self.clock.now())

    def get_association(self, server_url: str, handle: str | None = None) -> Association | None:
        check_server_url(server_url)
        now = self.clock.now()
        with self._data.lock:
            by_handle = self._data.associations.get(server_url)
            if not by_handle:
                return None
            if handle is not None:
                found = by_handle.get(handle)
                return found if found is not None and found.remaining(now) > 0 else None
            valid = [a for a in by_handle.values() if a.remaining(now) > 0]
        # Ties on ``issued`` go to the later-expiring one, then the handle, so every backend
        # answers the same.
        return max(valid, key=lambda a: (a.issued, a.expires, a.handle), default=None)

    def remove_association(self, server_url: str, handle: str) -> bool:
        check_server_url(server_url)
        with self._data.lock:
            by_handle = self._data.associations.get(server_url)
            if not by_handle or handle not in by_handle:
                return False
            del by_handle[handle]
            if not by_handle:
                del self._data.associations[server_url]
            return True

    # -- nonces ---------------------------------------------------------------------------

    def use_nonce(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        if not self.nonce_in_window(timestamp):
            return False
        now = self.clock.now()
        key = (server_url, float(timestamp), salt)
        data = self._data
        with data.lock:
            if key in data.nonces:
                return False
            expires = float(timestamp) + self.options.nonce_skew
            data.nonces[key] = expires
            heapq.heappush(data.nonce_heap, (expires, key))
            self._expire_nonces(now)
        return True

    def nonce_seen(self, server_url: str, timestamp: float, salt: str) -> bool:
        with self._data.lock:
            return (server_url, float(timestamp), salt) in self._data.nonces

    # -- cache ----------------------------------------------------------------------------

    def cache_get(self, namespace: str, key: str) -> Any | None:
        now = self.clock.now()
        with self._data.lock:
            entry = self._data.cache.get((namespace, key))
        if entry is None or entry[0] <= now:
            return None
        return json.loads(entry[1])

    def cache_set(self, namespace: str, key: str, value: Any, ttl: float) -> None:
        if not math.isfinite(ttl):
            raise StoreError(f"cache ttl must be a finite number of seconds, not {ttl!r}")
        text = _to_json(namespace, key, value)
        now = self.clock.now()
        expires = now + ttl
        data = self._data
        with data.lock:
            data.cache[(namespace, key)] = (expires, text)
            heapq.heappush(data.cache_heap, (expires, (namespace, key)))
            self._expire_cache(now)

    def cache_delete(self, namespace: str, key: str) -> None:
        with self._data.lock:
            self._data.cache.pop((namespace, key), None)

    # -- housekeeping ---------------------------------------------------------------------

    def cleanup(self) -> int:
        now = self.clock.now()
        with self._data.lock:
            return (
                self._expire_associations(now) + self._expire_nonces(now) + self._expire_cache(now)
            )

    # Each writer also pops what has expired at the top of its heap (amortised O(log n)),
    # so a long-running process does not grow without an explicit cleanup. Callers hold
    # the lock.

    def _expire_associations(self, now: float) -> int:
        data, removed = self._data, 0
        heap = data.association_heap
        while heap and heap[0][0] <= now:
            _, server_url, handle = heapq.heappop(heap)
            by_handle = data.associations.get(server_url, {})
            current = by_handle.get(handle)
            if current is not None and current.remaining(now) <= 0:
                del by_handle[handle]
                if not by_handle:
                    del data.associations[server_url]
                removed += 1
        return removed

    def _expire_nonces(self, now: float) -> int:
        data, removed = self._data, 0
        heap = data.nonce_heap
        # A nonce stays while its timestamp is inside the skew window (inclusive).
        while heap and heap[0][0] < now:
            _, key = heapq.heappop(heap)
            if data.nonces.pop(key, None) is not None:
                removed += 1
        return removed

    def _expire_cache(self, now: float) -> int:
        data, removed = self._data, 0
        heap = data.cache_heap
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            entry = data.cache.get(key)
            if entry is not None and entry[0] <= now:
                del data.cache[key]
                removed += 1
        return removed


def _to_json(namespace: str, key: str, value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"cache value for {namespace!r}/{key!r} is not JSON-serializable ({exc}); "
            "cache only dicts, lists, strings, numbers, booleans and None"
        ) from None


@hookimpl
def openid_backends() -> list[Backend]:
    return [
        Backend(
            kind="store",
            schemes=(SCHEME,),
            open=lambda url, options: MemoryStore(options, memory_name(url)),
            shared=False,
            description="this process only (tests, a single-process site)",
        )
    ]
