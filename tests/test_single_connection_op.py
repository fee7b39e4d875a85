"""An OP whose HTTP server handles one HTTP/1.1 keep-alive connection at a time (Perl's
``HTTP::Daemon``, the usual server of Net::OpenID::Server setups, many embedded servers).

While any client holds an idle connection to such a server, nobody else is served. A
relying party that pooled its discovery or ``associate`` connection across the user's
round trip made every login hang at the OP (issue 14). Each login below must complete in
every association mode; the browser, the relying party and the background fetcher all talk
to the same one-connection server. The browser and the whole test are bounded, so a
regression fails instead of hanging.
"""

from __future__ import annotations

import socket

import pytest
import requests
from conftest import REALM, RETURN_TO, query_of

from openid_plugins.fetcher import BackgroundFetcher
from openid_plugins.testing.python3_openid_op import Python3OP

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def op1():
    """A fresh one-connection OP per test (cheap: one listening socket and a thread)."""
    op = Python3OP(single_connection=True).start()
    yield op
    op.stop()


def visit_op(auth) -> str:
    """The user's browser at the OP: one request, its connection closed after (a browser
    keeping it idle would block this server for everyone, the relying party included)."""
    headers = {"Connection": "close"}
    if auth.needs_form:
        response = requests.post(
            auth.endpoint.server_url,
            data=auth.message.to_post_args(),
            headers=headers,
            allow_redirects=False,
            timeout=10,
        )
    else:
        response = requests.get(
            auth.redirect_url, headers=headers, allow_redirects=False, timeout=10
        )
    assert response.status_code in (302, 303), response.text
    return response.headers["Location"]


def login(rp, identifier):
    session: dict = {}
    auth = rp.begin(identifier, RETURN_TO, REALM, session=session)
    back = visit_op(auth)
    return auth, rp.complete(query_of(back), back, session=session)


def make(make_rp, association):
    return make_rp(association=association, fetch_block_private_addresses=False)


def test_inline_association(op1, make_rp):
    rp = make(make_rp, "inline")
    auth, result = login(rp, op1.identity())
    assert auth.association is not None
    assert result.verified_by == "association"
    assert result.claimed_id == op1.identity()
    _, again = login(rp, op1.xrds_identity())
    assert again.verified_by == "association"
    assert op1.counts["associate"] == 1


def test_stateless(op1, make_rp):
    rp = make(make_rp, "stateless")
    _, result = login(rp, op1.identity())
    assert result.verified_by == "check_authentication"
    assert op1.counts["check_authentication"] == 1


def test_background_association_then_login_with_it(op1, make_rp):
    rp = make(make_rp, "background")
    auth, first = login(rp, op1.identity())
    assert auth.association is None
    assert first.verified_by == "check_authentication"
    stats = BackgroundFetcher(rp.associator, rp.queue).run_once()
    assert (stats.made, stats.failed) == (1, 0)
    auth, second = login(rp, op1.identity())
    assert auth.association is not None
    assert second.verified_by == "association"


def test_openid1_and_delegation(op1, make_rp):
    rp = make(make_rp, "inline")
    _, result = login(rp, op1.openid1_identity())
    assert result.identity == op1.openid1_identity()
    _, delegated = login(rp, op1.delegating_identity())
    assert delegated.claimed_id == op1.delegating_identity()


def test_two_names_for_the_server_in_one_call(op1, make_rp):
    """Discovery at ``localhost:P``, then ``associate`` at ``127.0.0.1:P``: one server under
    two names. A scope keeps at most one connection, so the first is closed before the
    second is opened (the server would otherwise still be serving the first)."""
    rp = make(make_rp, "inline")
    identifier = op1.identity().replace("127.0.0.1", "localhost")
    auth, result = login(rp, identifier)
    assert auth.association is not None
    assert result.claimed_id == identifier


def test_a_fetch_outside_any_call_asks_the_server_to_close(server, fetcher):
    url = server.route("/doc", 200, {}, b"ok")
    fetcher.get(url)
    with fetcher.scope():
        fetcher.get(url)
        fetcher.get(url)
    assert [r.headers.get("connection") for r in server.requests] == ["close", None, None]


def test_no_connection_outlives_its_scope(op1, fetcher):
    """After a scope, the one-connection OP serves a new client at once: nothing of ours
    is left holding it (a bounded plain socket stands in for the user's browser)."""
    with fetcher.scope():
        fetcher.get(op1.identity())
        fetcher.get(op1.identity())
    with socket.create_connection(("127.0.0.1", int(op1.base.rsplit(":", 1)[1])), 5) as sock:
        sock.settimeout(5)
        sock.sendall(b"GET /id/alice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 200 ")  # a timeout here: still held
