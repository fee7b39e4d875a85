"""Every attack the spec warns about fails with its own error, and a rejected response stores
nothing: the nonce stays unused and no association is removed."""

from __future__ import annotations

import copy

import pytest
from conftest import REALM, RETURN_TO, query_of

from openid_plugins import hookimpl
from openid_plugins.errors import (
    DiscoveryMismatchError,
    IncompleteAnswerError,
    MissingSessionError,
    ReplayAttackError,
    ReturnToMismatchError,
    SignatureError,
    TookTooLongError,
)
from openid_plugins.protocol import nonce as nonce_module
from openid_plugins.testing.clock import FakeClock


class ClockPlugin:
    def __init__(self, clock):
        self.clock = clock

    @hookimpl
    def openid_clock(self):
        return self.clock


def start(rp, browser, identifier, session):
    auth = rp.begin(identifier, RETURN_TO, REALM, session=session)
    back = browser.visit_op(auth)
    return query_of(back), back


def assert_nonce_unused(rp, query):
    """The rejected response left no trace: its nonce can still be used exactly once."""
    timestamp, salt = nonce_module.parse_nonce(query["openid.response_nonce"])
    assert rp.store.use_nonce(query["openid.op_endpoint"], timestamp, salt)


@pytest.fixture(params=["inline", "stateless"])
def rp(request, make_rp):
    return make_rp(association=request.param)


def test_tampered_signed_value(op, rp, browser):
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    query["openid.identity"] = op.identity("mallory")
    query["openid.claimed_id"] = op.identity("mallory")
    with pytest.raises((SignatureError, DiscoveryMismatchError)):
        rp.complete(query, url, session=session)
    assert_nonce_unused(rp, query)


