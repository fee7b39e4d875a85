"""openid-plugins: an OpenID 2.0 relying party built on a pluggy plugin engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import *  # noqa: F403 - the exception family is public API
from .errors import OpenIDError
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .relying_party import AuthRequest, AuthResult, RelyingParty

__all__ = ["AuthRequest", "AuthResult", "OpenIDError", "RelyingParty", "hookimpl"]


def __getattr__(name: str) -> Any:
    # Plugins import ``hookimpl`` from here; loading the relying party (requests, crypto)
    # only when a site asks for it keeps that import cheap and free of cycles.
    if name in ("RelyingParty", "AuthRequest", "AuthResult"):
        from . import relying_party

        return getattr(relying_party, name)
    raise AttributeError(f"module 'openid_plugins' has no attribute {name!r}")
