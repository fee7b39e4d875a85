"""Relying-party flows against python3-openid's OP served on 127.0.0.1 (a real OP none of us
wrote): discovery kinds, association types, modes, cancel/setup_needed, OpenID 1.1."""

from __future__ import annotations

import pytest
from conftest import REALM, RETURN_TO, query_of

from openid_plugins.errors import CancelledError, SetupNeededError


def login(rp, browser, identifier, *, session=None, **begin_kwargs):
    session = {} if session is None else session
    auth = rp.begin(identifier, RETURN_TO, REALM, session=session, **begin_kwargs)
    back = browser.visit_op(auth)
    return auth, rp.complete(query_of(back), back, session=session)


def test_html_discovery_inline_association(op, make_rp, browser):
    rp = make_rp(association="inline")
    auth, result = login(rp, browser, op.identity())
    assert auth.association is not None
    assert result.claimed_id == op.identity()
    assert result.identity == op.identity()
    assert result.op_endpoint == op.endpoint()
    assert result.verified_by == "association"
    assert op.counts["associate"] == 1
    assert op.counts["check_authentication"] == 0
    # A returning user reuses both the cached discovery and the association.
    _, again = login(rp, browser, op.identity())
    assert again.verified_by == "association"
    assert op.counts["associate"] == 1


def test_user_input_is_normalized(op, make_rp, browser):
    rp = make_rp(association="inline")
    bare = op.identity().removeprefix("http://")
    _, result = login(rp, browser, f"  {bare}  ")
    assert result.claimed_id == op.identity()


def test_xrds_discovery(op, make_rp, browser):
    rp = make_rp(association="stateless")
    _, result = login(rp, browser, op.xrds_identity())
    assert result.claimed_id == op.xrds_identity()
    assert result.endpoint.from_yadis


def test_delegation_uses_local_id(op, make_rp, browser):
    rp = make_rp(association="inline")
    auth, result = login(rp, browser, op.delegating_identity())
    assert auth.message["identity"] == op.identity()
    assert auth.message["claimed_id"] == op.delegating_identity()
    assert result.claimed_id == op.delegating_identity()
    assert result.identity == op.identity()


def test_op_identifier_directed_identity(op, make_rp, browser):
    rp = make_rp(association="inline")
    auth, result = login(rp, browser, op.op_identifier())
    select = "http://specs.openid.net/auth/2.0/identifier_select"
    assert auth.message["claimed_id"] == auth.message["identity"] == select
    assert result.claimed_id == op.identity("alice")


@pytest.mark.parametrize(
    ("assoc_type", "session_type"),
    [("HMAC-SHA1", "DH-SHA1"), ("HMAC-SHA256", "DH-SHA256")],
)
def test_op_restricted_to_one_association_type(op, make_rp, browser, assoc_type, session_type):
    """Negotiation: the OP answers unsupported-type (with HTTP 200, not the spec's 400) and
    suggests its one allowed pair; we retry once with it."""
    op.allowed_associations = [(assoc_type, session_type)]
    rp = make_rp(association="inline")
    auth, result = login(rp, browser, op.identity())
    assert auth.association is not None
    assert auth.association.assoc_type == assoc_type
    assert result.verified_by == "association"


def test_op_refusing_associations_is_remembered(op, make_rp, browser):
    op.allowed_associations = []
    rp = make_rp(association="inline")
    _, first = login(rp, browser, op.identity())
    assert first.verified_by == "check_authentication"
    attempts = op.counts["associate"]
    assert attempts >= 1
    _, second = login(rp, browser, op.identity())
    assert second.verified_by == "check_authentication"
    assert op.counts["associate"] == attempts


def test_stateless_mode_never_associates(op, make_rp, browser):
    rp = make_rp(association="stateless")
    auth, result = login(rp, browser, op.identity())
    assert auth.association is None
    assert "assoc_handle" not in auth.message
    assert result.verified_by == "check_authentication"
    assert op.counts["associate"] == 0
    assert op.counts["check_authentication"] == 1


