"""The Yadis protocol: X-XRDS-Location meta parsing (three libraries' vectors), the
python3-openid discovery table and openid4java's Yadis servlet, all over real HTTP."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from httpserver import LocalHTTPServer

from openid_plugins.errors import (
    DiscoveryError,
    FetchError,
    IncorrectClaimError,
    OpenIDError,
    XRDSError,
    XRDSRefusedError,
    YadisError,
)
from openid_plugins.protocol.discovery import discover
from openid_plugins.protocol.fetch import Fetcher
from openid_plugins.protocol.html import find_xrds_location
from openid_plugins.protocol.xrds import parse_xrds
from openid_plugins.protocol.yadis import yadis_discover

DATA = Path(__file__).parent / "data"


# -- test1-parsehtml.txt: <meta http-equiv="X-XRDS-Location"> ----------------------------


def _parsehtml_cases(relative: str, count: int):
    chunks = (DATA / relative).read_text(encoding="utf-8").split("\f\n")
    assert len(chunks) == count, f"{relative} has {count} cases"
    cases = []
    for number, chunk in enumerate(chunks, 1):
        expected, html = chunk.split("\n", 1)
        label = html.split("\n", 1)[0][:50]
        cases.append(pytest.param(html, expected, id=f"{relative}#{number} {label}"))
    return cases


PARSEHTML = (
    _parsehtml_cases("python3-openid/test1-parsehtml.txt", 29)
    + _parsehtml_cases("ruby-openid/test1-parsehtml.txt", 29)
    + _parsehtml_cases("php-openid/Yadis/test1-parsehtml.txt", 28)
)


@pytest.mark.parametrize(("html", "expected"), PARSEHTML)
def test_parsehtml_vectors(html, expected):
    """'None' and 'EOF' both mean "no location" (the ruby/php reading, MANIFEST.md)."""
    found = find_xrds_location(html)
    assert found == (None if expected in ("None", "EOF") else expected)


# -- test1-discover.txt + manifest --------------------------------------------------------

MANIFEST = json.loads((DATA / "derived/test1-discover.manifest.json").read_text())


def _templates() -> dict[str, str]:
    text = (DATA / "python3-openid/test1-discover.txt").read_text(encoding="utf-8")
    return dict(chunk.split("\n", 1) for chunk in text.split("\f\n"))


def _sample(name: str, base: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """A template with the MANIFEST's substitutions, as (status, headers, body)."""
    xrds = (DATA / "python3-openid/example-xrds.xml").read_text(encoding="utf-8")
    text = _templates()[name]
    for key, value in (
        ("URL_BASE/", base),
        ("<XRDS Content>", xrds),
        ("YADIS_HEADER", "X-XRDS-Location"),
        ("NAME", name),
    ):
        text = text.replace(key, value)
    head, body = text.split("\n\n", 1)
    lines = head.split("\n")
    status = int(re.match(r"Status: (\d+)", lines[0]).group(1))
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    return status, headers, body.encode("utf-8")


def _serve_templates(server: LocalHTTPServer) -> str:
    base = server.url("/")
    for name in _templates():
        server.route("/" + name, *_sample(name, base))
    return base


def test_manifest_covers_every_template():
    assert len(_templates()) == len(MANIFEST["cases"]) == 17


@pytest.mark.parametrize("case", MANIFEST["cases"], ids=lambda c: c["input"])
def test_yadis_discovery_table(server, fetcher, case):
    base = _serve_templates(server)
    url = base + case["input"]
    if case["id"] is None:
        with pytest.raises(IncorrectClaimError, match=r"HTTP (404|500|201)"):
            yadis_discover(url, fetcher)
        return
    result = yadis_discover(url, fetcher)
    status, headers, body = _sample(case["result"], base)
    assert result.request_uri == url
    assert result.normalized_uri == base + case["id"]
    assert result.body == body
    assert result.content_type == dict(headers)["Content-Type"]
    assert result.is_xrds is case["yadis"]
    assert result.xrds_uri == (base + case["result"] if case["yadis"] else None)


# -- openid4java yadisdata through its servlet's rules ------------------------------------

O4J = json.loads((DATA / "derived/openid4java.expectations.json").read_text())
YADISDATA = DATA / "openid4java/yadisdata"


def _servlet(server: LocalHTTPServer):
    """openid4java's YadisTestServlet: headers from headers/H (GET: getheaders/G), body from
    xrds/X or the lines of html/M (CRLF); SERVLET_PORT and localhost point here."""

    def subst(text: str) -> str:
        return text.replace("localhost:SERVLET_PORT", f"127.0.0.1:{server.port}")

    def handle(request):
        query = dict(parse_qsl(request.query))
        name = query.get("getheaders") or query.get("headers")
        status, headers, body = 200, [], b""
        if name:
            for line in (YADISDATA / "headers" / Path(name).name).read_text().splitlines():
                key, _, value = line.partition("=")
                if key == "status":
                    status = int(value)
                elif key:
                    headers.append((key, subst(value)))
        if "xrds" in query:
            body = subst((YADISDATA / "xrds" / Path(query["xrds"]).name).read_text()).encode()
        elif "html" in query:
            lines = subst((YADISDATA / "html" / Path(query["html"]).name).read_text())
            body = "".join(line + "\r\n" for line in lines.splitlines()).encode()
        return status, headers, body

    server.route("/", handle)


