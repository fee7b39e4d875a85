"""The MongoDB server stops during a run of logins and comes back.

A site's process (one ``RelyingParty``) logs users in through python3-openid's OP in a
thread while the test stops the server and starts it again on the same port with the same
data. While it is down every login fails with ``StoreError`` after at most the server
selection timeout (no hang); once it is back, logins succeed again in the same process
(pymongo reconnects by itself); and no response is ever accepted twice: every accepted one,
replayed afterwards with its session, is refused as a replay.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from conftest import Server

from openid_plugins import RelyingParty
from openid_plugins.errors import OpenIDError, ReplayAttackError, StoreError
from openid_plugins.testing.python3_openid_op import Python3OP

RETURN_TO = "https://rp.example/finish"
REALM = "https://rp.example/"
PATIENCE = 60.0


@dataclass
class Outcomes:
    """What the login thread saw, in order."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (OP's response URL, the session as begin() left it) of every accepted login.
    accepted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Responses the OP gave whose complete() failed: tried again after the restart.
    unfinished: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def count(self, kind: str) -> int:
        with self.lock:
            return len(getattr(self, kind))


def login(rp: RelyingParty, http: requests.Session, identity: str, outcomes: Outcomes) -> None:
    session: dict[str, Any] = {}
    try:
        auth = rp.begin(identity, RETURN_TO, REALM, session=session)
    except OpenIDError as exc:
        with outcomes.lock:
            outcomes.errors.append(exc)
        return
    back = http.get(auth.redirect_url, allow_redirects=False, timeout=PATIENCE)
    response = back.headers["Location"]
    begun = copy.deepcopy(session)
    try:
        rp.complete(query_of(response), response, session=session)
    except OpenIDError as exc:
        with outcomes.lock:
            outcomes.errors.append(exc)
            outcomes.unfinished.append((response, begun))
        return
    with outcomes.lock:
        outcomes.accepted.append((response, begun))


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.02)


@pytest.fixture
def op() -> Iterator[Python3OP]:
    provider = Python3OP().start()
    yield provider
    provider.stop()


@pytest.fixture
def restartable(tmp_path: Path, server_logs: Path) -> Iterator[Server]:
    """A replica-set server of this test's own, its data in a directory (kept across a
    restart); stopped by pid at the end."""
    server = Server(standalone=False, storage=str(tmp_path / "data"), log=server_logs / "fault.log")
    server.start()
    yield server
    server.stop()


def test_server_down_during_logins_then_back(
    restartable: Server, op: Python3OP, tmp_path: Path
) -> None:
    url = f"{restartable.url}/site?serverSelectionTimeoutMS=1000"
    rp = RelyingParty(
        store=url,
        queue="memory://",
        association="inline",
        data_dir=str(tmp_path),
        fetch_block_private_addresses=False,
    )
    outcomes = Outcomes()
    stop = threading.Event()

    def run() -> None:
        with requests.Session() as http:
            while not stop.is_set():
                login(rp, http, op.identity(), outcomes)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: outcomes.count("accepted") >= 5, "logins while the server is up")
        restartable.stop()
        errors_before = outcomes.count("errors")
        wait_until(lambda: outcomes.count("errors") >= errors_before + 3, "failed logins")
        accepted_while_down = outcomes.count("accepted")
        restartable.start()
        wait_until(
            lambda: outcomes.count("accepted") >= accepted_while_down + 5,
            "logins after the restart, in the same process",
        )
    finally:
        stop.set()
        thread.join(PATIENCE)
    assert not thread.is_alive(), "a login hung"
    assert op.counts["associate"] >= 1  # logins were verified with a stored association

    # Every failure was the store's, typed; none was a bare pymongo error or a hang.
    assert outcomes.errors, "the server stop was not noticed"
    assert all(isinstance(exc, StoreError) for exc in outcomes.errors), outcomes.errors

    # The OP's answers that could not be completed while the server was down: each is
    # accepted at most once now, however often it is presented.
    for response, begun in outcomes.unfinished:
        try:
            rp.complete(query_of(response), response, session=copy.deepcopy(begun))
        except ReplayAttackError:
            pass  # its nonce was stored before the connection failed: it stays used
        else:
            outcomes.accepted.append((response, begun))
        with pytest.raises(ReplayAttackError):
            rp.complete(query_of(response), response, session=copy.deepcopy(begun))

    # No nonce accepted twice: every accepted response, replayed with its session, is refused.
    nonces = [query_of(response)["openid.response_nonce"] for response, _ in outcomes.accepted]
    assert len(nonces) == len(set(nonces))
    for response, begun in outcomes.accepted:
        with pytest.raises(ReplayAttackError):
            rp.complete(query_of(response), response, session=copy.deepcopy(begun))
    rp.close()
