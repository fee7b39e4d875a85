"""Every database call is bounded: a frozen server gives StoreError/QueueError after the
configured timeout, not a login held for as long as the server stays frozen.

The servers are shared, so nothing here stops them: a TCP proxy written for these tests
sits between the store and the server and stops relaying, which looks to the client exactly
like a frozen server process (its kernel still accepts and acknowledges). No timings are
asserted; pytest-timeout (and the suite's 120 s default) is what an unbounded call would hit.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from conftest import drop_tables, new_prefix, server_url, with_prefix
from openid_plugins_sql import SQLQueue, SQLStore
from openid_plugins_sql.target import parse_target
from sqlalchemy.engine import make_url

from openid_plugins.contracts import StoreOptions
from openid_plugins.errors import ConfigurationError, QueueError, StoreError
from openid_plugins.testing.clock import FakeClock

OP = "https://op.example/server"
SERVERS = pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
#: A frozen server meets these after about 2 s (statement timeout plus a grace second).
FAST = {"statement_timeout": 1, "connect_timeout": 2}


class FreezableProxy:
    """A TCP relay on 127.0.0.1 to ``upstream``; ``freeze()`` stops moving bytes in both
    directions while every connection stays open."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.relaying = threading.Event()
        self.relaying.set()
        self.stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def freeze(self) -> None:
        self.relaying.clear()

    def thaw(self) -> None:
        self.relaying.set()

    def close(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(5)
        for sock in [self.listener, *self._sockets]:
            sock.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self.upstream, timeout=5)
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        while not self.stopping.is_set():
            if not self.relaying.wait(0.1):
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                dst.close()
                return
            while not self.relaying.wait(0.1):  # frozen while this chunk was in flight
                if self.stopping.is_set():
                    return
            try:
                dst.sendall(data)
            except OSError:
                return


@pytest.fixture
def proxied(dialect: str) -> Iterator[tuple[FreezableProxy, str, str]]:
    """(proxy, the server URL through the proxy with a fresh table prefix, the real URL)."""
    base = server_url(dialect)
    real = make_url(parse_target(base).url.render_as_string(hide_password=False))
    proxy = FreezableProxy((real.host or "127.0.0.1", real.port or 0))
    through = base.replace(f"{real.host}:{real.port}", f"127.0.0.1:{proxy.port}", 1)
    assert through != base
    prefix = new_prefix()
    try:
        yield proxy, with_prefix(through, prefix), base
    finally:
        proxy.close()
        drop_tables(base, prefix)


@SERVERS
def test_a_frozen_server_fails_the_store_call_with_store_error(proxied) -> None:
    proxy, url, _ = proxied
    clock = FakeClock()
    with SQLStore(url, StoreOptions(clock=clock, extra=FAST)) as store:
        assert store.use_nonce(OP, clock.now(), "before") is True
        proxy.freeze()
        with pytest.raises(StoreError, match="failed"):
            store.use_nonce(OP, clock.now(), "frozen")
        with pytest.raises(StoreError):
            store.get_association(OP)
        proxy.thaw()
        # The timed-out connections were dropped; the next calls reconnect.
        assert store.get_association(OP) is None
        assert store.use_nonce(OP, clock.now(), "after") is True


@SERVERS
def test_a_frozen_server_fails_the_queue_call_with_queue_error(proxied) -> None:
    proxy, url, _ = proxied
    timeouts = "&".join(f"{k}={v}" for k, v in FAST.items())  # given in the URL this time
    with SQLQueue(f"{url}&{timeouts}", StoreOptions(clock=FakeClock())) as queue:
        queue.put(OP)
        proxy.freeze()
        with pytest.raises(QueueError):
            queue.claim()


@SERVERS
def test_a_server_that_never_greets_fails_opening_the_store(proxied) -> None:
    """A listener that accepts and then sends nothing: PyMySQL waited 120 s for the
    greeting, as its connect_timeout ends once TCP is up."""
    proxy, url, _ = proxied
    proxy.freeze()
    clock = FakeClock()
    store = SQLStore(url, StoreOptions(clock=clock, extra=FAST))
    with store, pytest.raises(StoreError):
        store.use_nonce(OP, clock.now(), "x")


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "100000"])
def test_timeouts_must_be_sensible_numbers(value: str) -> None:
    for name in ("statement_timeout", "connect_timeout"):
        with pytest.raises(ConfigurationError, match=name):
            parse_target(f"postgresql://u@h/db?{name}={value}")


def test_timeouts_come_from_the_url_or_the_options_and_leave_the_url() -> None:
    target = parse_target("mysql://u@h/db?statement_timeout=2.5", {"connect_timeout": "3"})
    assert (target.statement_timeout, target.connect_timeout) == (2.5, 3.0)
    assert "timeout" not in str(target.url)
    default = parse_target("postgresql://u@h/db")
    assert 0 < default.statement_timeout <= 10 and 0 < default.connect_timeout <= 10
    with pytest.raises(ConfigurationError, match="one place"):
        parse_target("postgresql://u@h/db?statement_timeout=2", {"statement_timeout": 3})
