"""The restart guard: a memcached server that restarted (or was flushed) has lost its used
nonces, so a nonce stamped before the store found it empty again must not pass as unused.

These tests stamp with the wall clock, as an OP does, and wait for the next whole second after
a marker is written (nonces are stamped in whole seconds).
"""

from __future__ import annotations

import math
import time

import pytest
from conftest import MemcachedServer, new_prefix, start_server, url_for
from openid_plugins_memcached import MemcachedStore
from pymemcache.client.base import Client

from openid_plugins.cli import main
from openid_plugins.contracts import Association, StoreOptions
from openid_plugins.errors import StoreError

OP = "https://op.example/server"
#: Enough attempts to get past the connections the restart broke (one per pooled connection).
ATTEMPTS = 4


def marked(store: MemcachedStore) -> int:
    """Let ``store`` write or read its markers (keys on every server); then a whole second
    stamped after them."""
    for i in range(20):
        store.cache_get("test", f"marker{i}")
    time.sleep(1.01 - time.time() % 1)
    return math.floor(time.time())


def outcomes(store: MemcachedStore, stamp: float, salt: str) -> list[object]:
    """``use_nonce`` asked ATTEMPTS times: each result, or the StoreError's message."""
    seen: list[object] = []
    for _ in range(ATTEMPTS):
        try:
            seen.append(store.use_nonce(OP, stamp, salt))
        except StoreError as exc:
            seen.append(str(exc))
    return seen


@pytest.mark.parametrize("guard", [True, False], ids=["guard-on", "guard-off"])
def test_used_nonce_after_a_restart(own_server: MemcachedServer, guard: bool) -> None:
    url = f"memcached://{own_server.address}?prefix={new_prefix()}&restart_guard={guard}"
    with MemcachedStore(url, StoreOptions()) as store:
        stamp = marked(store)
        assert store.use_nonce(OP, stamp, "used") is True
        own_server.stop()
        own_server.start()
        seen = outcomes(store, stamp, "used")
        if guard:
            assert True not in seen, "a used nonce passed as unused after the restart"
            assert "sign in again" in seen[-1]
            # Answers issued after the store found the server empty are fine.
            assert store.use_nonce(OP, marked(store), "new") is True
        else:
            # What the guard is for: the restarted server calls the used nonce unused.
            assert True in seen


def test_flushed_server_is_noticed_by_a_new_process(memcached_servers) -> None:
    url = url_for(memcached_servers[:1], new_prefix())
    with MemcachedStore(url, StoreOptions()) as store:
        stamp = marked(store)
        assert store.use_nonce(OP, stamp, "used") is True
    flusher = Client(("127.0.0.1", memcached_servers[0].port))
    try:
        flusher.flush_all(noreply=False)
    finally:
        flusher.close()
    # A process started after the flush finds no marker, writes one, and refuses the nonce.
    with MemcachedStore(url, StoreOptions()) as later, pytest.raises(StoreError, match="again"):
        later.use_nonce(OP, stamp, "used")


def test_one_of_two_servers_restarted(own_server: MemcachedServer) -> None:
    """Each server has its own marker: the restarted one refuses its old nonces, the other
    still knows its own as used."""
    other = start_server()
    try:
        url = url_for([own_server, other], new_prefix())
        with MemcachedStore(url, StoreOptions()) as store:
            stamp = marked(store)
            salts = [f"s{i}" for i in range(30)]
            assert all(store.use_nonce(OP, stamp, salt) for salt in salts)
            own_server.stop()
            own_server.start()
            finals = [outcomes(store, stamp, salt)[-1] for salt in salts]
            assert True not in finals
            assert False in finals  # on the server that kept running
            assert any(isinstance(f, str) and "sign in again" in f for f in finals)
    finally:
        other.stop()


def test_malformed_marker_is_a_store_error(memcached_servers) -> None:
    prefix = new_prefix()
    url = url_for(memcached_servers[:1], prefix)
    raw = Client(("127.0.0.1", memcached_servers[0].port))
    try:
        raw.set(f"{prefix}:epoch:0".encode(), b"not json", noreply=False)
    finally:
        raw.close()
    with MemcachedStore(url, StoreOptions()) as store, pytest.raises(StoreError, match="marker"):
        store.use_nonce(OP, time.time(), "s")


def marker_of(server: MemcachedServer, prefix: str) -> bytes | None:
    raw = Client(("127.0.0.1", server.port))
    try:
        return raw.get(f"{prefix}:epoch:0".encode())
    finally:
        raw.close()


def test_maintenance_store_writes_no_marker(
    memcached_servers, caplog: pytest.LogCaptureFixture
) -> None:
    """StoreOptions.create false (cleanup, associate): the marker, the one key kept without
    an expiry, is not written (a mistyped prefix would keep it forever), a warning says why
    it is missing, associations work, and a nonce is refused (no marker: nothing known)."""
    prefix = new_prefix()
    url = url_for(memcached_servers[:1], prefix)
    maintenance = StoreOptions(create=False)
    assoc = Association("h", b"s" * 20, time.time(), 600, "HMAC-SHA1")
    with MemcachedStore(url, maintenance) as store:
        store.store_association(OP, assoc)
        assert store.get_association(OP) == assoc
        with pytest.raises(StoreError, match="sign in again"):
            store.use_nonce(OP, time.time(), "s")
    assert marker_of(memcached_servers[0], prefix) is None
    warnings = [r.getMessage() for r in caplog.records if "no restart marker" in r.getMessage()]
    assert len(warnings) == 1 and repr(prefix) in warnings[0]

    with MemcachedStore(url, StoreOptions()) as site:
        stamp = marked(site)  # the site's store writes it
    assert marker_of(memcached_servers[0], prefix) is not None
    with MemcachedStore(url, maintenance) as store:
        assert store.use_nonce(OP, stamp, "after") is True


def test_cleanup_command_touches_nothing(memcached_servers) -> None:
    prefix = new_prefix()
    assert main(["cleanup", "--quiet", "--store", url_for(memcached_servers[:1], prefix)]) == 0
    assert marker_of(memcached_servers[0], prefix) is None
