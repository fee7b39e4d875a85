"""Identifier and URI normalization: OpenID 2.0 section 7.2 on top of RFC 3986 section 6.

Two URLs that name the same resource must become the same string before they are compared
or used as store keys (claimed identifiers, OP endpoints, return_to URLs), so this module
applies RFC 3986's syntax-based normalization (6.2.2) plus the scheme-based rules for http
and https (6.2.3): it never fetches anything.

The query and the fragment are kept verbatim (only non-ASCII characters are percent-encoded):
python-openid has produced claimed identifiers that way for years, and OPs echo them back.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from ..errors import IncorrectURIError, XRIError

#: OpenID 2.0 section 7.2 step 2: "=", "@", "+", "$", "!" (XRI Syntax 2.0 section 2.2.1) or "(".
XRI_GLOBAL_CONTEXT_SYMBOLS = frozenset("=@+$!(")
#: Longer identifiers are refused before any work: no person types one, the spec sets no
#: limit in practice, and the same bound applies to asserted identifiers (verify.py).
MAX_IDENTIFIER_LENGTH = 2047

# RFC 3986 appendix B: the one regular expression that splits any URI reference.
_URI_RE = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.S)
# A scheme written by the user (7.2 step 3 adds "http://" only when there is none).
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# RFC 3986 section 2: every character a URI may contain (unreserved, reserved, "%").
_URI_CHARS_RE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
# Section 2.1: "%" must start a two-hex-digit triplet.
_PCT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PCT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Section 3.2.2 reg-name (after percent-decoding) and IP-literal.
_REG_NAME_RE = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=]*$")
_IP_LITERAL_RE = re.compile(
    r"^\[[0-9A-Fa-f:.]+\]$|^\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]$"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Section 2.3: percent-encoded unreserved characters are decoded (6.2.2.2).
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def is_xri(identifier: str) -> bool:
    """True when user input is an XRI (7.2 steps 1-2), so the RP can hand it to a resolver
    plugin instead of treating it as a URL."""
    text = _strip_xri_prefix(identifier.strip())
    return bool(text) and text[0] in XRI_GLOBAL_CONTEXT_SYMBOLS


def normalize_xri(user_input: str) -> str:
    """The canonical form of an XRI (7.2 step 1: no "xri://" prefix), e.g. ``=example``.

    Raises ``IncorrectURIError`` when the input is not an XRI (``is_xri`` is false).
    """
    _check_identifier_length(user_input)
    if not is_xri(user_input):
        raise IncorrectURIError(f"{user_input!r} is not an XRI")
    return _strip_xri_prefix(user_input.strip())


def normalize_identifier(user_input: str) -> str:
    """Turn what the user typed into an http(s) Identifier (OpenID 2.0 section 7.2).

    Raises ``XRIError`` for an XRI (check ``is_xri`` first to resolve it through a plugin)
    and ``IncorrectURIError`` for anything that is not an http(s) URL.
    """
    _check_identifier_length(user_input)
    text = user_input.strip()
    if not text:
        raise IncorrectURIError("no identifier was given: enter your OpenID URL")
    if is_xri(text):
        raise XRIError(
            f"{text!r} is an XRI and no installed plugin resolves XRIs; use an http(s) identifier"
        )
    # 7.2 step 3: "http://" unless the input already has an http or https scheme.
    match = _SCHEME_RE.match(text)
    if match is None:
        text = "http://" + text
    elif match.group(1).lower() not in _DEFAULT_PORTS:
        raise IncorrectURIError(
            f"{user_input!r} is not an http or https URL: OpenID identifiers must be web addresses"
        )
    # 7.2 step 3: the fragment is stripped together with the "#".
    parts = split_uri(text.partition("#")[0])
    if parts.userinfo is not None:
        # RFC 9110 4.2.4: userinfo in a URI from an untrusted source is to be treated as an
        # error; "https://bank.example@evil.example/" exists to mislead.
        raise IncorrectURIError(
            f"{user_input!r} has a user name before its host; enter the address without it"
        )
    normalized = str(parts)
    _check_identifier_length(normalized)
    return normalized


def _check_identifier_length(text: str) -> None:
    if len(text) > MAX_IDENTIFIER_LENGTH:
        raise IncorrectURIError(
            f"the identifier {text[:60]!r}... is {len(text)} characters long; OpenID"
            f" identifiers here are at most {MAX_IDENTIFIER_LENGTH}"
        )


class URIParts(NamedTuple):
    """A normalized http(s) URI, split (RFC 3986 section 3); ``port`` is None for the
    scheme's default port and ``query``/``fragment`` are None when absent."""

    scheme: str
    userinfo: str | None
    host: str
    port: int | None
    path: str
    query: str | None
    fragment: str | None

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.scheme]

    def __str__(self) -> str:
        userinfo = "" if self.userinfo is None else self.userinfo + "@"
        port = "" if self.port is None else f":{self.port}"
        result = f"{self.scheme}://{userinfo}{self.host}{port}{self.path}"
        if self.query is not None:
            result += "?" + self.query
        if self.fragment is not None:
            result += "#" + self.fragment
        return result


