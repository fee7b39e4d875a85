"""The objects the extension hooks receive and return."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..contracts import Clock
from ..protocol.endpoint import Endpoint
from ..protocol.message import Message

log = logging.getLogger("openid_plugins.extensions")


@dataclass(frozen=True)
class ExtensionArgs:
    """One extension's part of an outgoing request: its namespace URI, its arguments
    (keys without alias), and the alias it would like (the core picks a free one)."""

    namespace: str
    args: Mapping[str, str]
    alias: str | None = None


@dataclass(frozen=True)
class ExtensionRequest:
    """Context for ``openid_extension_request_args``."""

    #: The objects the site passed to ``begin(extensions=...)``.
    extensions: tuple[object, ...]
    endpoint: Endpoint

    def requested(self, kind: type) -> list:
        return [ext for ext in self.extensions if isinstance(ext, kind)]


@dataclass(frozen=True)
class ExtensionResponse:
    """Context for ``openid_extension_response``: a verified positive assertion."""

    message: Message
    #: Field names (without ``openid.``) covered by the signature.
    signed: frozenset[str]
    endpoint: Endpoint
    #: What ``begin()`` asked for, as JSON-able descriptions kept in the session.
    requested: tuple[Mapping, ...] = ()
    clock: Clock | None = field(default=None, compare=False)

    def signed_args(self, namespace: str) -> dict[str, str]:
        """The namespace's arguments that the OP signed; unsigned ones are dropped.

        In OpenID 2.0 the alias declaration itself must be signed too, or an attacker could
        re-point a signed alias at another extension.
        """
        alias = self.message.alias_for(namespace)
        if alias is None:
            return {}
        if self.message.is_openid2 and f"ns.{alias}" not in self.signed:
            log.debug("namespace %s (alias %s) is declared unsigned: ignored", namespace, alias)
            return {}
        prefix = alias + "."
        result: dict[str, str] = {}
        for key, value in self.message.fields.items():
            if not key.startswith(prefix):
                continue
            if key in self.signed:
                result[key[len(prefix) :]] = value
            else:
                log.debug("unsigned extension argument openid.%s dropped", key)
        return result


def was_requested(response: ExtensionResponse, kind: str) -> bool:
    """Whether ``begin()`` recorded a request of this kind (``to_session()["extension"]``)."""
    return any(
        isinstance(entry, Mapping) and entry.get("extension") == kind
        for entry in response.requested
    )
