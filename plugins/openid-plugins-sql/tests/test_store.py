"""SQLStore on SQLite, PostgreSQL and MariaDB: associations, nonces, cache, cleanup, faults."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from openid_plugins_sql import SQLStore
from openid_plugins_sql import store as store_module
from openid_plugins_sql.schema import tables

from openid_plugins.contracts import MAX_SERVER_URL_BYTES, Association, StoreOptions
from openid_plugins.errors import StoreError
from openid_plugins.testing.clock import FakeClock

OP = "https://op.example/server"


def assoc(
    handle: str, issued: float, lifetime: float = 1000.0, secret: bytes = b"s"
) -> Association:
    return Association(handle, secret, issued, lifetime, "HMAC-SHA256")


def test_newest_valid_association_is_returned(store: SQLStore, clock: FakeClock) -> None:
    t0 = clock.now()
    store.store_association(OP, assoc("old", t0, secret=b"\x00old\xff"))
    store.store_association(OP, assoc("mid", t0 + 10))
    store.store_association(OP, assoc("newest-short", t0 + 20, lifetime=5))
    assert store.get_association(OP).handle == "newest-short"
    clock.advance(30)  # newest-short expired at t0 + 25
    assert store.get_association(OP).handle == "mid"
    assert store.get_association(OP, "newest-short") is None
    got = store.get_association(OP, "old")
    assert got == assoc("old", t0, secret=b"\x00old\xff")
    assert got.secret == b"\x00old\xff"
    clock.advance(2000)
    assert store.get_association(OP) is None


def test_storing_the_same_handle_replaces_it(store: SQLStore, clock: FakeClock) -> None:
    store.store_association(OP, assoc("h", clock.now(), secret=b"first"))
    store.store_association(OP, assoc("h", clock.now() + 1, secret=b"second"))
    assert store.get_association(OP, "h").secret == b"second"


def test_remove_association(store: SQLStore, clock: FakeClock) -> None:
    store.store_association(OP, assoc("h", clock.now()))
    store.store_association(OP + "2", assoc("h", clock.now()))
    assert store.remove_association(OP, "h") is True
    assert store.remove_association(OP, "h") is False
    assert store.get_association(OP, "h") is None
    assert store.get_association(OP + "2", "h") is not None


def test_urls_and_handles_compare_exactly(store: SQLStore, clock: FakeClock) -> None:
    # MySQL's default collations would call these equal; the tables use binary collation.
    store.store_association(OP, assoc("Handle", clock.now(), secret=b"a"))
    store.store_association(OP, assoc("handle", clock.now(), secret=b"b"))
    assert store.get_association(OP, "Handle").secret == b"a"
    assert store.get_association(OP, "handle").secret == b"b"
    assert store.get_association(OP.upper(), "handle") is None
    assert store.use_nonce(OP, clock.now(), "salt") is True
    assert store.use_nonce(OP, clock.now(), "SALT") is True
    assert store.use_nonce(OP.upper(), clock.now(), "salt") is True


def test_longest_server_url_works(store: SQLStore, clock: FakeClock) -> None:
    # OpenID 2.0 section 5.2.1 bounds URLs at 2047 bytes; MariaDB indexes stop at 3072.
    long_url = "https://op.example/" + "é" * ((MAX_SERVER_URL_BYTES - 19) // 2)
    long_url += "x" * (MAX_SERVER_URL_BYTES - len(long_url.encode()))
    assert len(long_url.encode()) == MAX_SERVER_URL_BYTES
    twin = long_url[:-1] + "y"
    store.store_association(long_url, assoc("h", clock.now(), secret=b"long"))
    store.store_association(twin, assoc("h", clock.now(), secret=b"twin"))
    assert store.get_association(long_url).secret == b"long"
    assert store.get_association(twin, "h").secret == b"twin"
    assert store.use_nonce(long_url, clock.now(), "x") is True
    assert store.use_nonce(long_url, clock.now(), "x") is False
    with pytest.raises(ValueError, match="longer than"):
        store.get_association(long_url + "z")


def test_nonce_is_used_once(store: SQLStore, clock: FakeClock) -> None:
    ts = clock.now() - 10
    assert store.use_nonce(OP, ts, "abc") is True
    assert store.use_nonce(OP, ts, "abc") is False
    assert store.use_nonce(OP, ts + 1, "abc") is True
    assert store.use_nonce(OP, ts, "abd") is True
    assert store.use_nonce(OP + "/other", ts, "abc") is True


def test_nonce_outside_the_skew_is_refused(store: SQLStore, clock: FakeClock) -> None:
    now = clock.now()
    assert store.use_nonce(OP, now - 301, "a") is False
    assert store.use_nonce(OP, now + 301, "b") is False
    assert store.use_nonce(OP, float("nan"), "c") is False
    assert store.use_nonce(OP, now - 300, "d") is True  # the edge is inside the window
    assert store.cleanup() == 0  # ...and stays remembered while it could be replayed
    assert store.use_nonce(OP, now - 300, "d") is False


def test_skew_is_checked_before_the_database(clock: FakeClock) -> None:
    # Nothing listens on port 1: any database access would raise StoreError.
    store = SQLStore("postgresql://nobody@127.0.0.1:1/none", StoreOptions(clock=clock))
    assert store.use_nonce(OP, clock.now() - 1000, "x") is False
    with pytest.raises(StoreError):
        store.use_nonce(OP, clock.now(), "x")


def test_nonce_race_between_threads_has_one_winner(store: SQLStore, clock: FakeClock) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        results.append(store.use_nonce(OP, clock.now(), "race"))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_cache_round_trip_and_expiry(store: SQLStore, clock: FakeClock) -> None:
    value = {"endpoints": ["https://op.example/"], "n": 3, "unicode": "日本", "none": None}
    store.cache_set("discovery", "https://user.example/", value, ttl=60)
    store.cache_set("other", "https://user.example/", [1], ttl=60)
    assert store.cache_get("discovery", "https://user.example/") == value
    assert store.cache_get("other", "https://user.example/") == [1]
    assert store.cache_get("discovery", "missing") is None
    store.cache_set("discovery", "https://user.example/", "replaced", ttl=60)
    assert store.cache_get("discovery", "https://user.example/") == "replaced"
    store.cache_delete("discovery", "https://user.example/")
    store.cache_delete("discovery", "https://user.example/")
    assert store.cache_get("discovery", "https://user.example/") is None
    clock.advance(61)
    assert store.cache_get("other", "https://user.example/") is None


def test_cache_holds_values_larger_than_64k(store: SQLStore) -> None:
    big = "x" * 200_000
    store.cache_set("xrds", "k", big, ttl=60)
    assert store.cache_get("xrds", "k") == big


def test_cleanup_removes_only_expired_rows_in_batches(
    store: SQLStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CLEANUP_BATCH", 3)
    now = clock.now()
    for i in range(7):
        store.store_association(OP, assoc(f"short{i}", now, lifetime=10))
        store.use_nonce(OP, now, f"n{i}")
    store.store_association(OP, assoc("long", now, lifetime=10_000))
    store.cache_set("ns", "short", 1, ttl=10)
    store.cache_set("ns", "long", 2, ttl=10_000)
    assert store.cleanup() == 0
    clock.advance(301)  # past the associations, the nonce window and the short cache entry
    assert store.cleanup() == 7 + 7 + 1
    assert store.cleanup() == 0
    assert store.get_association(OP).handle == "long"
    assert store.cache_get("ns", "long") == 2
    with store._ready().connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(store.tables.nonces)) == 0


def test_an_unreachable_server_raises_store_error_with_advice(clock: FakeClock) -> None:
    for url in ("postgresql://u:pw@127.0.0.1:1/db", "mysql://u:pw@127.0.0.1:1/db"):
        store = SQLStore(url, StoreOptions(clock=clock))
        with pytest.raises(StoreError, match="reachable") as info:
            store.get_association(OP)
        assert "pw" not in str(info.value)  # the password is masked
        store.close()


def test_an_unusable_sqlite_file_raises_store_error(tmp_path, clock: FakeClock) -> None:
    (tmp_path / "dir.db").mkdir()
    store = SQLStore(f"sqlite:///{tmp_path}/dir.db", StoreOptions(clock=clock))
    with pytest.raises(StoreError, match="dir.db"):
        store.use_nonce(OP, clock.now(), "x")


def test_a_closed_store_refuses_work(url: str, options: StoreOptions) -> None:
    store = SQLStore(url, options)
    store.cache_set("ns", "k", 1, ttl=10)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.cache_get("ns", "k")


def test_stores_on_one_database_share_an_engine_and_keep_prefixes_apart(
    url: str, options: StoreOptions, prefix: str, clock: FakeClock
) -> None:
    other = url.replace(prefix, prefix + "b_")
    with SQLStore(url, options) as a, SQLStore(other, options) as b:
        assert a._ready() is b._ready()
        assert a.use_nonce(OP, clock.now(), "n") is True
        assert b.use_nonce(OP, clock.now(), "n") is True
        assert set(tables(prefix + "b_").metadata.tables) != set(tables(prefix).metadata.tables)
