"""The development OP (``openid_plugins.testing.provider``).

Three angles: python3-openid's *consumer* (an RP none of us wrote) signs in against it, which
proves it is a real OP; our ``RelyingParty`` against it, for the knobs a site's tests use;
and raw wire checks for what neither RP would ever send.
"""

from __future__ import annotations

import base64
import threading

import pytest
import requests
from conftest import REALM, RETURN_TO, query_of
from openid.association import SessionNegotiator
from openid.consumer.consumer import CANCEL, SETUP_NEEDED, SUCCESS, Consumer
from openid.extensions import ax as p3_ax
from openid.extensions import sreg as p3_sreg
from openid.store.memstore import MemoryStore

from openid_plugins.errors import (
    CancelledError,
    ConfigurationError,
    SetupNeededError,
    SignatureError,
    TookTooLongError,
)
from openid_plugins.extensions.ax import AX, AX_NS, AXStore
from openid_plugins.extensions.sreg import SReg
from openid_plugins.protocol.association import (
    FFDHE2048_GROUP,
    AssociationRequest,
    UnsupportedType,
    check_signature,
)
from openid_plugins.protocol.message import OPENID2_NS, Message, kv_decode
from openid_plugins.testing.clock import FakeClock
from openid_plugins.testing.provider import IDENTIFIER_SELECT, DevelopmentProvider

pytest_plugins = ["openid_plugins.testing.pytest_plugin"]

EMAIL = "http://axschema.org/contact/email"


@pytest.fixture(scope="module")
def dev_op():
    with DevelopmentProvider(users=("alice", "bob")) as provider:
        yield provider


@pytest.fixture
def dev(dev_op):
    dev_op.reset()
    return dev_op


# -- python3-openid's consumer against the dev OP ------------------------------------------


def p3_login(identifier, store, *, negotiator=None, immediate=False, extensions=()):
    """One login by python3-openid's consumer; returns its response and the return URL."""
    consumer = Consumer({}, store)
    if negotiator is not None:
        consumer.consumer.negotiator = SessionNegotiator(negotiator)
    request = consumer.begin(identifier)
    for extension in extensions:
        request.addExtension(extension)
    url = request.redirectURL(REALM, RETURN_TO, immediate=immediate)
    reply = requests.get(url, allow_redirects=False, timeout=10)
    assert reply.status_code == 302, reply.text
    back = reply.headers["Location"]
    return consumer.complete(query_of(back), back), back


@pytest.mark.parametrize(
    "pair", [("HMAC-SHA256", "DH-SHA256"), ("HMAC-SHA1", "DH-SHA1")], ids=["sha256", "sha1"]
)
def test_python3_consumer_associates_and_signs_in(dev, pair):
    store = MemoryStore()
    response, back = p3_login(dev.identity_url("alice"), store, negotiator=[pair])
    assert response.status == SUCCESS, getattr(response, "message", "")
    assert response.identity_url == dev.identity_url("alice")
    assert dev.counts["associate"] == 1
    assert dev.counts["check_authentication"] == 0
    handle = query_of(back)["openid.assoc_handle"]
    assert store.getAssociation(dev.endpoint, handle).assoc_type == pair[0]


def test_python3_consumer_stateless(dev):
    response, back = p3_login(dev.identity_url("bob"), None)
    assert response.status == SUCCESS
    assert response.identity_url == dev.identity_url("bob")
    assert dev.counts["associate"] == 0
    assert dev.counts["check_authentication"] == 1
    signed = query_of(back)["openid.signed"].split(",")
    for field in ("op_endpoint", "return_to", "response_nonce", "assoc_handle", "claimed_id"):
        assert field in signed


def test_python3_consumer_follows_the_suggested_type(dev):
    """8.2.4: the consumer asks HMAC-SHA1 first, we answer unsupported-type suggesting our
    only allowed pair, and it retries with that."""
    dev.allowed_associations = [("HMAC-SHA256", "DH-SHA256")]
    store = MemoryStore()
    response, back = p3_login(dev.identity_url("alice"), store)
    assert response.status == SUCCESS
    assert dev.counts["associate"] == 2
    handle = query_of(back)["openid.assoc_handle"]
    assert store.getAssociation(dev.endpoint, handle).assoc_type == "HMAC-SHA256"


