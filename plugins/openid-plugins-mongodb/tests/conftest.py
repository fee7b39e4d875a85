"""Fixtures: MongoDB wire-protocol servers (SecantusDB, from this distribution's ``test``
extra) started on free loopback ports for the session and stopped by pid at its end, and a
fresh database per test.

Two servers: one advertising itself as a single-node replica set (change streams, retryable
writes: the code paths of a production replica set) and one standalone (the polling
fallback). ``OPENID_PLUGINS_TEST_MONGODB_URL`` points every test at another server instead
(e.g. a real ``mongod`` replica set). A server that cannot be started skips the tests,
except under CI=true, where it fails them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymongo
import pytest

from openid_plugins.contracts import StoreOptions
from openid_plugins.testing.clock import FakeClock

pytest_plugins = ["openid_plugins.testing.contract"]

IN_CI = os.environ.get("CI", "").lower() == "true"
EXTERNAL_URL = os.environ.get("OPENID_PLUGINS_TEST_MONGODB_URL")
#: How long a starting server may take to answer (it is ready in well under a second).
START_PATIENCE = 30.0


def unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires the MongoDB test server", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _executable() -> str | None:
    beside = Path(sys.executable).with_name("secantusd-py")
    return str(beside) if beside.exists() else shutil.which("secantusd-py")


class Server:
    """A ``secantusd-py`` process on 127.0.0.1; ``stop`` and ``start`` again on the same port
    (with a storage directory, its data survives the restart)."""

    def __init__(self, *, standalone: bool, storage: str = ":memory:", log: Path) -> None:
        self.port = free_port()
        self.standalone = standalone
        self.storage = storage
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> Server:
        executable = _executable()
        if executable is None:
            unavailable("secantusd-py is not installed (pip install -e '.[test]')")
        args = [executable, "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--storage-path", self.storage, "--log-level", "WARNING"]
        # mongod's test-only commands (configureFailPoint), for the unknown-outcome tests;
        # this server listens on loopback for this test session only.
        args.append("--enable-test-commands")
        if self.standalone:
            args.append("--standalone")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_PATIENCE
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                unavailable(f"the MongoDB test server did not start; see {self.log}")
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        client = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=200, directConnection=True)
        try:
            client.admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Stop by pid: SIGTERM, then SIGKILL if it lingers."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mongodb-logs")


def _session_server(standalone: bool, logs: Path) -> Iterator[str]:
    if EXTERNAL_URL:
        yield EXTERNAL_URL.rstrip("/")
        return
    name = "standalone" if standalone else "replset"
    server = Server(standalone=standalone, log=logs / f"{name}.log").start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def replset_server(server_logs: Path) -> Iterator[str]:
    """Base URL of the server that offers change streams (a one-node replica set)."""
    yield from _session_server(False, server_logs)


@pytest.fixture(scope="session")
def standalone_server(server_logs: Path) -> Iterator[str]:
    """Base URL of the standalone server (no change streams: the queue polls)."""
    yield from _session_server(True, server_logs)


@pytest.fixture(params=["replset", "standalone"])
def server(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_server")


def drop_database(base: str, name: str) -> None:
    client = pymongo.MongoClient(base, serverSelectionTimeoutMS=3000)
    try:
        client.drop_database(name)
    finally:
        client.close()


def _fresh_database(base: str) -> Iterator[str]:
    name = f"t{secrets.token_hex(4)}"
    yield f"{base}/{name}"
    drop_database(base, name)


@pytest.fixture
def db_url(server: str) -> Iterator[str]:
    """A URL naming a database of its own (dropped afterwards), on each server."""
    yield from _fresh_database(server)


@pytest.fixture
def replset_db_url(replset_server: str) -> Iterator[str]:
    """A URL naming a database of its own on the replica-set server only."""
    yield from _fresh_database(replset_server)


@contextmanager
def fail_point(base: str, times: int, **data: Any) -> Iterator[None]:
    """mongod's ``failCommand`` fail point, on for the next ``times`` matching commands."""
    client = pymongo.MongoClient(base, serverSelectionTimeoutMS=3000)
    command = {"configureFailPoint": "failCommand", "mode": {"times": times}, "data": data}
    try:
        client.admin.command(command)
    except pymongo.errors.OperationFailure as exc:
        client.close()
        pytest.skip(f"{base} has no test commands (configureFailPoint): {exc}")
    try:
        yield
    finally:
        client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def options(clock: FakeClock) -> StoreOptions:
    return StoreOptions(clock=clock, nonce_skew=300.0)