def test_tampered_signature(op, rp, browser):
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    sig = query["openid.sig"]
    query["openid.sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    with pytest.raises(SignatureError):
        rp.complete(query, url, session=session)
    assert_nonce_unused(rp, query)


def test_replay_is_refused(op, rp, browser):
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    saved = copy.deepcopy(session)
    rp.complete(query, url, session=session)
    with pytest.raises(ReplayAttackError):
        rp.complete(query, url, session=saved)


def test_response_without_session(op, rp, browser):
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    with pytest.raises(MissingSessionError):
        rp.complete(query, url, session={})
    assert_nonce_unused(rp, query)


def test_wrong_return_to(op, rp, browser):
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    with pytest.raises(ReturnToMismatchError):
        rp.complete(query, url.replace("/finish", "/elsewhere"), session=session)
    with pytest.raises(ReturnToMismatchError):
        rp.complete(query, url.replace("https://", "http://"), session=session)
    assert_nonce_unused(rp, query)


def test_unsigned_argument_added_to_the_answer(op, rp, browser):
    """issue 14: an argument that is neither the OP's nor return_to's is refused, in the
    URL of an answer by redirect and in a form POST's URL or body (5.2.1). python3-openid's
    OP signed every answer; the untouched answer completes afterwards."""
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    with pytest.raises(ReturnToMismatchError):
        rp.complete({**query, "admin": "1"}, url + "&admin=1", session=session)
    with pytest.raises(ReturnToMismatchError):
        rp.complete(query, url + "&admin=1", session=session)
    body = {key: value for key, value in query.items() if key.startswith("openid.")}
    return_to = query["openid.return_to"]
    with pytest.raises(ReturnToMismatchError):
        rp.complete(body, return_to + "&admin=1", session=session)
    with pytest.raises(ReturnToMismatchError):
        rp.complete({**body, "admin": "1"}, return_to, session=session)
    assert rp.complete(body, return_to, session=session).claimed_id == op.identity()


def test_unsigned_argument_refused_with_nothing_stored(op, rp, browser):
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    with pytest.raises(ReturnToMismatchError):
        rp.complete(query, url + "&admin=1", session=session)
    assert_nonce_unused(rp, query)


@pytest.mark.parametrize("shift", [-600, 600])
def test_stale_and_future_nonce(op, make_rp, browser, shift):
    clock = FakeClock()
    rp = make_rp(association="inline", plugins=[ClockPlugin(clock)], max_login_delay=0)
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    clock.advance(shift)
    with pytest.raises(TookTooLongError):
        rp.complete(query, url, session=session)
    clock.advance(-shift)
    assert_nonce_unused(rp, query)


def test_login_taking_too_long(op, make_rp, browser):
    clock = FakeClock()
    rp = make_rp(association="inline", plugins=[ClockPlugin(clock)], max_login_delay=60)
    session: dict = {}
    clock.advance(-120)
    query, url = start(rp, browser, op.identity(), session)
    clock.advance(120)
    with pytest.raises(TookTooLongError, match="longer than 60"):
        rp.complete(query, url, session=session)


def test_assertion_for_identifier_served_by_another_op(op, rp, browser):
    """The OP signs an assertion for an identifier whose discovered OP is a different one
    (11.2): refused even though the signature is fine."""
    op.select_identity = op.elsewhere_identity()
    session: dict = {}
    query, url = start(rp, browser, op.op_identifier(), session)
    assert query["openid.claimed_id"] == op.elsewhere_identity()
    with pytest.raises(DiscoveryMismatchError):
        rp.complete(query, url, session=session)
    assert_nonce_unused(rp, query)


def test_required_field_not_signed(op, rp, browser):
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    signed = query["openid.signed"].split(",")
    signed.remove("return_to")
    query["openid.signed"] = ",".join(signed)
    with pytest.raises(IncompleteAnswerError, match="did not sign openid.return_to"):
        rp.complete(query, url, session=session)
    assert_nonce_unused(rp, query)


def test_missing_fields(op, rp, browser):
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    for field in ("openid.op_endpoint", "openid.response_nonce", "openid.sig"):
        broken = dict(query)
        del broken[field]
        with pytest.raises(IncompleteAnswerError):
            rp.complete(broken, url, session=session)
    assert_nonce_unused(rp, query)


def test_unsigned_extension_arguments_are_not_reported(op, make_rp, browser):
    from openid_plugins.extensions.sreg import SReg

    rp = make_rp(association="inline")
    session: dict = {}
    auth = rp.begin(
        op.identity(),
        RETURN_TO,
        REALM,
        session=session,
        extensions=[SReg(optional=["nickname", "email"])],
    )
    back = browser.visit_op(auth)
    query = query_of(back)
    query["openid.sreg.fullname"] = "Mallory"  # added, unsigned
    query["openid.ns.evil"] = "http://example.com/evil"
    query["openid.evil.admin"] = "true"
    result = rp.complete(query, back, session=session)
    assert result.sreg["email"] == "alice@example.com"
    assert "fullname" not in result.sreg
    assert all("evil" not in key for key in result.extensions)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda q: q.update({"openid.ns": "http://example.com/not-openid"}),
        lambda q: q.update({"openid.mode": "bogus"}),
        lambda q: q.pop("openid.mode"),
        lambda q: q.update({"openid.response_nonce": "yesterday"}),
        lambda q: q.update({"openid.signed": "return_to,no_such_field"}),
        lambda q: q.update({"openid.identity": [q["openid.identity"], "http://x/"]}),
    ],
    ids=["unknown-ns", "bad-mode", "no-mode", "bad-nonce", "signed-absent-field", "duplicate"],
)
def test_malformed_responses(op, rp, browser, mutate):
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    broken = dict(query)
    mutate(broken)
    with pytest.raises(IncompleteAnswerError):
        rp.complete(broken, url, session=session)
    assert_nonce_unused(rp, query)


def test_forged_invalidate_handle_removes_nothing(op, make_rp, browser):
    rp = make_rp(association="inline")
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    handle = query["openid.assoc_handle"]
    query["openid.invalidate_handle"] = handle  # added by an attacker, unsigned
    result = rp.complete(query, url, session=session)
    assert result.verified_by == "association"
    assert rp.store.get_association(op.endpoint(), handle) is not None


def test_forged_cancel_does_not_abort_a_sign_in_under_way(op, make_rp, browser):
    rp = make_rp(association="inline")
    session: dict = {}
    query, url = start(rp, browser, op.identity(), session)
    from openid_plugins.errors import CancelledError

    forged = {"openid.ns": "http://specs.openid.net/auth/2.0", "openid.mode": "cancel"}
    with pytest.raises(CancelledError):
        rp.complete(forged, url, session=session)
    assert rp.complete(query, url, session=session).claimed_id == op.identity()


def test_identifier_select_placeholder_is_not_an_identifier(op, make_rp, browser):
    op.select_identity = "http://specs.openid.net/auth/2.0/identifier_select"
    rp = make_rp(association="inline")
    session: dict = {}
    query, url = start(rp, browser, op.op_identifier(), session)
    with pytest.raises(IncompleteAnswerError, match="identifier_select"):
        rp.complete(query, url, session=session)
    assert_nonce_unused(rp, query)
