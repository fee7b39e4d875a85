"""Fetcher and the SSRF fetch policy, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl

import pytest

from openid_plugins.config import FetchSettings
from openid_plugins.errors import (
    FetchError,
    FetchRefusedError,
    PluginError,
    ResponseTooLargeError,
)
from openid_plugins.hookspecs import hookimpl
from openid_plugins.protocol import ssrf
from openid_plugins.protocol.fetch import Fetcher, redact
from openid_plugins.relying_party import RelyingParty

# The test servers are on 127.0.0.1: the SSRF guard (on by default) is off unless a test
# turns it on.
FAST = FetchSettings(
    connect_timeout=2, read_timeout=2, total_timeout=5, block_private_addresses=False
)


@pytest.fixture
def make_fetcher():
    made = []

    def make(policy=None, **settings):
        settings.setdefault("block_private_addresses", False)
        made.append(Fetcher(FetchSettings(**settings), policy))
        return made[-1]

    yield make
    for fetcher in made:
        fetcher.close()


def allow_all(url, addresses, settings):
    return None


# -- GET ----------------------------------------------------------------------------------


def test_get_returns_status_headers_body_and_sends_our_headers(server, fetcher):
    url = server.route("/doc", 200, {"Content-Type": "text/html; charset=utf-8"}, b"<html>")
    response = fetcher.get(url, accept="application/xrds+xml")
    assert (response.status, response.body, response.final_url) == (200, b"<html>", url)
    assert response.headers["CONTENT-TYPE"] == "text/html; charset=utf-8"
    assert response.media_type == "text/html"
    assert response.charset == "utf-8"
    sent = server.requests[0].headers
    assert sent["accept"] == "application/xrds+xml"
    assert sent["accept-encoding"] == "identity"
    assert sent["user-agent"] == "openid-plugins"
    assert "cookie" not in sent


def test_error_statuses_are_returned_not_raised(server, fetcher):
    url = server.route("/boom", 500, {}, b"oops")
    response = fetcher.get(url)
    assert (response.status, response.body) == (500, b"oops")
    assert fetcher.get(server.url("/missing")).status == 404


def test_repeated_headers_are_all_visible(server, fetcher):
    url = server.route("/two", 200, [("X-XRDS-Location", "http://a/"), ("X-XRDS-Location", "b")])
    response = fetcher.get(url)
    assert response.header_values("x-xrds-location") == ["http://a/", "b"]


def test_fragment_is_not_part_of_the_final_url(server, fetcher):
    url = server.route("/frag", 200, {}, b"x")
    assert fetcher.get(url + "#part").final_url == url


def test_hostnames_resolve_and_connect_to_the_resolved_address(server, fetcher):
    server.route("/name", 200, {}, b"by name")
    response = fetcher.get(f"http://localhost:{server.port}/name")
    assert response.body == b"by name"
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"
    # The pin is keyed on the host as it is connected to (lower-cased, IDNA-encoded).
    assert fetcher.get(f"http://LocalHost:{server.port}/name").body == b"by name"


def test_the_session_never_connects_without_approved_addresses(server, fetcher):
    """Connections are pinned to policy-approved addresses; a bare request has none."""
    import requests

    url = server.route("/x", 200, {}, b"x")
    with pytest.raises(requests.exceptions.ConnectionError, match="no approved address"):
        fetcher._session.get(url, timeout=2)
    assert server.requests == []


def test_one_fetcher_is_shared_by_threads(server, fetcher):
    server.route("/echo", lambda request: (200, {}, request.query.encode()))
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda i: fetcher.get(server.url(f"/echo?{i}")).body, range(40)))
    assert bodies == [str(i).encode() for i in range(40)]


def test_cookies_are_neither_kept_nor_sent(server, fetcher):
    url = server.route("/set", 200, {"Set-Cookie": "sid=secret; Path=/"}, b"")
    fetcher.get(url)
    fetcher.get(url)
    assert all("cookie" not in request.headers for request in server.requests)


# -- redirects ----------------------------------------------------------------------------


def test_redirects_are_followed_to_the_final_url(server, fetcher):
    final = server.route("/final", 200, {}, b"here")
    server.redirect("/r2", final, 301)
    server.redirect("/r1", "/r2", 303)  # relative Location
    response = fetcher.get(server.url("/r1"))
    assert (response.final_url, response.body) == (final, b"here")
    assert server.paths() == ["/r1", "/r2", "/final"]


def test_too_many_redirects_names_the_limit(server, make_fetcher):
    for i in range(4):
        server.redirect(f"/hop{i}", f"/hop{i + 1}")
    server.route("/hop4", 200, {}, b"end")
    with pytest.raises(FetchError, match="max_redirects=3"):
        make_fetcher(max_redirects=3).get(server.url("/hop0"))
    assert make_fetcher(max_redirects=4).get(server.url("/hop0")).body == b"end"


def test_redirect_loop_is_reported_as_a_loop(server, fetcher):
    server.redirect("/a", "/b")
    server.redirect("/b", "/a")
    with pytest.raises(FetchError, match="redirect loop"):
        fetcher.get(server.url("/a"))
    assert server.paths() == ["/a", "/b"]


def test_every_redirect_target_goes_through_the_policy(server):
    seen = []

    def policy(url, addresses, settings):
        seen.append((url, addresses))
        if "/private" in url:
            raise FetchRefusedError(f"refused {url}")

    server.redirect("/public", "/private")
    server.route("/private", 200, {}, b"secret")
    with Fetcher(FAST, policy) as fetcher, pytest.raises(FetchRefusedError):
        fetcher.get(server.url("/public"))
    assert seen == [(server.url("/public"), ["127.0.0.1"]), (server.url("/private"), ["127.0.0.1"])]
    assert server.paths() == ["/public"]  # the refused target was never connected to


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://127.0.0.1/", "http:///nohost"]
)
def test_only_http_and_https_urls_are_fetched(fetcher, url):
    with pytest.raises(FetchRefusedError):
        fetcher.get(url)


def test_redirect_to_a_file_url_is_refused(server, fetcher):
    server.redirect("/r", "file:///etc/passwd")
    with pytest.raises(FetchRefusedError, match="only http and https"):
        fetcher.get(server.url("/r"))


# -- failures -----------------------------------------------------------------------------


def test_connection_refused_names_the_url(fetcher):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        url = f"http://127.0.0.1:{port}/x"
        with pytest.raises(FetchError, match=f"127.0.0.1:{port}"):
            fetcher.get(url)


def test_unresolvable_host_names_the_host(fetcher):
    with pytest.raises(FetchError, match="does not resolve") as info:
        fetcher.get("http://no-such-host.invalid/")
    assert "no-such-host.invalid" in str(info.value)
    assert not isinstance(info.value, FetchRefusedError)


def test_tls_failure_is_a_fetch_error(server, fetcher):
    server.route("/plain", 200, {}, b"not tls")
    with pytest.raises(FetchError, match="https://127.0.0.1"):
        fetcher.get(f"https://127.0.0.1:{server.port}/plain")


# -- size and time limits -----------------------------------------------------------------


def test_announced_oversize_body_is_refused_before_reading(server):
    server.route("/big", 200, {}, b"x" * 2000)
    with Fetcher(FetchSettings(max_bytes=1000, block_private_addresses=False)) as fetcher:
        with pytest.raises(ResponseTooLargeError, match="max_bytes=1000"):
            fetcher.get(server.url("/big"))
        server.route("/fits", 200, {}, b"x" * 1000)
        assert len(fetcher.get(server.url("/fits")).body) == 1000


def test_streamed_oversize_body_is_cut_off(server, make_fetcher):
    server.route("/stream", lambda r: (200, {}, (b"y" * 100 for _ in range(50))))
    with pytest.raises(ResponseTooLargeError, match="cut off"):
        make_fetcher(max_bytes=1000).get(server.url("/stream"))


def test_endless_response_ends_with_too_large(server, make_fetcher):
    def endless(request):
        def chunks():
            while not request.stopping.is_set():
                yield b"z" * 65536

        return 200, {"Content-Type": "text/html"}, chunks()

    server.route("/endless", endless)
    with pytest.raises(ResponseTooLargeError):
        make_fetcher(max_bytes=256 * 1024).get(server.url("/endless"))


def test_slow_drip_is_stopped_by_the_total_deadline(server):
    """One byte every 50 ms never trips the read timeout; the deadline still ends it."""

    def drip(request):
        def chunks():
            while not request.stopping.is_set():
                yield b"."
                time.sleep(0.05)

        return 200, {"Content-Length": "100000"}, chunks()

    server.route("/drip", drip)
    settings = FetchSettings(read_timeout=5, total_timeout=0.5, block_private_addresses=False)
    with Fetcher(settings) as fetcher, pytest.raises(FetchError, match="total_timeout=0.5"):
        fetcher.get(server.url("/drip"))


def test_stalled_server_trips_the_read_timeout(server, make_fetcher):
    release = threading.Event()

    def stall(request):
        def chunks():
            yield b"start"
            release.wait(5)

        return 200, {"Content-Length": "100"}, chunks()

    server.route("/stall", stall)
    try:
        with pytest.raises(FetchError, match="read_timeout=0.3"):
            make_fetcher(read_timeout=0.3).get(server.url("/stall"))
    finally:
        release.set()


def test_gzip_body_is_decoded(server, fetcher):
    url = server.route("/gz", 200, {"Content-Encoding": "gzip"}, gzip.compress(b"hello" * 10))
    assert fetcher.get(url).body == b"hello" * 10


def test_gzip_bomb_is_cut_off_at_max_bytes(server, make_fetcher):
    bomb = gzip.compress(b"\0" * 10_000_000)  # ~10 kB on the wire
    server.route("/bomb", 200, {"Content-Encoding": "gzip"}, bomb)
    with pytest.raises(ResponseTooLargeError, match="decompressed"):
        make_fetcher(max_bytes=100_000).get(server.url("/bomb"))


def test_unknown_content_encoding_is_an_error(server, fetcher):
    url = server.route("/br", 200, {"Content-Encoding": "br"}, b"\x1b\x00")
    with pytest.raises(FetchError, match="'br'"):
        fetcher.get(url)


# -- POST ---------------------------------------------------------------------------------


def test_post_sends_a_form_and_returns_any_status(server, fetcher):
    server.route("/op", lambda r: (400, {"Content-Type": "text/plain"}, b"error:bad\n"))
    response = fetcher.post(server.url("/op"), {"openid.mode": "associate", "x": "a&b"})
    assert (response.status, response.body) == (400, b"error:bad\n")
    request = server.requests[0]
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(request.body.decode())) == {"openid.mode": "associate", "x": "a&b"}


def test_post_is_never_redirected(server, fetcher):
    server.redirect("/op", "/elsewhere", 307)
    server.route("/elsewhere", 200, {}, b"is_valid:true\n")
    with pytest.raises(FetchError, match="5.1.2"):
        fetcher.post(server.url("/op"), {"openid.mode": "check_authentication"})
    assert server.paths() == ["/op"]


def test_post_bodies_are_never_logged(server, fetcher, caplog):
    server.route("/op", 200, {}, b"ok:1\n")
    with caplog.at_level(logging.DEBUG, logger="openid_plugins"):
        fetcher.post(server.url("/op"), {"openid.dh_consumer_public": "S3CR3T-VALUE"})
    assert caplog.records, "expected debug logging of the request line"
    assert "S3CR3T-VALUE" not in caplog.text


def test_credentials_in_urls_are_redacted():
    assert redact("http://user:pw@host/x") == "http://host/x"
    assert redact("http://host/x") == "http://host/x"


# -- the policy hook and the built-in SSRF guard ------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "100.64.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%lo",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",
        "2002:a00:1::1",
        "64:ff9b::a00:1",
    ],
)
def test_non_public_addresses_are_recognised(address):
    assert ssrf.non_public_reason(address) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2001:4860:4860::8888"])
def test_public_addresses_pass(address):
    assert ssrf.non_public_reason(address) is None


def test_every_resolved_address_must_be_public():
    ssrf.check_addresses("http://ok/", ["8.8.8.8", "2001:4860:4860::8888"])
    with pytest.raises(FetchRefusedError, match="10.0.0.1"):
        ssrf.check_addresses("http://mixed/", ["8.8.8.8", "10.0.0.1"])
    with pytest.raises(FetchRefusedError, match="no address"):
        ssrf.check_addresses("http://none/", [])


def test_guard_is_on_by_default(server):
    url = server.route("/local", 200, {}, b"internal")
    with Fetcher(FetchSettings()) as fetcher, pytest.raises(FetchRefusedError, match="loopback"):
        fetcher.get(url)
    assert server.requests == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]"]
)
def test_guard_refuses_loopback_in_any_spelling_before_connecting(server, host):
    server.route("/x", 200, {}, b"internal")
    settings = FetchSettings(block_private_addresses=True)
    with Fetcher(settings) as fetcher, pytest.raises(FetchRefusedError, match="refusing"):
        fetcher.get(f"http://{host}:{server.port}/x")
    assert server.requests == []


def test_built_in_guard_applies_without_a_plugin_manager(server):
    url = server.route("/x", 200, {}, b"internal")
    with Fetcher(FetchSettings(block_private_addresses=True)) as fetcher:
        with pytest.raises(FetchRefusedError, match="loopback"):
            fetcher.get(url)
        with pytest.raises(FetchRefusedError):
            fetcher.post(url, {"a": "b"})
    assert server.requests == []


def test_hook_openid_check_fetch_url_sees_every_url_redirects_included(server):
    class Recorder:
        def __init__(self):
            self.calls = []

        @hookimpl
        def openid_check_fetch_url(self, url, addresses, settings):
            self.calls.append((url, tuple(addresses), settings.max_bytes))

    recorder = Recorder()
    server.redirect("/start", "/end")
    server.route("/end", 200, {}, b"")
    with RelyingParty(
        store="memory://",
        plugins=[recorder],
        fetch_max_bytes=1234,
        fetch_block_private_addresses=False,
    ) as rp:
        rp.fetcher.get(server.url("/start"))
    assert recorder.calls == [
        (server.url("/start"), ("127.0.0.1",), 1234),
        (server.url("/end"), ("127.0.0.1",), 1234),
    ]


def test_a_broken_policy_is_a_plugin_error(server):
    def broken(url, addresses, settings):
        raise KeyError("oops")

    url = server.route("/x", 200, {}, b"")
    with Fetcher(FAST, broken) as fetcher, pytest.raises(PluginError, match="KeyError"):
        fetcher.get(url)
    assert server.requests == []


def test_a_policy_allowing_everything_cannot_switch_the_guard_off(server):
    """The guard runs before the policy, never instead of it."""
    url = server.route("/x", 200, {}, b"ok")
    guarded = Fetcher(FetchSettings(block_private_addresses=True), allow_all)
    with guarded, pytest.raises(FetchRefusedError, match="loopback"):
        guarded.get(url)
    assert server.requests == []


def test_a_plugin_allowing_everything_cannot_switch_the_guard_off(server):
    class AllowAll:
        @hookimpl(tryfirst=True)
        def openid_check_fetch_url(self, url, addresses, settings):
            return None

    url = server.route("/x", 200, {}, b"ok")
    with RelyingParty(
        store="memory://", plugins=[AllowAll()], fetch_block_private_addresses=True
    ) as rp, pytest.raises(FetchRefusedError, match="loopback"):
        rp.fetcher.get(url)
    assert server.requests == []
