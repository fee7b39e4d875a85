"""HTTP for the relying party: discovery GETs and direct-request POSTs, under limits.

Everything a stranger can point us at goes through here, so every fetch is bounded: only
http and https, every URL (redirect targets included) approved by the
``openid_check_fetch_url`` hook before any connection, connections pinned to the
addresses that were approved (no DNS rebinding between check and connect), redirects
counted, bodies cut off past ``max_bytes`` (compressed bodies too), and a wall-clock
deadline so a server dripping one byte a second cannot hold a request forever.
"""

from __future__ import annotations

import http.cookiejar
import logging
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.util.connection import create_connection

from ..errors import (
    FetchError,
    FetchRefusedError,
    OpenIDError,
    PluginError,
    ResponseTooLargeError,
)
from . import ssrf
from .limits import FetchSettings

log = logging.getLogger("openid_plugins.protocol.fetch")

#: An extra check on each URL: ``(url, addresses, settings)``, raising ``FetchRefusedError``
#: to refuse. It runs after the built-in SSRF guard, never instead of it.
Policy = Callable[[str, list[str], FetchSettings], None]

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
#: RFC 9110 section 15.4: the redirects that carry a Location to follow.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchResponse:
    """A complete, size-limited HTTP response."""

    #: The URL that answered, after redirects (its fragment is never sent, so never kept).
    final_url: str
    status: int
    #: Case-insensitive; repeated headers are joined with ", " (see ``header_values``).
    headers: CaseInsensitiveDict = field(repr=False)
    body: bytes = field(repr=False)
    #: Every header line in order, for headers whose repetition matters.
    header_items: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def header_values(self, name: str) -> list[str]:
        """All values of a header that may be repeated (e.g. ``X-XRDS-Location``)."""
        wanted = name.lower()
        return [value for key, value in self.header_items if key.lower() == wanted]

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased (``""`` when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter of the Content-Type, if any."""
        return content_type_charset(self.headers.get("content-type", ""))


def content_type_charset(content_type: str) -> str | None:
    """The ``charset`` parameter of a Content-Type value, if any."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return None


# -- connection pinning ------------------------------------------------------------------

_pins = threading.local()


def _pin_key(host: str, port: int | None) -> tuple[str, int | None]:
    return host.strip("[]").rstrip(".").lower(), port


@contextmanager
def _pinned(host: str, port: int, addresses: list[str]) -> Iterator[None]:
    """While active, new connections from this thread to ``host:port`` go only to
    ``addresses`` (those the policy approved), never to a fresh DNS answer."""
    table = getattr(_pins, "table", None)
    if table is None:
        table = _pins.table = {}
    key = _pin_key(host, port)
    table[key] = addresses
    try:
        yield
    finally:
        table.pop(key, None)


def _connection_failure(exc: BaseException) -> str:
    """Why a connection failed in a few words ("connection refused"): the innermost
    ``OSError``'s text, found through requests' and urllib3's wrappers (``MaxRetryError``
    with its pool and retry internals is no help to the person reading the message)."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror[:1].lower() + current.strerror[1:]
        linked = (getattr(current, "reason", None), current.__cause__, current.__context__)
        todo.extend(e for e in (*linked, *current.args) if isinstance(e, BaseException))
    return str(exc)


class _PinnedConnectionMixin:
    """Connects to the approved addresses of the current fetch instead of resolving again."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        conn = cast(HTTPConnection, self)  # only ever mixed into urllib3's HTTPConnection
        table = getattr(_pins, "table", None) or {}
        addresses = table.get(_pin_key(self.host, self.port))
        if addresses is None:
            # Not inside Fetcher (no approved addresses): refuse rather than resolve.
            raise NewConnectionError(conn, f"no approved address for {self.host}:{self.port}")
        error: Exception = NewConnectionError(conn, f"no approved address for {self.host}")
        for address in addresses:
            try:
                return create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:
                error = ConnectTimeoutError(
                    conn, f"connection to {self.host} ({address}) timed out"
                )
                error.__cause__ = exc
            except OSError as exc:
                error = NewConnectionError(conn, f"cannot connect to {address}: {exc}")
                error.__cause__ = exc  # for _connection_failure's few words
        raise error


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class _PinningAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PinnedHTTPConnectionPool,
            "https": _PinnedHTTPSConnectionPool,
        }


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """OpenID fetches are stateless; a shared cookie jar would leak state between users."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


# -- helpers -----------------------------------------------------------------------------


def redact(url: str) -> str:
    """``url`` without user:password, for logs and error messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def resolve(host: str, port: int) -> list[str]:
    """The IP addresses ``host`` resolves to, in resolver order, without duplicates.

    IP literals come back as they are (``getaddrinfo`` does no DNS for them).
    """
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _decode_body(raw: bytes, encoding: str, max_bytes: int, url: str) -> bytes:
    """Undo Content-Encoding without letting a small gzip bomb grow past ``max_bytes``.

    We ask for ``identity``; this is for servers that compress anyway.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        # RFC 9110 says zlib-wrapped; some servers send raw deflate.
        wbits = zlib.MAX_WBITS if raw[:1] == b"\x78" else -zlib.MAX_WBITS
        decoder = zlib.decompressobj(wbits)
    else:
        raise FetchError(
            f"{url} sent Content-Encoding {encoding!r}, which we did not ask for and cannot"
            " decode; the server must honour Accept-Encoding: identity"
        )
    try:
        body = decoder.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise FetchError(f"{url} sent a corrupt {encoding} body: {exc}") from exc
    if len(body) > max_bytes or decoder.unconsumed_tail:
        raise ResponseTooLargeError(
            f"{url}: the decompressed response is larger than {max_bytes} bytes (max_bytes)"
        )
    return body


# -- the fetcher -------------------------------------------------------------------------


class Fetcher:
    """One pooled HTTP client for the whole relying party, safe to share between threads.

    Every URL (redirect targets included) passes the SSRF guard (``protocol.ssrf``) when
    ``settings.block_private_addresses`` is on, then ``policy``, if given: the plugin
    hook's checks, which the relying party passes in as a plain callable.
    """

    def __init__(
        self,
        settings: FetchSettings | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.settings = settings or FetchSettings()
        self._policy = policy
        session = requests.Session()
        # Proxies from the environment would connect somewhere other than the addresses
        # the policy approved; .netrc credentials must never reach a stranger's server.
        session.trust_env = False
        session.cookies.set_policy(_NoCookies())
        session.headers.clear()
        session.headers.update(
            {
                "User-Agent": self.settings.user_agent,
                # Compressed bodies could expand past max_bytes unseen; see _decode_body.
                "Accept-Encoding": "identity",
            }
        )
        adapter = _PinningAdapter(pool_connections=16, pool_maxsize=16, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ------------------------------------------------------------------------

    def get(self, url: str, *, accept: str | None = None) -> FetchResponse:
        """GET ``url``, following redirects (each one checked), within every limit.

        Any HTTP status is returned; the caller decides what a 404 means.
        """
        headers = {"Accept": accept} if accept else {}
        deadline = time.monotonic() + self.settings.total_timeout
        seen = [url]
        current = url
        for _ in range(self.settings.max_redirects + 1):
            response = self._request("GET", current, headers, None, deadline)
            location = response.headers.get("location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            target = urljoin(current, location.strip())
            if target.split("#", 1)[0] in (u.split("#", 1)[0] for u in seen):
                raise FetchError(
                    f"redirect loop fetching {redact(url)}: {redact(current)} redirects back"
                    f" to {redact(target)} (max_redirects is {self.settings.max_redirects})"
                )
            log.debug("redirect %s -> %s", redact(current), redact(target))
            seen.append(target)
            current = target
        raise FetchError(
            f"too many redirects fetching {redact(url)}: more than max_redirects="
            f"{self.settings.max_redirects} (last {redact(current)})"
        )

    def post(self, url: str, data: Mapping[str, str]) -> FetchResponse:
        """POST a form to ``url`` (an OpenID direct request, section 5.1.1).

        Redirects are not followed: a direct response is 200 or 400 (sections 5.1.2.1 and
        5.1.2.2), so a redirect is an error. Other statuses are returned to the caller.
        The body is never logged: it can carry association secrets.
        """
        deadline = time.monotonic() + self.settings.total_timeout
        form = {str(k): str(v) for k, v in data.items()}
        response = self._request("POST", url, {}, form, deadline)
        if response.status in REDIRECT_STATUSES:
            raise FetchError(
                f"POST to {redact(url)} answered with a redirect ({response.status}); OpenID"
                " direct requests are never redirected (OpenID 2.0 section 5.1.2): use the"
                " endpoint's final URL"
            )
        return response

    # -- internals -------------------------------------------------------------------------

    def _check(self, url: str) -> tuple[str, int, list[str]]:
        """Validate the URL, resolve its host and ask the policy; return what to pin."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise FetchRefusedError(f"refusing to fetch {redact(url)!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise FetchRefusedError(
                f"refusing to fetch {redact(url)!r}: only http and https URLs are fetched"
            )
        host = parts.hostname
        if not host:
            raise FetchRefusedError(f"refusing to fetch {redact(url)!r}: the URL has no host")
        port = port or DEFAULT_PORTS[scheme]
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            reason = f"the host {host!r} does not resolve ({_connection_failure(exc)})"
            message = f"cannot fetch {redact(url)}: {reason}"
            raise FetchError(message, url=url, reason=reason) from exc
        self._run_policy(url, addresses)
        if not addresses:
            raise FetchError(f"cannot fetch {redact(url)}: {host!r} resolved to no address")
        return host, port, addresses

    def _run_policy(self, url: str, addresses: list[str]) -> None:
        if self.settings.block_private_addresses:
            ssrf.check_addresses(url, addresses)
        if self._policy is None:
            return
        try:
            self._policy(url, list(addresses), self.settings)
        except OpenIDError:
            raise
        except Exception as exc:
            raise PluginError(
                f"a fetch policy failed on {redact(url)} with {type(exc).__name__}: {exc};"
                " a policy must return None or raise FetchRefusedError"
            ) from exc

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        form: Mapping[str, str] | None,
        deadline: float,
    ) -> FetchResponse:
        try:
            # Prepared first: the policy must see, and the pin must hold, the host exactly as
            # it will be connected to (IDNA-encoded, lower-cased).
            prepared = self._session.prepare_request(
                requests.Request(method, url, headers=dict(headers), data=form)
            )
        except (requests.RequestException, ValueError) as exc:
            raise FetchRefusedError(f"refusing to fetch {redact(url)!r}: {exc}") from exc
        host, port, addresses = self._check(prepared.url or url)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out(url)
        timeout = (
            min(self.settings.connect_timeout, remaining),
            min(self.settings.read_timeout, remaining),
        )
        log.debug("%s %s (%s)", method, redact(url), ", ".join(addresses))
        with _pinned(host, port, addresses):
            try:
                response = self._session.send(
                    prepared,
                    timeout=timeout,
                    verify=self.settings.verify_tls,
                    allow_redirects=False,
                    stream=True,
                )
            except requests.exceptions.SSLError as exc:
                raise FetchError(f"TLS failure fetching {redact(url)}: {exc}") from exc
            except requests.exceptions.Timeout as exc:
                raise FetchError(
                    f"fetching {redact(url)} timed out (connect_timeout="
                    f"{self.settings.connect_timeout}s, read_timeout="
                    f"{self.settings.read_timeout}s)"
                ) from exc
            except (requests.RequestException, Urllib3HTTPError, OSError) as exc:
                reason = _connection_failure(exc)
                raise FetchError(
                    f"cannot fetch {redact(url)}: {reason}", url=url, reason=reason
                ) from exc
            try:
                raw = self._read_body(response, url, deadline)
            finally:
                response.close()
        body = _decode_body(
            raw, response.headers.get("content-encoding", ""), self.settings.max_bytes, url
        )
        return FetchResponse(
            final_url=url.split("#", 1)[0],
            status=response.status_code,
            headers=CaseInsensitiveDict(response.headers),
            body=body,
            header_items=tuple(response.raw.headers.items()),
        )

    def _read_body(self, response: requests.Response, url: str, deadline: float) -> bytes:
        """Read at most ``max_bytes`` (+1 to detect more), one socket read at a time, so
        the deadline is checked between reads however slowly the server sends."""
        limit = self.settings.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLargeError(
                f"{redact(url)} announces {declared} bytes, more than max_bytes={limit}"
            )
        chunks: list[bytes] = []
        size = 0
        raw = response.raw
        try:
            while True:
                if time.monotonic() > deadline:
                    raise self._timed_out(url)
                chunk = raw.read1(min(_CHUNK, limit + 1 - size), decode_content=False)
                if not chunk:
                    # Complete: the connection can go back to the pool for reuse.
                    raw.release_conn()
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise ResponseTooLargeError(
                        f"{redact(url)} sent more than max_bytes={limit} bytes; cut off"
                    )
        except (Urllib3HTTPError, OSError) as exc:
            if isinstance(exc, (TimeoutError, Urllib3TimeoutError)):
                raise FetchError(
                    f"reading {redact(url)} timed out (read_timeout={self.settings.read_timeout}s)"
                ) from exc
            raise FetchError(f"reading {redact(url)} failed: {exc}") from exc
        return b"".join(chunks)

    def _timed_out(self, url: str) -> FetchError:
        return FetchError(
            f"fetching {redact(url)} timed out: it took longer than total_timeout="
            f"{self.settings.total_timeout}s (a slow or stalled server)"
        )
