"""SQLStore on SQLite, PostgreSQL and MariaDB: associations, nonces, cache, cleanup, faults."""

from __future__ import annotations

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
    with pytest.raises(StoreError, match="longer than"):
        store.get_association(long_url + "z")


def test_skew_is_checked_before_the_database(clock: FakeClock) -> None:
    # Nothing listens on port 1: any database access would raise StoreError.
    store = SQLStore("postgresql://nobody@127.0.0.1:1/none", StoreOptions(clock=clock))
    assert store.use_nonce(OP, clock.now() - 1000, "x") is False
    with pytest.raises(StoreError):
        store.use_nonce(OP, clock.now(), "x")


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


@pytest.mark.parametrize("dialect", ["sqlite"])
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