@pytest.mark.parametrize("page", ["xrds", "op_identifier"])
def test_python3_consumer_yadis_discovery(dev, page):
    identifier = dev.xrds_url("alice") if page == "xrds" else dev.op_identifier_url
    response, _ = p3_login(identifier, MemoryStore())
    assert response.status == SUCCESS
    expected = dev.xrds_url("alice") if page == "xrds" else dev.identity_url("alice")
    assert response.identity_url == expected


def test_python3_consumer_openid1(dev):
    response, back = p3_login(dev.openid1_identity_url("alice"), None)
    assert response.status == SUCCESS
    args = query_of(back)
    assert "openid.ns" not in args and "openid.response_nonce" not in args
    assert args["openid.signed"].split(",")[:3] == ["mode", "identity", "return_to"]


def test_python3_consumer_reads_sreg_and_ax(dev):
    dev.ax_data["alice"][EMAIL] = ["alice@example.com", "a@example.org"]
    fetch = p3_ax.FetchRequest()
    fetch.add(p3_ax.AttrInfo(EMAIL, required=True, count=p3_ax.UNLIMITED_VALUES))
    fetch.add(p3_ax.AttrInfo("http://axschema.org/namePerson/first"))
    fetch.add(p3_ax.AttrInfo("http://example.com/unknown-attribute"))
    wish = p3_sreg.SRegRequest(required=["email"], optional=["nickname", "dob"])
    response, _ = p3_login(dev.identity_url("alice"), None, extensions=[wish, fetch])
    assert response.status == SUCCESS
    assert dict(p3_sreg.SRegResponse.fromSuccessResponse(response).items()) == {
        "email": "alice@example.com",
        "nickname": "alice",
    }
    values = p3_ax.FetchResponse.fromSuccessResponse(response).data
    assert values == {
        EMAIL: ["alice@example.com", "a@example.org"],
        "http://axschema.org/namePerson/first": ["Alice"],
    }


def test_python3_consumer_sees_cancel_and_setup_needed(dev):
    dev.deny = True
    cancelled, _ = p3_login(dev.identity_url("alice"), None)
    assert cancelled.status == CANCEL
    setup, _ = p3_login(dev.identity_url("alice"), None, immediate=True)
    assert setup.status == SETUP_NEEDED


def test_lost_association_is_invalidated_and_confirmed(dev):
    """10: an unknown handle is answered with a private signature and invalidate_handle;
    check_authentication confirms it, so the consumer drops its association."""
    store = MemoryStore()
    p3_login(dev.identity_url("alice"), store)
    old = store.getAssociation(dev.endpoint)
    dev.forget_associations()
    response, back = p3_login(dev.identity_url("alice"), store)
    assert response.status == SUCCESS
    assert query_of(back)["openid.invalidate_handle"] == old.handle
    assert query_of(back)["openid.assoc_handle"].startswith("private-")
    assert dev.counts["check_authentication"] == 1
    assert store.getAssociation(dev.endpoint, old.handle) is None


# -- our RelyingParty against the dev OP ---------------------------------------------------


def login(rp, browser, identifier, *, immediate=False, extensions=()):
    session: dict = {}
    auth = rp.begin(
        identifier, RETURN_TO, REALM, session=session, immediate=immediate, extensions=extensions
    )
    back = browser.visit_op(auth)
    return auth, back, rp.complete(query_of(back), back, session=session)


def test_rp_inline_association_signs_the_assertion(dev, make_rp, browser):
    rp = make_rp(association="inline")
    auth, _, result = login(rp, browser, dev.identity_url("alice"))
    assert auth.association is not None and auth.association.assoc_type == "HMAC-SHA256"
    assert result.verified_by == "association"
    assert result.claimed_id == dev.identity_url("alice")
    assert (dev.counts["associate"], dev.counts["check_authentication"]) == (1, 0)


def test_rp_directed_identity_answers_select_user(dev, make_rp, browser):
    dev.select_user = "bob"
    rp = make_rp(association="stateless")
    auth, _, result = login(rp, browser, dev.op_identifier_url)
    assert auth.message["identity"] == IDENTIFIER_SELECT
    assert result.claimed_id == dev.identity_url("bob")


