"""What the contract kit cannot see: the keys and values in memcached, configuration, the
plugin's registration, concurrent index updates, and a server that dies and comes back."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading

import pytest
from conftest import MemcachedServer, new_prefix, start_server, url_for
from openid_plugins_memcached import MemcachedStore, parse_target
from openid_plugins_memcached.target import DEFAULT_PORT
from pymemcache.client.base import Client

from openid_plugins import cli
from openid_plugins.backends import open_queue, open_store
from openid_plugins.contracts import Association, StoreOptions
from openid_plugins.errors import ConfigurationError, StoreError, UnknownSchemeError
from openid_plugins.manager import make_plugin_manager
from openid_plugins.testing.clock import FakeClock

OP = "https://op.example/server"
#: Short, so a dead server answers quickly (the library's default is 1 s).
FAST = "connect_timeout=0.5&timeout=0.5"


def assoc(handle: str, issued: float, lifetime: float = 3600.0) -> Association:
    return Association(handle, b"k" * 20, issued, lifetime, "HMAC-SHA1")


def raw_get(server: MemcachedServer, keys: list[bytes]) -> dict[bytes, bytes]:
    """What ``server`` itself holds under ``keys``, read with a plain pymemcache client."""
    client = Client(("127.0.0.1", server.port), timeout=5)
    try:
        return client.get_many(keys)
    finally:
        client.close()


# -- keys and values --------------------------------------------------------------------------


def test_keys_are_short_printable_and_values_json(memcached_servers, clock) -> None:
    url = url_for(memcached_servers[:1], new_prefix())
    hostile = "https://op.example/" + "\x01 ü" * 400
    handle, salt, cache_key = "h \x00" * 60, "salt with spaces\n" * 50, "\x7f" * 3000
    now = clock.now()
    with MemcachedStore(url, StoreOptions(clock=clock)) as store:
        store.store_association(hostile, assoc(handle, now))
        assert store.use_nonce(hostile, now, salt)
        store.cache_set("disc overy", cache_key, {"a": [1]}, 60)
        keys = [
            store._key("a", hostile, handle),
            store._key("i", hostile),
            store._nonce_key(hostile, now, salt),
            store._key("c", "disc overy", cache_key),
        ]
    items = raw_get(memcached_servers[0], keys)
    assert sorted(items) == sorted(keys)
    for key, value in items.items():
        assert len(key) <= 250
        assert all(0x21 <= byte <= 0x7E for byte in key), key
        assert key.startswith(store.target.prefix.encode() + b":")
        json.loads(value)  # never pickle: every value is JSON


def test_int_and_float_timestamps_are_the_same_nonce(memcached_servers, clock) -> None:
    url = url_for(memcached_servers[:1], new_prefix())
    with MemcachedStore(url, StoreOptions(clock=clock)) as store:
        now = math.ceil(clock.now())
        assert store.use_nonce(OP, now, "s") is True
        assert store.use_nonce(OP, float(now), "s") is False


def test_keys_spread_over_both_servers(memcached_servers, clock) -> None:
    """Each key lives on exactly one of the two servers, and both servers get keys."""
    url = url_for(memcached_servers, new_prefix())
    with MemcachedStore(url, StoreOptions(clock=clock)) as store:
        now = clock.now()
        keys = []
        for i in range(40):
            assert store.use_nonce(OP, now, f"s{i}")
            keys.append(store._nonce_key(OP, now, f"s{i}"))
    held = [set(raw_get(server, keys)) for server in memcached_servers]
    assert held[0] and held[1] and not held[0] & held[1]
    assert held[0] | held[1] == set(keys)


def test_index_survives_concurrent_writers_on_one_endpoint(memcached_servers) -> None:
    """gets/cas: threads adding handles for the same OP never lose each other's entries."""
    clock = FakeClock()
    url = url_for(memcached_servers, new_prefix())
    stores = [MemcachedStore(url, StoreOptions(clock=clock)) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def writer(n: int, store: MemcachedStore) -> None:
        try:
            barrier.wait(30)
            for i in range(8):
                store.store_association(OP, assoc(f"h{n}-{i}", clock.now() - n - i / 10))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n, s)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    store = stores[0]
    assert store.get_association(OP).handle == "h0-0"
    for n in range(len(stores)):
        for i in range(8):
            assert store.remove_association(OP, f"h{n}-{i}") is True
    # Every handle was indexed: removing them all leaves nothing to find.
    assert store.get_association(OP) is None
    for s in stores:
        s.close()


