"""System checks (``manage.py check``): what would otherwise fail at the first sign-in.

- E001: ``OPENID_PLUGINS`` holds an unknown key or an invalid value;
- E002/E003: no installed plugin serves the configured store/queue URL's scheme;
- E004: no ``SessionMiddleware`` (the sign-in state lives in the session);
- E005: ``openid_plugins_django.auth.Backend`` is not in ``AUTHENTICATION_BACKENDS``;
- W001: the private-address guard is off in production (``DEBUG=False``): any visitor could
  make the site fetch addresses on its own network while discovering their "identifier";
- W002: the store or queue lives in one process (``memory://``) in production.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from openid_plugins.backends import KNOWN_SCHEMES, Kind, backend_for, scheme_of
from openid_plugins.config import Settings
from openid_plugins.errors import OpenIDError
from openid_plugins.manager import make_plugin_manager

TAG = "openid_plugins"
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
BACKEND = "openid_plugins_django.auth.Backend"


@register(TAG)
def check_openid_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from .auth import relying_party_settings

    messages: list[CheckMessage] = []
    if SESSION_MIDDLEWARE not in getattr(settings, "MIDDLEWARE", ()):
        messages.append(
            Error(
                "OpenID sign-in keeps its state in the session, but SessionMiddleware is not"
                " in MIDDLEWARE.",
                hint=f"Add {SESSION_MIDDLEWARE!r} to MIDDLEWARE.",
                id="openid_plugins_django.E004",
            )
        )
    if BACKEND not in getattr(settings, "AUTHENTICATION_BACKENDS", ()):
        messages.append(
            Error(
                "authenticate(openidrequest=...) will find no backend to answer it.",
                hint=f"Add {BACKEND!r} to AUTHENTICATION_BACKENDS.",
                id="openid_plugins_django.E005",
            )
        )
    try:
        rp_settings = Settings.from_mapping(relying_party_settings())
        pm = make_plugin_manager()
    except OpenIDError as exc:
        messages.append(Error(f"OPENID_PLUGINS is invalid: {exc}", id="openid_plugins_django.E001"))
        return messages
    checked: tuple[tuple[Kind, str, str], ...] = (
        ("store", rp_settings.store_url(), "E002"),
        ("queue", rp_settings.queue_url(), "E003"),
    )
    for kind, url, code in checked:
        try:
            backend = backend_for(pm, kind, url)
        except OpenIDError as exc:
            messages.append(
                Error(
                    f"the OpenID {kind} URL is invalid: {exc}", id=f"openid_plugins_django.{code}"
                )
            )
            continue
        if backend is None:
            scheme = scheme_of(url)
            distribution = KNOWN_SCHEMES.get(scheme)
            messages.append(
                Error(
                    f"no installed plugin serves the OpenID {kind} URL {url!r} ({scheme}://).",
                    hint=(
                        f"pip install {distribution}"
                        if distribution
                        else "Install the distribution that serves it, or use django://default."
                    ),
                    id=f"openid_plugins_django.{code}",
                )
            )
        elif not backend.shared and not settings.DEBUG:
            messages.append(
                Warning(
                    f"the OpenID {kind} {url!r} lives in one process: other web server"
                    " processes and manage.py openid_associate cannot see it.",
                    hint="Use django://default (the default) or another shared backend.",
                    id="openid_plugins_django.W002",
                )
            )
    if not rp_settings.fetch.block_private_addresses and not settings.DEBUG:
        messages.append(
            Warning(
                "the private-address guard is off (fetch_block_private_addresses=False) with"
                " DEBUG=False: a visitor can make the site fetch addresses on its own network"
                " (loopback, 10/8, 192.168/16, link-local) by entering them as an OpenID.",
                hint="Leave fetch_block_private_addresses out of OPENID_PLUGINS in production.",
                id="openid_plugins_django.W001",
            )
        )
    return messages