def test_rp_openid1_login(dev, make_rp, browser):
    rp = make_rp(association="inline")
    auth, back, result = login(rp, browser, dev.openid1_identity_url("alice"))
    assert auth.association.assoc_type == "HMAC-SHA1"
    assert "openid.ns" not in query_of(back)
    assert result.verified_by == "association"
    assert result.claimed_id == dev.openid1_identity_url("alice")


def test_rp_deny(dev, make_rp, browser):
    dev.deny = True
    rp = make_rp(association="stateless")
    with pytest.raises(CancelledError):
        login(rp, browser, dev.identity_url("alice"))
    with pytest.raises(SetupNeededError):
        login(rp, browser, dev.identity_url("alice"), immediate=True)


def test_rp_openid1_immediate_deny_carries_a_setup_url(dev, make_rp, browser):
    dev.deny = True
    rp = make_rp(association="stateless")
    with pytest.raises(SetupNeededError) as raised:
        login(rp, browser, dev.openid1_identity_url("alice"), immediate=True)
    setup = raised.value.setup_url
    assert setup.startswith(dev.endpoint)
    assert query_of(setup)["openid.mode"] == "checkid_setup"


def test_rp_refused_associations_fall_back_to_check_authentication(dev, make_rp, browser):
    dev.refuse_associations = True
    rp = make_rp(association="inline")
    auth, _, first = login(rp, browser, dev.identity_url("alice"))
    assert auth.association is None
    assert first.verified_by == "check_authentication"
    assert dev.counts["associate"] == 1  # one try: no suggestion to retry with
    _, _, second = login(rp, browser, dev.identity_url("alice"))
    assert second.verified_by == "check_authentication"
    assert dev.counts["associate"] == 1  # the refusal is remembered


@pytest.mark.parametrize("skew", [-3600.0, 3600.0])
def test_rp_refuses_a_skewed_nonce(dev, make_rp, browser, skew):
    dev.clock_skew = skew
    rp = make_rp(association="stateless")
    with pytest.raises(TookTooLongError):
        login(rp, browser, dev.identity_url("alice"))
    assert dev.counts["check_authentication"] == 0  # refused before asking the OP


def test_rp_receives_sreg_and_ax(dev, make_rp, browser):
    rp = make_rp(association="inline")
    extensions = [SReg(required=["email"], optional=["fullname"]), AX(required=[AX.first])]
    _, _, result = login(rp, browser, dev.identity_url("bob"), extensions=extensions)
    assert result.sreg == {"email": "bob@example.com", "fullname": "Bob"}
    assert result.ax.first("first") == "Bob"
    assert "email" not in result.ax  # only what was asked for


def test_rp_ax_counts(dev, make_rp, browser):
    dev.ax_data["alice"][EMAIL] = ["one@example.com", "two@example.com", "three@example.com"]
    rp = make_rp(association="stateless")
    wish = AX(required=[AX.email], count={AX.email: 2})
    _, back, result = login(rp, browser, dev.identity_url("alice"), extensions=[wish])
    assert result.ax["email"] == ["one@example.com", "two@example.com"]
    assert query_of(back)["openid.ax.count.email"] == "2"


def test_rp_ax_store_is_declined(dev, make_rp, browser):
    rp = make_rp(association="stateless")
    store = AXStore({AX.email: "new@example.com"})
    _, _, result = login(rp, browser, dev.identity_url("alice"), extensions=[store])
    assert result.extensions["ax_store"].succeeded is False


def test_op_answers_check_authentication_once(dev, make_rp, browser):
    """11.4.2.1: a replayed assertion reaching a second RP process (which has not seen the
    nonce) is refused by the OP itself."""
    first_rp = make_rp(association="stateless")
    session: dict = {}
    auth = first_rp.begin(dev.identity_url("alice"), RETURN_TO, REALM, session=session)
    back = browser.visit_op(auth)
    replay_session = dict(session)
    first_rp.complete(query_of(back), back, session=session)
    other_rp = make_rp(association="stateless")
    with pytest.raises(SignatureError):
        other_rp.complete(query_of(back), back, session=replay_session)
    assert dev.counts["check_authentication"] == 2


