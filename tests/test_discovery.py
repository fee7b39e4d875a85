"""OpenID discovery end to end over real HTTP: the JanRain test_discover vectors, endpoint
precedence, the XRI hook, and hostile identifier pages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from httpserver import LocalHTTPServer

from openid_plugins.config import FetchSettings
from openid_plugins.errors import (
    FetchError,
    FetchRefusedError,
    IncorrectClaimError,
    IncorrectURIError,
    ResponseTooLargeError,
    XRDSRefusedError,
    XRIError,
)
from openid_plugins.hookspecs import hookimpl
from openid_plugins.protocol.discovery import DiscoveryResult, discover, usable_endpoint_url
from openid_plugins.protocol.endpoint import (
    OPENID_1_1_TYPE,
    OPENID_2_0_TYPE,
    OPENID_IDP_2_0_TYPE,
    OPENID_TYPES,
    Endpoint,
)
from openid_plugins.protocol.fetch import Fetcher
from openid_plugins.relying_party import RelyingParty

DATA = Path(__file__).parent / "data"
SPEC = json.loads((DATA / "derived/test_discover.expectations.json").read_text())
XRDS_TYPE = "application/xrds+xml"


# -- test_discover vectors ----------------------------------------------------------------


def _hosts(case: dict) -> list[str]:
    urls = [*case["documents"], case.get("input", "")]
    return sorted({url.split("/")[2] for url in urls if url.startswith("http://")})


class Localized:
    """The case's documents served from the local server: every ``http://HOST`` of the
    case (``someuser.unittest``...) becomes ``http://127.0.0.1:PORT`` in URLs, bodies and
    expectations, the way check_reference.py substitutes SERVLET_PORT."""

    def __init__(self, server: LocalHTTPServer, case: dict) -> None:
        self.pairs = [(f"http://{host}", server.base) for host in _hosts(case)]
        for url, (content_type, source) in case["documents"].items():
            if isinstance(source, dict):
                body = source["inline"].encode()
            elif "/" in source:
                body = (DATA / source).read_bytes()
            else:
                body = (DATA / SPEC["data_dir"] / source).read_bytes()
            path = "/" + self(url).split("/", 3)[3]
            server.route(path, 200, {"Content-Type": content_type}, self.bytes(body))

    def __call__(self, text: str | None) -> str | None:
        for old, new in self.pairs:
            text = None if text is None else text.replace(old, new)
        return text

    def bytes(self, data: bytes) -> bytes:
        for old, new in self.pairs:
            data = data.replace(old.encode(), new.encode())
        return data


URL_CASES = [c for c in SPEC["cases"] if not c["input"].startswith("=")]
XRI_CASES = [c for c in SPEC["cases"] if c["input"].startswith("=")]


def test_vector_counts():
    assert (len(URL_CASES), len(XRI_CASES)) == (22, 3)


@pytest.mark.parametrize("case", URL_CASES, ids=lambda c: c["name"])
def test_discover_vectors(server, fetcher, case):
    """'success with 0 services' in python-openid is IncorrectClaimError here: our
    ``discover`` has no empty result (the RP would refuse it anyway)."""
    local = Localized(server, case)
    url = local(case["input"])
    if case["expect"] == "DiscoveryFailure" or case["service_count"] == 0:
        with pytest.raises(IncorrectClaimError):
            discover(url, fetcher)
        return
    result = discover(url, fetcher)
    assert result.claimed_id == local(case["claimed_id"])
    assert len(result.endpoints) == case["service_count"]
    for endpoint, expected in zip(result.endpoints, case.get("services", [])):
        assert [t for t in endpoint.type_uris if t in OPENID_TYPES] == expected["type_uris"]
        assert endpoint.server_url == expected["server_url"]
        assert endpoint.from_yadis is expected["used_yadis"]
        assert endpoint.is_op_identifier is expected["op_identifier"]
        if expected["op_identifier"]:
            assert (endpoint.claimed_id, endpoint.op_local_id) == (None, None)
        else:
            assert endpoint.claimed_id == local(expected["claimed_id"])
            assert endpoint.op_local_id == local(expected["local_id"])


@pytest.mark.parametrize("case", XRI_CASES, ids=lambda c: c["name"])
def test_xri_vectors_are_out_of_scope(case, fetcher):
    """No XRI resolver is built in (OpenID 2.0 made XRI optional; the public proxy is
    gone): without a plugin an XRI is refused with XRIError. Documented skip."""
    with pytest.raises(XRIError, match="no installed plugin resolves XRIs"):
        discover(case["input"], fetcher)
    pytest.skip("XRI resolution needs a resolver plugin (documented skip)")


def test_https_endpoints_are_kept_in_priority_order(server, fetcher):
    ssl = json.loads((DATA / "derived/php-openid.expectations.json").read_text())["ssl_filtering"]
    body = (DATA / ssl["file"]).read_bytes()
    url = server.route("/", 200, {"Content-Type": ssl["content_type"]}, body)
    result = discover(url, fetcher)
    assert [e.server_url for e in result.endpoints] == ssl["with_https_support"]


# -- precedence and identifiers -----------------------------------------------------------


def _xrds(*services: str) -> bytes:
    return (
        '<?xml version="1.0"?><xrds:XRDS xmlns:xrds="xri://$xrds"'
        ' xmlns="xri://$xrd*($v*2.0)" xmlns:openid="http://openid.net/xmlns/1.0">'
        f"<XRD>{''.join(services)}</XRD></xrds:XRDS>"
    ).encode()


def _service(priority: int | None, types: list[str], uris: list[str], extra: str = "") -> str:
    attribute = "" if priority is None else f' priority="{priority}"'
    inner = "".join(f"<Type>{t}</Type>" for t in types)
    inner += "".join(f"<URI>{u}</URI>" for u in uris)
    return f"<Service{attribute}>{inner}{extra}</Service>"


def test_op_identifier_services_take_precedence(server, fetcher):
    body = _xrds(
        _service(0, [OPENID_2_0_TYPE], ["https://claimed.op/"]),
        _service(50, [OPENID_IDP_2_0_TYPE], ["https://op-b/"]),
        _service(10, [OPENID_IDP_2_0_TYPE], ["https://op-a/"]),
    )
    url = server.route("/", 200, {"Content-Type": XRDS_TYPE}, body)
    result = discover(url, fetcher)
    assert [e.server_url for e in result.endpoints] == ["https://op-a/", "https://op-b/"]
    assert all(e.is_op_identifier and e.claimed_id is None for e in result.endpoints)
    assert result.claimed_id == url


def test_newer_versions_first_then_priority(server, fetcher):
    body = _xrds(
        _service(0, ["http://openid.net/signon/1.0"], ["https://v10/"]),
        _service(1, [OPENID_1_1_TYPE, "http://openid.net/sreg/1.0"], ["https://v11/"]),
        _service(5, [OPENID_2_0_TYPE], ["https://v20-b/"]),
        _service(2, ["http://openid.net/srv/ax/1.0", OPENID_2_0_TYPE], ["https://v20-a/"]),
        _service(3, ["http://example.com/not-openid"], ["https://other/"]),
    )
    url = server.route("/", 200, {"Content-Type": XRDS_TYPE}, body)
    result = discover(url, fetcher)
    assert [e.server_url for e in result.endpoints] == [
        "https://v20-a/",
        "https://v20-b/",
        "https://v11/",
        "https://v10/",
    ]
    # OpenID types first, then extension types (so the RP can see AX/SREG support).
    assert result.endpoints[0].type_uris == (OPENID_2_0_TYPE, "http://openid.net/srv/ax/1.0")
    assert result.endpoints[0].supports("http://openid.net/srv/ax/1.0")
    assert result.endpoints[2].supports("http://openid.net/sreg/1.0")


def test_each_uri_of_a_service_is_an_endpoint_in_uri_priority_order(server, fetcher):
    extra = '<URI priority="1">https://second/</URI><URI priority="0">https://first/</URI>'
    body = _xrds(_service(None, [OPENID_2_0_TYPE], [], extra + "<LocalID>https://me/</LocalID>"))
    url = server.route("/", 200, {"Content-Type": XRDS_TYPE}, body)
    endpoints = discover(url, fetcher).endpoints
    assert [e.server_url for e in endpoints] == ["https://first/", "https://second/"]
    assert {e.local_id for e in endpoints} == {"https://me/"}


def test_non_http_endpoints_in_xrds_are_ignored(server, fetcher):
    body = _xrds(
        _service(0, [OPENID_2_0_TYPE], ["file:///etc/passwd", "javascript:alert(1)"]),
        _service(1, [OPENID_2_0_TYPE], ["ftp://op/", "https://good.op/"]),
    )
    url = server.route("/", 200, {"Content-Type": XRDS_TYPE}, body)
    assert [e.server_url for e in discover(url, fetcher).endpoints] == ["https://good.op/"]


def test_xrds_with_only_unusable_endpoints_falls_back_to_html(server, fetcher):
    body = _xrds(_service(0, [OPENID_2_0_TYPE], ["file:///etc/passwd"]))
    server.route("/xrds", 200, {"Content-Type": XRDS_TYPE}, body)
    page = b'<html><head><link rel="openid2.provider" href="https://html.op/"></head></html>'
    url = server.route("/", 200, {"X-XRDS-Location": server.url("/xrds")}, page)
    result = discover(url, fetcher)
    assert [(e.server_url, e.from_yadis) for e in result.endpoints] == [("https://html.op/", False)]
    assert server.paths() == ["/", "/xrds", "/"]  # 7.3.1: the URL is retrieved again


def test_html_links_with_bad_urls_are_ignored(server, fetcher):
    page = (
        b'<html><head><link rel="openid2.provider" href="javascript:alert(1)">'
        b'<link rel="openid.server" href="https://ok.op/"></head></html>'
    )
    url = server.route("/", 200, {"Content-Type": "text/html"}, page)
    result = discover(url, fetcher)
    assert [(e.server_url, e.type_uris) for e in result.endpoints] == [
        ("https://ok.op/", (OPENID_1_1_TYPE,))
    ]


def test_redirects_make_the_final_url_the_claimed_identifier(server, fetcher):
    page = b'<html><head><link rel="openid2.provider" href="https://op/"></head></html>'
    server.route("/Final/", 200, {"Content-Type": "text/html"}, page)
    server.redirect("/start", server.url("/Final/#frag"))
    result = discover(server.url("/start"), fetcher)
    assert result.claimed_id == server.url("/Final/")
    assert result.endpoints[0].claimed_id == server.url("/Final/")


def test_claimed_identifier_is_rfc3986_normalized(server, fetcher):
    page = b'<html><head><link rel="openid2.provider" href="https://op/"></head></html>'
    server.route("/a/b", 200, {"Content-Type": "text/html"}, page)
    server.redirect("/start", f"HTTP://LOCALHOST:{server.port}/a/./x/../%62")
    result = discover(server.url("/start"), fetcher)
    assert result.claimed_id == f"http://localhost:{server.port}/a/b"


def test_local_id_equal_to_claimed_id_is_not_delegation(server, fetcher):
    page = (
        f'<html><head><link rel="openid2.provider" href="https://op/">'
        f'<link rel="openid2.local_id" href="{server.url("/")}"></head></html>'
    ).encode()
    url = server.route("/", 200, {"Content-Type": "text/html"}, page)
    endpoint = discover(url, fetcher).endpoints[0]
    assert (endpoint.local_id, endpoint.op_local_id) == (None, url)


def test_discovery_results_survive_json(server, fetcher):
    page = b'<html><head><link rel="openid.server" href="https://op/"></head></html>'
    url = server.route("/", 200, {"Content-Type": "text/html"}, page)
    result = discover(url, fetcher)
    assert [Endpoint.from_dict(json.loads(e.to_json())) for e in result.endpoints] == (
        result.endpoints
    )
    assert isinstance(result, DiscoveryResult)


def test_usable_endpoint_urls():
    assert usable_endpoint_url("https://op.example/server?x=1")
    for bad in ("ftp://op/", "https:///x", "https://op/a b", "https://op/\n", "/rel"):
        assert not usable_endpoint_url(bad)
    assert not usable_endpoint_url("https://op/" + "a" * 2100)


def test_identifiers_must_be_normalized_urls(fetcher):
    with pytest.raises(IncorrectURIError, match="normalize"):
        discover("example.com/me", fetcher)


# -- XRI through the hook -----------------------------------------------------------------


class FakeResolver:
    """A resolver plugin, as a site would install one (hook contract, not a network mock)."""

    def __init__(self, endpoints):
        self.endpoints = endpoints
        self.calls = []

    @hookimpl
    def openid_resolve_xri(self, xri, settings):
        self.calls.append((xri, settings.max_bytes))
        return self.endpoints


def test_hook_openid_resolve_xri_resolves_xris(fetcher):
    user = Endpoint("https://op/1", "xri://=!1000", None, (OPENID_1_1_TYPE,), True)
    user2 = Endpoint("https://op/2", "xri://=!1000", None, (OPENID_2_0_TYPE,), True)
    resolver = FakeResolver([user, user2])
    with RelyingParty(store="memory://", plugins=[resolver], fetch_max_bytes=7) as rp:
        result = rp.discover("=example")
    assert result == DiscoveryResult(claimed_id="xri://=!1000", endpoints=[user2, user])
    assert resolver.calls == [("=example", 7)]


def test_xri_resolving_to_nothing_is_an_incorrect_claim(fetcher):
    with RelyingParty(store="memory://", plugins=[FakeResolver([])]) as rp, pytest.raises(
        IncorrectClaimError, match="no OpenID service"
    ):
        rp.discover("@org")


def test_xri_without_a_resolver_is_refused(fetcher):
    with pytest.raises(XRIError):
        discover("=example", fetcher)


# -- failures and hostile pages -----------------------------------------------------------


def test_status_500_names_the_url_and_status(server, fetcher):
    url = server.route("/id", 500, {}, b"boom")
    with pytest.raises(IncorrectClaimError, match=r"/id answered HTTP 500"):
        discover(url, fetcher)


def test_page_without_openid_says_so(server, fetcher):
    url = server.route("/", 200, {"Content-Type": "text/html"}, b"<html><head></head></html>")
    with pytest.raises(IncorrectClaimError, match="no OpenID service was found at .*<link>"):
        discover(url, fetcher)


def test_entity_bomb_xrds_is_refused_without_fallback(server, fetcher):
    bomb = (
        (DATA / "openid4java/yadisdata/xrds/xrdsxxe")
        .read_bytes()
        .replace(b"http://example.com/", OPENID_2_0_TYPE.encode())
    )
    url = server.route("/", 200, {"Content-Type": XRDS_TYPE}, bomb)
    with pytest.raises(XRDSRefusedError):
        discover(url, fetcher)
    assert server.paths() == ["/"]


def test_external_entity_in_xrds_reads_no_file(server, fetcher):
    body = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<xrds:XRDS xmlns:xrds="xri://$xrds" xmlns="xri://$xrd*($v*2.0)"><XRD><Service>'
        b"<Type>http://specs.openid.net/auth/2.0/signon</Type><URI>https://op/</URI>"
        b"<LocalID>&e;</LocalID></Service></XRD></xrds:XRDS>"
    )
    url = server.route("/", 200, {"Content-Type": XRDS_TYPE}, body)
    with pytest.raises(XRDSRefusedError, match="external references"):
        discover(url, fetcher)


def test_garbage_xrds_falls_back_to_html_and_explains(server, fetcher):
    url = server.route("/", 200, {"Content-Type": XRDS_TYPE}, b"<xrds:XRDS oops")
    with pytest.raises(IncorrectClaimError, match="XRDS document .* is unusable"):
        discover(url, fetcher)


def test_non_utf8_garbage_page_is_a_clean_no_service(server, fetcher):
    url = server.route("/", 200, {"Content-Type": "text/html"}, bytes(range(256)) * 50)
    with pytest.raises(IncorrectClaimError, match="no OpenID"):
        discover(url, fetcher)


def test_non_utf8_page_with_links_still_works(server, fetcher):
    page = (
        b"\x80\xff<html><head><title>caf\xe9</title>"
        b'<link rel="openid.server" href="https://op/"></head>'
    )
    url = server.route("/", 200, {"Content-Type": "text/html; charset=utf-8"}, page)
    assert discover(url, fetcher).endpoints[0].server_url == "https://op/"


def test_redirect_loop(server, fetcher):
    server.redirect("/a", "/b")
    server.redirect("/b", "/a")
    with pytest.raises(FetchError, match="redirect loop"):
        discover(server.url("/a"), fetcher)


def test_endless_response_ends_quickly(server):
    def endless(request):
        def chunks():
            while not request.stopping.is_set():
                yield b"<html>" * 10000

        return 200, {"Content-Type": "text/html"}, chunks()

    url = server.route("/", endless)
    settings = FetchSettings(max_bytes=500_000, block_private_addresses=False)
    with Fetcher(settings) as small, pytest.raises(ResponseTooLargeError):
        discover(url, small)


def test_huge_response_is_refused_before_reading(server):
    url = server.route("/", 200, {"Content-Type": "text/html"}, b"x" * 3_000_000)
    with (
        Fetcher(FetchSettings(block_private_addresses=False)) as default,
        pytest.raises(ResponseTooLargeError, match="max_bytes"),
    ):
        discover(url, default)


def test_slow_drip_times_out(server):
    def drip(request):
        def chunks():
            yield b"<html><head>"
            while not request.stopping.is_set():
                time.sleep(0.05)
                yield b" "

        return 200, {"Content-Type": "text/html"}, chunks()

    url = server.route("/", drip)
    settings = FetchSettings(read_timeout=5, total_timeout=0.4, block_private_addresses=False)
    with Fetcher(settings) as slow, pytest.raises(FetchError, match="timed out"):
        discover(url, slow)


def test_ssrf_guard_applies_to_xrds_locations_and_falls_back(server):
    """A page pointing its XRDS at a private address: the guard refuses that fetch, and
    discovery continues with the page's own links (here none)."""
    url = server.route("/", 200, {"X-XRDS-Location": "http://169.254.169.254/latest/"})
    calls = []

    def policy(checked_url, addresses, settings):
        calls.append(checked_url)
        if "169.254" in checked_url:
            raise FetchRefusedError(f"refusing {checked_url}")

    local = FetchSettings(block_private_addresses=False)  # the policy is the guard here
    with Fetcher(local, policy) as guarded, pytest.raises(IncorrectClaimError) as info:
        discover(url, guarded)
    assert "169.254.169.254" in str(info.value)
    assert calls == [url, "http://169.254.169.254/latest/", url]


def test_private_identifier_is_refused_by_the_built_in_guard(server):
    url = server.route("/", 200, {"Content-Type": "text/html"}, b"")
    guarded = Fetcher(FetchSettings(block_private_addresses=True))
    with guarded, pytest.raises(FetchRefusedError, match="loopback"):
        discover(url, guarded)
    assert server.requests == []
