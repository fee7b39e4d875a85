"""Built-in plugin: profiles of the OpenID 2.0 providers still in wide use.

``rp.begin(provider="steam", return_to=..., session=...)`` signs a user in with Steam:
directed identity at the OP identifier, the OP endpoint pinned, the claimed identifier
checked by pattern, and ``result.provider_id`` holding the 64-bit SteamID. The profiles
are built by functions taking the OP's base URL so that a test (or a site's own test
suite) can register the same profile pointed at a local lookalike OP from
``openid_plugins.testing.lookalikes``.

Each profile is written from the provider's public behaviour; what each field is for is
documented on ``openid_plugins.contracts.ProviderProfile``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from .contracts import ProviderProfile
from .hookspecs import hookimpl

STEAM = "https://steamcommunity.com"
UBUNTU_ONE = "https://login.ubuntu.com"

# Namespace URIs (written out: plugins do not import each other).
_SREG_1_1 = "http://openid.net/extensions/sreg/1.1"
_AX_1_0 = "http://openid.net/srv/ax/1.0"
_LAUNCHPAD_TEAMS = "http://ns.launchpad.net/2007/openid-teams"


def steam_profile(base: str = STEAM) -> ProviderProfile:
    """Steam (Valve), the largest OpenID 2.0 provider still running.

    - OP identifier ``<base>/openid``, endpoint ``<base>/openid/login``.
    - Stateless: Steam answers every associate request with an HTTP 200 error and no
      suggested type, and signs every assertion with the same dummy ``assoc_handle``, so
      every login is confirmed with ``check_authentication``.
    - Claimed identifiers ``https://steamcommunity.com/openid/id/<17 digits>``, and the
      ``http://`` form Steam issued before 2018 (still found in sites' databases, and a
      claimed id the OP asserts is what re-discovery checks); ``provider_id`` is the
      SteamID64, e.g. ``"76561197960287930"``.
    - No extensions: Steam answers none (fetch the persona from the Steam Web API).
    """
    host = re.escape(urlsplit(base).netloc)
    return ProviderProfile(
        name="steam",
        op_identifier=f"{base}/openid",
        op_endpoints=(f"{base}/openid/login",),
        claimed_id_pattern=rf"https?://{host}/openid/id/(?P<id>\d{{17}})",
        association="stateless",
        extensions=(),
        description="Steam (steamcommunity.com); provider_id is the 64-bit SteamID",
    )


def ubuntu_one_profile(base: str = UBUNTU_ONE) -> ProviderProfile:
    """Ubuntu One (login.ubuntu.com), Canonical's and Launchpad's single sign-on.

    - OP identifier ``<base>/``, endpoint ``<base>/+openid``; associations work, so the
      site's association mode applies.
    - Claimed identifiers ``<base>/+id/<id>``, where the id is case-sensitive
      (``+id/AbC`` and ``+id/abc`` are different people); ``provider_id`` is that id.
    - ``checkid_immediate`` is always answered with setup_needed, so
      ``begin(immediate=True)`` with this profile is a ``ConfigurationError``: a silent
      downgrade to ``checkid_setup`` would show the user a page the site asked not to show.
    - Extensions: SREG 1.1, AX and the Launchpad teams extension
      (``openid_plugins.extensions.teams.Teams``).
    """
    return ProviderProfile(
        name="ubuntu_one",
        op_identifier=f"{base}/",
        op_endpoints=(f"{base}/+openid",),
        claimed_id_pattern=re.escape(base) + r"/\+id/(?P<id>[A-Za-z0-9]+)",
        immediate=False,
        extensions=(_SREG_1_1, _AX_1_0, _LAUNCHPAD_TEAMS),
        description="Ubuntu One (login.ubuntu.com); speaks SREG, AX and Launchpad teams",
    )


@hookimpl
def openid_providers() -> Iterable[ProviderProfile]:
    return [steam_profile(), ubuntu_one_profile()]