def test_cancel(op, make_rp, browser):
    op.decision = "cancel"
    rp = make_rp(association="stateless")
    with pytest.raises(CancelledError):
        login(rp, browser, op.identity())


def test_setup_needed_in_immediate_mode(op, make_rp, browser):
    op.decision = "setup_needed"
    rp = make_rp(association="stateless")
    with pytest.raises(SetupNeededError):
        login(rp, browser, op.identity(), immediate=True)


def test_immediate_mode_success(op, make_rp, browser):
    rp = make_rp(association="inline")
    auth, result = login(rp, browser, op.identity(), immediate=True)
    assert auth.message["mode"] == "checkid_immediate"
    assert result.claimed_id == op.identity()


@pytest.mark.parametrize("mode", ["inline", "stateless"])
def test_openid1_flow(op, make_rp, browser, mode):
    rp = make_rp(association=mode)
    auth, result = login(rp, browser, op.openid1_identity())
    assert "ns" not in auth.message
    assert "trust_root" in auth.message
    assert result.claimed_id == op.openid1_identity()
    assert result.op_endpoint == op.endpoint("op1")
    if mode == "inline":
        assert auth.association is not None
        assert auth.association.assoc_type == "HMAC-SHA1"
        assert result.verified_by == "association"


def test_long_request_goes_by_form_post(op, make_rp, browser):
    """Both directions exceed 2047 bytes (5.2.1): we POST a form, the OP answers with one."""
    rp = make_rp(association="stateless")
    long_return_to = RETURN_TO + "?state=" + "x" * 2100
    session: dict = {}
    auth = rp.begin(op.identity(), long_return_to, REALM, session=session)
    assert auth.needs_form
    assert 'method="post"' in auth.form_html
    response = browser.http.post(
        auth.endpoint.server_url, data=auth.message.to_post_args(), allow_redirects=False
    )
    action, fields = parse_form(response.text)
    result = rp.complete(fields, action, session=session)
    assert result.claimed_id == op.identity()


def parse_form(page: str) -> tuple[str, dict[str, str]]:
    from html.parser import HTMLParser

    found: dict = {"fields": {}}

    class FormParser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "form":
                found["action"] = attrs["action"]
            elif tag == "input" and attrs.get("type") == "hidden":
                found["fields"][attrs["name"]] = attrs["value"]

    FormParser().feed(page)
    return found["action"], found["fields"]


def test_session_state_is_json_serializable(op, make_rp):
    import json

    rp = make_rp(association="inline")
    session: dict = {}
    rp.begin(op.identity(), RETURN_TO, REALM, session=session)
    assert json.loads(json.dumps(session)) == session


@pytest.mark.parametrize("mode", ["inline", "background"])
def test_invalidated_association_is_removed_only_when_the_op_confirms(op, make_rp, browser, mode):
    """The OP lost our association: it signs statelessly and asks us to drop the handle
    (invalidate_handle); we check with the OP (11.4.2), and only its confirmation removes it."""
    from openid_plugins.fetcher import BackgroundFetcher

    rp = make_rp(association=mode)
    login(rp, browser, op.identity())
    if mode == "background":
        BackgroundFetcher(rp.associator, rp.queue).run_once()
    stale = rp.store.get_association(op.endpoint())
    assert stale is not None
    op.forget_associations()
    session: dict = {}
    auth = rp.begin(op.identity(), RETURN_TO, REALM, session=session)
    assert auth.message["assoc_handle"] == stale.handle
    back = browser.visit_op(auth)
    assert query_of(back)["openid.invalidate_handle"] == stale.handle
    result = rp.complete(query_of(back), back, session=session)
    assert result.verified_by == "check_authentication"
    assert rp.store.get_association(op.endpoint(), stale.handle) is None
    if mode == "background":
        assert rp.queue.pending() == 1
