"""OpenID messages: Key-Value form (OpenID 2.0 section 4.1.1), HTTP encodings (4.1.2),
and namespaces for OpenID itself and its extensions (section 12)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from html import escape
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ProtocolError

log = logging.getLogger("openid_plugins.protocol.message")

OPENID2_NS = "http://specs.openid.net/auth/2.0"
#: Namespace OpenID 1.x messages are treated as having (they carry no openid.ns).
OPENID1_NS = "http://openid.net/signon/1.0"
OPENID11_NS = "http://openid.net/signon/1.1"

#: Aliases an extension may not take (section 12: no '.', and not an OpenID field name).
RESERVED_ALIASES = frozenset(
    {
        "assoc_handle",
        "assoc_type",
        "claimed_id",
        "contact",
        "delegate",
        "dh_consumer_public",
        "dh_gen",
        "dh_modulus",
        "error",
        "identity",
        "invalidate_handle",
        "mode",
        "ns",
        "op_endpoint",
        "openid",
        "realm",
        "reference",
        "response_nonce",
        "return_to",
        "server",
        "session_type",
        "sig",
        "signed",
        "trust_root",
    }
)

#: OpenID 1.x had no extension namespaces; these aliases meant these extensions.
OPENID1_IMPLICIT_ALIASES = {
    "sreg": ("http://openid.net/extensions/sreg/1.1", "http://openid.net/sreg/1.0"),
    # PAPE 1.0 section 1.2: "when constructing OpenID 1.1 messages, the alias SHALL be pape".
    "pape": ("http://specs.openid.net/extensions/pape/1.0",),
}


def kv_encode(pairs: Iterable[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """Key-Value form (4.1.1): ``key:value\\n`` per pair, UTF-8. A newline anywhere or a
    colon in a key cannot be represented and is refused."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    lines = []
    for key, value in items:
        if "\n" in key or ":" in key:
            raise ProtocolError(f"KV form key {key!r} contains a newline or a colon")
        if "\n" in value:
            raise ProtocolError(f"KV form value for {key!r} contains a newline")
        lines.append(f"{key}:{value}\n")
    return "".join(lines).encode("utf-8")