def _yadis_endpoints(url: str, fetcher: Fetcher, type_filter: str | None) -> int | None:
    """openid4java's notion: (service, URI) pairs of the XRDS, None when there is no XRDS."""
    result = yadis_discover(url, fetcher)
    if not result.is_xrds:
        return None
    pairs = [
        (service, uri)
        for service, uri in parse_xrds(result.body).service_uris()
        if type_filter is None or type_filter in service.types
    ]
    return len(pairs)


#: openid4java rejects these; we are lenient where the Yadis spec is silent (MANIFEST.md).
LENIENT = {
    "/?html=multiplexrdslocation": 1,  # the first meta wins, as in the JanRain vectors
    "/?html=nohead": None,  # no <head>: no location, so not a Yadis page (not an error)
    "/?html=twoheads": 1,  # the first <head> counts
    "/?html=empty": None,  # an empty page is not a Yadis page
}
#: openid4java schema-rejects the whole XRDS over one malformed URI; we drop that URI (and
#: log it), so the service has no endpoint and OpenID discovery on the page fails instead.
DROPPED_URIS = {
    "/?headers=simplexrds&xrds=malformedxrds3": ":",
    "/?headers=simplexrds&xrds=malformedxrds4": "http:",
    "/?headers=simplexrds&xrds=malformedxrds5": "bla bla",
}


@pytest.mark.parametrize("case", O4J["yadis_cases"], ids=lambda c: c["url"])
def test_openid4java_yadis_cases(server, fetcher, case):
    _servlet(server)
    url = server.url(case["url"])
    expect = case["expect"]
    if case["url"] in LENIENT:
        assert case.get("strictness") == "openid4java-specific"
        assert _yadis_endpoints(url, fetcher, None) == LENIENT[case["url"]]
    elif case["url"] in DROPPED_URIS:
        result = yadis_discover(url, fetcher)
        services = parse_xrds(result.body).services
        assert len(services) == 1 and services[0].uris == ()
        assert DROPPED_URIS[case["url"]].encode() in result.body
        with pytest.raises(IncorrectClaimError, match="no OpenID service"):
            discover(url, fetcher)
    elif expect == "error":
        with pytest.raises((YadisError, XRDSError, FetchError)) as info:
            _yadis_endpoints(url, fetcher, case.get("type_filter"))
        if "xrdsxxe" in case["url"]:
            assert isinstance(info.value, XRDSRefusedError)
    elif expect == "endpoints>0":
        assert _yadis_endpoints(url, fetcher, case.get("type_filter")) > 0
    elif expect == "endpoints==1":
        assert _yadis_endpoints(url, fetcher, case.get("type_filter")) == 1
    elif expect == "endpoints==0":
        assert not _yadis_endpoints(url, fetcher, case.get("type_filter"))
    elif expect.startswith("yadis endpoints>0 but OpenID"):
        assert _yadis_endpoints(url, fetcher, case.get("type_filter")) > 0
        with pytest.raises(IncorrectClaimError, match="no OpenID service"):
            discover(url, fetcher)
    elif expect.startswith("endpoints==1 with an openid:Delegate"):
        result = discover(url, fetcher)
        assert len(result.endpoints) == 1
        assert result.endpoints[0].local_id
    else:
        pytest.fail(f"unknown expectation {expect!r}")


# -- X-XRDS-Location edge cases -----------------------------------------------------------


def test_header_beats_meta_and_is_case_insensitive(server, fetcher):
    xrds = (DATA / "python3-openid/example-xrds.xml").read_bytes()
    server.route("/xrds", 200, {"Content-Type": "application/xrds+xml"}, xrds)
    page = b'<html><head><meta http-equiv="X-XRDS-Location" content="/elsewhere"></head>'
    server.route("/", 200, [("x-xRdS-lOcAtIoN", server.url("/xrds"))], page)
    result = yadis_discover(server.url("/"), fetcher)
    assert (result.xrds_uri, result.body, result.is_xrds) == (server.url("/xrds"), xrds, True)


def test_repeated_identical_location_headers_are_fine(server, fetcher):
    server.route("/xrds", 200, {"Content-Type": "application/xrds+xml"}, b"<x/>")
    location = server.url("/xrds")
    server.route("/", 200, [("X-XRDS-Location", location), ("X-XRDS-Location", location)])
    assert yadis_discover(server.url("/"), fetcher).xrds_uri == location


def test_location_that_is_not_absolute_http_is_a_yadis_error(server, fetcher):
    server.route("/", 200, {"X-XRDS-Location": "/relative/xrds"})
    with pytest.raises(YadisError, match="not an absolute http"):
        yadis_discover(server.url("/"), fetcher)


def test_unfetchable_xrds_is_a_yadis_error_with_the_cause(server, fetcher):
    server.route("/", 200, {"X-XRDS-Location": server.url("/gone")})
    with pytest.raises(YadisError, match="HTTP 404") as info:
        yadis_discover(server.url("/"), fetcher)
    assert isinstance(info.value, DiscoveryError)
    assert isinstance(info.value.__cause__, OpenIDError)


def test_xrds_location_redirects_are_followed(server, fetcher):
    server.route("/real", 200, {"Content-Type": "application/xrds+xml"}, b"<x/>")
    server.redirect("/moved", "/real")
    server.route("/", 200, {"X-XRDS-Location": server.url("/moved")})
    assert yadis_discover(server.url("/"), fetcher).xrds_uri == server.url("/real")


def test_accept_header_asks_for_xrds_first(server, fetcher):
    server.route("/", 200, {"Content-Type": "text/html"}, b"<html></html>")
    yadis_discover(server.url("/"), fetcher)
    assert server.requests[0].headers["accept"].startswith("application/xrds+xml")
