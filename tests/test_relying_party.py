"""RelyingParty.begin(): input errors, discovery caching, XRI resolver hook, fetch policy."""

from __future__ import annotations

import pytest
from conftest import REALM, RETURN_TO, query_of

from openid_plugins import RelyingParty, hookimpl
from openid_plugins.errors import (
    ConfigurationError,
    FetchRefusedError,
    IncorrectClaimError,
    IncorrectURIError,
    XRIError,
)
from openid_plugins.protocol.endpoint import OPENID_2_0_TYPE, Endpoint


def test_public_names():
    import openid_plugins

    assert openid_plugins.RelyingParty is RelyingParty
    assert issubclass(openid_plugins.IncorrectClaimError, openid_plugins.DiscoveryError)
    assert issubclass(openid_plugins.ReplayAttackError, openid_plugins.AuthenticationError)


@pytest.mark.parametrize("bad", ["", "   ", "ftp://example.com/", "http://exa mple.com/"])
def test_unnormalizable_input(make_rp, bad):
    rp = make_rp()
    with pytest.raises(IncorrectURIError):
        rp.begin(bad, RETURN_TO, REALM, session={})


def test_identifier_without_openid_service(op, make_rp):
    rp = make_rp()
    with pytest.raises(IncorrectClaimError):
        rp.begin(op.base + "/no-such-page", RETURN_TO, REALM, session={})


def test_dead_server_is_an_incorrect_claim(make_rp):
    rp = make_rp(fetch_connect_timeout=1)
    with pytest.raises(IncorrectClaimError, match="127.0.0.1:9"):
        rp.begin("http://127.0.0.1:9/alice", RETURN_TO, REALM, session={})


def test_return_to_outside_realm_is_a_configuration_error(op, make_rp):
    rp = make_rp()
    with pytest.raises(ConfigurationError):
        rp.begin(op.identity(), "https://other.example/finish", REALM, session={})


def test_returning_user_needs_no_discovery_fetch(op, make_rp, tmp_path):
    """Discovery results are shared through the store: a second process (here a second
    RelyingParty on the same file store) does not fetch the identity page again."""
    store = (tmp_path / "shared-store").as_uri()
    first = make_rp(store=store, association="stateless")
    first.begin(op.identity("carol"), RETURN_TO, REALM, session={})
    fetched = op.counts["page"]
    assert fetched >= 1
    second = make_rp(store=store, association="stateless")
    auth = second.begin(op.identity("carol"), RETURN_TO, REALM, session={})
    assert auth.endpoint.claimed_id == op.identity("carol")
    assert op.counts["page"] == fetched


class XRIResolver:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint

    @hookimpl
    def openid_resolve_xri(self, xri, settings):
        return [Endpoint(self.endpoint, xri, None, (OPENID_2_0_TYPE,), from_yadis=True)]


def test_xri_without_resolver_is_refused(make_rp):
    rp = make_rp()
    with pytest.raises(XRIError, match="no installed plugin resolves XRIs"):
        rp.begin("=example", RETURN_TO, REALM, session={})


def test_xri_with_a_resolver_plugin(op, make_rp, browser):
    rp = make_rp(association="stateless", plugins=[XRIResolver(op.endpoint())])
    session: dict = {}
    auth = rp.begin("xri://=example", RETURN_TO, REALM, session=session)
    assert auth.message["claimed_id"] == "=example"
    back = browser.visit_op(auth)
    result = rp.complete(query_of(back), back, session=session)
    assert result.claimed_id == "=example"


def test_ssrf_guard_refuses_loopback_identifiers(op, make_rp):
    rp = make_rp(fetch_block_private_addresses=True)
    with pytest.raises(IncorrectClaimError) as info:
        rp.begin(op.identity(), RETURN_TO, REALM, session={})
    assert isinstance(info.value.__cause__, FetchRefusedError)
