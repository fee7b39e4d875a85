"""Sign-ins through a Django site against python3-openid's OP, as seed 004 describes them."""

from __future__ import annotations

import socket

import pytest
import site_urls
from django.contrib.auth import authenticate
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.test import RequestFactory, override_settings
from openid_plugins_django import auth
from openid_plugins_django.models import OpenIDClaim
from openid_plugins_django.plugin import DEFAULT_URL

from openid_plugins.errors import (
    CancelledError,
    ConfigurationError,
    IncorrectClaimError,
    IncorrectURIError,
    MultipleClaimUsageError,
    ReplayAttackError,
)
from openid_plugins.extensions.ax import AX
from openid_plugins.relying_party import SESSION_KEY


def test_verified_unknown_claim_is_anonymous_with_sreg_and_ax(op, browser):
    response = browser.finish(browser.sign_in(op.identity()))
    data = response.json()
    assert data["anonymous"] is True
    assert data["claim"] == op.identity()
    assert data["sreg"] == {"nickname": "alice", "email": "alice@example.com"}
    assert data["ax"][AX.email] == ["alice@example.com"]
    assert data["ax"][AX.first] == ["Alice"]
    assert data["ax"][AX.last] == ["Liddell"]
    # The sign-in state is used up.
    assert SESSION_KEY not in browser.site.session


def test_linked_claim_signs_in_its_user_until_unlinked(op, browser):
    user = User.objects.create_user("alice")
    auth.linkOpenID(user, op.identity())
    assert auth.getOpenIDs(user) == [op.identity()]

    data = browser.finish(browser.sign_in(op.identity())).json()
    assert (data["anonymous"], data["username"], data["pk"]) == (False, "alice", user.pk)
    assert data["sreg"]["email"] == "alice@example.com"

    auth.unlinkOpenID(user, op.identity())
    assert auth.getOpenIDs(user) == []
    assert browser.finish(browser.sign_in(op.identity())).json()["anonymous"] is True


def test_snake_case_aliases_are_the_same_functions():
    assert auth.link_openid is auth.linkOpenID
    assert auth.unlink_openid is auth.unlinkOpenID
    assert auth.get_openids is auth.getOpenIDs
    assert auth.pre_authenticate is auth.preAuthenticate


def test_linking_a_claim_another_user_holds_is_refused():
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    auth.linkOpenID(alice, "https://alice.example/")
    auth.linkOpenID(alice, "https://alice.example/")  # again: harmless
    with pytest.raises(MultipleClaimUsageError):
        auth.linkOpenID(bob, "https://alice.example/")
    assert auth.getOpenIDs(alice) == ["https://alice.example/"]
    assert auth.getOpenIDs(bob) == []
    auth.unlinkOpenID(bob, "https://alice.example/")  # not bob's: nothing happens
    assert auth.getOpenIDs(alice) == ["https://alice.example/"]


def test_claim_linked_to_two_users_in_a_table_without_the_unique_index(op, browser):
    """A database whose table was made elsewhere, without the unique index."""
    field = OpenIDClaim._meta.get_field("claim_hash")
    relaxed = field.clone()
    relaxed.set_attributes_from_name("claim_hash")
    relaxed.model = OpenIDClaim
    relaxed._unique = False
    with connection.schema_editor() as editor:
        editor.alter_field(OpenIDClaim, field, relaxed)
    try:
        for name in ("alice", "bob"):
            OpenIDClaim.objects.create(user=User.objects.create_user(name), claim=op.identity())
        with pytest.raises(MultipleClaimUsageError):
            browser.finish(browser.sign_in(op.identity()))
    finally:
        OpenIDClaim.objects.all().delete()
        with connection.schema_editor() as editor:
            editor.alter_field(OpenIDClaim, relaxed, field)


def test_inactive_linked_user_is_not_signed_in(op, browser):
    user = User.objects.create_user("alice", is_active=False)
    auth.linkOpenID(user, op.identity())
    response = browser.finish(browser.sign_in(op.identity()))
    assert response.status_code == 403
    assert response.json() == {"user": None}


def test_cancel_at_the_op(op, browser):
    op.decision = "cancel"
    with pytest.raises(CancelledError):
        browser.finish(browser.sign_in(op.identity()))


def test_replayed_answer_is_refused(op, browser):
    answer = browser.sign_in(op.identity())
    saved = browser.site.session[SESSION_KEY]
    assert browser.finish(answer).json()["anonymous"] is True
    session = browser.site.session
    session[SESSION_KEY] = saved  # the attacker also kept the sign-in state
    session.save()
    with pytest.raises(ReplayAttackError):
        browser.finish(answer)


