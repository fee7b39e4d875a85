"""Realms (OpenID 2.0 section 9.2): the URL pattern an RP asks users to trust, and the
return_to check an OP applies against it.

An RP uses this to refuse, before any user sees it, a configured realm that its own
return_to URLs do not match (the OP would answer with an error) or that is so wide that
it names no particular site (``http://*.co.uk/``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

from ..errors import IncorrectURIError, RealmError
from .urinorm import URIParts, split_uri

#: Longer realms are refused before any parsing: a realm is a site's own short URL prefix.
MAX_REALM_LENGTH = 2047


@cache
def _public_suffixes() -> PublicSuffixList:
    # Loaded on first use (about 0.1 s): most processes never check a realm's sanity.
    # accept_unknown=False: a TLD missing from the list is no TLD at all.
    return PublicSuffixList(accept_unknown=False)


@dataclass(frozen=True)
class Realm:
    """A parsed realm: ``http(s)://[*.]host[:port]/path[?query]``, normalized."""

    #: The realm as it was given (what goes into ``openid.realm``).
    text: str
    scheme: str
    #: True for ``*.`` before the host: the realm covers every subdomain too.
    wildcard: bool
    #: Lower-case host without the wildcard; "" for ``http://*/`` (every host).
    host: str
    port: int
    #: Path plus ``?query`` when the realm has one (9.2: paths match on this prefix).
    path: str

    @classmethod
    def parse(cls, text: str) -> Realm:
        """Parse a realm; raise ``RealmError`` when it is not one (9.2)."""
        if isinstance(text, str) and len(text) > MAX_REALM_LENGTH:
            raise RealmError(
                f"realm {text[:60]!r}... is {len(text)} characters long; at most"
                f" {MAX_REALM_LENGTH} are accepted"
            )
        if not isinstance(text, str) or not text.isascii():
            # A realm is a URI (RFC 3986): an IDN host or path must be given in its
            # punycode / percent-encoded form.
            raise RealmError(
                f"realm {text!r} contains non-ASCII characters; write IDN hosts in punycode"
                " and percent-encode the path"
            )
        try:
            parts = split_uri(text)
        except IncorrectURIError as exc:
            raise RealmError(f"realm {text!r} is not an http(s) URL: {exc}") from None
        if parts.fragment is not None:
            raise RealmError(f"realm {text!r} has a fragment; 9.2 forbids one: remove '#...'")
        if parts.userinfo is not None:
            raise RealmError(f"realm {text!r} has user information before its host; remove it")
        host, wildcard = parts.host, False
        # 9.2: a wild-card is "*." prepended to the DNS name; "*" alone covers every host.
        if host == "*":
            host, wildcard = "", True
        elif host.startswith("*."):
            host, wildcard = host[2:], True
        if "*" in host:
            raise RealmError(
                f"realm {text!r} has a '*' that is not a leading '*.' wild-card of its host"
            )
        return cls(
            text=text,
            scheme=parts.scheme,
            wildcard=wildcard,
            host=host,
            port=parts.effective_port,
            path=_path_and_query(parts),
        )

    def __str__(self) -> str:
        return self.text

    def is_sane(self) -> bool:
        """False for realms too wide to identify one site (9.2 leaves it to judgement):
        a wild-card over a public suffix (``*.com``, ``*.co.uk``, ``*.github.io``) or over
        everything, a host that is itself a public suffix, an unknown top-level domain,
        or empty DNS labels."""
        if not self.wildcard and self.host == "localhost":
            return True
        if _is_ip_address(self.host):
            return not self.wildcard
        name = self.host[:-1] if self.host.endswith(".") else self.host
        if not name or "" in name.split("."):
            return False
        psl = _public_suffixes()
        if psl.publicsuffix(name) is None:
            return False
        return not psl.is_public(name)

    def matches(self, return_to: str) -> bool:
        """Whether ``return_to`` lies inside this realm (9.2): same scheme and port, the
        same host (or a subdomain under a wild-card), and a path equal to or below the
        realm's. Sanity is not part of matching."""
        try:
            parts = split_uri(return_to)
        except IncorrectURIError:
            return False
        if parts.userinfo is not None or "*" in parts.host:
            return False
        if parts.scheme != self.scheme or parts.effective_port != self.port:
            return False
        if not self._host_matches(parts.host):
            return False
        return self._path_matches(_path_and_query(parts))

    def _host_matches(self, host: str) -> bool:
        host, own = host.rstrip("."), self.host.rstrip(".")
        if not self.wildcard:
            return host == own
        return not own or host == own or host.endswith("." + own)

    def _path_matches(self, path: str) -> bool:
        own = self.path
        if path == own:
            return True
        if not path.startswith(own):
            return False
        # The realm's path must end on a boundary of the URL's: "/abc" covers "/abc/def"
        # and "/abc?x" but not "/abcd"; "/?a=b" covers "/?a=b&c=d" but not "/?a=bc".
        boundary = "&" if "?" in own else "?/"
        return own[-1] in boundary or own.endswith("?") or path[len(own)] in boundary


def _path_and_query(parts: URIParts) -> str:
    return parts.path if parts.query is None else f"{parts.path}?{parts.query}"


def _is_ip_address(host: str) -> bool:
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True
