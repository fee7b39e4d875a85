"""Real providers' quirks are ordinary cases (issue 14), each against a local OP behaving
that way: python3-openid's OP switched per test (tests/conftest.py ``op``), or a plain
local HTTP server for what comes before any OP (a CDN's block page).
"""

from __future__ import annotations

import logging

import pytest
from conftest import REALM, RETURN_TO, query_of

from openid_plugins.discoverer import DISCOVERY_CACHE
from openid_plugins.errors import (
    CheckAuthenticationError,
    IncorrectClaimError,
    ProviderError,
    ReplayAttackError,
)
from openid_plugins.fetcher import BackgroundFetcher

#: What Steam answers every associate request: HTTP 200, no type suggested.
STEAM_REFUSAL = (
    200,
    b"ns:http://specs.openid.net/auth/2.0\n"
    b"error_code:unsupported-type\n"
    b"error:Associations not supported\n",
)
#: Steam signs every assertion with this handle.
DUMMY_HANDLE = "1234567890"


def rp_for(make_rp, association):
    return make_rp(association=association, fetch_block_private_addresses=False)


def start(rp, browser, identifier, session):
    auth = rp.begin(identifier, RETURN_TO, REALM, session=session)
    return auth, browser.visit_op(auth)


def login(rp, browser, identifier):
    session: dict = {}
    auth, back = start(rp, browser, identifier, session)
    return auth, back, rp.complete(query_of(back), back, session=session)


def library_records(caplog):
    return [r for r in caplog.records if r.name.startswith("openid_plugins")]


# -- associations refused the Steam way ------------------------------------------------------


def steam_like(op):
    op.associate_answer = STEAM_REFUSAL
    op.dummy_handle = DUMMY_HANDLE


def test_steam_refusal_inline_is_one_info_line_and_remembered(op, make_rp, browser, caplog):
    steam_like(op)
    rp = rp_for(make_rp, "inline")
    caplog.set_level(logging.INFO, logger="openid_plugins")
    caplog.clear()  # what the site's set-up logged (the guard off for a local OP) is not ours
    auth, back, first = login(rp, browser, op.identity())
    assert auth.association is None
    assert first.verified_by == "check_authentication"
    assert query_of(back)["openid.assoc_handle"] == DUMMY_HANDLE
    _, _, second = login(rp, browser, op.identity())
    assert second.verified_by == "check_authentication"
    assert op.counts["associate"] == 1  # remembered: no second attempt
    records = library_records(caplog)
    assert [r.levelno for r in records] == [logging.INFO], [r.getMessage() for r in records]
    assert "'Associations not supported'" in records[0].getMessage()
    assert records[0].exc_info is None


def test_steam_refusal_in_the_background_is_refused_not_failed(op, make_rp, browser, caplog):
    steam_like(op)
    rp = rp_for(make_rp, "background")
    caplog.set_level(logging.INFO, logger="openid_plugins")
    caplog.clear()  # what the site's set-up logged (the guard off for a local OP) is not ours
    login(rp, browser, op.identity())
    stats = BackgroundFetcher(rp.associator, rp.queue).run_once()
    assert (stats.refused, stats.failed, stats.made) == (1, 0, 0)
    assert rp.associator.needs_association(op.endpoint()) is False
    records = library_records(caplog)
    assert [r.levelno for r in records] == [logging.INFO], [r.getMessage() for r in records]
    assert records[0].exc_info is None


def test_assertions_signed_with_a_constant_dummy_handle_verify_every_time(op, make_rp, browser):
    op.dummy_handle = DUMMY_HANDLE
    rp = rp_for(make_rp, "stateless")
    for _ in range(3):
        _, back, result = login(rp, browser, op.identity())
        assert query_of(back)["openid.assoc_handle"] == DUMMY_HANDLE
        assert result.verified_by == "check_authentication"
    assert op.counts["check_authentication"] == 3
    # The constant handle does not make an answer reusable.
    session: dict = {}
    _, back = start(rp, browser, op.identity(), session)
    rp.complete(query_of(back), back, session=dict(session))
    with pytest.raises(ReplayAttackError):
        rp.complete(query_of(back), back, session=session)


# -- the OP says no ---------------------------------------------------------------------------


def test_indirect_error_carries_the_ops_text_quoted_and_cut(op, make_rp, browser):
    op.decision = "error"
    op.error_text = "Login failed:\nyour account\tis locked " + "x" * 500
    rp = rp_for(make_rp, "stateless")
    with pytest.raises(ProviderError) as caught:
        login(rp, browser, op.identity())
    message = str(caught.value)
    assert "'Login failed: your account is locked xxx" in message
    assert message.endswith("...'")
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((403, b"<html><head><title>403 Forbidden</title></head></html>"), "HTTP 403 Forbidden"),
        ((429, b"Too Many Requests: slow down"), "HTTP 429 Too Many Requests"),
        ((200, b"<html><body>Welcome to our portal</body></html>"), "not KV form"),
    ],
    ids=["403", "429", "not-kv"],
)
def test_check_authentication_failures_say_what_the_op_answered(
    op, make_rp, browser, answer, said
):
    op.check_authentication_answer = answer
    rp = rp_for(make_rp, "stateless")
    session: dict = {}
    _, back = start(rp, browser, op.identity(), session)
    with pytest.raises(CheckAuthenticationError, match=said):
        rp.complete(query_of(back), back, session=dict(session))
    # Nothing was stored: once the OP answers properly, the same response verifies.
    op.check_authentication_answer = None
    assert rp.complete(query_of(back), back, session=session).verified_by == (
        "check_authentication"
    )


# -- discovery -------------------------------------------------------------------------------


def test_discovery_answered_by_a_cdn_block_page_says_so(server, make_rp):
    page = (
        b"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
        b"<body>Sorry, you have been blocked</body></html>"
    )
    identity = server.route(
        "/alice", 403, {"Content-Type": "text/html; charset=UTF-8", "Server": "cloudflare"}, page
    )
    rp = rp_for(make_rp, "stateless")
    with pytest.raises(IncorrectClaimError) as caught:
        rp.begin(identity, RETURN_TO, REALM, session={})
    message = str(caught.value)
    assert "HTTP 403 Forbidden" in message
    assert "cloudflare'" in message and "Attention Required! | Cloudflare" in message
    assert "refused" in message


def test_a_claimed_id_with_a_fragment_keeps_it_and_discovers_without_it(op, make_rp, browser):
    """11.2 and 11.5.1: an OP recycling identifiers asserts ``URL#fragment``; the RP
    discovers the URL without it and signs the user in as the full identifier."""
    op.select_fragment = "#owner-2"
    rp = rp_for(make_rp, "inline")
    _, back, result = login(rp, browser, op.op_identifier())
    assert query_of(back)["openid.claimed_id"] == op.identity() + "#owner-2"
    assert result.claimed_id == op.identity() + "#owner-2"
    assert result.identity == op.identity()
    assert rp.store.cache_get(DISCOVERY_CACHE, op.identity()) is not None
    assert rp.store.cache_get(DISCOVERY_CACHE, op.identity() + "#owner-2") is None
