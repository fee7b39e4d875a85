"""What relying parties read from identity pages: ``<link>`` tags for HTML-based discovery
(OpenID 2.0 section 7.3.3, OpenID 1.1 section 3.1) and the Yadis
``<meta http-equiv="X-XRDS-Location">``.

Pages are hostile or broken as often as not, so this uses the stdlib ``html.parser`` (it
never fails on garbage and never fetches anything: DTDs and entity declarations are just
text) and follows the JanRain libraries' long-tested rules for *where* a tag counts:

- links count only inside ``<head>`` inside ``<html>``; the first ``<body>``, ``</head>``,
  or a nested ``<html>``/``<head>`` ends the search;
- the Yadis meta counts inside ``<head>`` (``<html>`` may be missing) before ``<body>``;
  the first one wins.

Attribute values are read from the tag text itself, so that a link's ``href`` gets exactly
the entity decoding 7.3.3 allows (``&amp; &lt; &gt; &quot;``, nothing else) while the
Yadis meta gets full HTML decoding, and so that broken tags recover the way the vectors
expect (an unquoted ``<`` starts a new tag; ``rel=x/>`` means ``x``).
"""

from __future__ import annotations

import codecs
import html
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser

log = logging.getLogger("openid_plugins.protocol.html")

_TAG_NAME = re.compile(r"<[a-zA-Z][^\t\n\r\f />\x00]*")
_SPACE = " \t\n\r\f"
#: OpenID 2.0 section 7.3.3: the only entities allowed in these URLs.
_LINK_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"'}
_LINK_ENTITY = re.compile("|".join(map(re.escape, _LINK_ENTITIES)))


def decode_link_value(value: str) -> str:
    """Decode the four entities OpenID 2.0 section 7.3.3 allows in discovery URLs."""
    return _LINK_ENTITY.sub(lambda m: _LINK_ENTITIES[m.group(0)], value)


def decode_html(body: bytes, charset: str | None = None) -> str:
    """Text of an HTML response: the declared charset (or a BOM), else UTF-8; bytes that do
    not decode become U+FFFD instead of failing (a later meta or link may still be fine)."""
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", "replace")
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body.decode("utf-16", "replace")
    try:
        return body.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError):  # unknown, or not a name at all ("\x00" in it)
        log.info("unknown charset %r; decoding as UTF-8", charset)
        return body.decode("utf-8", "replace")


def parse_tag_attributes(raw: str, start: int = 0) -> tuple[dict[str, str], int | None]:
    """Attributes of the start tag whose source text begins at ``raw[start]``, undecoded.

    Returns ``(attributes, resume)``: ``resume`` is the index of an unquoted ``<`` where the
    tag is broken off and a new tag starts (``<link x=y<link z=y />``), else None.
    Names are lower-cased, the last of repeated names wins, and attributes without a value
    (``<link hubbard>`` or ``y=``) are left out: they can never name a URL.
    """
    match = _TAG_NAME.match(raw, start)
    if match is None:
        return {}, None
    attributes: dict[str, str] = {}
    i, n = match.end(), len(raw)
    while i < n:
        while i < n and (raw[i] in _SPACE or raw[i] == "/"):
            i += 1
        if i >= n or raw[i] == ">":
            break
        if raw[i] == "<":
            return attributes, i
        first = i
        while i < n and raw[i] not in _SPACE and raw[i] not in "/>=<":
            i += 1
        name = raw[first:i].lower()
        j = i
        while j < n and raw[j] in _SPACE:
            j += 1
        if j >= n or raw[j] != "=":
            continue
        i = j + 1
        while i < n and raw[i] in _SPACE:
            i += 1
        if i < n and raw[i] in "\"'":
            close = raw.find(raw[i], i + 1)
            close = n if close < 0 else close
            attributes[name] = raw[i + 1 : close]
            i = close + 1
            continue
        first = i
        while i < n and raw[i] not in _SPACE and raw[i] != ">":
            if raw[i] == "<":
                return attributes, i
            i += 1
        value = raw[first:i]
        if value.endswith("/") and raw[i : i + 1] == ">":
            value = value[:-1]  # <link rel=openid.server/> is self-closing, not "server/"
        if value:
            attributes[name] = value
    return attributes, None


def read_start_tag(raw: str, closed: bool) -> tuple[str, dict[str, str], bool] | None:
    """``(name, attributes, self_closing)`` from a start tag's source text.

    A stray unquoted ``<`` inside the text breaks the tag off: the part before it is
    dropped and what follows is read as the tag instead (``<link x=y<link z=y />`` is
    ``<link z=y />``; ``<link x=y<>`` is nothing). Iterative and linear, so
    ``<link <link <link ...>`` cannot cost quadratic time.
    """
    position = 0
    while True:
        match = _TAG_NAME.match(raw, position)
        if match is None:
            return None
        attributes, resume = parse_tag_attributes(raw, position)
        if resume is None:
            return match.group(0)[1:].lower(), attributes, closed
        position = resume


class _Stop(Exception):
    """Raised from a handler to end parsing early: the rest of the page cannot matter."""