def normalize_uri(uri: str) -> str:
    """RFC 3986 section 6 normalization of an absolute http or https URI.

    Lower-cases scheme and host, converts IDN hosts to punycode, removes the default and
    empty ports, normalizes percent-encoding and dot-segments in the path, and turns an empty
    path into "/". Raises ``IncorrectURIError`` for a non-http(s) scheme, a relative URI, a
    missing host, a bad port or characters a URI cannot contain.
    """
    return str(split_uri(uri))


def split_uri(uri: str) -> URIParts:
    """``normalize_uri``, returning the components (for realm matching and comparisons)."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in uri):
        raise IncorrectURIError(f"{uri!r} contains control characters; remove them")
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (as decoding with surrogateescape makes) has no UTF-8 form, so
        # no URL can contain it (RFC 3987 section 3.1 maps characters through UTF-8).
        raise IncorrectURIError(
            f"{uri[:200]!r} contains a character with no UTF-8 form (a lone surrogate)"
        ) from None
    match = _URI_RE.match(uri)
    if match is None:  # pragma: no cover - the RFC 3986 expression matches every string
        raise IncorrectURIError(f"{uri!r} is not a URI")
    scheme, authority, path, query, fragment = match.groups()
    if scheme is None or scheme.lower() not in _DEFAULT_PORTS:
        raise IncorrectURIError(f"{uri!r} is not an absolute http or https URL")
    scheme = scheme.lower()
    if authority is None:
        raise IncorrectURIError(f"{uri!r} has no host (expected {scheme}://host/...)")
    userinfo, host, port = _split_authority(authority, uri)
    return URIParts(
        scheme=scheme,
        userinfo=userinfo,
        host=_normalize_host(host, uri),
        port=_normalize_port(port, scheme, uri),
        path=remove_dot_segments(_normalize_percent_encoding(_iri_to_uri(path), uri)) or "/",
        query=None if query is None else _check_chars(_iri_to_uri(query), uri),
        fragment=None if fragment is None else _check_chars(_iri_to_uri(fragment), uri),
    )


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: resolve "." and ".." segments, in time linear in the path.

    The RFC's loop, with an index into the input instead of cutting its head off at every
    step: slicing copies the rest of the path each time, which made a long path of short
    segments quadratic (a 1 MB identifier cost seconds of CPU).
    """
    output: list[str] = []
    i, n = 0, len(path)
    while i < n:
        rest = n - i
        if path.startswith("../", i):  # 2.A
            i += 3
        elif path.startswith(("./", "/./"), i):  # 2.A, 2.B
            i += 2
        elif rest == 2 and path.startswith("/.", i):  # 2.B: "/." becomes "/"
            output.append("/")
            break
        elif path.startswith("/../", i):  # 2.C
            i += 3
            if output:
                output.pop()
        elif rest == 3 and path.startswith("/..", i):  # 2.C: "/.." becomes "/"
            if output:
                output.pop()
            output.append("/")
            break
        elif (rest == 1 and path[i] == ".") or (rest == 2 and path.startswith("..", i)):  # 2.D
            break
        else:  # 2.E
            end = path.find("/", i + 1 if path[i] == "/" else i)
            if end == -1:
                end = n
            output.append(path[i:end])
            i = end
    return "".join(output)


