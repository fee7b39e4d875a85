"""PostgreSQL stops and starts during a run: the operation in flight fails with StoreError,
operations while it is down fail the same way, and the first ones after it is back succeed
on fresh connections, with nothing half-written.

Needs the local cluster (``pg_ctlcluster``); deselect with ``-m "not restart"``.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import IN_CI
from openid_plugins_sql import SQLQueue, SQLStore
from openid_plugins_sql import engine as engines
from openid_plugins_sql.target import parse_target

from openid_plugins.contracts import StoreOptions
from openid_plugins.errors import QueueError, StoreError

pytestmark = pytest.mark.restart

OP = "https://op.example/server"
PATIENCE = 60.0


def _cluster() -> list[str] | None:
    """``[version, "main"]`` of the local cluster, when this machine runs one."""
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if (p / "main").is_dir())
    return [versions[-1], "main"] if versions and shutil.which("pg_ctlcluster") else None


def _pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *_cluster(), action],
        check=True,
        capture_output=True,
        timeout=PATIENCE,
    )


def _accepting(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _wait_until(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)


@pytest.fixture
def restartable(dialect: str, url: str) -> Iterator[str]:
    """The psycopg conninfo of the local server; it is running again after the test."""
    host = urlsplit(url).hostname
    if _cluster() is None or host not in ("127.0.0.1", "localhost"):
        message = f"no local PostgreSQL cluster to restart for {url}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    conninfo = parse_target(url).url.set(drivername="postgresql").render_as_string(False)
    try:
        yield conninfo
    finally:
        if not _accepting(conninfo):
            _pg_ctl("start")
            _wait_until(lambda: _accepting(conninfo), "PostgreSQL accepting connections")


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_a_restart_costs_only_the_operations_in_flight(
    restartable: str,
    url: str,
    prefix: str,
    options: StoreOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Connected before the stores: a stopping server ends its newest sessions first, so the
    # insert that waits for this session's lock is ended while still waiting (a one-statement
    # insert let through first would simply commit before the server went down).
    locker = psycopg.connect(restartable)
    store, queue = SQLStore(url, options), SQLQueue(url, options)
    # Its own engine (another URL), idle during the restart: nothing tells its pool that
    # the pooled connection died, until pre-ping does.
    idle = SQLStore(url + "&application_name=idle", options)
    now = options.clock.now()
    assert store.use_nonce(OP, now, "before") is True
    assert idle.use_nonce(OP, now, "idle") is True
    queue.put(OP)
    assert queue.wait(0) is True  # the LISTEN connection is open too

    # Hold a lock the next insert must wait for, so that it is inside the server when the
    # server goes down.
    locker.execute(f"LOCK TABLE {prefix}nonces IN ACCESS EXCLUSIVE MODE")
    outcome: list[BaseException | bool] = []

    def in_flight() -> None:
        try:
            outcome.append(store.use_nonce(OP, now, "in-flight"))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=in_flight)
    thread.start()
    waiting = (
        f"SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{prefix}nonces'::regclass"
    )
    _wait_until(lambda: locker.execute(waiting).fetchone()[0] > 0, "the insert to block")

    _pg_ctl("stop")
    thread.join(PATIENCE)
    locker.close()
    [failure] = outcome
    assert isinstance(failure, StoreError), failure
    assert "reconnects" in str(failure)

    with pytest.raises(StoreError, match="reachable"):
        store.get_association(OP)  # down: refused at connect
    with pytest.raises(QueueError, match="reachable"):
        queue.put(OP + "/2")

    _pg_ctl("start")
    _wait_until(lambda: _accepting(restartable), "PostgreSQL accepting connections")

    # Pooled connections died with the server. The idle store's connection is pinged at
    # checkout and replaced (it counts as idle whatever time the restart took); the others
    # were replaced when the in-flight failure invalidated their pool.
    monkeypatch.setattr(engines, "PING_IDLE_AFTER", 0.0)
    assert idle.use_nonce(OP, now, "idle") is False
    assert store.use_nonce(OP, now, "before") is False  # committed before: still there
    assert store.use_nonce(OP, now, "in-flight") is True  # never committed: not half-there
    assert queue.pending() == 1
    assert [item.server_url for item in queue.claim()] == [OP]
    assert queue.wait(0) is False  # finds its LISTEN connection dead, and replaces it
    assert queue._listener is not None and not queue._listener.closed
    with SQLQueue(url, options) as producer:
        timer = threading.Timer(0.1, producer.put, args=(OP + "/2",))
        timer.start()
        assert queue.wait(PATIENCE) is True
        timer.join()
    for backend in (store, queue, idle):
        backend.close()
