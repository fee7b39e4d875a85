"""The ``openid-plugins`` command as people meet it: options anywhere, progress on a terminal
and on a pipe, error messages, and maintenance commands that create nothing."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from openid_plugins import __version__
from openid_plugins.config import Settings
from openid_plugins.relying_party import RelyingParty

CLI = [sys.executable, "-m", "openid_plugins"]
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ openid_plugins\.\S+ [A-Z]+ ")
PROGRESS = re.compile(r"(\d+)/(\d+) endpoints: ")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "argv", [["plugins", "-v"], ["-v", "plugins"], ["plugins", "--verbose"]]
)
def test_verbose_before_or_after_the_subcommand(argv):
    result = run(*argv)
    assert result.returncode == 0, result.stderr
    assert "openid_backends" in result.stdout  # the hooks, shown in verbose mode only


def test_quiet_and_log_level_after_the_subcommand():
    assert "openid_backends" not in run("plugins", "-q").stdout
    result = run("plugins", "--log-level", "DEBUG")
    assert result.returncode == 0, result.stderr


def test_verbose_and_quiet_together_is_a_usage_error():
    result = run("-v", "plugins", "-q")
    assert result.returncode == 2
    assert "choose one" in result.stderr


def test_version():
    result = run("--version")
    assert result.stdout.strip() == f"openid-plugins {__version__}"


@pytest.fixture
def queued(op, tmp_path):
    """A file store and queue with 12 endpoints of the test OP and 3 dead ones queued, and
    the environment a site's cron job would have."""
    store_url = (tmp_path / "store").as_uri()
    queue_url = (tmp_path / "queue").as_uri()
    dead = [f"http://127.0.0.1:{closed_port()}/op{n}" for n in range(3)]
    endpoints = [op.endpoint(f"op{n}") for n in range(12)] + dead
    with RelyingParty(settings=Settings(store=store_url, queue=queue_url)) as rp:
        for url in endpoints:
            rp.queue.put(url)
    env = dict(
        os.environ,
        OPENID_PLUGINS_STORE=store_url,
        OPENID_PLUGINS_QUEUE=queue_url,
        OPENID_PLUGINS_FETCH_BLOCK_PRIVATE_ADDRESSES="false",
    )
    return env, endpoints, dead


def test_progress_on_a_terminal_counts_to_the_queue_total_and_logs_on_their_own_lines(
    queued,
):
    env, endpoints, dead = queued
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [*CLI, "associate", "--once", "-v", "--concurrency", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    out, _ = proc.communicate(timeout=120)
    terminal = b"".join(chunks).decode()
    assert proc.returncode == 1, terminal  # the dead endpoints failed

    progress = [(int(d), int(t)) for d, t in PROGRESS.findall(terminal)]
    assert progress, terminal
    assert {total for _, total in progress} == {len(endpoints)}
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert progress[-1] == (len(endpoints), len(endpoints))
    # Every line as the terminal shows it (after carriage returns and erase-line): a log
    # record starts at the beginning of a line and no progress text shares its line.
    for raw_line in terminal.replace("\r\n", "\n").split("\n"):
        shown = raw_line.replace("\x1b[K", "").split("\r")
        for piece in shown:
            if LOG_LINE.search(piece):
                assert LOG_LINE.match(piece), repr(raw_line)
                assert not PROGRESS.search(piece), repr(raw_line)
    # The progress line is erased before the summary: the last thing shown is blank.
    assert terminal.replace("\x1b[K", "").rstrip(" ").endswith("\r")
    assert "claimed 15, made 12" in out
    assert sum(f"could not associate with {url}" in terminal for url in dead) == 3


def test_on_a_pipe_only_the_summary_and_the_errors(queued):
    env, endpoints, dead = queued
    result = run("associate", "--once", env=env)
    assert result.returncode == 1
    assert "\r" not in result.stderr and "endpoints:" not in result.stderr
    assert result.stdout.startswith("claimed 15, made 12, skipped 0, refused 0, failed 3")
    # A connection failure: the URL once and the cause in a few words, no urllib3 internals.
    # The one other line: the warning that the SSRF guard is off (the test OPs are local).
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "SSRF guard is off" not in line]
    assert len(lines) - len(errors) == 1
    assert len(errors) == 3
    for url in dead:
        (line,) = [line for line in errors if url in line]
        assert line.count(url.split("//")[1]) == 1, line
        expected = f"could not associate with {url}: connection refused; retrying in 30 s"
        assert line.endswith(expected), line
    assert "Pool" not in result.stderr and "retries" not in result.stderr


def test_quiet_associate_prints_only_errors(queued):
    env, _, dead = queued
    result = run("associate", "--once", "--quiet", env=env)
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == len(dead)


def test_associate_refuses_a_process_local_store(tmp_path):
    result = run("associate", "--once", "--store", "memory://", "--queue", tmp_path.as_uri())
    assert result.returncode == 1
    assert "memory:// store lives inside one process" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_associate_refuses_a_process_local_queue(tmp_path):
    store = tmp_path / "store"
    with RelyingParty(store=store.as_uri(), queue="memory://"):
        pass  # the store exists: the queue is what gets refused
    result = run("associate", "--once", "--store", store.as_uri(), "--queue", "memory://")
    assert result.returncode == 1
    assert "memory:// queue lives inside one process" in result.stderr


@pytest.mark.parametrize("command", [["cleanup"], ["associate", "--once"]])
def test_maintenance_on_a_mistyped_file_url_creates_nothing(tmp_path, command):
    typo = tmp_path / "no" / "such" / "store"
    env = dict(os.environ, OPENID_PLUGINS_QUEUE=(tmp_path / "queue").as_uri())
    result = run(*command, "--store", typo.as_uri(), env=env)
    assert result.returncode == 1
    expected = f"openid-plugins: there is no openid-plugins file store at {typo}"
    assert result.stderr.startswith(expected)
    assert list(tmp_path.iterdir()) == []


def test_cleanup_of_an_existing_store(tmp_path):
    url = (tmp_path / "store").as_uri()
    with RelyingParty(store=url, queue="memory://"):
        pass
    result = run("cleanup", "--store", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "removed 0 expired entries\n"
