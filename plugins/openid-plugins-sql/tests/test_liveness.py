"""Connections that die under the store: the server ends a pooled session (as a restart,
a failover or an idle timeout would), and the store's handling of it.

Reads (and idempotent writes) are run again once on a fresh connection; a nonce INSERT is
not, and fails with StoreError; a disconnect replaces every pooled connection; a connection
idle for longer than ``PING_IDLE_AFTER`` is pinged and replaced before it is used. On
SQLite, connections stay checked out between operations and go back on close.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import admin_connection
from openid_plugins_sql import SQLStore
from openid_plugins_sql import engine as engines

from openid_plugins.contracts import StoreOptions
from openid_plugins.errors import StoreError

OP = "https://op.example/server"
SERVERS = pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
_SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}


def session_id(store: SQLStore, dialect: str) -> int:
    """The server session behind the connection the store's next operation will use (the
    pool hands out its connections in turn, and these tests use them one at a time)."""

    def work(cursor: Any) -> int:
        cursor.execute(_SESSION_ID[dialect])
        return cursor.fetchone()[0]

    return store._call("asking for the session id", work)


def kill(url: str, dialect: str, session: int) -> None:
    """End ``session`` on the server and wait until it is gone."""
    with admin_connection(url) as conn:
        if dialect == "postgresql":
            # Waits (up to 10 s) for the session to exit.
            assert conn.scalar(sa.text(f"SELECT pg_terminate_backend({session}, 10000)"))
        else:
            conn.execute(sa.text(f"KILL CONNECTION {session}"))
    if dialect == "mysql":
        alive = f"SELECT COUNT(*) FROM information_schema.processlist WHERE id = {session}"
        for _ in range(200):
            with admin_connection(url) as conn:
                if not conn.scalar(sa.text(alive)):
                    return
        raise AssertionError(f"session {session} still listed after KILL")


@SERVERS
def test_a_dead_connection_costs_one_write_and_no_read(
    url: str, dialect: str, options: StoreOptions
) -> None:
    now = options.clock.now()
    with SQLStore(url, options) as store:
        assert store.use_nonce(OP, now, "first") is True
        kill(url, dialect, session_id(store, dialect))
        assert store.get_association(OP) is None  # run again on a fresh connection

        kill(url, dialect, session_id(store, dialect))
        with pytest.raises(StoreError, match="reconnects"):
            store.use_nonce(OP, now, "lost")
        # The INSERT never reached a live session: not recorded, and the store reconnects.
        assert store.use_nonce(OP, now, "lost") is True
        assert store.use_nonce(OP, now, "first") is False


@SERVERS
def test_a_disconnect_replaces_every_pooled_connection(
    url: str, dialect: str, options: StoreOptions
) -> None:
    now = options.clock.now()
    with SQLStore(url, options) as store:
        store.use_nonce(OP, now, "schema")
        hot, sessions = store._hot, []
        held = [hot.checkout(), hot.checkout()]  # two connections in the pool
        for connection in held:
            cursor = engines.cursor(connection)
            cursor.execute(_SESSION_ID[dialect])
            sessions.append(cursor.fetchone()[0])
        for connection in held:
            hot.checkin(connection)
        for session in sessions:
            kill(url, dialect, session)

        with pytest.raises(StoreError):
            store.use_nonce(OP, now, "meets the first dead one")
        # The second dead connection, still pooled, was made before the loss: replaced.
        assert store.use_nonce(OP, now, "on a new connection") is True


@SERVERS
def test_an_idle_connection_is_pinged_and_replaced_before_use(
    url: str, dialect: str, options: StoreOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = options.clock.now()
    with SQLStore(url, options) as store:
        assert store.use_nonce(OP, now, "first") is True
        kill(url, dialect, session_id(store, dialect))
        monkeypatch.setattr(engines, "PING_IDLE_AFTER", 0.0)  # every connection is idle
        assert store.use_nonce(OP, now, "second") is True  # no error: pinged, replaced


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_sqlite_keeps_a_few_connections_between_operations(url: str, options: StoreOptions) -> None:
    store = SQLStore(url, options)
    now = options.clock.now()
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait(30)
        for i in range(20):
            assert store.use_nonce(OP, now, f"{n}-{i}") is True

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    engine = store._ready()
    kept = engine.pool.checkedout()
    assert 1 <= kept <= engines.IDLE_SQLITE_CONNECTIONS
    assert store.use_nonce(OP, now, "0-0") is False
    store.close()  # the last user: every connection goes back before the pool closes
    assert engine.pool.checkedout() == 0