class _TagParser(HTMLParser):
    """Feeds start tags (with their attributes re-read from source) to ``start``.

    ``<title>`` is parsed as ordinary markup on every Python version: the vectors require
    a link after an unclosed ``<title>`` to be found, as the JanRain libraries always did.
    """

    RCDATA_CONTENT_ELEMENTS = ()  # type: ignore[misc]  # Final in typeshed; replaced on purpose

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def start(self, tag: str, attributes: dict[str, str], closed: bool) -> None:
        raise NotImplementedError

    def end(self, tag: str) -> None:
        raise NotImplementedError

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = read_start_tag(self.get_starttag_text() or "", closed=False)
        if found is not None:
            self.start(*found)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = read_start_tag(self.get_starttag_text() or "", closed=True)
        if found is not None:
            self.start(*found)

    def handle_endtag(self, tag: str) -> None:
        self.end(tag)

    def run(self, text: str) -> None:
        """Parse ``text``. ``close()`` is deliberately not called: it would only re-read an
        unterminated construct at the end (an unclosed tag or comment, after which nothing
        can be a tag anyway), and on Python < 3.13.4 it does so in quadratic time
        (CVE-2025-6069), so a hostile page could pin a CPU for hours."""
        try:
            self.feed(text)
        except _Stop:
            pass
        except AssertionError as exc:
            # _markupbase raises this for some malformed declarations (``<![ACORN[``);
            # what was found before that point stands, the rest is unreadable anyway.
            log.debug("HTML parsing stopped at malformed markup: %s", exc)


class _LinkParser(_TagParser):
    """Collects ``<link>`` tags of ``<html><head>`` (the JanRain ``parseLinkAttrs`` rules)."""

    def __init__(self) -> None:
        super().__init__()
        self.state = "top"
        self.links: list[dict[str, str]] = []

    def start(self, tag: str, attributes: dict[str, str], closed: bool) -> None:
        if self.state == "top":
            if tag == "html" and not closed:
                self.state = "html"
            elif tag in ("head", "body"):
                raise _Stop
        elif self.state == "html":
            if tag == "head" and not closed:
                self.state = "head"
            elif tag in ("head", "html", "body"):
                raise _Stop
        elif tag == "link":
            self.links.append({k: decode_link_value(v) for k, v in attributes.items()})
        elif tag in ("head", "html", "body"):
            raise _Stop

    def end(self, tag: str) -> None:
        if self.state != "top" and tag in ("head", "html", "body"):
            raise _Stop


class _XRDSLocationParser(_TagParser):
    """Finds the first ``<meta http-equiv="X-XRDS-Location">`` of ``<head>`` (Yadis 1.0)."""

    def __init__(self) -> None:
        super().__init__()
        self.state = "top"
        self.location: str | None = None

    def start(self, tag: str, attributes: dict[str, str], closed: bool) -> None:
        if tag == "body":
            raise _Stop
        if self.state == "top":
            if tag == "head":
                self.state = "done" if closed else "head"
            elif tag == "html":
                self.state = "html"
        elif self.state == "html":
            if tag == "head":
                self.state = "done" if closed else "head"
            elif tag == "html":
                raise _Stop
        elif self.state == "head":
            if tag in ("head", "html"):
                raise _Stop
            if tag == "meta":
                equiv = html.unescape(attributes.get("http-equiv", "")).strip().lower()
                content = attributes.get("content")
                if equiv == "x-xrds-location" and content is not None:
                    self.location = html.unescape(content)
                    raise _Stop
        if self.state == "done":
            raise _Stop

    def end(self, tag: str) -> None:
        if tag in ("head", "html", "body"):
            raise _Stop


def parse_links(text: str) -> list[dict[str, str]]:
    """Attribute dicts of the ``<link>`` tags in the page's ``<html><head>``, in order."""
    parser = _LinkParser()
    parser.run(text)
    return parser.links


def find_xrds_location(text: str) -> str | None:
    """The ``content`` of the page's X-XRDS-Location meta tag, entities decoded, or None."""
    parser = _XRDSLocationParser()
    parser.run(text)
    return parser.location


def links_with_rel(links: list[dict[str, str]], rel: str) -> list[dict[str, str]]:
    """Links whose ``rel`` (a whitespace-separated, case-insensitive list) includes ``rel``."""
    wanted = rel.lower()
    return [link for link in links if wanted in link.get("rel", "").lower().split()]


@dataclass(frozen=True)
class HTMLDiscovery:
    """The OpenID links of a page; each is the href of the first link with that rel."""

    #: ``openid2.provider`` and ``openid2.local_id`` (OpenID 2.0 section 7.3.3).
    provider: str | None
    local_id: str | None
    #: ``openid.server`` and ``openid.delegate`` (OpenID 1.1 section 3.1).
    server: str | None
    delegate: str | None


def find_openid_links(text: str) -> HTMLDiscovery:
    """The OpenID 2.0 and 1.x discovery links of a page."""
    links = parse_links(text)

    def first_href(rel: str) -> str | None:
        for link in links_with_rel(links, rel):
            href = link.get("href", "").strip()
            if href:
                return href
        return None

    return HTMLDiscovery(
        provider=first_href("openid2.provider"),
        local_id=first_href("openid2.local_id"),
        server=first_href("openid.server"),
        delegate=first_href("openid.delegate"),
    )
