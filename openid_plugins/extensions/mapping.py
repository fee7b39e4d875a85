"""Ask once, get profile fields from SREG or AX, whichever the OP speaks.

``Attributes(required=["email"], optional=["nickname", "fullname"])`` takes the SREG field
names. In ``begin(extensions=[...])`` it asks through both SREG and AX: the SREG and AX
plugins merge it with any explicit ``SReg``/``AX`` (its ``sreg_fields()``/``ax_types()``), so
each namespace is sent once. The merged answer, ``result.extensions["attributes"]`` =
``{"email": ..., "fullname": ...}``, comes from this module's response hook, a wrapper that
reads what the SREG and AX plugins parsed (it imports neither). It is not a default plugin:
a site opts in with ``RelyingParty(..., plugins=[openid_plugins.extensions.mapping])``.

Merging: a signed SREG value wins over AX (SREG has one value per field with a defined
format); otherwise the first AX value; a missing full name is built from AX first + last
names (Google sent only those).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConfigurationError
from ..hookspecs import hookimpl
from .axschema import SCHEMA
from .base import ExtensionResponse, was_requested

log = logging.getLogger("openid_plugins.extensions.mapping")

#: SREG field -> the axschema.org type carrying the same data in the same format.
SREG_TO_AX = {
    "nickname": SCHEMA["nickname"],
    "email": SCHEMA["email"],
    "fullname": SCHEMA["fullname"],
    "dob": SCHEMA["dob"],
    "gender": SCHEMA["gender"],
    "postcode": SCHEMA["postcode"],
    "country": SCHEMA["country"],
    "language": SCHEMA["language"],
    "timezone": SCHEMA["timezone"],
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

    def sreg_fields(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, optional) SREG field names, for the SREG plugin."""
        return tuple(self.required), tuple(self.optional)

    def ax_types(self) -> tuple[list[str], list[str]]:
        """(required, optional) AX type URIs, for the AX plugin; a full name also asks
        (optionally) for first and last names, which OPs without ``namePerson`` send."""
        optional = [SREG_TO_AX[n] for n in self.optional]
        if "fullname" in self.fields:
            optional += [SCHEMA["first"], SCHEMA["last"]]
        return [SREG_TO_AX[n] for n in self.required], optional

    def to_session(self) -> dict[str, Any]:
        return {
            "extension": SESSION_KIND,
            "required": list(self.required),
            "optional": list(self.optional),
        }


class _Values(Protocol):
    """What the AX plugin's parsed answer offers (``ax.AXResult``)."""

    def first(self, type_uri: str) -> str | None: ...


class _NoValues:
    def first(self, type_uri: str) -> str | None:
        return None


def merge(
    fields: Iterable[str], sreg_values: Mapping[str, str], ax_values: _Values
) -> dict[str, str]:
    """The asked-for fields found in either answer (SREG first, then AX)."""
    merged: dict[str, str] = {}
    for name in fields:
        value = sreg_values.get(name) or ax_values.first(SREG_TO_AX[name])
        if not value and name == "fullname":
            parts = (ax_values.first(SCHEMA["first"]), ax_values.first(SCHEMA["last"]))
            value = " ".join(p for p in parts if p)
        if value:
            merged[name] = value
    return merged


@hookimpl(wrapper=True)
def openid_extension_response(
    response: ExtensionResponse,
) -> Generator[None, list[Mapping[str, Any] | None], list[Mapping[str, Any] | None]]:
    """Adds ``{"attributes": {field: value}}`` to the other plugins' answers when
    ``Attributes`` was asked for, from the SREG and AX values they parsed."""
    results = yield
    if not was_requested(response, SESSION_KIND):
        return results
    fields: list[str] = []
    for entry in response.requested:
        if isinstance(entry, Mapping) and entry.get("extension") == SESSION_KIND:
            for name in (*entry.get("required", ()), *entry.get("optional", ())):
                if name in SREG_TO_AX and name not in fields:
                    fields.append(name)
    if not fields:
        return results
    sreg_values: Mapping[str, str] = {}
    ax_values: _Values = _NoValues()
    for part in results:
        if not part:
            continue
        if isinstance(part.get("sreg"), Mapping):
            sreg_values = part["sreg"]
        if callable(getattr(part.get("ax"), "first", None)):
            ax_values = part["ax"]
    return [*results, {"attributes": merge(fields, sreg_values, ax_values)}]
