"""OpenID discovery (OpenID 2.0 section 7.3): from a normalized identifier to the OP
endpoints that may vouch for it.

1. An XRI goes to the resolver the caller passes (the relying party passes the
   ``openid_resolve_xri`` hook; none is built in).
2. A URL goes through Yadis (``yadis``). If that yields an XRDS with OpenID services, OP
   Identifier services win over Claimed Identifier services (7.3.2.2), and among the
   latter OpenID 2.0 is preferred to 1.1 to 1.0 (7.3.2.4), XRDS priority breaking ties.
3. Otherwise - no XRDS, an unusable one, or no OpenID service in it - the URL is fetched
   again and its HTML ``<link>`` tags are used (7.3.3).

The claimed identifier is the final URL after redirects, without fragment, RFC 3986
normalized (7.2 step 4, 11.5.2). Only http(s) OP endpoints are kept: an XRDS or page can
name anything, and the RP must not be steered to ``file:`` or ``javascript:`` URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..contracts import MAX_SERVER_URL_BYTES
from ..errors import (
    IncorrectClaimError,
    IncorrectURIError,
    XRDSError,
    XRDSRefusedError,
    XRIError,
    YadisError,
)
from .endpoint import (
    OPENID_1_0_TYPE,
    OPENID_1_1_TYPE,
    OPENID_2_0_TYPE,
    OPENID_IDP_2_0_TYPE,
    OPENID_TYPES,
    Endpoint,
)
from .fetch import Fetcher, content_type_charset, redact
from .html import decode_html, find_openid_links
from .urinorm import is_xri, normalize_uri
from .xrds import XRDS, Service, parse_xrds
from .yadis import YadisResult, check_status, is_http_url, yadis_discover

log = logging.getLogger("openid_plugins.protocol.discovery")

#: What the HTML fallback asks for (7.3.1 step 3: "the URL is retrieved").
HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
#: Claimed Identifier service preference (7.3.2.4); OP Identifier services come first anyway.
_VERSION_PREFERENCE = (OPENID_2_0_TYPE, OPENID_1_1_TYPE, OPENID_1_0_TYPE)


@dataclass(frozen=True)
class DiscoveryResult:
    """The identifier discovery settled on, and its endpoints, best first."""

    #: The normalized final URL (for an OP Identifier: the URL the user gave, 7.3.1).
    claimed_id: str
    endpoints: list[Endpoint]


def usable_endpoint_url(url: str) -> bool:
    """An OP endpoint we may send users and direct requests to: absolute http(s), no
    whitespace or control characters, within the length any OpenID message allows."""
    return (
        is_http_url(url)
        and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url)
        and len(url.encode("utf-8", "surrogatepass")) <= MAX_SERVER_URL_BYTES
    )


def _by_version(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """Stable sort by the best protocol version each endpoint offers (7.3.2.4)."""

    def rank(endpoint: Endpoint) -> int:
        for index, type_uri in enumerate(_VERSION_PREFERENCE):
            if type_uri in endpoint.type_uris:
                return index
        return len(_VERSION_PREFERENCE)

    return sorted(endpoints, key=rank)


def _prefer(endpoints: list[Endpoint]) -> list[Endpoint]:
    """OP Identifier endpoints if there are any (7.3.2.2), else all, best version first."""
    op_endpoints = [e for e in endpoints if e.is_op_identifier]
    return op_endpoints or _by_version(endpoints)


def _local_id(service: Service, claimed_id: str) -> str | None:
    """The service's OP-local identifier: ``<xrd:LocalID>`` for OpenID 2.0 (7.3.2.1.2),
    ``<openid:Delegate>`` for 1.x. All that apply must agree: a page that names two
    identities is ambiguous, and guessing could log the user in as the wrong one."""
    candidates: list[str] = []
    if OPENID_1_0_TYPE in service.types or OPENID_1_1_TYPE in service.types:
        candidates += service.delegates
    if OPENID_2_0_TYPE in service.types:
        candidates += service.local_ids
    distinct = list(dict.fromkeys(candidates))
    if len(distinct) > 1:
        raise IncorrectClaimError(
            f"the XRDS of {claimed_id} gives one OpenID service several different OP-local"
            f" identifiers ({', '.join(distinct)}); its owner must list exactly one"
        )
    if not distinct or distinct[0] == claimed_id:
        return None
    return distinct[0]


def endpoints_from_xrds(claimed_id: str, xrds: XRDS) -> list[Endpoint]:
    """The OpenID endpoints of an XRDS (7.3.2), in the order they should be tried."""
    endpoints: list[Endpoint] = []
    for service in xrds.services:
        openid_types = [t for t in OPENID_TYPES if t in service.types]
        if not openid_types:
            continue
        is_op = OPENID_IDP_2_0_TYPE in service.types
        # An OP Identifier element has no claimed or local identifier (7.3.2.1.1).
        local_id = None if is_op else _local_id(service, claimed_id)
        others = [t for t in service.types if t not in OPENID_TYPES]
        for uri in service.uris:
            if not usable_endpoint_url(uri):
                log.info("ignoring the non-http(s) OP endpoint %r of %s", uri, claimed_id)
                continue
            endpoints.append(
                Endpoint(
                    server_url=uri,
                    claimed_id=None if is_op else claimed_id,
                    local_id=local_id,
                    type_uris=tuple(openid_types + others),
                    from_yadis=True,
                )
            )
    return _prefer(endpoints)


def endpoints_from_html(claimed_id: str, text: str) -> list[Endpoint]:
    """The endpoints a page's ``<link>`` tags name: 2.0 (7.3.3) before 1.1."""
    links = find_openid_links(text)
    endpoints = []
    for server, local_id, type_uri in (
        (links.provider, links.local_id, OPENID_2_0_TYPE),
        (links.server, links.delegate, OPENID_1_1_TYPE),
    ):
        if server is None:
            continue
        if not usable_endpoint_url(server):
            log.info("ignoring the non-http(s) OP endpoint %r on %s", server, claimed_id)
            continue
        endpoints.append(
            Endpoint(
                server_url=server,
                claimed_id=claimed_id,
                local_id=None if local_id in (None, claimed_id) else local_id,
                type_uris=(type_uri,),
                from_yadis=False,
            )
        )
    return endpoints


