"""XRDS documents (XRI Resolution 2.0 section 3, as used by Yadis and OpenID 2.0 7.3.2).

An XRDS comes from whoever controls the identifier URL, so it is parsed with
``defusedxml`` and any DTD is refused: no entity expansion (billion laughs), no external
entities or DTDs (XXE: ``file:///etc/passwd``, requests into the intranet). Such a
document raises ``XRDSRefusedError``; a merely malformed one raises ``XRDSError``.

The parse is generic Yadis: every service with its types, URIs and identifier elements.
Picking the OpenID services out of it is ``discovery``'s job.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from ..errors import XRDSError, XRDSRefusedError

log = logging.getLogger("openid_plugins.protocol.xrds")

XRDS_NS = "xri://$xrds"
XRD_NS = "xri://$xrd*($v*2.0)"
#: Namespace of the OpenID 1.x ``<openid:Delegate>`` element.
OPENID_1_NS = "http://openid.net/xmlns/1.0"

_XRDS = f"{{{XRDS_NS}}}XRDS"
_XRD = f"{{{XRD_NS}}}XRD"
_SERVICE = f"{{{XRD_NS}}}Service"
_TYPE = f"{{{XRD_NS}}}Type"
_URI = f"{{{XRD_NS}}}URI"
_LOCAL_ID = f"{{{XRD_NS}}}LocalID"
_CANONICAL_ID = f"{{{XRD_NS}}}CanonicalID"
_DELEGATE = f"{{{OPENID_1_NS}}}Delegate"

# XRI Resolution 2.0 section 4.3.3: a priority is a non-negative integer, in ASCII digits
# (str.isdigit() also accepts "²", which int() refuses).
_PRIORITY = re.compile(r"[0-9]+\Z")
#: Larger priorities all sort as this one (still before services with none): int() of a
#: huge digit string is slow, and past 4300 digits refused.
MAX_PRIORITY = 2**63 - 1
# RFC 3986 section 3.1: an absolute URI starts with a scheme; no whitespace anywhere.
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s\x00-\x1f\x7f]*\Z")


@dataclass(frozen=True)
class Service:
    """One ``<xrd:Service>``: what it offers (types) and where (URIs, best first)."""

    types: tuple[str, ...]
    #: Valid absolute URIs, sorted by their priority attribute (none = last).
    uris: tuple[str, ...]
    #: ``<xrd:LocalID>`` values (OpenID 2.0 OP-local identifier), in document order.
    local_ids: tuple[str, ...]
    #: ``<openid:Delegate>`` values (OpenID 1.x), in document order.
    delegates: tuple[str, ...]
    #: The priority attribute; None when absent or not a non-negative integer.
    priority: int | None


@dataclass(frozen=True)
class XRDS:
    """The services of the final XRD of a document, in priority order."""

    services: tuple[Service, ...]
    #: ``<xrd:CanonicalID>`` of that XRD (only meaningful for XRIs, 7.3.2.3).
    canonical_id: str | None

    def service_uris(self) -> Iterator[tuple[Service, str | None]]:
        """Each (service, URI) pair in order; a service without URIs appears once, with None."""
        for service in self.services:
            if not service.uris:
                yield service, None
            for uri in service.uris:
                yield service, uri


def priority_of(element: Element) -> int | None:
    """The ``priority`` attribute if it is a non-negative integer (XRI Resolution 2.0
    section 4.3.3), else None, which sorts after every priority."""
    value = (element.get("priority") or "").strip()
    if not _PRIORITY.match(value):
        return None
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else MAX_PRIORITY


def _by_priority(elements: list[Element]) -> list[Element]:
    # Ties keep document order (a stable sort): deterministic, and what the vectors expect.
    def key(element: Element) -> tuple[int, int]:
        priority = priority_of(element)
        return (1, 0) if priority is None else (0, priority)

    return sorted(elements, key=key)


def _texts(parent: Element, tag: str) -> tuple[str, ...]:
    return tuple(text for e in parent.findall(tag) if (text := (e.text or "").strip()))


def is_absolute_uri(uri: str) -> bool:
    """True for a syntactically absolute URI; http(s) URIs also need a host."""
    if not _ABSOLUTE_URI.match(uri):
        return False
    try:
        parts = urlsplit(uri)
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:
        return False
    return parts.scheme.lower() not in ("http", "https") or bool(parts.hostname)


def _service(element: Element) -> Service:
    uris = []
    for uri_element in _by_priority(element.findall(_URI)):
        uri = (uri_element.text or "").strip()
        if not uri:
            continue
        if is_absolute_uri(uri):
            uris.append(uri)
        else:
            log.warning("ignoring the malformed XRDS service URI %r", uri)
    return Service(
        types=_texts(element, _TYPE),
        uris=tuple(uris),
        local_ids=_texts(element, _LOCAL_ID),
        delegates=_texts(element, _DELEGATE),
        priority=priority_of(element),
    )


def parse_xrds(data: bytes | str | Any) -> XRDS:
    """Parse an XRDS document; only its last XRD counts (XRI Resolution 2.0: earlier
    ones describe the resolution path, the last one the resource itself)."""
    if not isinstance(data, bytes | str):
        raise XRDSError(f"an XRDS document must be bytes or text, not {type(data).__name__}")
    if not data.strip():
        raise XRDSError("the XRDS document is empty")
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise XRDSRefusedError(
            f"refusing an XRDS document that uses a DTD, entities or external references"
            f" ({type(exc).__name__}); such documents are used for XXE and entity-expansion"
            " attacks"
        ) from None
    except (ParseError, ValueError) as exc:
        raise XRDSError(f"the XRDS document is not well-formed XML: {exc}") from None
    if root.tag != _XRDS:
        raise XRDSError(f"not an XRDS document: the root element is {root.tag!r}, not {_XRDS!r}")
    xrds = root.findall(_XRD)
    if not xrds:
        raise XRDSError("the XRDS document contains no XRD element")
    xrd = xrds[-1]
    canonical = [
        text for e in _by_priority(xrd.findall(_CANONICAL_ID)) if (text := (e.text or "").strip())
    ]
    return XRDS(
        services=tuple(_service(e) for e in _by_priority(xrd.findall(_SERVICE))),
        canonical_id=canonical[0] if canonical else None,
    )