def test_fake_clock_drives_expiry(make_rp, browser):
    clock = FakeClock()
    with DevelopmentProvider(clock=clock) as op:
        op.association_lifetime = 120.0
        rp = make_rp(association="inline")
        login(rp, browser, op.identity_url("alice"))
        # Past the OP's lifetime, still within the RP's nonce skew (300 s).
        clock.advance(121)
        _, back, result = login(rp, browser, op.identity_url("alice"))
    # Our RP still used the association (its own clock is real); the OP had let it expire.
    assert "openid.invalidate_handle" in query_of(back)
    assert result.verified_by == "check_authentication"


# -- the wire, directly --------------------------------------------------------------------


def post(dev, fields):
    reply = requests.post(
        dev.endpoint, data=Message(fields).to_post_args(), allow_redirects=False, timeout=10
    )
    return reply.status_code, kv_decode(reply.content)


def checkid_url(dev, **fields):
    message = {
        "ns": OPENID2_NS,
        "mode": "checkid_setup",
        "claimed_id": dev.identity_url("alice"),
        "identity": dev.identity_url("alice"),
        "return_to": RETURN_TO,
        "realm": REALM,
    }
    message.update(fields)
    return Message({k: v for k, v in message.items() if v is not None}).to_url(dev.endpoint)


def test_endpoint_without_arguments(dev):
    page = requests.get(dev.endpoint, timeout=10)
    assert page.status_code == 200 and "OpenID server endpoint" in page.text
    status, fields = post(dev, {})
    assert status == 400 and fields["error"]


def test_malformed_direct_request_is_a_400_kv_error(dev):
    status, fields = post(dev, {"ns": OPENID2_NS, "mode": "associate"})
    assert status == 400
    assert fields["ns"] == OPENID2_NS
    assert "assoc_type" in fields["error"]
    status, fields = post(dev, {"ns": OPENID2_NS, "mode": "no_such_mode"})
    assert status == 400 and "no_such_mode" in fields["error"]
    assert dev.counts["invalid"] == 1


def test_no_encryption_over_http_is_refused_with_a_suggestion(dev):
    status, fields = post(
        dev,
        {
            "ns": OPENID2_NS,
            "mode": "associate",
            "assoc_type": "HMAC-SHA256",
            "session_type": "no-encryption",
        },
    )
    assert status == 400
    assert fields["error_code"] == "unsupported-type"
    assert (fields["assoc_type"], fields["session_type"]) == ("HMAC-SHA256", "DH-SHA256")
    assert "mac_key" not in fields


def test_refusal_carries_no_suggestion(dev):
    dev.refuse_associations = True
    request = AssociationRequest.create(dev.endpoint)
    status, fields = post(dev, request.to_message().fields)
    assert status == 400
    refusal = request.parse_response(Message(fields), 0.0)
    assert isinstance(refusal, UnsupportedType)
    assert (refusal.assoc_type, refusal.session_type) == (None, None)


def test_rp_supplied_dh_group_yields_the_same_secret(dev):
    """8.1.2: an RP may choose p and g; the association it reads must sign like ours."""
    request = AssociationRequest.create(dev.endpoint, group=FFDHE2048_GROUP)
    assert "dh_modulus" in request.to_message().fields
    status, fields = post(dev, request.to_message().fields)
    assert status == 200
    association = request.parse_response(Message(fields), 0.0)
    reply = requests.get(
        checkid_url(dev, assoc_handle=association.handle), allow_redirects=False, timeout=10
    )
    answer = Message.from_url(reply.headers["Location"])
    assert answer["assoc_handle"] == association.handle
    assert check_signature(association, answer.fields, answer["signed"], answer["sig"])


def test_invalid_dh_public_key_is_refused(dev):
    one = base64.b64encode(b"\x01").decode()
    status, fields = post(
        dev,
        {
            "ns": OPENID2_NS,
            "mode": "associate",
            "assoc_type": "HMAC-SHA256",
            "session_type": "DH-SHA256",
            "dh_consumer_public": one,
        },
    )
    assert status == 400 and "out of range" in fields["error"]