def _claimed_id(final_url: str) -> str:
    """7.2 step 4 and 11.5.2: the final URL, fragment removed, RFC 3986 normalized."""
    url = final_url.partition("#")[0]
    try:
        return normalize_uri(url)
    except IncorrectURIError as exc:
        raise IncorrectClaimError(
            f"discovery ended at {redact(url)}, which is not a usable identifier: {exc}"
        ) from exc


def _no_service(url: str, reasons: list[str]) -> IncorrectClaimError:
    return IncorrectClaimError(
        f"no OpenID service was found at {redact(url)}: {'; '.join(reasons)}. Check the"
        " identifier, or ask its owner to add OpenID <link> tags or an XRDS document"
    )


def _html_discovery(url: str, fetcher: Fetcher, reasons: list[str]) -> DiscoveryResult:
    """7.3.1 step 3: fetch the URL again, as a browser would, and read its links."""
    response = fetcher.get(url, accept=HTML_ACCEPT)
    check_status(response, url, "the identifier URL")
    claimed_id = _claimed_id(response.final_url)
    text = decode_html(response.body, response.charset)
    endpoints = endpoints_from_html(claimed_id, text)
    if not endpoints:
        raise _no_service(url, [*reasons, "the page has no OpenID <link> tags in its <head>"])
    return DiscoveryResult(claimed_id=claimed_id, endpoints=endpoints)


def _from_yadis(url: str, yadis: YadisResult, fetcher: Fetcher) -> DiscoveryResult:
    claimed_id = _claimed_id(yadis.normalized_uri)
    if not yadis.is_xrds:
        text = decode_html(yadis.body, content_type_charset(yadis.content_type))
        endpoints = endpoints_from_html(claimed_id, text)
        if not endpoints:
            raise _no_service(url, ["the page has no XRDS and no OpenID <link> tags"])
        return DiscoveryResult(claimed_id=claimed_id, endpoints=endpoints)
    reasons = []
    try:
        xrds = parse_xrds(yadis.body)
    except XRDSRefusedError:
        raise  # hostile, not broken: no second chance for this site
    except XRDSError as exc:
        reasons.append(f"its XRDS document ({redact(yadis.xrds_uri or url)}) is unusable: {exc}")
    else:
        endpoints = endpoints_from_xrds(claimed_id, xrds)
        if endpoints:
            return DiscoveryResult(claimed_id=claimed_id, endpoints=endpoints)
        reasons.append("its XRDS document lists no OpenID service with an http(s) endpoint")
    log.info("falling back to HTML discovery for %s: %s", redact(url), "; ".join(reasons))
    return _html_discovery(url, fetcher, reasons)


#: Resolves an XRI to its OpenID endpoints, or None when it cannot (no resolver installed).
XRIResolver = Callable[[str], "list[Endpoint] | None"]


def discover_xri(xri: str, resolve_xri: XRIResolver | None) -> DiscoveryResult:
    """Resolve an XRI with ``resolve_xri`` (7.3 step 1)."""
    endpoints = resolve_xri(xri) if resolve_xri is not None else None
    if endpoints is None:
        raise XRIError(
            f"{xri!r} is an XRI and no installed plugin resolves XRIs; use an http(s) identifier"
        )
    ordered = _prefer(list(endpoints))
    if not ordered:
        raise IncorrectClaimError(f"the XRI {xri!r} resolved to no OpenID service")
    claimed_id = next((e.claimed_id for e in ordered if e.claimed_id), xri)
    return DiscoveryResult(claimed_id=claimed_id, endpoints=ordered)


def discover(
    identifier: str,
    fetcher: Fetcher,
    *,
    resolve_xri: XRIResolver | None = None,
) -> DiscoveryResult:
    """Discover the OP endpoints of a normalized identifier (``urinorm``) or an XRI.

    Raises ``IncorrectClaimError`` when nothing usable is found (the message says why),
    ``XRIError`` for an XRI nobody resolves, ``XRDSRefusedError`` for a hostile XRDS, and
    ``FetchError`` subclasses when the identifier cannot be fetched within limits.
    """
    if is_xri(identifier):
        return discover_xri(identifier.strip(), resolve_xri)
    url = identifier.partition("#")[0]
    if not is_http_url(url):
        raise IncorrectURIError(
            f"{identifier!r} is not an http(s) URL; normalize user input with"
            " urinorm.normalize_identifier first"
        )
    try:
        yadis = yadis_discover(url, fetcher)
    except YadisError as exc:
        log.info("Yadis failed for %s, trying HTML discovery: %s", redact(url), exc)
        return _html_discovery(url, fetcher, [str(exc)])
    return _from_yadis(url, yadis, fetcher)
