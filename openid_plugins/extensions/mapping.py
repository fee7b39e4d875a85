"""Ask once, get profile fields from SREG or AX, whichever the OP speaks.

``Attributes(required=["email"], optional=["nickname", "fullname"])`` takes the SREG field
names. In ``begin(extensions=[...])`` it asks through both SREG and AX: the SREG and AX
plugins merge it with any explicit ``SReg``/``AX`` (its ``as_sreg()``/``as_ax()``), so each
namespace is sent once. The merged answer, ``result.extensions["attributes"]`` = ``{"email":
..., "fullname": ...}``, comes from this module's response hook, which is not an entry
point: a site opts in with ``RelyingParty(..., plugins=[openid_plugins.extensions.mapping])``.

Merging: a signed SREG value wins over AX (SREG has one value per field with a defined
format); otherwise the first AX value; a missing full name is built from AX first + last
names (Google sent only those).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from ..hookspecs import hookimpl
from . import ax, sreg
from .base import ExtensionResponse

log = logging.getLogger("openid_plugins.extensions.mapping")

#: SREG field -> the axschema.org type carrying the same data in the same format.
SREG_TO_AX = {
    "nickname": ax.SCHEMA["nickname"],
    "email": ax.SCHEMA["email"],
    "fullname": ax.SCHEMA["fullname"],
    "dob": ax.SCHEMA["dob"],
    "gender": ax.SCHEMA["gender"],
    "postcode": ax.SCHEMA["postcode"],
    "country": ax.SCHEMA["country"],
    "language": ax.SCHEMA["language"],
    "timezone": ax.SCHEMA["timezone"],
}

SESSION_KIND = "attributes"


def _names(values: str | Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ConfigurationError(f"Attributes {what} must be a list of names, not {values!r}")
    result: list[str] = []
    for name in values:
        if name not in SREG_TO_AX:
            raise ConfigurationError(
                f"Attributes {what}: {name!r} is not one of {', '.join(SREG_TO_AX)}; "
                "ask for other attributes with AX directly"
            )
        if name not in result:
            result.append(name)
    return tuple(result)


@dataclass(frozen=True)
class Attributes:
    """Profile fields to ask for through both SREG and AX (SREG field names)."""

    required: Sequence[str] = ()
    optional: Sequence[str] = ()

    def __post_init__(self) -> None:
        required = _names(self.required, "required")
        optional = tuple(n for n in _names(self.optional, "optional") if n not in required)
        if not required and not optional:
            raise ConfigurationError("Attributes asks for nothing; name a field")
        object.__setattr__(self, "required", required)
        object.__setattr__(self, "optional", optional)

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)

    def as_sreg(self) -> sreg.SReg:
        return sreg.SReg(required=self.required, optional=self.optional)

    def as_ax(self) -> ax.AX:
        """The AX equivalent; a full name also asks (optionally) for first and last names,
        which OPs without ``namePerson`` send instead."""
        optional = [SREG_TO_AX[n] for n in self.optional]
        if "fullname" in self.fields:
            optional += [ax.SCHEMA["first"], ax.SCHEMA["last"]]
        return ax.AX(required=[SREG_TO_AX[n] for n in self.required], optional=optional)

    def to_session(self) -> dict[str, Any]:
        return {
            "extension": SESSION_KIND,
            "required": list(self.required),
            "optional": list(self.optional),
        }


def merge(
    fields: Iterable[str], sreg_values: Mapping[str, str], ax_values: ax.AXResult
) -> dict[str, str]:
    """The asked-for fields found in either answer (SREG first, then AX)."""
    merged: dict[str, str] = {}
    for name in fields:
        value = sreg_values.get(name) or ax_values.first(SREG_TO_AX[name])
        if not value and name == "fullname":
            parts = (ax_values.first(ax.SCHEMA["first"]), ax_values.first(ax.SCHEMA["last"]))
            value = " ".join(p for p in parts if p)
        if value:
            merged[name] = value
    return merged


@hookimpl
def openid_extension_response(response: ExtensionResponse) -> dict[str, Any] | None:
    """``{"attributes": {field: value}}`` when ``Attributes`` was asked for."""
    fields: list[str] = []
    for entry in response.requested:
        if isinstance(entry, Mapping) and entry.get("extension") == SESSION_KIND:
            for name in (*entry.get("required", ()), *entry.get("optional", ())):
                if name in SREG_TO_AX and name not in fields:
                    fields.append(name)
    if not fields:
        return None
    sreg_values = sreg.parse_response(response) or {}
    ax_values = ax.parse_response(response)
    if not isinstance(ax_values, ax.AXResult):
        ax_values = ax.AXResult()
    return {"attributes": merge(fields, sreg_values, ax_values)}
