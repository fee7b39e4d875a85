"""The background association fetcher (seed 000): users never wait for Diffie-Hellman.

``begin()`` in background mode only records OP endpoints that need an association on the
queue; this fetcher claims them, makes the associations concurrently and stores them. Run it
from cron (``openid-plugins associate --once``), as a daemon (``--watch``), or as a thread
inside a single-process site (``RelyingParty(fetcher="thread")``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Protocol

from .associator import Associator
from .contracts import Queue, QueueItem
from .errors import AssociationError, AssociationRefusedError, OpenIDError

log = logging.getLogger("openid_plugins.fetcher")


@dataclass
class FetcherStats:
    """Counters of one or more fetcher passes, available to callers and printed by the CLI."""

    claimed: int = 0
    made: int = 0
    skipped: int = 0
    failed: int = 0
    refused: int = 0
    #: Seconds spent making associations: the time users would have waited.
    association_seconds: float = 0.0
    #: Per server URL: seconds taken, for the ones made.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        return (
            f"claimed {self.claimed}, made {self.made}, skipped {self.skipped},"
            f" refused {self.refused}, failed {self.failed},"
            f" association time {self.association_seconds:.2f} s"
        )


#: Called with (items finished, total: finished + waiting in the queue, stats) when a batch
#: is claimed and after each item finishes - for progress displays.
Progress = Callable[[int, int, FetcherStats], None]


class BackgroundFetcher:
    """Drains a queue of OP endpoint URLs into associations."""

    def __init__(
        self,
        associator: Associator,
        queue: Queue,
        *,
        concurrency: int = 8,
        batch: int = 64,
        lease: float = 120.0,
    ) -> None:
        self.associator = associator
        self.queue = queue
        self.concurrency = max(1, concurrency)
        self.batch = max(1, batch)
        self.lease = lease
        self.stats = FetcherStats()
        self._lock = threading.Lock()

    def run_once(self, progress: Progress | None = None) -> FetcherStats:
        """Claim and process items until the queue has none left to give; return this pass's
        counters (also added to ``self.stats``)."""
        stats = FetcherStats()
        done = 0
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="openid-assoc") as pool:
            while True:
                items = self.queue.claim(limit=self.batch, lease=self.lease)
                if not items:
                    break
                stats.claimed += len(items)
                if progress is not None:
                    # Finished so far + what waits now (this batch included): the real
                    # total, re-read per batch in case other processes put or claim.
                    total = done + self.queue.pending()
                    progress(done, total, stats)
                futures = [pool.submit(self._process, item, stats) for item in items]
                for future in as_completed(futures):
                    future.result()
                    done += 1
                    if progress is not None:
                        total = max(total, done)
                        progress(done, total, stats)
        self._merge(stats)
        return stats

    def watch(self, stop: threading.Event, *, poll: float = 5.0) -> FetcherStats:
        """Process items as they arrive until ``stop`` is set; also re-queues associations
        that approach expiry so they are renewed before a login notices."""
        while not stop.is_set():
            self.run_once()
            for server_url in self.associator.due_for_renewal():
                self.queue.put(server_url)
            if stop.is_set():
                break
            self.queue.wait(poll)
        return self.stats

    def _process(self, item: QueueItem, stats: FetcherStats) -> None:
        server_url = item.server_url
        try:
            if not self.associator.needs_association(server_url):
                with self._lock:
                    stats.skipped += 1
                log.info(
                    "no association needed for %s (have one, refused, or backing off)", server_url
                )
                return
            started = time.perf_counter()
            self.associator.associate(server_url)
            elapsed = time.perf_counter() - started
            with self._lock:
                stats.made += 1
                stats.association_seconds += elapsed
                stats.timings[server_url] = elapsed
            log.info("(%.3f s) associated with %s", elapsed, server_url)
        except AssociationRefusedError:
            # Already reported (once, at INFO) by the associator: not a failure.
            with self._lock:
                stats.refused += 1
        except OpenIDError as exc:
            with self._lock:
                stats.failed += 1
            if isinstance(exc, AssociationError):  # the associator's message names the URL
                log.error("%s", exc)
            else:
                log.error("failed to associate with %s: %s", server_url, exc)
        finally:
            self.queue.ack([item])

    def _merge(self, stats: FetcherStats) -> None:
        with self._lock:
            total = self.stats
            total.claimed += stats.claimed
            total.made += stats.made
            total.skipped += stats.skipped
            total.failed += stats.failed
            total.refused += stats.refused
            total.association_seconds += stats.association_seconds
            total.timings.update(stats.timings)


class _HasAssociator(Protocol):
    """What ``FetcherThread.for_relying_party`` needs of a ``RelyingParty``."""

    associator: Associator

    @property
    def queue(self) -> Queue: ...


class FetcherThread:
    """The fetcher inside a single-process site, stopped cleanly at exit."""

    def __init__(self, fetcher: BackgroundFetcher, *, poll: float = 2.0) -> None:
        self.fetcher = fetcher
        self.poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="openid-plugins-fetcher", daemon=True
        )

    @classmethod
    def for_relying_party(cls, rp: _HasAssociator) -> FetcherThread:
        return cls(BackgroundFetcher(rp.associator, rp.queue, concurrency=4))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.fetcher.watch(self._stop, poll=self.poll)
            except OpenIDError as exc:
                log.error("background fetcher pass failed, retrying: %s", exc)
                self._stop.wait(self.poll)

    def start(self) -> None:
        import atexit

        atexit.register(self.stop)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
