"""openid-plugins: an OpenID 2.0 relying party built on a pluggy plugin engine."""

from .errors import *  # noqa: F403 - the exception family is public API
from .errors import OpenIDError
from .hookspecs import hookimpl

__all__ = ["OpenIDError", "hookimpl"]
