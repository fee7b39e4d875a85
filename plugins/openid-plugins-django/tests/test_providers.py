"""Sign in with Steam from a Django site: ``preAuthenticate(..., provider="steam")`` against
an OP that answers as Steam does (the core's Steam lookalike on 127.0.0.1)."""

from __future__ import annotations

import pytest
import site_urls
from django.test import RequestFactory
from openid_plugins_django import auth

from openid_plugins import RelyingParty, hookimpl
from openid_plugins.errors import UntrustedProviderError
from openid_plugins.profiles import steam_profile
from openid_plugins.testing.lookalikes import SteamLikeProvider

STEAM_ID = "76561197960287930"


class LocalSteam:
    """Points the built-in "steam" profile at the lookalike (a later plugin wins)."""

    def __init__(self, base: str) -> None:
        self.base = base

    @hookimpl
    def openid_providers(self):
        return [steam_profile(self.base)]


@pytest.fixture
def steam(monkeypatch):
    with SteamLikeProvider(users=[STEAM_ID]) as op:
        rp = RelyingParty.from_config(
            auth.relying_party_settings(), plugins=[LocalSteam(op.base_url)]
        )
        monkeypatch.setattr(auth, "_relying_party", rp)
        yield op


def test_a_steam_sign_in_gives_the_steam_id(steam, browser):
    site_urls.LOGIN_OPTIONS["provider"] = "steam"
    # The login form's "Sign in through Steam" button sends Steam's OP identifier.
    response = browser.start(steam.op_identifier_url)
    assert response.status_code == 302
    assert response["Location"].startswith(steam.endpoint)
    result = browser.finish(browser.to_op(response)).json()
    assert result["anonymous"] is True
    assert result["claim"].endswith(f"/openid/id/{STEAM_ID}")
    assert steam.counts["check_authentication"] == 1  # stateless, as Steam needs


def test_provider_without_an_identifier_starts_directed_identity(steam):
    request = RequestFactory().get("/login/")
    request.session = {}
    response = auth.preAuthenticate(
        None, "http://testserver/finish/", request=request, provider="steam"
    )
    assert response.status_code == 302
    assert response["Location"].startswith(steam.endpoint)


def test_an_identifier_of_another_op_is_refused_for_steam(steam, op, browser):
    site_urls.LOGIN_OPTIONS["provider"] = "steam"
    with pytest.raises(UntrustedProviderError):
        browser.start(op.identity())