def _strip_xri_prefix(text: str) -> str:
    # 7.2 step 1: the "xri://" prefix is stripped so that XRIs are in canonical form.
    return text[6:] if text[:6].lower() == "xri://" else text


def _split_authority(authority: str, uri: str) -> tuple[str | None, str, str | None]:
    userinfo_text, at, hostport = authority.rpartition("@")
    userinfo = _normalize_percent_encoding(_iri_to_uri(userinfo_text), uri) if at else None
    if hostport.startswith("["):
        host, bracket, rest = hostport.partition("]")
        host += bracket
        if rest and not rest.startswith(":"):
            raise IncorrectURIError(f"{uri!r} has characters after its IPv6 address")
        port = rest[1:] if rest else None
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
    return userinfo, host, port


def _normalize_host(host: str, uri: str) -> str:
    if not host:
        raise IncorrectURIError(f"{uri!r} has no host name")
    if host.startswith("["):
        if not _IP_LITERAL_RE.match(host):
            raise IncorrectURIError(f"{uri!r} has a malformed IPv6 address")
        return host.lower()
    if _BAD_PCT_RE.search(host):
        raise IncorrectURIError(f"{uri!r} has a stray '%' in its host name")
    # Section 3.2.2: a percent-encoded reg-name is UTF-8; decode it to find IDN labels.
    try:
        host = unquote_to_bytes(_iri_to_uri(host)).decode("utf-8")
    except UnicodeDecodeError:
        raise IncorrectURIError(f"{uri!r} has a host name that is not valid UTF-8") from None
    if not host.isascii():
        host = _idna_host(host, uri)
        if not host.strip("."):  # UTS #46 maps some characters (a soft hyphen) to nothing
            raise IncorrectURIError(f"{uri!r} has no host name once internationalized")
    if not _REG_NAME_RE.match(host):
        raise IncorrectURIError(f"{uri!r} has characters a host name cannot contain")
    return host.lower()


def _idna_host(host: str, uri: str) -> str:
    """An internationalized host in its A-label (punycode) form, the way browsers do it
    (RFC 3987 section 3.1 through UTS #46 non-transitional processing, as the WHATWG URL
    standard does): "faß.de" stays its own domain, "xn--fa-hia.de", instead of becoming
    "fass.de" (IDNA 2003, Python's "idna" codec), which may belong to someone else."""
    import idna  # its tables cost start-up time; only non-ASCII hosts need them

    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
        return ".".join(
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        )
    except (idna.IDNAError, UnicodeError):
        raise IncorrectURIError(f"{uri!r} has an invalid internationalized host") from None


def _normalize_port(port: str | None, scheme: str, uri: str) -> int | None:
    # Section 6.2.3: an empty port and the scheme's default port are removed.
    if not port:
        return None
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise IncorrectURIError(f"{uri!r} has an invalid port {port!r}")
    number = int(port)
    return None if number == _DEFAULT_PORTS[scheme] else number


def _iri_to_uri(text: str) -> str:
    # RFC 3987 section 3.1: non-ASCII characters become percent-encoded UTF-8.
    if text.isascii():
        return text
    return "".join(
        char if char.isascii() else "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
        for char in text
    )


def _normalize_percent_encoding(text: str, uri: str) -> str:
    # Section 6.2.2.1: upper-case hex digits; 6.2.2.2: decode unreserved characters.
    if _BAD_PCT_RE.search(text):
        raise IncorrectURIError(f"{uri!r} has a '%' that does not start a %XX escape")

    def replace(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else match.group(0).upper()

    return _check_chars(_PCT_RE.sub(replace, text), uri)


def _check_chars(text: str, uri: str) -> str:
    if not _URI_CHARS_RE.match(text):
        bad = next(char for char in text if not _URI_CHARS_RE.match(char))
        raise IncorrectURIError(f"{uri!r} contains {bad!r}, which a URL cannot contain")
    return text