@pytest.mark.parametrize("identifier", ["", "   ", "http://exa mple.com/\x00"])
def test_uri_that_is_no_identifier(identifier, browser):
    with pytest.raises(IncorrectURIError):
        browser.start(identifier)


def test_unreachable_claim(browser):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(IncorrectClaimError):
        browser.start(f"http://127.0.0.1:{port}/alice")


def test_long_request_goes_by_self_submitting_form(op, browser):
    response = browser.start(op.identity(), answer_query="?pad=" + "x" * 2100)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert f'action="{op.endpoint()}"' in page
    assert 'name="openid.mode" value="checkid_setup"' in page


def test_sreg_and_ax_requests_follow_the_arguments(op, browser):
    site_urls.LOGIN_OPTIONS.update(sreg=(("email",), ("fullname",)), ax=((), ()))
    data = browser.finish(browser.sign_in(op.identity())).json()
    assert data["sreg"] == {"email": "alice@example.com", "fullname": "Alice Liddell"}
    assert data["ax"] == {}


@override_settings(OPENID_PLUGINS={"association": "inline", "fetch_block_private_addresses": False})
def test_without_reusing_associations_the_op_checks_the_signature(op, browser):
    assert browser.finish(browser.sign_in(op.identity())).json()["anonymous"] is True
    assert op.last_checkid.assoc_handle is not None
    assert op.counts["check_authentication"] == 0

    site_urls.LOGIN_OPTIONS.update(reuse_session=False)
    assert browser.finish(browser.sign_in(op.identity())).json()["anonymous"] is True
    assert op.last_checkid.assoc_handle is None
    assert op.counts["check_authentication"] == 1


def test_authenticate_ignores_other_credentials():
    User.objects.create_user("carol", password="pw")
    request = RequestFactory().get("/")
    assert authenticate(request, username="carol", password="pw").get_username() == "carol"
    assert auth.Backend().authenticate(request) is None
    assert auth.Backend().authenticate(request, username="carol", password="pw") is None


def test_get_user():
    user = User.objects.create_user("dave")
    assert auth.Backend().get_user(user.pk) == user
    assert auth.Backend().get_user(user.pk + 1000) is None


@override_settings(OPENID2RP_MAXLOGINDELAY=42, OPENID2RP_MAXTIMESHIFT=90)
def test_seed_settings_set_the_relying_party():
    rp = auth.get_relying_party()
    assert (rp.settings.max_login_delay, rp.settings.nonce_skew) == (42, 90)
    assert rp.settings.store == rp.settings.queue == DEFAULT_URL  # the site's database
    assert auth.get_relying_party() is rp  # one per process
    with override_settings(OPENID_PLUGINS={"store": "memory://", "nonce_skew": 60}):
        rp = auth.get_relying_party()
        assert rp.settings.nonce_skew == 60  # OPENID_PLUGINS wins
        assert rp.settings.store == "memory://"  # any core store URL can be configured


def test_settings_change_rebuilds_the_relying_party():
    before = auth.get_relying_party()
    with override_settings(OPENID2RP_MAXLOGINDELAY=7):
        during = auth.get_relying_party()
        assert during is not before and during.settings.max_login_delay == 7
    assert auth.get_relying_party().settings.max_login_delay == 300


def test_anonymous_result_type(op, browser):
    answer = browser.sign_in(op.identity())
    request = RequestFactory().get(answer)
    request.session = browser.site.session
    user = auth.Backend().authenticate(None, openidrequest=request)
    assert isinstance(user, AnonymousUser)
    assert user.openid_claim == op.identity()


def test_request_without_session_middleware_is_a_configuration_error(op):
    request = RequestFactory().get("/login/")
    with pytest.raises(ConfigurationError, match="SessionMiddleware"):
        auth.preAuthenticate(op.identity(), "http://testserver/finish/", request=request)
    with pytest.raises(ConfigurationError, match="SessionMiddleware"):
        auth.Backend().authenticate(None, openidrequest=RequestFactory().get("/finish/"))


def test_repeated_openid_argument_is_refused(op, browser):
    """Django's QueryDict.dict() would keep the last copy; the backend passes every copy on."""
    from openid_plugins.errors import IncompleteAnswerError

    answer = browser.sign_in(op.identity())
    with pytest.raises(IncompleteAnswerError):
        browser.finish(answer + "&openid.identity=http%3A%2F%2Fmallory.example%2F")