def test_evicted_association_is_skipped(memcached_servers, clock) -> None:
    """An index entry whose association is gone (evicted) costs nothing but that entry."""
    prefix = new_prefix()
    with MemcachedStore(url_for(memcached_servers[:1], prefix), StoreOptions(clock=clock)) as store:
        store.store_association(OP, assoc("old", clock.now() - 10))
        store.store_association(OP, assoc("new", clock.now()))
        raw = Client(("127.0.0.1", memcached_servers[0].port))
        assert raw.delete(store._key("a", OP, "new"), noreply=False) is True
        raw.close()
        assert store.get_association(OP).handle == "old"


# -- configuration ----------------------------------------------------------------------------


def test_url_forms() -> None:
    target = parse_target("memcached://a.example,10.0.0.6:11311,[::1]:11411?prefix=site1&timeout=2")
    assert target.servers == (("a.example", DEFAULT_PORT), ("10.0.0.6", 11311), ("::1", 11411))
    assert (target.prefix, target.timeout, target.connect_timeout) == ("site1", 2.0, 1.0)
    assert target.display == "memcached://a.example:11211,10.0.0.6:11311,[::1]:11411"
    assert not target.tls and target.tls_context() is None
    extra = {"prefix": "p", "max_pool_size": 4, "tls": True, "connect_timeout": 0.25}
    target = parse_target("memcached://h", extra)
    assert (target.prefix, target.max_pool_size, target.tls) == ("p", 4, True)
    assert target.connect_timeout == 0.25
    assert target.tls_context() is not None
    # The same value in both places is fine.
    assert parse_target("memcached://h?prefix=p", {"prefix": "p"}).prefix == "p"


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("memcached://", {}),
        ("memcached://h:0", {}),
        ("memcached://h:99999", {}),
        ("memcached://h,h", {}),
        ("memcached://h:1,", {}),
        ("memcached://user@h", {}),
        ("memcached://h/db", {}),
        ("memcached://h?prefix=a b", {}),
        ("memcached://h?prefix=" + "p" * 65, {}),
        ("memcached://h?prefix=a%0a", {}),
        ("memcached://h?prefix=a&prefix=b", {}),
        ("memcached://h?prefix=a", {"prefix": "b"}),
        ("memcached://h?timeout=0", {}),
        ("memcached://h?timeout=nan", {}),
        ("memcached://h?timeout=1000", {}),
        ("memcached://h?max_pool_size=0", {}),
        ("memcached://h?max_pool_size=1.5", {}),
        ("memcached://h?tls=maybe", {}),
        ("memcached://h?tls=1&tls_ca_file=/nonexistent/ca.pem", {}),
        ("memcached://h?unknown=1", {}),
    ],
)
def test_bad_configuration_is_a_configuration_error(url: str, extra: dict) -> None:
    with pytest.raises(ConfigurationError):
        MemcachedStore(url, StoreOptions(extra=extra))


# -- registration -----------------------------------------------------------------------------


def test_opened_by_url_through_the_plugin_manager(memcached_servers) -> None:
    store = open_store(make_plugin_manager(), url_for(memcached_servers), StoreOptions())
    with store:
        assert isinstance(store, MemcachedStore)


