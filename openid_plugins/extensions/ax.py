"""Attribute Exchange 1.0 (AX) as a plugin on the extension hooks: fetch and store.

A site asks with ``begin(..., extensions=[AX(required=[AX.email], optional=[AX.first])])``
and reads ``result.extensions["ax"]``: an ``AXResult``, a dict type URI -> list of values in
which the axschema.org short names (``"email"``) work as keys too. ``AXStore(values=...)``
asks the OP to store attributes; its answer is ``result.extensions["ax_store"]``.

AX is defined on the OpenID 2.0 extension mechanism only (AX section 2), so nothing is sent
to, or read from, OpenID 1.x providers. Mistakes in what the site asks for raise
``ConfigurationError`` at construction; malformed signed AX data in an assertion raises
``IncompleteAnswerError``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ..errors import ConfigurationError, IncompleteAnswerError
from ..hookspecs import hookimpl
from .axschema import SCHEMA
from .base import ExtensionArgs, ExtensionRequest, ExtensionResponse, was_requested

log = logging.getLogger("openid_plugins.extensions.ax")

AX_NS = "http://openid.net/srv/ax/1.0"
#: Section 5.1: a count asking for every value the OP has.
UNLIMITED = "unlimited"

#: axschema.org attribute types (the URIs Google and Yahoo served) by short name. The short
#: names double as the attribute aliases in requests.
_SHORT_NAMES = {uri: name for name, uri in SCHEMA.items()}

SESSION_FETCH = "ax"
SESSION_STORE = "ax_store"


def type_uri(name: str) -> str:
    """A type URI from a URI or an axschema.org short name; anything else is refused."""
    if not isinstance(name, str):
        raise ConfigurationError(f"AX attribute {name!r} is not a type URI (a string)")
    if name in SCHEMA:
        return SCHEMA[name]
    # Section 3.2: a type identifier MUST be a URI; the wire format forbids newlines.
    if ":" not in name or any(c.isspace() for c in name):
        raise ConfigurationError(
            f"AX attribute {name!r} is neither a type URI nor one of the short names "
            f"{', '.join(SCHEMA)}"
        )
    return name


def _type_uris(names: str | Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(names, str):
        raise ConfigurationError(f"AX {what} must be a list of type URIs, not the string {names!r}")
    return tuple(dict.fromkeys(type_uri(name) for name in names))


def _check_url(url: str | None, what: str) -> None:
    if url is None:
        return
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"AX {what} {url!r} is not an absolute http(s) URL")


def aliases_for(uris: Iterable[str]) -> dict[str, str]:
    """Attribute aliases for type URIs: the short name for axschema.org types, ``attrN``
    otherwise. Never contains '.' or ',' and stays far below 32 characters (section 5.1)."""
    aliases: dict[str, str] = {}
    taken: set[str] = set()
    number = 0
    for uri in uris:
        alias = _SHORT_NAMES.get(uri)
        if alias is None or alias in taken:
            while f"attr{number}" in taken or f"attr{number}" in SCHEMA:
                number += 1
            alias = f"attr{number}"
        aliases[uri] = alias
        taken.add(alias)
    return aliases


def _count(value: Any, uri: str) -> int | str:
    # Section 5.1: count.<alias> MUST be greater than zero, or "unlimited".
    if value == UNLIMITED:
        return UNLIMITED
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"AX count for {uri!r} is {value!r}; use a whole number >= 1 or {UNLIMITED!r}"
        )
    return value


def _larger(a: int | str, b: int | str) -> int | str:
    if UNLIMITED in (a, b):
        return UNLIMITED
    return max(int(a), int(b))


@dataclass(frozen=True)
class AX:
    """An AX fetch request (section 5.1). Attributes are type URIs or short names; a type
    both required and optional counts as required. ``count`` maps an attribute to how many
    values to ask for (default 1; ``"unlimited"`` for all)."""

    required: Sequence[str] = ()
    optional: Sequence[str] = ()
    #: Where the OP may later post updated values; it must fall under the realm (5.1).
    update_url: str | None = None
    count: Mapping[str, int | str] = field(default_factory=dict, hash=False)

    email: ClassVar[str] = SCHEMA["email"]
    first: ClassVar[str] = SCHEMA["first"]
    last: ClassVar[str] = SCHEMA["last"]
    fullname: ClassVar[str] = SCHEMA["fullname"]
    nickname: ClassVar[str] = SCHEMA["nickname"]
    country: ClassVar[str] = SCHEMA["country"]
    language: ClassVar[str] = SCHEMA["language"]
    timezone: ClassVar[str] = SCHEMA["timezone"]
    dob: ClassVar[str] = SCHEMA["dob"]
    gender: ClassVar[str] = SCHEMA["gender"]
    postcode: ClassVar[str] = SCHEMA["postcode"]

    def __post_init__(self) -> None:
        required = _type_uris(self.required, "required")
        optional = tuple(u for u in _type_uris(self.optional, "optional") if u not in required)
        # Section 5.1: at least one of required or if_available MUST be sent.
        if not required and not optional:
            raise ConfigurationError("AX asks for no attribute; name one in required= or optional=")
        _check_url(self.update_url, "update_url")
        counts: dict[str, int | str] = {}
        for name, value in dict(self.count or {}).items():
            uri = type_uri(name)
            if uri not in required and uri not in optional:
                raise ConfigurationError(
                    f"AX count given for {name!r}, which is neither required nor optional"
                )
            counts[uri] = _count(value, uri)
        object.__setattr__(self, "required", required)
        object.__setattr__(self, "optional", optional)
        object.__setattr__(self, "count", MappingProxyType(counts))

    def merge(self, other: AX) -> AX:
        """One fetch asking for everything both ask for (required wins, larger count wins)."""
        if self.update_url and other.update_url and self.update_url != other.update_url:
            raise ConfigurationError(
                f"two AX requests name different update URLs ({self.update_url!r} and "
                f"{other.update_url!r}); a request carries one, so pass only one"
            )
        required = tuple(dict.fromkeys((*self.required, *other.required)))
        optional = tuple(u for u in (*self.optional, *other.optional) if u not in required)
        counts = dict(self.count)
        for uri, value in other.count.items():
            counts[uri] = _larger(counts.get(uri, 1), value)
        return AX(required, optional, self.update_url or other.update_url, counts)

    def to_args(self) -> dict[str, str]:
        """The fetch_request arguments (section 5.1), without the namespace alias."""
        aliases = aliases_for((*self.required, *self.optional))
        args = {"mode": "fetch_request"}
        for uri, alias in aliases.items():
            args[f"type.{alias}"] = uri
            count = self.count.get(uri, 1)
            if count != 1:  # absent means exactly one value
                args[f"count.{alias}"] = str(count)
        if self.required:
            args["required"] = ",".join(aliases[u] for u in self.required)
        if self.optional:
            args["if_available"] = ",".join(aliases[u] for u in self.optional)
        if self.update_url:
            args["update_url"] = self.update_url
        return args

    def to_session(self) -> dict[str, Any]:
        return {
            "extension": SESSION_FETCH,
            "required": list(self.required),
            "optional": list(self.optional),
            "update_url": self.update_url,
            "count": dict(self.count),
        }

    @classmethod
    def from_session(cls, data: Mapping[str, Any]) -> AX:
        return cls(
            data.get("required", ()),
            data.get("optional", ()),
            data.get("update_url"),
            data.get("count") or {},
        )


@dataclass(frozen=True)
class AXStore:
    """An AX store request (section 6.1): type URI (or short name) -> values to store."""

    values: Mapping[str, str | Sequence[str]] = field(hash=False)

    def __post_init__(self) -> None:
        normalized: dict[str, tuple[str, ...]] = {}
        for name, raw in dict(self.values).items():
            uri = type_uri(name)
            values = (raw,) if isinstance(raw, str) else tuple(raw)
            if not values:
                raise ConfigurationError(f"AXStore has no value for {name!r}; leave it out")
            for value in values:
                # Section 3.3: values are UTF-8 strings without newlines.
                if not isinstance(value, str) or "\n" in value:
                    raise ConfigurationError(
                        f"AXStore value {value!r} for {name!r} is not a string without newlines"
                    )
            if uri in normalized:
                raise ConfigurationError(f"AXStore names {uri!r} twice")
            normalized[uri] = values
        if not normalized:
            raise ConfigurationError("AXStore has nothing to store")
        object.__setattr__(self, "values", MappingProxyType(normalized))

    def merge(self, other: AXStore) -> AXStore:
        both = set(self.values) & set(other.values)
        if both:
            raise ConfigurationError(f"two AXStore requests both store {sorted(both)!r}")
        return AXStore({**self.values, **other.values})

    def to_args(self) -> dict[str, str]:
        """The store_request arguments (section 6.1): one value as ``value.<alias>``, several
        as ``count.<alias>`` plus ``value.<alias>.1..N``."""
        args = {"mode": "store_request"}
        for uri, alias in aliases_for(self.values).items():
            values = self.values[uri]
            args[f"type.{alias}"] = uri
            if len(values) == 1:
                args[f"value.{alias}"] = values[0]
            else:
                args[f"count.{alias}"] = str(len(values))
                for number, value in enumerate(values, 1):
                    args[f"value.{alias}.{number}"] = value
        return args

    def to_session(self) -> dict[str, Any]:
        """Only the types: the values themselves need not sit in the session."""
        return {"extension": SESSION_STORE, "types": list(self.values)}


class AXResult(dict[str, list[str]]):
    """Values of an AX fetch response: type URI -> values (in index order; empty when the
    OP declared the attribute without values). Short names of the axschema.org types work as
    keys: ``result["email"]``, ``"email" in result``, ``result.first("email")``."""

    def __init__(
        self, values: Mapping[str, list[str]] | None = None, update_url: str | None = None
    ) -> None:
        super().__init__(values or {})
        #: Echoed by an OP that will post updates there (section 5.2).
        self.update_url = update_url

    def __missing__(self, key: str) -> list[str]:
        uri = SCHEMA.get(key)
        if uri is not None and dict.__contains__(self, uri):
            return dict.__getitem__(self, uri)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        return isinstance(key, str) and SCHEMA.get(key) is not None and (SCHEMA[key] in self)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def first(self, key: str, default: str | None = None) -> str | None:
        """The first value of an attribute, or ``default`` when it has none."""
        values = self.get(key)
        return values[0] if values else default


@dataclass(frozen=True)
class AXStoreResponse:
    """The OP's answer to ``AXStore`` (section 6.2)."""

    succeeded: bool
    #: The OP's explanation of a failure, meant for the user (6.2.2).
    error: str | None = None


