"""Logins through a RelyingParty on a memcached store against python3-openid's OP, while the
memcached server is killed and restarted under the running site process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from conftest import MemcachedServer, new_prefix

from openid_plugins.errors import OpenIDError, StoreError
from openid_plugins.protocol.nonce import parse_nonce
from openid_plugins.protocol.verify import AuthResult
from openid_plugins.relying_party import RelyingParty
from openid_plugins.testing.python3_openid_op import Python3OP

RETURN_TO = "https://rp.example/finish"
REALM = "https://rp.example/"
LOGINS_PER_PHASE = 4


@pytest.fixture(scope="module")
def op() -> Iterator[Python3OP]:
    provider = Python3OP().start()
    yield provider
    provider.stop()


class Site:
    """A site's process: one RelyingParty on the memcached store, and a user's browser."""

    def __init__(self, server: MemcachedServer, association: str) -> None:
        self.rp = RelyingParty(
            store=f"memcached://{server.address}?prefix={new_prefix()}",
            queue="memory://",
            association=association,
            store_options={"connect_timeout": 0.5, "timeout": 0.5},
            fetch_block_private_addresses=False,
        )
        self.http = requests.Session()

    def to_op_and_back(self, identifier: str) -> tuple[dict[str, str], dict[str, str]]:
        """begin() and the OP's answer: (session, query of the return_to URL)."""
        session: dict[str, str] = {}
        auth = self.rp.begin(identifier, RETURN_TO, REALM, session=session)
        response = self.http.get(auth.redirect_url, allow_redirects=False, timeout=10)
        assert response.status_code in (302, 303), response.text
        back = response.headers["Location"]
        return session, dict(parse_qsl(urlsplit(back).query, keep_blank_values=True))

    def complete(self, session: dict[str, str], query: dict[str, str]) -> AuthResult:
        url = RETURN_TO + "?" + requests.compat.urlencode(query)
        return self.rp.complete(query, url, session=dict(session))

    def login(self, identifier: str) -> AuthResult:
        session, query = self.to_op_and_back(identifier)
        result = self.complete(session, query)
        self.assert_nonce_recorded(query)
        return result

    def assert_nonce_recorded(self, query: dict[str, str]) -> None:
        """An accepted assertion's nonce is in memcached: its replay is refused."""
        timestamp, salt = parse_nonce(query["openid.response_nonce"])
        assert self.rp.store.nonce_seen(query["openid.op_endpoint"], timestamp, salt)

    def mark_and_wait(self) -> None:
        """Let the store write its restart marker (any store operation does, as a login's
        begin() would) and wait for the next whole second: nonces are stamped in whole
        seconds, and the guard refuses one stamped in the second the marker was written."""
        self.rp.store.cache_get("test", "marker")
        time.sleep(1.01 - time.time() % 1)

    def close(self) -> None:
        self.rp.close()
        self.http.close()


@pytest.mark.parametrize("association", ["stateless", "inline"])
def test_memcached_killed_during_logins(
    op: Python3OP, own_server: MemcachedServer, association: str
) -> None:
    op.reset()
    site = Site(own_server, association)
    try:
        site.mark_and_wait()  # a new server: only answers issued after its marker count
        accepted = []
        for _ in range(LOGINS_PER_PHASE):
            session, query = site.to_op_and_back(op.identity())
            assert site.complete(session, query).claimed_id == op.identity()
            site.assert_nonce_recorded(query)
            accepted.append((session, query))
        # Answers the OP gave while memcached was up, completed once it is gone.
        held = [site.to_op_and_back(op.identity()) for _ in range(LOGINS_PER_PHASE)]

        own_server.stop()
        for session, query in held:
            # The nonce cannot be recorded: no assertion is accepted, and the error is typed.
            with pytest.raises(StoreError):
                site.complete(session, query)
        for _ in range(LOGINS_PER_PHASE):
            # New logins fail at whichever step first needs the store (discovery cache,
            # association, nonce), always with StoreError and within the timeout.
            with pytest.raises(StoreError):
                site.login(op.identity())

        own_server.start()  # same port, empty; the site's process keeps running
        site.mark_and_wait()
        for _ in range(LOGINS_PER_PHASE):
            assert site.login(op.identity()).claimed_id == op.identity()
        # The restarted server lost every used nonce and association. No answer issued
        # before it came back is accepted: the restart guard refuses those whose nonce
        # reaches the store (StoreError), and the OP refuses to confirm the others
        # (python3-openid answers check_authentication once per stateless handle and never
        # for an associated one). test_restart_guard.py shows the guard alone.
        for session, query in held + accepted:
            with pytest.raises(OpenIDError):
                site.complete(session, query)
    finally:
        site.close()
