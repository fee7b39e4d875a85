"""The executable definition of the ``Store`` and ``Queue`` contracts of ``contracts.py``.

A backend that passes these tests is correct. Use it from any distribution as a pytest
plugin::

    # conftest.py
    pytest_plugins = ["openid_plugins.testing.contract"]

    # test_backend.py
    from openid_plugins.testing.contract import QueueContract, StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_url(self, tmp_path):          # required: a URL for a fresh, empty store
            return f"sqlite:///{tmp_path}/x.db"
        # optional fixture ``store_extra`` -> dict (StoreOptions.extra), default {}

    class TestMyQueue(QueueContract):
        @pytest.fixture
        def queue_url(self, tmp_path): ...      # required: a URL for a fresh, empty queue
        # optional fixture ``queue_extra`` -> dict, default {}

Stores and queues are opened through the real plugin manager (so the entry point is tested
too) with a ``FakeClock`` and ``nonce_skew=300``, and closed after each test. Opening the same
URL twice must give access to the same data. A backend that cannot be shared between
processes sets ``multiprocess = False``; one whose server expires entries by itself (so
``cleanup`` finds nothing to count) sets ``cleanup_counts = False``.

The process-race helpers are module-level functions because the ``spawn`` start method
pickles them by name.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any

import pytest

from ..config import open_queue, open_store
from ..contracts import MAX_SERVER_URL_BYTES, Association, Queue, QueueItem, Store, StoreOptions
from ..errors import QueueError, StoreError
from ..manager import make_plugin_manager
from .clock import FakeClock

SKEW = 300.0
#: Processes racing in the cross-process tests.
PROCESSES = 4
#: Generous bound for anything that should take milliseconds (a hung backend fails).
PATIENCE = 60.0

OP = "https://op.example.com/openid/server"
OTHER_OP = "https://op.example.com/openid/server2"

#: Keys a hostile identifier or OP could make us store; none may escape or collide.
HOSTILE_URLS = [
    "../../etc/passwd",
    "/etc/passwd",
    "http://op.example/\x01\x02\x1f\x7f ctl",
    "https://é.example/ünïcødé/日本語?q=∑#frag",
    "https://op.example/" + "a" * (2047 - len("https://op.example/")),
    "https://op.example/" + "ü" * ((2047 - len("https://op.example/")) // 2),
    "http://op.example/%2e%2e/%00",
    "C:\\Windows\\system32",
]
HOSTILE_HANDLES = [
    "../../etc/passwd",
    "h" * 255,
    "{" + "x" * 253 + "}",
    "\x01\x1f ctl",
    "hándle-日本",
    ".",
    "..",
]
HOSTILE_CACHE_KEYS = [
    ("../..", "../../etc/passwd"),
    ("ns", "\x01\x02\x1f\x7f"),
    ("日本", "ключ"),
    ("discovery", "https://id.example/" + "k" * 2028),
    ("", ""),
    ("a", "b/c"),
    ("a/b", "c"),
]


# -- fixtures (available to every test once this module is a pytest plugin) -----------------


@pytest.fixture
def store_extra() -> dict[str, Any]:
    """``StoreOptions.extra`` for the store under test; override to pass backend options."""
    return {}


@pytest.fixture
def queue_extra() -> dict[str, Any]:
    """``StoreOptions.extra`` for the queue under test; override to pass backend options."""
    return {}


@pytest.fixture
def contract_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def contract_plugin_manager() -> Any:
    return make_plugin_manager()


def _openers(
    open_backend: Callable[..., Any], url: str, extra: dict[str, Any], clock: FakeClock, pm: Any
) -> Iterator[Callable[[], Any]]:
    """Opens the backend under test (again, on each call); closes every one after the test."""
    opened: list[Any] = []

    def opener() -> Any:
        options = StoreOptions(clock=clock, nonce_skew=SKEW, extra=dict(extra))
        opened.append(open_backend(pm, url, options))
        return opened[-1]

    yield opener
    for backend in opened:
        backend.close()


@pytest.fixture
def open_contract_store(
    store_url: str,
    store_extra: dict[str, Any],
    contract_clock: FakeClock,
    contract_plugin_manager: Any,
) -> Iterator[Callable[[], Store]]:
    yield from _openers(open_store, store_url, store_extra, contract_clock, contract_plugin_manager)


@pytest.fixture
def contract_store(open_contract_store: Callable[[], Store]) -> Store:
    return open_contract_store()


@pytest.fixture
def open_contract_queue(
    queue_url: str,
    queue_extra: dict[str, Any],
    contract_clock: FakeClock,
    contract_plugin_manager: Any,
) -> Iterator[Callable[[], Queue]]:
    yield from _openers(open_queue, queue_url, queue_extra, contract_clock, contract_plugin_manager)


@pytest.fixture
def contract_queue(open_contract_queue: Callable[[], Queue]) -> Queue:
    return open_contract_queue()


# -- processes racing each other ------------------------------------------------------------


class ProcessRacers:
    """``count`` spawned worker processes that start each race together at a barrier.

    The workers are reused by every race of a test session: spawning and importing the
    plugins costs far more than a race.
    """

    def __init__(self, count: int = PROCESSES) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.count = count
        self.barrier = ctx.Barrier(count)
        self.pool = ProcessPoolExecutor(
            count, mp_context=ctx, initializer=_init_racer, initargs=(self.barrier,)
        )

    def run(self, race: Callable[..., Any], *args: Any) -> list[Any]:
        """What ``race(*args)`` returned in each worker; raises what one raised."""
        futures = [self.pool.submit(race, *args) for _ in range(self.count)]
        # Every racer must be done before the barrier is reset for the next race.
        _, unfinished = futures_wait(futures, timeout=PATIENCE)
        if unfinished:
            pytest.fail(f"{len(unfinished)} racing processes still busy after {PATIENCE}s")
        if self.barrier.broken:
            self.barrier.reset()
        failures = [error for f in futures if (error := f.exception()) is not None]
        if failures:
            # The racer that failed first broke the barrier for the others: report it.
            raise next(
                (e for e in failures if not isinstance(e, threading.BrokenBarrierError)),
                failures[0],
            )
        return [future.result() for future in futures]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def contract_racers() -> Iterator[ProcessRacers]:
    racers = ProcessRacers()
    yield racers
    racers.close()


_barrier: Any = None
_plugin_manager: Any = None


def _init_racer(barrier: Any) -> None:
    global _barrier, _plugin_manager
    _barrier = barrier
    _plugin_manager = make_plugin_manager()


def _at_start_line() -> None:
    _barrier.wait(PATIENCE)


def race_nonces(
    url: str, extra: dict[str, Any], nonces: list[tuple[str, float, str]]
) -> list[bool]:
    """In a racer: open the store by URL with the system clock and use each nonce once all
    racers are ready for it; which ones this process won."""
    options = StoreOptions(nonce_skew=SKEW, extra=extra)
    try:
        with open_store(_plugin_manager, url, options) as store:
            wins = []
            for server_url, timestamp, salt in nonces:
                _at_start_line()
                wins.append(store.use_nonce(server_url, timestamp, salt))
            return wins
    except BaseException:
        _barrier.abort()  # the other racers fail at once instead of waiting
        raise


def race_claims(url: str, extra: dict[str, Any]) -> list[str]:
    """In a racer: open the queue by URL and claim small batches until a claim comes back
    empty; the URLs this process claimed."""
    options = StoreOptions(nonce_skew=SKEW, extra=extra)
    try:
        with open_queue(_plugin_manager, url, options) as queue:
            _at_start_line()
            claimed: list[str] = []
            while items := queue.claim(limit=3, lease=600):
                claimed.extend(item.server_url for item in items)
            return claimed
    except BaseException:
        _barrier.abort()  # the other racers fail at once instead of waiting
        raise


def _association(
    handle: str, issued: float, lifetime: float = 3600.0, secret: bytes = b""
) -> Association:
    return Association(
        handle=handle,
        secret=secret or handle.encode("utf-8", "surrogatepass")[:20].ljust(20, b"\0"),
        issued=issued,
        lifetime=lifetime,
        assoc_type="HMAC-SHA1",
    )


# -- the store contract ----------------------------------------------------------------------


class StoreContract:
    """Every ``Store`` behaviour a relying party depends on."""

    #: False for backends that live in one process (cross-process races are skipped).
    multiprocess = True
    #: False if the backend's server expires entries itself, so ``cleanup`` counts nothing.
    cleanup_counts = True

    # associations

    def test_store_and_get_by_handle(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        assoc = _association("h1", contract_clock.now(), secret=bytes(range(256)))
        contract_store.store_association(OP, assoc)
        assert contract_store.get_association(OP, "h1") == assoc
        assert contract_store.get_association(OP) == assoc
        assert contract_store.get_association(OP, "h1").secret == bytes(range(256))

    def test_get_unknown_gives_none(self, contract_store: Store, contract_clock: FakeClock) -> None:
        assert contract_store.get_association(OP) is None
        assert contract_store.get_association(OP, "nope") is None
        contract_store.store_association(OP, _association("h1", contract_clock.now()))
        assert contract_store.get_association(OP, "nope") is None
        assert contract_store.get_association(OTHER_OP) is None

    def test_newest_issued_valid_association_wins(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        now = contract_clock.now()
        newest = _association("newest", now - 10, lifetime=3600)
        # Stored last but issued earlier, and a longer lifetime: still not the newest.
        contract_store.store_association(OP, newest)
        contract_store.store_association(OP, _association("older", now - 100, lifetime=90000))
        contract_store.store_association(OP, _association("oldest", now - 1000, lifetime=3600))
        # Issued later than all, but already expired: never chosen.
        contract_store.store_association(OP, _association("dead", now - 5, lifetime=2))
        assert contract_store.get_association(OP) == newest

    def test_expired_association_never_returned(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        now = contract_clock.now()
        contract_store.store_association(OP, _association("short", now, lifetime=60))
        contract_store.store_association(OP, _association("long", now - 30, lifetime=600))
        assert contract_store.get_association(OP).handle == "short"
        contract_clock.advance(60)  # exactly at expiry: no time left, no longer usable
        assert contract_store.get_association(OP, "short") is None
        assert contract_store.get_association(OP).handle == "long"
        contract_clock.advance(600)
        assert contract_store.get_association(OP) is None
        assert contract_store.get_association(OP, "long") is None

    def test_remove_association(self, contract_store: Store, contract_clock: FakeClock) -> None:
        now = contract_clock.now()
        contract_store.store_association(OP, _association("a", now))
        contract_store.store_association(OP, _association("b", now - 1))
        assert contract_store.remove_association(OP, "a") is True
        assert contract_store.remove_association(OP, "a") is False
        assert contract_store.remove_association(OP, "never") is False
        assert contract_store.remove_association(OTHER_OP, "b") is False
        assert contract_store.get_association(OP, "a") is None
        assert contract_store.get_association(OP).handle == "b"

    def test_same_handle_replaces(self, contract_store: Store, contract_clock: FakeClock) -> None:
        now = contract_clock.now()
        contract_store.store_association(OP, _association("h", now - 50, secret=b"1" * 20))
        replacement = _association("h", now, lifetime=7200, secret=b"2" * 20)
        contract_store.store_association(OP, replacement)
        assert contract_store.get_association(OP, "h") == replacement
        assert contract_store.get_association(OP) == replacement
        assert contract_store.remove_association(OP, "h") is True
        assert contract_store.get_association(OP) is None

    def test_associations_isolated_per_server_url(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        now = contract_clock.now()
        urls = [OP, OP + "/", OP.upper(), OP + "?x=1", OTHER_OP]
        for i, url in enumerate(urls):
            contract_store.store_association(url, _association("same", now - i, secret=b"%d" % i))
        for i, url in enumerate(urls):
            assert contract_store.get_association(url, "same").secret == b"%d" % i
            assert contract_store.get_association(url).issued == now - i
        assert contract_store.remove_association(OP, "same") is True
        assert contract_store.get_association(OP) is None
        assert contract_store.get_association(OTHER_OP) is not None

    def test_reopened_store_sees_the_same_data(
        self, open_contract_store: Callable[[], Store], contract_clock: FakeClock
    ) -> None:
        first, second = open_contract_store(), open_contract_store()
        assoc = _association("shared", contract_clock.now())
        first.store_association(OP, assoc)
        assert second.get_association(OP) == assoc
        assert first.use_nonce(OP, contract_clock.now(), "s") is True
        assert second.use_nonce(OP, contract_clock.now(), "s") is False
        first.cache_set("ns", "k", [1, 2], 60)
        assert second.cache_get("ns", "k") == [1, 2]

    # nonces (OpenID 2.0 section 11.3)

    def test_nonce_used_once(self, contract_store: Store, contract_clock: FakeClock) -> None:
        now = contract_clock.now()
        assert contract_store.use_nonce(OP, now, "salt") is True
        assert contract_store.use_nonce(OP, now, "salt") is False
        assert contract_store.use_nonce(OP, now, "salt") is False

    def test_nonce_seen_is_advisory_and_records_nothing(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        now = contract_clock.now()
        assert contract_store.nonce_seen(OP, now, "peek") is False
        assert contract_store.use_nonce(OP, now, "peek") is True
        if type(contract_store).nonce_seen is not Store.nonce_seen:
            assert contract_store.nonce_seen(OP, now, "peek") is True
            assert contract_store.nonce_seen(OP, now, "other") is False

    def test_nonce_outside_skew_refused(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        now = contract_clock.now()
        assert contract_store.use_nonce(OP, now - SKEW - 1, "past") is False
        assert contract_store.use_nonce(OP, now + SKEW + 1, "future") is False
        for bad in (math.nan, math.inf, -math.inf):
            assert contract_store.use_nonce(OP, bad, "bad") is False
        # A refused nonce was not recorded: once inside the window it is usable once.
        contract_clock.advance(2)
        assert contract_store.use_nonce(OP, now + SKEW + 1, "future") is True
        assert contract_store.use_nonce(OP, now + SKEW + 1, "future") is False

    def test_nonce_at_skew_edges_accepted(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        now = contract_clock.now()
        assert contract_store.use_nonce(OP, now - SKEW + 1, "past-edge") is True
        assert contract_store.use_nonce(OP, now + SKEW - 1, "future-edge") is True
        assert contract_store.use_nonce(OP, now - SKEW + 1, "past-edge") is False
        assert contract_store.use_nonce(OP, now + SKEW - 1, "future-edge") is False

    def test_nonce_remembered_while_inside_skew(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        start = contract_clock.now()
        assert contract_store.use_nonce(OP, start, "s") is True
        for _ in range(3):
            contract_clock.advance(SKEW / 3 - 1)
            contract_store.cleanup()
            assert contract_store.use_nonce(OP, start, "s") is False
        contract_clock.advance(10)
        assert contract_store.use_nonce(OP, start, "s") is False  # now outside skew

    def test_nonce_parts_are_distinct(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        now = int(contract_clock.now())
        assert contract_store.use_nonce(OP, now, "salt") is True
        assert contract_store.use_nonce(OP, now - 1, "salt") is True
        assert contract_store.use_nonce(OTHER_OP, now, "salt") is True
        assert contract_store.use_nonce(OP, now, "salt2") is True
        assert contract_store.use_nonce(OP, now, "sal") is True
        assert contract_store.use_nonce(OP + "salt", now, "") is True
        assert contract_store.use_nonce(OP, now, "salt") is False

    def test_nonce_used_once_across_processes(
        self, contract_store: Store, store_url: str, contract_racers: ProcessRacers
    ) -> None:
        if not self.multiprocess:
            pytest.skip("this backend lives in one process")
        now = time.time()
        nonces = [(OP, float(int(now) - i), f"race-{i}") for i in range(5)]
        extra = dict(contract_store.options.extra)
        reports = contract_racers.run(race_nonces, store_url, extra, nonces)
        for index in range(len(nonces)):
            winners = sum(1 for wins in reports if wins[index])
            assert winners == 1, f"nonce {index}: {winners} processes won"
        for server_url, timestamp, salt in nonces:
            assert contract_store.use_nonce(server_url, timestamp, salt) is False

    # cleanup

    def test_cleanup_removes_expired_and_keeps_live(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        now = contract_clock.now()
        contract_store.store_association(OP, _association("dead1", now, lifetime=10))
        contract_store.store_association(OTHER_OP, _association("dead2", now, lifetime=20))
        live = _association("live", now, lifetime=86400)
        contract_store.store_association(OP, live)
        assert contract_store.use_nonce(OP, now, "old1") is True
        assert contract_store.use_nonce(OTHER_OP, now - 5, "old2") is True
        contract_store.cache_set("ns", "dead1", {"v": 1}, 10)
        contract_store.cache_set("ns", "dead2", {"v": 2}, 20)
        contract_store.cache_set("ns", "live", {"v": 3}, 86400)
        contract_clock.advance(3 * 3600)  # far enough for any bucketed backend

        removed = contract_store.cleanup()
        assert isinstance(removed, int)
        if self.cleanup_counts:
            assert removed == 6
        assert contract_store.use_nonce(OP, contract_clock.now(), "new") is True
        assert contract_store.cleanup() == 0
        assert contract_store.get_association(OP) == live
        assert contract_store.get_association(OTHER_OP) is None
        assert contract_store.cache_get("ns", "live") == {"v": 3}
        assert contract_store.cache_get("ns", "dead1") is None
        assert contract_store.use_nonce(OP, contract_clock.now(), "new") is False

    # cache

    def test_cache_round_trips_json(self, contract_store: Store) -> None:
        values: list[Any] = [
            {"endpoints": [{"uri": "https://op/", "types": ["a", "b"]}], "n": 1.5, "ok": True},
            [1, "two", None, False, {"x": []}],
            "strïng ☃",
            42,
            0,
            0.25,
            False,
            "",
            [],
            {},
        ]
        for i, value in enumerate(values):
            contract_store.cache_set("ns", f"k{i}", value, 60)
        for i, value in enumerate(values):
            got = contract_store.cache_get("ns", f"k{i}")
            assert got == value and type(got) is type(value)

    def test_cache_values_are_copies(self, contract_store: Store) -> None:
        value = {"list": [1]}
        contract_store.cache_set("ns", "k", value, 60)
        value["list"].append(2)
        got = contract_store.cache_get("ns", "k")
        assert got == {"list": [1]}
        got["list"].append(3)
        assert contract_store.cache_get("ns", "k") == {"list": [1]}

    def test_cache_expiry_overwrite_delete(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        contract_store.cache_set("ns", "k", "v1", 60)
        contract_store.cache_set("other", "k", "other", 600)
        assert contract_store.cache_get("ns", "k") == "v1"
        contract_store.cache_set("ns", "k", "v2", 30)
        assert contract_store.cache_get("ns", "k") == "v2"
        contract_clock.advance(30)
        assert contract_store.cache_get("ns", "k") is None
        assert contract_store.cache_get("other", "k") == "other"
        contract_store.cache_set("ns", "k", "v3", 60)
        assert contract_store.cache_get("ns", "k") == "v3"
        contract_store.cache_delete("ns", "k")
        assert contract_store.cache_get("ns", "k") is None
        contract_store.cache_delete("ns", "k")
        contract_store.cache_delete("never", "set")
        assert contract_store.cache_get("other", "k") == "other"

    def test_cache_refuses_non_json_values(self, contract_store: Store) -> None:
        with pytest.raises(StoreError):
            contract_store.cache_set("ns", "k", {1, 2}, 60)
        with pytest.raises(StoreError):
            contract_store.cache_set("ns", "k", object(), 60)
        assert contract_store.cache_get("ns", "k") is None

    # hostile and unusual keys

    @pytest.mark.parametrize("server_url", HOSTILE_URLS)
    def test_hostile_server_urls_round_trip(
        self, contract_store: Store, contract_clock: FakeClock, server_url: str
    ) -> None:
        now = contract_clock.now()
        assoc = _association("h", now)
        contract_store.store_association(server_url, assoc)
        assert contract_store.get_association(server_url, "h") == assoc
        assert contract_store.get_association(server_url) == assoc
        assert contract_store.get_association(OP) is None
        assert contract_store.use_nonce(server_url, now, "s") is True
        assert contract_store.use_nonce(server_url, now, "s") is False
        assert contract_store.use_nonce(OP, now, "s") is True
        assert contract_store.remove_association(server_url, "h") is True

    def test_oversized_server_url_is_a_store_error(self, contract_store: Store) -> None:
        too_long = "https://op.example/" + "x" * MAX_SERVER_URL_BYTES
        with pytest.raises(StoreError):
            contract_store.get_association(too_long)
        with pytest.raises(StoreError):
            contract_store.use_nonce(too_long, 0.0, "salt")

    def test_hostile_handles_round_trip(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        now = contract_clock.now()
        stored = {}
        for i, handle in enumerate(HOSTILE_HANDLES):
            stored[handle] = _association(handle, now - i, secret=b"s%d" % i)
            contract_store.store_association(OP, stored[handle])
        for handle, assoc in stored.items():
            assert contract_store.get_association(OP, handle) == assoc
        assert contract_store.get_association(OP) == stored[HOSTILE_HANDLES[0]]
        for handle in HOSTILE_HANDLES:
            assert contract_store.remove_association(OP, handle) is True
        assert contract_store.get_association(OP) is None

    def test_hostile_cache_keys_round_trip(self, contract_store: Store) -> None:
        for i, (namespace, key) in enumerate(HOSTILE_CACHE_KEYS):
            contract_store.cache_set(namespace, key, {"i": i, "key": key}, 60)
        for i, (namespace, key) in enumerate(HOSTILE_CACHE_KEYS):
            assert contract_store.cache_get(namespace, key) == {"i": i, "key": key}
        for namespace, key in HOSTILE_CACHE_KEYS:
            contract_store.cache_delete(namespace, key)
            assert contract_store.cache_get(namespace, key) is None

    def test_hostile_salts(self, contract_store: Store, contract_clock: FakeClock) -> None:
        now = contract_clock.now()
        for salt in ["../../x", "\x01", "ü" * 100, "", "s" * 1000]:
            assert contract_store.use_nonce(OP, now, salt) is True
            assert contract_store.use_nonce(OP, now, salt) is False

    def test_text_without_utf8_form_raises_only_store_errors(
        self, contract_store: Store, contract_clock: FakeClock
    ) -> None:
        """A lone surrogate (as decoding with surrogateescape makes) in any key: the store
        keeps it or refuses it with StoreError, never with UnicodeEncodeError."""
        now, odd = contract_clock.now(), "\udcff"
        calls: list[Callable[[], object]] = [
            lambda: contract_store.store_association(OP + odd, _association("h", now)),
            lambda: contract_store.store_association(OP, _association("h" + odd, now)),
            lambda: contract_store.get_association(OP + odd),
            lambda: contract_store.get_association(OP, "h" + odd),
            lambda: contract_store.remove_association(OP, "h" + odd),
            lambda: contract_store.use_nonce(OP + odd, now, "s"),
            lambda: contract_store.use_nonce(OP, now, "s" + odd),
            lambda: contract_store.nonce_seen(OP, now, "s" + odd),
            lambda: contract_store.cache_set("ns" + odd, "k" + odd, {"v": odd}, 60),
            lambda: contract_store.cache_get("ns" + odd, "k" + odd),
            lambda: contract_store.cache_delete("ns" + odd, "k" + odd),
        ]
        for call in calls:
            with contextlib.suppress(StoreError):
                call()

    # threads

    def test_concurrent_threads(self, contract_store: Store, contract_clock: FakeClock) -> None:
        now = contract_clock.now()
        nonces = [(OP, now - i, f"t{i}") for i in range(30)]
        wins: Counter[int] = Counter()
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)
        lock = threading.Lock()

        def worker(n: int) -> None:
            try:
                barrier.wait(PATIENCE)
                server_url = f"https://op{n}.example/"
                assoc = _association(f"h{n}", now)
                for index, (url, timestamp, salt) in enumerate(nonces):
                    if contract_store.use_nonce(url, timestamp, salt):
                        with lock:
                            wins[index] += 1
                    contract_store.store_association(server_url, assoc)
                    contract_store.cache_set("shared", "k", {"writer": n}, 60)
                    assert contract_store.get_association(server_url) == assoc
                    assert contract_store.cache_get("shared", "k")["writer"] in range(8)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PATIENCE)
        assert not errors, errors
        assert wins == Counter({index: 1 for index in range(len(nonces))})


# -- the queue contract ----------------------------------------------------------------------


class QueueContract:
    """Every ``Queue`` behaviour the background association fetcher depends on."""

    #: False for queues that live in one process (the cross-process race is skipped).
    multiprocess = True

    def test_put_claim_ack(self, contract_queue: Queue) -> None:
        urls = [f"https://op{i}.example/server" for i in range(3)]
        for url in urls:
            contract_queue.put(url)
        assert contract_queue.pending() == 3
        items = contract_queue.claim(limit=10, lease=60)
        assert sorted(item.server_url for item in items) == sorted(urls)
        assert all(isinstance(item, QueueItem) for item in items)
        assert contract_queue.pending() == 3  # claimed items still count
        assert contract_queue.claim() == []
        contract_queue.ack(items[:2])
        assert contract_queue.pending() == 1
        contract_queue.ack(items[2:])
        assert contract_queue.pending() == 0
        assert contract_queue.claim() == []

    def test_waiting_url_is_deduplicated(self, contract_queue: Queue) -> None:
        for _ in range(3):
            contract_queue.put(OP)
        contract_queue.put(OTHER_OP)
        assert contract_queue.pending() == 2
        items = contract_queue.claim(limit=10)
        assert sorted(item.server_url for item in items) == sorted([OP, OTHER_OP])

    def test_put_while_claimed_is_not_lost(self, contract_queue: Queue) -> None:
        contract_queue.put(OP)
        [first] = contract_queue.claim()
        contract_queue.put(OP)  # asked again after the claimer started: a new need
        assert contract_queue.pending() == 2
        contract_queue.ack([first])
        [second] = contract_queue.claim()
        assert second.server_url == OP

    def test_claims_are_exclusive(self, open_contract_queue: Callable[[], Queue]) -> None:
        first, second = open_contract_queue(), open_contract_queue()
        urls = {f"https://op{i}.example/" for i in range(10)}
        for url in urls:
            first.put(url)
        a = first.claim(limit=4)
        b = second.claim(limit=100)
        assert len(a) == 4 and len(b) == 6
        assert {i.server_url for i in a} | {i.server_url for i in b} == urls
        assert {i.token for i in a}.isdisjoint({i.token for i in b})
        assert first.claim() == [] and second.claim() == []

    def test_claim_limit(self, contract_queue: Queue) -> None:
        for i in range(5):
            contract_queue.put(f"https://op{i}.example/")
        assert contract_queue.claim(limit=0) == []
        assert len(contract_queue.claim(limit=2)) == 2
        assert len(contract_queue.claim(limit=2)) == 2
        assert len(contract_queue.claim(limit=2)) == 1

    def test_lease_expiry_returns_items(
        self, contract_queue: Queue, contract_clock: FakeClock
    ) -> None:
        contract_queue.put(OP)
        [stale] = contract_queue.claim(lease=30)
        contract_clock.advance(29)
        assert contract_queue.claim() == []
        contract_clock.advance(2)
        assert contract_queue.wait(0) is True
        [again] = contract_queue.claim(lease=30)
        assert again.server_url == OP
        assert again.token != stale.token
        contract_queue.ack([stale])  # too late: the item belongs to the new claim now
        assert contract_queue.pending() == 1
        contract_queue.release([stale])
        assert contract_queue.claim() == []
        contract_queue.ack([again])
        assert contract_queue.pending() == 0

    def test_release_returns_items(self, contract_queue: Queue) -> None:
        contract_queue.put(OP)
        contract_queue.put(OTHER_OP)
        items = contract_queue.claim()
        contract_queue.release(items)
        assert contract_queue.pending() == 2
        again = contract_queue.claim()
        assert sorted(i.server_url for i in again) == sorted([OP, OTHER_OP])
        contract_queue.release(again[:1])
        contract_queue.release(again[:1])  # releasing twice changes nothing
        assert [i.server_url for i in contract_queue.claim()] == [again[0].server_url]
        assert contract_queue.pending() == 2

    def test_wait_wakes_on_put_from_another_thread(self, contract_queue: Queue) -> None:
        timer = threading.Timer(0.1, contract_queue.put, args=(OP,))
        timer.start()
        try:
            started = time.monotonic()
            assert contract_queue.wait(PATIENCE) is True
            assert time.monotonic() - started < PATIENCE / 2
        finally:
            timer.join()
        assert contract_queue.wait(0) is True

    def test_wait_times_out_when_empty(self, contract_queue: Queue) -> None:
        assert contract_queue.wait(0) is False
        assert contract_queue.wait(0.1) is False
        contract_queue.put(OP)
        [item] = contract_queue.claim()
        assert contract_queue.wait(0.05) is False  # a claimed item is not claimable

    @pytest.mark.parametrize("server_url", HOSTILE_URLS)
    def test_hostile_urls_round_trip(self, contract_queue: Queue, server_url: str) -> None:
        contract_queue.put(server_url)
        contract_queue.put(server_url)
        [item] = contract_queue.claim()
        assert item.server_url == server_url
        contract_queue.ack([item])
        assert contract_queue.pending() == 0

    def test_text_without_utf8_form_raises_only_queue_errors(self, contract_queue: Queue) -> None:
        with contextlib.suppress(QueueError):
            contract_queue.put("https://op.example/\udcff")

    def test_concurrent_threads_claim_disjoint_items(
        self, open_contract_queue: Callable[[], Queue]
    ) -> None:
        queues = [open_contract_queue() for _ in range(6)]
        urls = [f"https://op{i}.example/" for i in range(60)]
        for url in urls:
            queues[0].put(url)
        claimed: list[str] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(queues))
        lock = threading.Lock()

        def worker(q: Queue) -> None:
            try:
                barrier.wait(PATIENCE)
                while items := q.claim(limit=2):
                    with lock:
                        claimed.extend(item.server_url for item in items)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(q,)) for q in queues]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PATIENCE)
        assert not errors, errors
        assert Counter(claimed) == Counter(urls)

    def test_claims_are_exclusive_across_processes(
        self, contract_queue: Queue, queue_url: str, contract_racers: ProcessRacers
    ) -> None:
        if not self.multiprocess:
            pytest.skip("this queue lives in one process")
        urls = [f"https://op{i}.example/server" for i in range(40)]
        for url in urls:
            contract_queue.put(url)
        extra = dict(contract_queue.options.extra)
        reports = contract_racers.run(race_claims, queue_url, extra)
        claimed = Counter(url for report in reports for url in report)
        assert claimed == Counter(urls), "an item was claimed twice or never"
        assert contract_queue.pending() == len(urls)
