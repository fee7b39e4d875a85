"""``openid-plugins demo``: the README's main-job command, run as a user runs it."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from openid_plugins import cli

#: Bound on every wait for the demo process (it normally finishes in about a second).
PATIENCE = 60.0


@pytest.fixture
def demo_env(tmp_path):
    """A clean environment: own HOME and TMPDIR, no OPENID_PLUGINS_* settings."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENID_PLUGINS_")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    return env


def run_demo(env, cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "openid_plugins", "demo", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )


def test_demo_runs_the_mission(demo_env, tmp_path):
    done = run_demo(demo_env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # No logging noise: only the warning that the demo turned the SSRF guard off.
    logged = done.stderr.splitlines()
    assert len(logged) == 1 and "SSRF guard is off" in logged[0], done.stderr

    step1 = out[out.index("Step 1.") : out.index("Step 2.")]
    assert "queued (1 waiting)" in step1
    assert "verified by check_authentication" in step1
    assert "associate 0, checkid_setup 1, check_authentication 1" in step1

    step2 = out[out.index("Step 2.") : out.index("Step 3.")]
    assert re.search(r"made 1 association \(HMAC-SHA256, Diffie-Hellman\) +[\d.]+ ms", step2)
    assert "associate 1, checkid_setup 1, check_authentication 1" in step2

    step3 = out[out.index("Step 3.") : out.index("Step 4.")]
    assert "(association)" in step3
    assert "associate 1, checkid_setup 2, check_authentication 1" in step3

    step4 = out[out.index("Step 4.") : out.index("Summary")]
    assert re.search(r"SREG email +alice@example.com", step4)
    assert "AX   http://axschema.org/contact/email  alice@example.com" in step4
    assert out.rstrip().endswith("OK")

    # Every login timing is printed; the temporary data directory is gone; HOME untouched.
    assert len(re.findall(r"total +[\d.]+ ms", out)) == 2
    data_dir = re.search(r"data directory +(\S+) \(removed at the end\)", out).group(1)
    assert data_dir.startswith(demo_env["TMPDIR"])
    assert not os.path.exists(data_dir)
    assert list((tmp_path / "home").iterdir()) == []


def test_demo_failure_is_a_clear_message_and_status_1(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("OPENID_PLUGINS_BLOCK", "file_store")
    assert cli.main(["demo", "--data-dir", str(tmp_path / "data")]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("\nFAILED: no installed plugin makes a store for file://")
    assert "Step 1." not in captured.out


def test_demo_site_port_in_use(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status = cli.main(["demo", "--data-dir", str(tmp_path), "--port", str(port)])
    assert status == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def _lines(stream, sink: queue.Queue) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def _wait_for(sink: queue.Queue, pattern: str, seen: list[str]) -> re.Match:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            line = sink.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"{pattern!r} never appeared in the output:\n{''.join(seen)}")


def test_serve_until_sigint(demo_env, tmp_path):
    data_dir = tmp_path / "kept"
    process = subprocess.Popen(
        [sys.executable, "-m", "openid_plugins", "demo", "--serve", "--data-dir", str(data_dir)],
        env=demo_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sink: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, sink), daemon=True).start()
    seen: list[str] = []
    try:
        match = _wait_for(sink, r"Open (http://\S+/) in a browser and sign in as (\S+)", seen)
        site, identifier = match.groups()
        form = requests.get(site, timeout=PATIENCE)
        assert form.status_code == 200 and identifier in form.text
        # A person's login through the site: redirects to the OP and back are followed.
        page = requests.get(
            site + "login", params={"openid_identifier": identifier}, timeout=PATIENCE
        )
        assert page.status_code == 200
        assert "Signed in" in page.text and identifier in page.text
        assert "alice@example.com" in page.text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=PATIENCE) == 0
        _wait_for(sink, r"^Stopped\.$", seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=PATIENCE)
    assert "Traceback" not in "".join(seen)
    assert (data_dir / "store").is_dir() and (data_dir / "queue").is_dir()
