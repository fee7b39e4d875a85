"""Shared fixtures: python3-openid's OP on 127.0.0.1 and relying parties built against it."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from httpserver import LocalHTTPServer

from openid_plugins.config import FetchSettings
from openid_plugins.protocol.fetch import Fetcher
from openid_plugins.testing.python3_openid_op import Python3OP

RETURN_TO = "https://rp.example/finish"
REALM = "https://rp.example/"


@pytest.fixture
def server():
    """A scriptable HTTP server on 127.0.0.1 (tests/httpserver.py)."""
    with LocalHTTPServer() as srv:
        yield srv


#: The test servers listen on 127.0.0.1, which the SSRF guard refuses by default: every
#: relying party and fetcher of this suite turns the guard off explicitly (the relying
#: party logs a warning). tests/test_ssrf_default.py checks the default itself.
LOCAL = {"fetch_block_private_addresses": False}
LOCAL_FETCH = FetchSettings(block_private_addresses=False)


@pytest.fixture
def fetcher():
    """A Fetcher with short limits, so a test of a hostile server ends quickly."""
    settings = replace(LOCAL_FETCH, connect_timeout=2, read_timeout=2, total_timeout=5)
    with Fetcher(settings) as f:
        yield f


@pytest.fixture(scope="session")
def op_server():
    op = Python3OP().start()
    yield op
    op.stop()


@pytest.fixture
def op(op_server):
    op_server.reset()
    return op_server


@pytest.fixture
def make_rp(tmp_path):
    from openid_plugins.relying_party import RelyingParty

    made: list[RelyingParty] = []

    def make(**settings) -> RelyingParty:
        settings.setdefault("store", "memory://")
        settings.setdefault("queue", "memory://")
        settings.setdefault("data_dir", str(tmp_path))
        for key, value in LOCAL.items():
            settings.setdefault(key, value)
        rp = RelyingParty(**settings)
        made.append(rp)
        return rp

    yield make
    for rp in made:
        rp.close()


class Browser:
    """Follows an AuthRequest to the OP and back, the way a user's browser would."""

    def __init__(self) -> None:
        self.http = requests.Session()

    def visit_op(self, auth) -> str:
        """Send the request to the OP; return the URL the OP redirects back to."""
        if auth.needs_form:
            response = self.http.post(
                auth.endpoint.server_url, data=auth.message.to_post_args(), allow_redirects=False
            )
        else:
            response = self.http.get(auth.redirect_url, allow_redirects=False)
        assert response.status_code in (302, 303), response.text
        return response.headers["Location"]


@pytest.fixture
def browser():
    return Browser()


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
