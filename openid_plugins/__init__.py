"""openid-plugins: an OpenID 2.0 relying party built on a pluggy plugin engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import *  # noqa: F403 - the exception family is public API
from .errors import OpenIDError
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .relying_party import AuthRequest, AuthResult, RelyingParty

    __version__: str

__all__ = ["AuthRequest", "AuthResult", "OpenIDError", "RelyingParty", "__version__", "hookimpl"]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("openid-plugins")
    except metadata.PackageNotFoundError:  # a source tree or zipapp without package metadata
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on first use only
        return _version()
    # Plugins import ``hookimpl`` from here; loading the relying party (requests, crypto)
    # only when a site asks for it keeps that import cheap and free of cycles.
    if name in ("RelyingParty", "AuthRequest", "AuthResult"):
        from . import relying_party

        return getattr(relying_party, name)
    raise AttributeError(f"module 'openid_plugins' has no attribute {name!r}")
