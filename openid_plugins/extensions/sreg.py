"""Simple Registration (SREG 1.0, and the 1.1 namespace) as a plugin on the extension hooks.

A site asks with ``begin(..., extensions=[SReg(required=["email"], optional=["nickname"])])``
and reads ``result.extensions["sreg"]``: a dict field -> value holding only *signed* values of
the fields SREG defines.

Invalid field names are refused with ``ConfigurationError`` when the ``SReg`` is built: they
are a mistake in the site's code, caught before any user is sent to an OP, and every error
this library raises is an ``OpenIDError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..hookspecs import hookimpl
from .base import ExtensionArgs, ExtensionRequest, ExtensionResponse, was_requested

log = logging.getLogger("openid_plugins.extensions.sreg")

#: Namespace sent in OpenID 2.0 requests (SREG 1.1 is SREG 1.0 with a 2.0 namespace).
SREG_1_1_NS = "http://openid.net/extensions/sreg/1.1"
#: The Yadis type URI of SREG 1.0, which some OPs use as their namespace.
SREG_1_0_NS = "http://openid.net/sreg/1.0"
#: Response namespaces accepted, in order of preference.
SREG_NAMESPACES = (SREG_1_1_NS, SREG_1_0_NS)

#: SREG 1.0 section 4: the only fields an OP may return ("all included fields MUST be taken
#: from the set of fields defined in this specification").
SREG_FIELDS = (
    "nickname",
    "email",
    "fullname",
    "dob",
    "gender",
    "postcode",
    "country",
    "language",
    "timezone",
)

#: Key of the entries this module keeps in ``ExtensionResponse.requested``.
SESSION_KIND = "sreg"


def _field_names(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    """Normalize a list of field names (or the wire's comma-separated string), in order."""
    names = value.split(",") if isinstance(value, str) else list(value)
    result: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationError(f"SReg {what}: {name!r} is not a field name (a string)")
        name = name.strip()
        if not name:
            continue
        if name not in SREG_FIELDS:
            raise ConfigurationError(
                f"SReg {what}: {name!r} is not a Simple Registration field; use one of "
                f"{', '.join(SREG_FIELDS)} (SREG 1.0 section 4), or AX for other attributes"
            )
        if name not in result:
            result.append(name)
    return tuple(result)


@dataclass(frozen=True)
class SReg:
    """What to ask the OP with SREG (section 3). A field both required and optional counts
    as required."""

    required: Sequence[str] = ()
    optional: Sequence[str] = ()
    #: Where the user can read how the profile data will be used; the OP SHOULD show it.
    policy_url: str | None = None

    def __post_init__(self) -> None:
        required = _field_names(self.required, "required")
        optional = tuple(f for f in _field_names(self.optional, "optional") if f not in required)
        # Section 3: at least one of openid.sreg.required or openid.sreg.optional MUST be sent.
        if not required and not optional:
            raise ConfigurationError(
                "SReg asks for no field; name at least one in required= or optional="
            )
        if self.policy_url is not None:
            parts = urlsplit(self.policy_url) if isinstance(self.policy_url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigurationError(
                    f"SReg policy_url {self.policy_url!r} is not an absolute http(s) URL"
                )
        object.__setattr__(self, "required", required)
        object.__setattr__(self, "optional", optional)

    def merge(self, other: SReg) -> SReg:
        """One request asking for everything both ask for (required wins over optional)."""
        if self.policy_url and other.policy_url and self.policy_url != other.policy_url:
            raise ConfigurationError(
                f"two SReg requests name different policy URLs ({self.policy_url!r} and "
                f"{other.policy_url!r}); a request carries one, so pass only one"
            )
        required = tuple(dict.fromkeys((*self.required, *other.required)))
        optional = tuple(f for f in (*self.optional, *other.optional) if f not in required)
        return SReg(required, optional, self.policy_url or other.policy_url)

    def to_args(self) -> dict[str, str]:
        """The ``openid.sreg.*`` arguments, without the alias."""
        args: dict[str, str] = {}
        if self.required:
            args["required"] = ",".join(self.required)
        if self.optional:
            args["optional"] = ",".join(self.optional)
        if self.policy_url:
            args["policy_url"] = self.policy_url
        return args

    def to_session(self) -> dict[str, Any]:
        """JSON-able record of what was asked, handed back in ``ExtensionResponse.requested``."""
        return {
            "extension": SESSION_KIND,
            "required": list(self.required),
            "optional": list(self.optional),
            "policy_url": self.policy_url,
        }

    @classmethod
    def from_session(cls, data: Mapping[str, Any]) -> SReg:
        return cls(data.get("required", ()), data.get("optional", ()), data.get("policy_url"))


def requested_sreg(extensions: Iterable[object]) -> SReg | None:
    """Every SREG wish among a login's extension objects, merged into one.

    Besides ``SReg`` objects, objects that ask through both SREG and AX contribute: one with
    an ``sreg_fields()`` method returning ``(required, optional)`` field names
    (``mapping.Attributes``), or an ``as_sreg()`` method returning an ``SReg`` (or None). So
    a combined request and an explicit ``SReg`` end up in a single ``openid.sreg.required``
    instead of overwriting each other.
    """
    merged: SReg | None = None
    for ext in extensions:
        if isinstance(ext, SReg):
            wish: SReg | None = ext
        elif callable(fields := getattr(ext, "sreg_fields", None)):
            required, optional = fields()
            wish = SReg(required=required, optional=optional)
        elif callable(as_sreg := getattr(ext, "as_sreg", None)):
            wish = as_sreg()
        else:
            continue
        if wish is not None:
            merged = wish if merged is None else merged.merge(wish)
    return merged


def parse_response(response: ExtensionResponse) -> dict[str, str] | None:
    """The signed SREG fields of an assertion; None when it carries no signed SREG argument.

    Either SREG namespace is accepted; in OpenID 1.x the undeclared ``sreg`` alias means SREG
    (``Message.alias_for``). Fields SREG does not define are dropped (section 4).
    """
    for namespace in SREG_NAMESPACES:
        if response.message.alias_for(namespace) is not None:
            args = response.signed_args(namespace)
            break
    else:
        return None
    if not args:
        return None
    values: dict[str, str] = {}
    for key, value in args.items():
        if key in SREG_FIELDS:
            values[key] = value
        else:
            log.debug("signed openid.sreg.%s is not an SREG field: ignored", key)
    return values


@hookimpl
def openid_extension_request_args(request: ExtensionRequest) -> ExtensionArgs | None:
    wish = requested_sreg(request.extensions)
    if wish is None:
        return None
    # OpenID 2.0 messages declare the 1.1 namespace under the customary alias; in OpenID 1.x
    # the core declares nothing and the bare ``sreg.`` prefix is SREG 1.0.
    return ExtensionArgs(namespace=SREG_1_1_NS, args=wish.to_args(), alias="sreg")


@hookimpl
def openid_extension_response(response: ExtensionResponse) -> dict[str, Any] | None:
    """``{"sreg": {field: value}}``: empty when SREG was asked for and nothing came back
    (section 4: the RP MUST cope with missing fields); None when neither happened."""
    values = parse_response(response)
    if values is None:
        if not was_requested(response, SESSION_KIND):
            return None
        values = {}
    return {"sreg": values}