def test_memcached_is_no_queue() -> None:
    with pytest.raises(UnknownSchemeError) as caught:
        open_queue(make_plugin_manager(), "memcached://127.0.0.1:11211", StoreOptions())
    message = str(caught.value)
    assert "memcached:// provides a store but no queue" in message
    for queue_scheme in ("file", "memory"):  # the queues that exist are named
        assert queue_scheme in message.split("Installed queue schemes:")[1]


def test_unknown_scheme_names_the_distribution() -> None:
    """Without this distribution (blocked here), a memcached:// store says what to install."""
    with pytest.raises(UnknownSchemeError, match="install openid-plugins-memcached"):
        open_store(make_plugin_manager(block=["memcached"]), "memcached://h", StoreOptions())


def test_listed_by_the_plugins_command(capsys) -> None:
    assert cli.main(["-v", "plugins"]) == 0
    out = capsys.readouterr().out
    assert "memcached        openid-plugins-memcached" in out
    assert "memcached" in out.split("Store schemes:")[1].splitlines()[0]
    assert "memcached" not in out.split("Queue schemes:")[1].splitlines()[0]


def test_plugin_manager_does_not_import_pymemcache() -> None:
    code = (
        "import sys; from openid_plugins.manager import make_plugin_manager; "
        "make_plugin_manager(); print('pymemcache' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- faults -----------------------------------------------------------------------------------


def test_dead_server_gives_store_errors_then_recovers(own_server: MemcachedServer, clock) -> None:
    url = f"memcached://{own_server.address}?{FAST}&prefix={new_prefix()}"
    with MemcachedStore(url, StoreOptions(clock=clock)) as store:
        now = clock.now()
        assert store.use_nonce(OP, now, "before") is True
        store.store_association(OP, assoc("h", now))
        own_server.stop()
        for call in (
            lambda: store.use_nonce(OP, now, "during"),  # fail closed: never "not a replay"
            lambda: store.use_nonce(OP, now, "before"),
            lambda: store.nonce_seen(OP, now, "before"),
            lambda: store.get_association(OP),
            lambda: store.get_association(OP, "h"),
            lambda: store.store_association(OP, assoc("h2", now)),
            lambda: store.remove_association(OP, "h"),
            lambda: store.cache_get("ns", "k"),
            lambda: store.cache_set("ns", "k", 1, 60),
            lambda: store.cache_delete("ns", "k"),
        ):
            with pytest.raises(StoreError, match="memcached"):
                call()
        own_server.start()  # same port, empty: a restart
        # The same store object recovers on its own.
        assert store.use_nonce(OP, now, "during") is True
        assert store.get_association(OP) is None  # lost with the restart: costs a new one
        store.store_association(OP, assoc("h3", now))
        assert store.get_association(OP).handle == "h3"


def test_one_of_two_servers_down(own_server: MemcachedServer, clock) -> None:
    """Keys on the dead server fail with StoreError; none moves to the live server (where
    a used nonce would look unused); keys on the live server keep working."""
    other = start_server()
    try:
        url = url_for([own_server, other], new_prefix()) + "&" + FAST
        with MemcachedStore(url, StoreOptions(clock=clock)) as store:
            now = clock.now()
            salts = [f"s{i}" for i in range(30)]
            assert all(store.use_nonce(OP, now, salt) for salt in salts)
            own_server.stop()
            outcomes = []
            for salt in salts:
                try:
                    outcomes.append(store.use_nonce(OP, now, salt))
                except StoreError:
                    outcomes.append("error")
            assert True not in outcomes, "a used nonce was accepted again"
            assert outcomes.count(False) and outcomes.count("error")
            # Asked again, the same keys fail the same way: the ring did not change.
            for salt, outcome in zip(salts, outcomes):
                if outcome == "error":
                    with pytest.raises(StoreError):
                        store.use_nonce(OP, now, salt)
                else:
                    assert store.use_nonce(OP, now, salt) is False
            # New nonces: those that hash to the live server are recorded.
            fresh = []
            for i in range(30):
                try:
                    fresh.append(store.use_nonce(OP, now, f"new{i}"))
                except StoreError:
                    fresh.append("error")
            assert fresh.count(True) and fresh.count("error") and False not in fresh
            own_server.start()
            assert store.use_nonce(OP, now, "after-restart") is True
    finally:
        other.stop()


def test_frozen_server_times_out(own_server: MemcachedServer, clock) -> None:
    """A server that accepts connections but never answers (stopped with SIGSTOP) costs the
    configured timeout and a StoreError, not a hang; it is used again once it answers."""
    url = f"memcached://{own_server.address}?{FAST}&prefix={new_prefix()}"
    with MemcachedStore(url, StoreOptions(clock=clock)) as store:
        assert store.use_nonce(OP, clock.now(), "before") is True
        own_server.freeze()
        try:
            with pytest.raises(StoreError, match="timed out"):
                store.use_nonce(OP, clock.now(), "frozen")
            with pytest.raises(StoreError):
                store.get_association(OP)
        finally:
            own_server.thaw()
        assert store.use_nonce(OP, clock.now(), "after") is True
        assert store.use_nonce(OP, clock.now(), "before") is False


# -- eviction ---------------------------------------------------------------------------------


def test_warns_about_a_server_that_may_evict(own_server, memcached_servers, clock, caplog) -> None:
    caplog.set_level("WARNING", logger="openid_plugins.memcached")
    url = url_for([memcached_servers[0], own_server], new_prefix())  # -M, and memcached's default
    with MemcachedStore(url, StoreOptions(clock=clock)) as store:
        for i in range(3):
            store.use_nonce(OP, clock.now(), f"s{i}")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and own_server.address in warnings[0] and "-M" in warnings[0]


def test_full_server_without_eviction_fails_closed(clock) -> None:
    """With -M a full server refuses to store: the nonce cannot be recorded, so use_nonce
    raises StoreError (never "not a replay"), and recorded nonces stay recorded."""
    server = start_server("-M", "-m", "2")
    try:
        url = f"memcached://{server.address}?prefix={new_prefix()}"
        with MemcachedStore(url, StoreOptions(clock=clock)) as store:
            now = clock.now()
            recorded = 0
            with pytest.raises(StoreError, match="out of memory"):
                for i in range(200_000):
                    assert store.use_nonce(OP, now, f"fill-{i}") is True
                    recorded = i + 1
            assert recorded > 0
            with pytest.raises(StoreError, match="out of memory"):
                store.use_nonce(OP, now, "one more")
            # memcached allocates before it looks for the key: a replay is refused too.
            with pytest.raises(StoreError, match="out of memory"):
                store.use_nonce(OP, now, "fill-0")
            assert store.nonce_seen(OP, now, "fill-0") is True
    finally:
        server.stop()


@pytest.mark.parametrize(
    "garbage", [b"not json", b"\x80\x04\x95pickle", b'{"v": 1}', b"[[1, 2]]", b"null"]
)
def test_foreign_values_are_store_errors(memcached_servers, clock, garbage: bytes) -> None:
    """Whatever else writes under the store's keys (a pickle, a truncated value, another
    application) is refused with StoreError, never unpickled or half-used."""
    url = url_for(memcached_servers[:1], new_prefix())
    with MemcachedStore(url, StoreOptions(clock=clock)) as store:
        keys = {
            "cache": store._key("c", "ns", "k"),
            "association": store._key("a", OP, "h"),
            "index": store._key("i", OP),
        }
        raw = Client(("127.0.0.1", memcached_servers[0].port))
        try:
            for key in keys.values():
                assert raw.set(key, garbage, noreply=False)
        finally:
            raw.close()
        with pytest.raises(StoreError, match="malformed"):
            store.cache_get("ns", "k")
        with pytest.raises(StoreError, match="malformed"):
            store.get_association(OP, "h")
        with pytest.raises(StoreError, match="malformed"):
            store.get_association(OP)
