"""Each exception of seed 004 in its case, through the site against python3-openid's OP, and
each refused answer leaves nothing behind: no used nonce, no signed-in user."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.test import Client, override_settings
from openid_plugins_django.models import UsedNonce

from openid_plugins.errors import (
    AuthenticationError,
    IncompleteAnswerError,
    MissingSessionError,
    ReplayAttackError,
    SignatureError,
    TookTooLongError,
)
from openid_plugins.relying_party import SESSION_KEY


def rewrite(answer: str, **changes: str | None) -> str:
    """The answer URL with ``openid.<name>`` arguments changed (None removes one)."""
    parts = urlsplit(answer)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for name, value in changes.items():
        key = "openid." + name.replace("__", ".")
        if value is None:
            query.pop(key)
        else:
            query[key] = value
    return parts._replace(query=urlencode(query)).geturl()


def assert_nothing_stored(browser) -> None:
    assert UsedNonce.objects.count() == 0
    assert AUTH_SESSION_KEY not in browser.site.session


@pytest.mark.parametrize("store", ["django://default", "memory://"])
def test_replayed_answer_after_the_sign_in_is_a_replay_not_a_missing_session(op, browser, store):
    with override_settings(OPENID_PLUGINS={"store": store, "fetch_block_private_addresses": False}):
        answer = browser.sign_in(op.identity())
        assert browser.finish(answer).json()["anonymous"] is True
        assert SESSION_KEY not in browser.site.session  # the sign-in state is used up
        with pytest.raises(ReplayAttackError):
            browser.finish(answer)
        with pytest.raises(ReplayAttackError):  # from another browser, with no session at all
            Client().get(answer)
    assert UsedNonce.objects.count() == (1 if store.startswith("django") else 0)


def test_replay_does_not_disturb_a_sign_in_under_way(op, browser):
    first = browser.sign_in(op.identity())
    assert browser.finish(first).json()["anonymous"] is True
    second = browser.sign_in(op.identity())  # the session now holds a new sign-in
    with pytest.raises(ReplayAttackError):
        browser.finish(first)
    assert browser.finish(second).json()["claim"] == op.identity()


def test_replayed_openid1_answer(op, browser):
    """OpenID 1.x has no response_nonce: the relying party's own nonce names the replay."""
    answer = browser.sign_in(op.openid1_identity())
    assert "openid.ns=" not in answer  # an OpenID 1.x answer
    assert browser.finish(answer).json()["claim"] == op.openid1_identity()
    with pytest.raises(ReplayAttackError):
        browser.finish(answer)
    with pytest.raises(ReplayAttackError):
        Client().get(answer)


def test_answer_in_a_session_that_started_no_sign_in(op, browser):
    answer = browser.sign_in(op.identity())
    with pytest.raises(MissingSessionError):
        Client().get(answer)
    assert UsedNonce.objects.count() == 0


@override_settings(OPENID2RP_MAXLOGINDELAY=60)
def test_sign_in_slower_than_the_max_login_delay(op, browser):
    answer = browser.sign_in(op.identity())
    session = browser.site.session
    state = session[SESSION_KEY]
    state["started"] -= 61  # the user took a minute and a second at the OP
    session[SESSION_KEY] = state
    session.save()
    with pytest.raises(TookTooLongError):
        browser.finish(answer)
    assert_nothing_stored(browser)


@pytest.mark.parametrize("association", ["background", "inline"])
def test_tampered_answer(op, browser, association):
    """A changed signed value fails the signature: checked by the OP (no association yet,
    11.4.2) or with the association's secret (inline)."""
    plugins = {"association": association, "fetch_block_private_addresses": False}
    with override_settings(OPENID_PLUGINS=plugins):
        answer = browser.sign_in(op.identity())
        with pytest.raises(SignatureError) as caught:
            browser.finish(rewrite(answer, sreg__email="mallory@example.com"))
    assert isinstance(caught.value, AuthenticationError)
    assert_nothing_stored(browser)


@pytest.mark.parametrize(
    "truncate",
    [
        pytest.param(lambda answer: rewrite(answer, sig=None), id="no-signature"),
        pytest.param(lambda answer: rewrite(answer, signed=None), id="no-signed-list"),
        pytest.param(lambda answer: answer[: answer.index("openid.sig")], id="cut-off"),
        pytest.param(lambda answer: rewrite(answer, op_endpoint=None), id="no-op-endpoint"),
    ],
)
def test_truncated_answer(op, browser, truncate):
    answer = browser.sign_in(op.identity())
    with pytest.raises(IncompleteAnswerError):
        browser.finish(truncate(answer))
    assert_nothing_stored(browser)
    assert browser.finish(answer).json()["anonymous"] is True  # the real one still works
