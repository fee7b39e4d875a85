"""Real memcached servers on free loopback ports, started by the tests and stopped after.

Debian's ``memcached`` package (``bash scripts/start-memcached`` installs it) is run in the
foreground as a child process: no pid file, no daemon left behind. Two servers are shared by
the session; tests that kill a server get their own. When memcached cannot be started the
tests are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openid_plugins.testing.clock import FakeClock

pytest_plugins = ["openid_plugins.testing.contract"]

IN_CI = os.environ.get("CI", "").lower() == "true"
#: Bound on a server's start (it takes milliseconds; a broken one fails the test, no hang).
START_PATIENCE = 15.0


def _memcached_binary() -> str | None:
    return shutil.which("memcached") or next(
        (p for p in ("/usr/bin/memcached", "/usr/sbin/memcached") if Path(p).exists()), None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires memcached", pytrace=False)
    pytest.skip(f"{message} (run: bash scripts/start-memcached)")


class MemcachedServer:
    """One ``memcached`` process on 127.0.0.1; ``stop`` and ``start`` again keep the port."""

    def __init__(self, binary: str, *options: str) -> None:
        self.binary = binary
        self.options = options
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        # -U 0: no UDP listener; -m 64: 64 MB; memcached refuses to run as root without -u.
        command = [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        command += self.options
        if os.geteuid() == 0:
            command[1:1] = ["-u", "memcache"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + START_PATIENCE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"memcached exited ({self.process.returncode}): {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"memcached did not listen on port {self.port}")

    def freeze(self) -> None:
        """Stop the server with SIGSTOP (it keeps accepting connections, the kernel does, but
        never answers) and wait until every one of its threads is stopped: the signal is
        delivered asynchronously, and a thread still running could answer one more command."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + START_PATIENCE
        while time.monotonic() < deadline:
            # /proc/PID/task/TID/stat: "tid (comm) STATE ..."; T: stopped by a signal.
            stats = [(task / "stat").read_text() for task in tasks.iterdir()]
            if all(stat.rsplit(")", 1)[1].split()[0] in ("T", "t") for stat in stats):
                return
            time.sleep(0.01)
        raise RuntimeError("memcached did not stop on SIGSTOP")

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill the server (SIGKILL: a crash, not a clean shutdown) and wait for it."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=START_PATIENCE)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None


def start_server(*options: str) -> MemcachedServer:
    """A running server on a free port, with more command-line ``options`` (later ones win:
    ``-m 2`` after the default ``-m 64``); skip (or fail under CI=true) when impossible."""
    binary = _memcached_binary()
    if binary is None:
        _unavailable("memcached is not installed")
    last: Exception | None = None
    for _ in range(3):  # a free port can be taken between the probe and memcached's bind
        server = MemcachedServer(binary, *options)
        try:
            server.start()
            return server
        except RuntimeError as exc:
            last = exc
    _unavailable(f"memcached could not be started: {last}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def memcached_servers() -> Iterator[list[MemcachedServer]]:
    """Two servers shared by the session (one-server tests use the first), configured as
    the README recommends for nonces: ``-M``, eviction off."""
    servers: list[MemcachedServer] = []
    try:
        servers.extend(start_server("-M") for _ in range(2))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def own_server() -> Iterator[MemcachedServer]:
    """A server for one test that may kill and restart it (memcached's defaults: it evicts)."""
    server = start_server()
    yield server
    server.stop()


def new_prefix() -> str:
    """A key prefix no other test uses: each test starts with an empty store."""
    return f"t{secrets.token_hex(6)}"


def url_for(servers: list[MemcachedServer], prefix: str | None = None) -> str:
    query = f"?prefix={prefix}" if prefix else ""
    return f"memcached://{','.join(s.address for s in servers)}{query}"


@pytest.fixture(params=[1, 2], ids=["one-server", "two-servers"])
def servers(
    request: pytest.FixtureRequest, memcached_servers: list[MemcachedServer]
) -> list[MemcachedServer]:
    return memcached_servers[: request.param]


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves. Nonces stamped with its ``now()`` pass the restart guard: a
    store writes its marker with its own clock, at its first operation on a server."""
    return FakeClock()