def _malformed(problem: str) -> IncompleteAnswerError:
    return IncompleteAnswerError(
        f"the OP's signed AX response is malformed: {problem} (AX 1.0 section 5.2); "
        "the assertion is rejected, try again or ask the OP's operator"
    )


def _count_of(value: str, alias: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise _malformed(f"count.{alias} is {value!r}, not a whole number")
    return int(value)


def parse_fetch_response(args: Mapping[str, str]) -> AXResult:
    """Read fetch_response arguments (without alias), strictly: every value must belong to a
    declared type, and with ``count.<alias>`` exactly ``value.<alias>.1..N`` must be present."""
    types: dict[str, str] = {}
    for key, uri in args.items():
        if not key.startswith("type."):
            continue
        alias = key[len("type.") :]
        # Section 5.2: aliases MUST NOT contain commas or periods.
        if not alias or "," in alias or "." in alias:
            raise _malformed(f"attribute alias {alias!r} is empty or contains ',' or '.'")
        if uri in types.values():
            raise _malformed(f"type {uri!r} is declared under two aliases")
        types[alias] = uri

    plain: dict[str, str] = {}
    numbered: dict[str, dict[str, str]] = {}
    for key, value in args.items():
        if key.startswith("value."):
            alias, dot, number = key[len("value.") :].partition(".")
            if alias not in types:
                raise _malformed(f"value.{alias} has no type.{alias}")
            if dot:
                numbered.setdefault(alias, {})[number] = value
            else:
                plain[alias] = value
        elif key.startswith("count.") and key[len("count.") :] not in types:
            raise _malformed(f"{key} has no type.{key[len('count.') :]}")

    result = AXResult(update_url=args.get("update_url"))
    for alias, uri in types.items():
        count_s = args.get(f"count.{alias}")
        indexed = numbered.get(alias, {})
        if count_s is None:
            if indexed:
                raise _malformed(f"value.{alias}.N given without count.{alias}")
            result[uri] = [plain[alias]] if alias in plain else []
            continue
        count = _count_of(count_s, alias)
        if alias in plain:
            raise _malformed(f"value.{alias} given together with count.{alias}")
        expected = {str(n) for n in range(1, count + 1)} if count <= len(indexed) else None
        if expected is None or set(indexed) != expected:
            raise _malformed(
                f"count.{alias} is {count} but the values given are "
                f"{sorted(indexed) or 'none'} (expected value.{alias}.1 to .{count})"
            )
        result[uri] = [indexed[str(n)] for n in range(1, count + 1)]
    return result


def parse_response(response: ExtensionResponse) -> AXResult | AXStoreResponse | None:
    """The signed AX part of an assertion; None when there is none (or in OpenID 1.x)."""
    if not response.message.is_openid2:
        return None
    args = response.signed_args(AX_NS)
    if not args:
        return None
    mode = args.get("mode")
    if mode == "fetch_response":
        return parse_fetch_response(args)
    if mode == "store_response_success":
        return AXStoreResponse(True)
    if mode == "store_response_failure":
        return AXStoreResponse(False, args.get("error"))
    raise _malformed(f"openid.ax.mode is {mode!r} (missing or unsigned, or not a response mode)")


def requested_ax(extensions: Iterable[object]) -> AX | None:
    """Every fetch wish among a login's extension objects, merged into one.

    Objects that ask through both SREG and AX (``mapping.Attributes``) contribute too: one
    with an ``ax_types()`` method returning ``(required, optional)`` type URIs, or an
    ``as_ax()`` method returning an ``AX`` (or None).
    """
    merged: AX | None = None
    for ext in extensions:
        if isinstance(ext, AX):
            wish: AX | None = ext
        elif callable(types := getattr(ext, "ax_types", None)):
            required, optional = types()
            wish = AX(required=required, optional=optional)
        elif callable(as_ax := getattr(ext, "as_ax", None)):
            wish = as_ax()
        else:
            continue
        if wish is not None:
            merged = wish if merged is None else merged.merge(wish)
    return merged


@hookimpl
def openid_extension_request_args(request: ExtensionRequest) -> ExtensionArgs | None:
    fetch = requested_ax(request.extensions)
    stores = request.requested(AXStore)
    if fetch is None and not stores:
        return None
    if fetch is not None and stores:
        raise ConfigurationError(
            "an authentication request carries one AX message: fetch (AX) or store (AXStore), "
            "not both; store in a separate login"
        )
    if not request.endpoint.is_openid2:
        log.info("AX not sent to %s: it speaks OpenID 1.x only", request.endpoint.server_url)
        return None
    if fetch is not None:
        return ExtensionArgs(namespace=AX_NS, args=fetch.to_args(), alias="ax")
    store = stores[0]
    for other in stores[1:]:
        store = store.merge(other)
    return ExtensionArgs(namespace=AX_NS, args=store.to_args(), alias="ax")


@hookimpl
def openid_extension_response(response: ExtensionResponse) -> dict[str, Any] | None:
    """``{"ax": AXResult}`` (empty when AX fetch was asked for and nothing came back) or
    ``{"ax_store": AXStoreResponse}``; None when neither was asked for nor sent."""
    parsed = parse_response(response)
    if isinstance(parsed, AXStoreResponse):
        return {"ax_store": parsed}
    if parsed is None:
        if not was_requested(response, SESSION_FETCH):
            return None
        parsed = AXResult()
    return {"ax": parsed}
