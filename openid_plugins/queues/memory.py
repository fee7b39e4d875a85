"""Built-in plugin: an in-process queue for ``memory://`` URLs.

``memory://`` gives a fresh queue; ``memory://NAME`` gives the items every other opener of
``memory://NAME`` in this process sees. Nothing crosses process boundaries: use it when the
fetcher runs as a thread of the site's process, or in tests.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable

from ..backends import memory_name
from ..contracts import Backend, Queue, QueueItem, StoreOptions, check_server_url
from ..errors import QueueError
from ..hookspecs import hookimpl

log = logging.getLogger("openid_plugins.queues.memory")

SCHEME = "memory"

#: ``wait`` re-checks at least this often: a lease expiring by the (possibly fake) clock
#: notifies nobody.
_RECHECK = 0.5


class _QueueData:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        #: Waiting URLs in put order; a dict keeps the order and de-duplicates.
        self.waiting: dict[str, None] = {}
        #: token -> (server_url, lease expiry by the clock)
        self.claimed: dict[str, tuple[str, float]] = {}


_named: dict[str, _QueueData] = {}
_named_lock = threading.Lock()


def _data_for(name: str) -> _QueueData:
    if not name:
        return _QueueData()
    with _named_lock:
        return _named.setdefault(name, _QueueData())


class MemoryQueue(Queue):
    """Thread-safe in-process ``Queue``; ``wait`` wakes as soon as another thread puts."""

    def __init__(self, options: StoreOptions, name: str = "") -> None:
        super().__init__(options)
        self.name = name
        self._data = _data_for(name)

    def put(self, server_url: str) -> None:
        check_server_url(server_url, QueueError)
        with self._data.cond:
            if server_url not in self._data.waiting:
                self._data.waiting[server_url] = None
                self._data.cond.notify_all()

    def claim(self, limit: int = 100, lease: float = 60.0) -> list[QueueItem]:
        now = self.clock.now()
        items: list[QueueItem] = []
        data = self._data
        with data.cond:
            self._return_expired(now)
            while data.waiting and len(items) < limit:
                server_url = next(iter(data.waiting))
                del data.waiting[server_url]
                token = secrets.token_hex(16)
                data.claimed[token] = (server_url, now + lease)
                items.append(QueueItem(server_url, token))
        return items

    def ack(self, items: Iterable[QueueItem]) -> None:
        with self._data.cond:
            for item in items:
                # A lease that ran out has already given the item back: nothing to remove.
                self._data.claimed.pop(item.token, None)

    def release(self, items: Iterable[QueueItem]) -> None:
        data = self._data
        with data.cond:
            for item in items:
                claimed = data.claimed.pop(item.token, None)
                if claimed is not None:
                    data.waiting.setdefault(claimed[0], None)
            data.cond.notify_all()

    def pending(self) -> int:
        with self._data.cond:
            return len(self._data.waiting) + len(self._data.claimed)

    def wait(self, timeout: float) -> bool:
        """True as soon as an item can be claimed (waiting, or its lease ran out)."""
        deadline = time.monotonic() + timeout
        data = self._data
        with data.cond:
            while True:
                if data.waiting or self._has_expired(self.clock.now()):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                data.cond.wait(min(left, _RECHECK))

    def _has_expired(self, now: float) -> bool:
        return any(expires <= now for _, expires in self._data.claimed.values())

    def _return_expired(self, now: float) -> None:
        data = self._data
        for token, (server_url, expires) in list(data.claimed.items()):
            if expires <= now:
                del data.claimed[token]
                data.waiting.setdefault(server_url, None)
                log.info("lease on %s ran out; it is waiting again", server_url)


@hookimpl
def openid_backends() -> list[Backend]:
    return [
        Backend(
            kind="queue",
            schemes=(SCHEME,),
            open=lambda url, options: MemoryQueue(options, memory_name(url)),
            shared=False,
            description="this process only (tests, a single-process site)",
        )
    ]