def test_shared_association_is_never_checked_for_an_rp(dev):
    """11.4.2.1: check_authentication with a shared handle proves nothing: is_valid false."""
    request = AssociationRequest.create(dev.endpoint)
    association = request.parse_response(Message(post(dev, request.to_message().fields)[1]), 0.0)
    reply = requests.get(
        checkid_url(dev, assoc_handle=association.handle), allow_redirects=False, timeout=10
    )
    answer = Message.from_url(reply.headers["Location"])
    status, fields = post(dev, dict(answer.fields, mode="check_authentication"))
    assert (status, fields) == (200, {"ns": OPENID2_NS, "is_valid": "false"})


def test_return_to_outside_the_realm_is_an_indirect_error(dev):
    reply = requests.get(
        checkid_url(dev, realm="https://other.example/"), allow_redirects=False, timeout=10
    )
    assert reply.status_code == 302
    answer = Message.from_url(reply.headers["Location"])
    assert reply.headers["Location"].startswith(RETURN_TO)
    assert answer.mode == "error" and "realm" in answer["error"]


def test_request_without_a_usable_return_to_gets_a_page(dev):
    reply = requests.get(
        checkid_url(dev, return_to="not a url", realm=None), allow_redirects=False, timeout=10
    )
    assert reply.status_code == 400
    assert "text/html" in reply.headers["Content-Type"]


def test_unknown_identity_is_cancelled(dev):
    stranger = dev.base_url + "/id/mallory"
    reply = requests.get(
        checkid_url(dev, claimed_id=stranger, identity=stranger), allow_redirects=False, timeout=10
    )
    assert Message.from_url(reply.headers["Location"]).mode == "cancel"


def test_long_response_goes_by_form_post(dev):
    long_return_to = RETURN_TO + "?state=" + "x" * 2100
    reply = requests.get(checkid_url(dev, return_to=long_return_to), timeout=10)
    assert reply.status_code == 200
    assert 'method="post"' in reply.text and f'action="{long_return_to}"' in reply.text


def test_counts_are_exact_under_concurrency(dev):
    def hit():
        with requests.Session() as http:
            for _ in range(10):
                http.post(dev.endpoint, data={"openid.mode": "check_authentication"}, timeout=10)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert dev.counts["check_authentication"] == 80


def test_identity_pages(dev):
    page = requests.get(dev.identity_url("alice"), timeout=10).text
    assert f'rel="openid2.provider" href="{dev.endpoint}"' in page
    assert f'rel="openid2.local_id" href="{dev.identity_url("alice")}"' in page
    assert 'rel="openid.server"' in page
    assert "openid2" not in requests.get(dev.openid1_identity_url("alice"), timeout=10).text
    xrds = requests.get(dev.op_identifier_url, timeout=10)
    assert xrds.headers["Content-Type"] == "application/xrds+xml"
    assert "http://specs.openid.net/auth/2.0/server" in xrds.text
    assert AX_NS in xrds.text
    assert requests.get(dev.base_url + "/id/mallory", timeout=10).status_code == 404


# -- construction and the pytest fixture ---------------------------------------------------


@pytest.mark.parametrize("users", [(), ("al ice",), ("../x",)])
def test_invalid_user_names(users):
    with pytest.raises(ConfigurationError):
        DevelopmentProvider(users=users)


def test_urls_need_a_running_provider():
    provider = DevelopmentProvider()
    with pytest.raises(ConfigurationError, match="start"):
        provider.endpoint  # noqa: B018


def test_busy_port_is_a_configuration_error(dev):
    port = int(dev.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConfigurationError, match="port"):
        DevelopmentProvider(port=port).start()


def test_unknown_user_url_is_refused(dev):
    with pytest.raises(ConfigurationError, match="mallory"):
        dev.identity_url("mallory")


def test_stop_closes_the_port():
    provider = DevelopmentProvider().start()
    endpoint = provider.endpoint
    provider.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(endpoint, timeout=5)


def test_pytest_fixture(openid_provider):
    assert openid_provider.users == ("alice", "bob")
    assert requests.get(openid_provider.identity_url("bob"), timeout=10).status_code == 200


class TestFixtureUsersOverride:
    @pytest.fixture
    def openid_provider_users(self):
        return ("carol",)

    def test_users(self, openid_provider):
        assert openid_provider.users == ("carol",)
        assert openid_provider.sreg_data["carol"]["email"] == "carol@example.com"
