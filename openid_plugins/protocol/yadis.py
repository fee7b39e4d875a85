"""The Yadis protocol (Yadis 1.0 section 6; OpenID 2.0 section 7.3, step 2): from a URL
to its XRDS document.

GET the URL asking for ``application/xrds+xml``. If that is what comes back, done.
Otherwise the page may point at its XRDS with an ``X-XRDS-Location`` header or, failing
that, a ``<meta http-equiv="X-XRDS-Location">`` in its ``<head>``; fetch that. A page with
neither is not a Yadis page, which is not an error: HTML discovery takes over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import FetchError, IncorrectClaimError, YadisError
from .fetch import Fetcher, FetchResponse, redact
from .html import decode_html, find_xrds_location

log = logging.getLogger("openid_plugins.protocol.yadis")

YADIS_CONTENT_TYPE = "application/xrds+xml"
YADIS_HEADER = "X-XRDS-Location"
#: XRDS preferred; HTML so that servers without XRDS still send the page we fall back to.
YADIS_ACCEPT = "application/xrds+xml, text/html;q=0.5, application/xhtml+xml;q=0.5"
#: Statuses that carry the identifier's document (python-openid accepts exactly these).
OK_STATUSES = (200, 206)


@dataclass(frozen=True)
class YadisResult:
    """What the Yadis protocol found for one URL."""

    #: The URL discovery started from.
    request_uri: str
    #: The identifier page's final URL, after redirects (OpenID 2.0 section 7.2, step 4).
    normalized_uri: str
    #: Where the XRDS document was fetched from; None when the page is not a Yadis page.
    xrds_uri: str | None
    #: Content-Type of ``body``, verbatim.
    content_type: str
    #: The XRDS document, or the page itself when there is none.
    body: bytes = field(repr=False)
    #: True when ``body`` is the XRDS (served as such, or found through X-XRDS-Location).
    is_xrds: bool


def is_http_url(url: str) -> bool:
    """An absolute http or https URL with a host."""
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


#: Statuses with which a site refuses this server rather than the identifier: a CDN's bot
#: protection or a firewall page (403), a rate limiter (429) - say so, a typo it is not.
REFUSING_STATUSES = frozenset({401, 403, 407, 429, 503})


def check_status(response: FetchResponse, url: str, what: str) -> None:
    """``IncorrectClaimError`` saying what the site answered unless it is a success."""
    if response.status in OK_STATUSES:
        return
    if response.status in REFUSING_STATUSES:
        advice = (
            "the site refused or rate-limited this server's request (a CDN or firewall"
            " blocking automated clients?); sign-in with this identifier fails until it lets"
            " us through"
        )
    else:
        advice = "check the identifier for typos, or try again later if the site is down"
    raise IncorrectClaimError(f"{what} {redact(url)} answered {response.describe()}; {advice}")


def xrds_location(response: FetchResponse) -> str | None:
    """The page's X-XRDS-Location: the header (case-insensitive), else the first meta tag
    in ``<head>``. Several different header values are ambiguous and refused."""
    values = list(dict.fromkeys(v.strip() for v in response.header_values(YADIS_HEADER)))
    values = [v for v in values if v]
    if len(values) > 1:
        raise YadisError(
            f"{redact(response.final_url)} sends {len(values)} different {YADIS_HEADER}"
            f" headers ({', '.join(values)}); its owner must send exactly one"
        )
    if values:
        return values[0]
    location = find_xrds_location(decode_html(response.body, response.charset))
    return location.strip() if location and location.strip() else None


def yadis_discover(url: str, fetcher: Fetcher) -> YadisResult:
    """Run the Yadis protocol on ``url``.

    Raises ``IncorrectClaimError`` when the URL itself does not answer 200, ``FetchError``
    (and subclasses) when it cannot be fetched within limits, and ``YadisError`` when the
    page names an XRDS document that cannot be had (bad or several locations, a failed
    fetch) - a caller may then fall back to HTML discovery (OpenID 2.0 section 7.3).
    """
    response = fetcher.get(url, accept=YADIS_ACCEPT)
    check_status(response, url, "the identifier URL")
    content_type = response.headers.get("content-type", "")
    if response.media_type == YADIS_CONTENT_TYPE:
        return YadisResult(
            request_uri=url,
            normalized_uri=response.final_url,
            xrds_uri=response.final_url,
            content_type=content_type,
            body=response.body,
            is_xrds=True,
        )
    location = xrds_location(response)
    if location is None:
        return YadisResult(
            request_uri=url,
            normalized_uri=response.final_url,
            xrds_uri=None,
            content_type=content_type,
            body=response.body,
            is_xrds=False,
        )
    if not is_http_url(location):
        raise YadisError(
            f"the {YADIS_HEADER} of {redact(response.final_url)} is {location!r}, not an"
            " absolute http(s) URL"
        )
    log.debug("%s points to its XRDS at %s", redact(response.final_url), redact(location))
    try:
        document = fetcher.get(location, accept=YADIS_CONTENT_TYPE)
        check_status(document, location, f"the XRDS document ({YADIS_HEADER})")
    except (FetchError, IncorrectClaimError) as exc:
        raise YadisError(
            f"the XRDS document of {redact(response.final_url)} could not be fetched: {exc}"
        ) from exc
    return YadisResult(
        request_uri=url,
        normalized_uri=response.final_url,
        xrds_uri=document.final_url,
        content_type=document.headers.get("content-type", ""),
        body=document.body,
        is_xrds=True,
    )