def kv_decode(data: bytes | str, *, strict: bool = False) -> dict[str, str]:
    """Parse Key-Value form (4.1.1). Deployed OPs bend the format, so by default each
    deviation is logged and repaired as python-openid does: a missing final newline is
    accepted, lines without a colon are skipped, whitespace around keys and values is
    stripped, and of a repeated key (4.1 forbids it) the last value is kept. ``strict``
    raises ``ProtocolError`` for each of these instead. Non-UTF-8 bytes are always refused.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("KV form is not UTF-8 (4.1); the response is unusable") from None
    else:
        text = data
    result: dict[str, str] = {}
    if not text:
        return result

    def deviation(problem: str) -> None:
        if strict:
            raise ProtocolError(f"KV form {problem}")
        log.warning("KV form %s", problem)

    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    else:
        deviation("does not end with a newline")
    for number, line in enumerate(lines, 1):
        key, sep, value = line.partition(":")
        if not sep:
            if strict or line.strip():
                deviation(f"line {number} has no colon, skipped: {line[:80]!r}")
            continue
        if key != key.strip():
            deviation(f"line {number}: whitespace around the key {key[:80]!r} ignored")
            key = key.strip()
        if not key:
            deviation(f"line {number} has an empty key")
        if value != value.strip():
            deviation(f"line {number}: whitespace around the value of {key[:80]!r} ignored")
            value = value.strip()
        if key in result:
            deviation(f"line {number} repeats the key {key[:80]!r}; the last value is kept")
        result[key] = value
    return result


def _single_value(key: str, value: object) -> str:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ProtocolError(f"argument {key!r} appears {len(value)} times")
        value = value[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"argument {key!r} is not UTF-8") from None
    if not isinstance(value, str):
        raise ProtocolError(f"argument {key!r} is not a string")
    return value


class Message:
    """An OpenID message as its ``openid.``-less fields (``mode``, ``ns.sreg``, ``sreg.email``).

    Treat ``fields`` as read-only once a message is received: the namespace and the alias
    table are worked out once and cached, since ``complete()`` and every extension plugin
    ask for them. ``add_extension`` (for outgoing messages) keeps the cache right.
    """

    __slots__ = ("fields", "bare_args", "_namespace", "_aliases")

    def __init__(self, fields: Mapping[str, str] | None = None) -> None:
        self.fields: dict[str, str] = dict(fields or {})
        #: A received message's other arguments (not ``openid.*``), as (name, value or
        #: list of values) pairs: nobody signed them, so 11.1 checks each against return_to.
        self.bare_args: tuple[tuple[object, object], ...] = ()
        self._namespace: str | None = None
        self._aliases: dict[str, str] | None = None

    # -- parsing --------------------------------------------------------------------------

    @classmethod
    def from_query(cls, query: Mapping[str, object]) -> Message:
        """From request arguments (GET or POST), keeping only ``openid.*`` keys.

        Values may be strings or one-item lists (``parse_qs`` / Django ``QueryDict.lists``);
        a key given twice is ambiguous and refused (4.1.2 allows no repeats). The other
        arguments are kept in ``bare_args``, unconverted.
        """
        fields = {}
        bare = []
        for key, value in query.items():
            if key.__class__ is str and key.startswith("openid."):
                fields[key[7:]] = (
                    value if value.__class__ is str else _single_value(key, value)
                )
            else:
                bare.append((key, value))
        message = cls.__new__(cls)
        message.fields = fields
        message.bare_args = tuple(bare)
        message._namespace = message._aliases = None
        return message

    @classmethod
    def from_url(cls, url: str) -> Message:
        pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
        seen: dict[str, list[str]] = {}
        for key, value in pairs:
            seen.setdefault(key, []).append(value)
        return cls.from_query(seen)

    @classmethod
    def from_kv(cls, data: bytes | str) -> Message:
        return cls(kv_decode(data))

    # -- reading --------------------------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and other.fields == self.fields

    def __repr__(self) -> str:
        return f"Message({self.fields!r})"

    @property
    def namespace(self) -> str:
        """The OpenID namespace: 2.0 when declared, 1.x otherwise (section 4.1.2)."""
        if self._namespace is None:
            ns = self.fields.get("ns")
            if ns is None or ns in (OPENID1_NS, OPENID11_NS):
                self._namespace = OPENID1_NS
            elif ns == OPENID2_NS:
                self._namespace = OPENID2_NS
            else:
                raise ProtocolError(f"unknown OpenID namespace {ns!r}")
        return self._namespace

    @property
    def is_openid2(self) -> bool:
        return self.namespace == OPENID2_NS

    @property
    def mode(self) -> str | None:
        return self.fields.get("mode")

    def extension_aliases(self) -> dict[str, str]:
        """Declared extension namespaces: namespace URI -> alias (``openid.ns.<alias>``)."""
        if self._aliases is None:
            aliases: dict[str, str] = {}
            for key, value in self.fields.items():
                if key.startswith("ns.") and key.count(".") == 1:
                    alias = key[3:]
                    if alias in RESERVED_ALIASES:
                        raise ProtocolError(f"namespace alias {alias!r} is reserved (section 12)")
                    if value in aliases:
                        raise ProtocolError(f"namespace {value!r} is declared twice")
                    aliases[value] = alias
            self._aliases = aliases
        return self._aliases

    def alias_for(self, namespace: str) -> str | None:
        """The alias carrying ``namespace``; OpenID 1.x's implicit aliases included."""
        alias = self.extension_aliases().get(namespace)
        if alias is None and not self.is_openid2:
            for implicit, uris in OPENID1_IMPLICIT_ALIASES.items():
                if namespace in uris and f"ns.{implicit}" not in self.fields:
                    return implicit
        return alias

    def get_args(self, namespace: str) -> dict[str, str]:
        """Arguments of an extension namespace, keys without the alias."""
        alias = self.alias_for(namespace)
        if alias is None:
            return {}
        prefix = alias + "."
        return {k[len(prefix) :]: v for k, v in self.fields.items() if k.startswith(prefix)}

    # -- building -------------------------------------------------------------------------

    def add_extension(self, namespace: str, args: Mapping[str, str], alias: str | None) -> str:
        """Declare ``namespace`` (choosing a free alias) and add its arguments; return the
        alias used. Adding to an already declared namespace merges the arguments."""
        existing = self.alias_for(namespace)
        if existing is None:
            existing = self._free_alias(alias)
            if self.is_openid2:
                self.fields[f"ns.{existing}"] = namespace
                self._aliases = None
        for key, value in args.items():
            self.fields[f"{existing}.{key}"] = value
        return existing

    def _free_alias(self, preferred: str | None) -> str:
        taken = set(self.extension_aliases().values())
        taken.update(key.split(".", 1)[0] for key in self.fields if "." in key)
        if preferred and "." not in preferred and preferred not in RESERVED_ALIASES | taken:
            return preferred
        number = 0
        while f"ext{number}" in taken:
            number += 1
        return f"ext{number}"

    # -- encoding -------------------------------------------------------------------------

    def to_post_args(self) -> dict[str, str]:
        return {f"openid.{k}": v for k, v in self.fields.items()}

    def to_kv(self) -> bytes:
        return kv_encode(self.fields)

    def to_url(self, base_url: str) -> str:
        """``base_url`` with this message appended to its query (section 4.1.2)."""
        parts = urlsplit(base_url)
        query = urlencode(sorted(self.to_post_args().items()))
        merged = f"{parts.query}&{query}" if parts.query else query
        return urlunsplit((parts.scheme, parts.netloc, parts.path, merged, parts.fragment))

    def to_form_html(self, action: str, *, form_id: str = "openid_message") -> str:
        """A self-submitting POST form, for messages too long for a redirect (5.2.1)."""
        inputs = "\n".join(
            f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
            for k, v in sorted(self.to_post_args().items())
        )
        return (
            "<!DOCTYPE html>\n<html><head><title>OpenID sign-in</title></head>"
            f"<body onload=\"document.getElementById('{form_id}').submit()\">\n"
            f'<form id="{form_id}" method="post" action="{escape(action)}" '
            'accept-charset="UTF-8" enctype="application/x-www-form-urlencoded">\n'
            f"{inputs}\n"
            '<noscript><input type="submit" value="Continue"></noscript>\n'
            "</form></body></html>\n"
        )


def excerpt(text: str, limit: int = 200) -> str:
    """Free text from an OP (an ``openid.error``, an HTTP error page), fit for a log line or
    an error message: whitespace collapsed to single spaces, at most ``limit`` characters.
    Quote it with ``!r`` so control characters cannot forge log lines."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
