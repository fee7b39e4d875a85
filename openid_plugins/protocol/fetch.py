"""HTTP for the relying party: discovery GETs and direct-request POSTs, under limits.

Everything a stranger can point us at goes through here, so every fetch is bounded: only
http and https, every URL (redirect targets included) approved by the
``openid_check_fetch_url`` hook before any connection, connections pinned to the
addresses that were approved (no DNS rebinding between check and connect), redirects
counted, bodies cut off past ``max_bytes`` (compressed bodies too), and a wall-clock
deadline over the whole fetch - connect, TLS, status line, headers, body and redirects -
so a server dripping one byte a second cannot hold a request forever: a watchdog thread
shuts the fetch's socket down at the deadline, which wakes a read blocked anywhere,
inside ``http.client`` or the TLS layer included.

Connections are never kept between calls. An OP whose HTTP server handles one HTTP/1.1
keep-alive connection at a time (Perl's ``HTTP::Daemon``, many embedded servers) serves
nobody else while a client holds an idle connection to it, so a connection pooled across
the user's round trip to that OP would hang the user's login. Connections are reused only
inside one ``Fetcher.scope()`` (one ``begin()``, one ``complete()``, one association), at
most one at a time, and closed when the scope ends; a fetch outside any scope sends
``Connection: close``.
"""

from __future__ import annotations

import heapq
import http.cookiejar
import ipaddress
import itertools
import logging
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
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
    FetchTimeoutError,
    OpenIDError,
    PluginError,
    ResponseTooLargeError,
)
from . import ssrf
from .limits import FetchSettings
from .message import excerpt

log = logging.getLogger("openid_plugins.protocol.fetch")

#: An extra check on each URL: ``(url, addresses, settings)``, raising ``FetchRefusedError``
#: to refuse. It runs after the built-in SSRF guard, never instead of it.
Policy = Callable[[str, list[str], FetchSettings], None]

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
#: RFC 9110 section 15.4: the redirects that carry a Location to follow.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_DESCRIBE_BYTES = 8192
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_TITLE = re.compile(r"<title[^>]*>([^<]*)</title", re.IGNORECASE)


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

    def describe(self) -> str:
        """This answer in a few words, for an error message when it is not what was asked
        for: status, ``Retry-After`` and ``Server`` (a CDN names itself there), and the
        start of the body (a block page, a rate limiter's note), quoted and cut."""
        try:
            reason = f" {HTTPStatus(self.status).phrase}"
        except ValueError:
            reason = ""
        parts = [f"HTTP {self.status}{reason}"]
        for header in ("Retry-After", "Server"):
            if self.headers.get(header):
                parts.append(f"{header}: {excerpt(self.headers[header], 80)!r}")
        text = self.body[:_DESCRIBE_BYTES].decode("utf-8", "replace")
        title = _TITLE.search(text) if self.media_type in _HTML_TYPES else None
        if title and title.group(1).strip():
            parts.append(f"page title {excerpt(title.group(1), 100)!r}")
        elif text.strip():
            parts.append(repr(excerpt(text, 100)))
        return ", ".join(parts)

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
#: Per thread: the current fetch's ``_Deadline`` (``deadline``) and ``_Scope`` (``scope``).
_local = threading.local()


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
    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        conn = cast(HTTPConnection, self)  # only ever mixed into urllib3's HTTPConnection
        table = getattr(_pins, "table", None) or {}
        addresses = table.get(_pin_key(self.host, self.port))
        if addresses is None:
            # Not inside Fetcher (no approved addresses): refuse rather than resolve.
            raise NewConnectionError(conn, f"no approved address for {self.host}:{self.port}")
        deadline: _Deadline | None = getattr(_local, "deadline", None)
        error: Exception = NewConnectionError(conn, f"no approved address for {self.host}")
        for address in addresses:
            timeout = self.timeout
            if deadline is not None and isinstance(timeout, (int, float)):
                # Each address gets what is left of the fetch's time, no more.
                timeout = min(timeout, max(deadline.remaining(), 0.001))
            try:
                sock = create_connection(
                    (address, self.port),
                    timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:
                error = ConnectTimeoutError(
                    conn, f"connection to {self.host} ({address}) timed out"
                )
                error.__cause__ = exc
                continue
            except OSError as exc:
                error = NewConnectionError(conn, f"cannot connect to {address}: {exc}")
                error.__cause__ = exc  # for _connection_failure's few words
                continue
            if deadline is not None:
                # Watched from here on: the TLS handshake is bounded too.
                deadline.watch(sock)
            return sock
        raise error

    def request(self, *args: Any, **kwargs: Any) -> None:
        # A connection reused inside a scope is watched by the new fetch's deadline.
        deadline: _Deadline | None = getattr(_local, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.watch(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


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


# -- deadlines and scopes ----------------------------------------------------------------


class _Deadline:
    """The end of one fetch (redirects included). Past it the watchdog shuts the fetch's
    sockets down, which wakes a read blocked anywhere - in ``http.client`` reading a
    status line one byte a second, in a TLS handshake, in the body - with end-of-file."""

    __slots__ = ("at", "budget", "expired", "_done", "_lock", "_watched")

    def __init__(self, at: float, budget: str) -> None:
        self.at = at
        #: Which limit this is, for the error message (``total_timeout=30.0s`` ...).
        self.budget = budget
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        #: (descriptor, local address) -> a duplicate descriptor of that connection.
        self._watched: dict[tuple[int, Any], socket.socket] = {}

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline.

        A duplicate descriptor is kept: shutdown acts on the connection whatever the
        descriptor, and a duplicate stays valid when TLS wrapping detaches the original
        object (so no recycled descriptor is ever hit). It also keeps the connection open:
        ``release`` lets go of it when the connection is closed before the fetch ends.
        """
        try:
            key = (sock.fileno(), sock.getsockname())
            with self._lock:
                if key in self._watched or self._done:
                    return
                duplicate = socket.fromfd(key[0], sock.family, sock.type)
                self._watched[key] = duplicate
                expired = self.expired
        except OSError:
            return  # closed already: nothing to wait on
        if expired:
            self.expire()

    def expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for duplicate in self._watched.values():
                # OSError: not connected (any more), so nothing to wake.
                with suppress(OSError):
                    duplicate.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        """Stop watching the connections seen so far (they were just closed): without
        their duplicates, closing them really ends them for the server."""
        with self._lock:
            watched, self._watched = self._watched, {}
        for duplicate in watched.values():
            duplicate.close()

    def finish(self) -> bool:
        """The fetch is over: stop watching. True if the deadline passed first."""
        with self._lock:
            self._done = True
        self.release()
        return self.expired


class _Watchdog:
    """One daemon thread for the whole process, expiring deadlines as they pass."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: _Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                # (Re)started lazily: also after a fork, which keeps no threads.
                self._thread = threading.Thread(
                    target=self._run, name="openid-plugins-fetch-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                due: list[_Deadline] = []
                while not due:
                    now = time.monotonic()
                    while self._heap and self._heap[0][0] <= now:
                        due.append(heapq.heappop(self._heap)[2])
                    if not due:
                        self._cond.wait(self._heap[0][0] - now if self._heap else None)
            for deadline in due:
                deadline.expire()  # a no-op for fetches that finished in time


_watchdog = _Watchdog()


class _Scope:
    """Connections of one ``Fetcher.scope()``: at most one open at a time (so two names for
    one single-connection server cannot deadlock us either), all closed at the end."""

    def __init__(self, deadline_at: float | None, budget: str) -> None:
        self.deadline_at = deadline_at
        self.budget = budget
        self._origin: tuple[str, str, int] | None = None
        self._adapter: _PinningAdapter | None = None

    def adapter(self, origin: tuple[str, str, int]) -> _PinningAdapter:
        if self._adapter is None or origin != self._origin:
            self.close()
            self._adapter = _PinningAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            self._origin = origin
        return self._adapter

    def close(self) -> None:
        if self._adapter is not None:
            self._adapter.close()
            self._adapter = None
        deadline: _Deadline | None = getattr(_local, "deadline", None)
        if deadline is not None:
            # Mid-fetch (a redirect to another origin): the connection closed above must not
            # stay open through the watchdog's duplicate while the next one is opened.
            deadline.release()


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


def _resolve_in_time(host: str, port: int) -> list[str]:
    """``resolve`` within the current fetch's deadline. A resolver waiting on a black-holed
    name server (seconds per attempt, several attempts) must not hold a user's login, and
    ``getaddrinfo`` takes no timeout: the lookup runs in a daemon thread, left to finish on
    its own when the time is up. IP literals need no lookup and no thread."""
    deadline: _Deadline | None = getattr(_local, "deadline", None)
    try:
        ipaddress.ip_address(host.strip("[]"))
        literal = True
    except ValueError:
        literal = False
    if deadline is None or literal:
        return resolve(host, port)
    outcome: list[list[str] | Exception] = []

    def lookup() -> None:
        try:
            outcome.append(resolve(host, port))
        except Exception as exc:  # re-raised in the fetching thread
            outcome.append(exc)

    thread = threading.Thread(target=lookup, name="openid-plugins-resolve", daemon=True)
    thread.start()
    thread.join(max(deadline.remaining(), 0.0))
    if not outcome:
        raise FetchTimeoutError(
            f"resolving {host!r} timed out: no answer within {deadline.budget}"
        )
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


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
    """The HTTP client of the whole relying party, safe to share between threads.

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
        # Prepares requests only (connections belong to scopes); its adapter still pins.
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
        adapter = _PinningAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    def close(self) -> None:
        """Release what the fetcher holds (no connection outlives a scope anyway)."""
        self._session.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ------------------------------------------------------------------------

    @contextmanager
    def scope(self, budget: float | None = None) -> Iterator[None]:
        """Fetches inside may reuse a connection; all are closed when the scope ends.

        ``budget``: seconds that every fetch inside shares, end to end (a user-facing call
        such as ``begin()`` passes ``settings.user_timeout``); each fetch is also bounded by
        ``total_timeout``. A scope opened inside another (same thread) joins it, tightening
        its budget for the inner block.
        """
        at = None if budget is None else time.monotonic() + budget
        label = "" if budget is None else f"user_timeout={budget}s (fetch_user_timeout)"
        outer: _Scope | None = getattr(_local, "scope", None)
        if outer is not None:
            saved = (outer.deadline_at, outer.budget)
            if at is not None and (outer.deadline_at is None or at < outer.deadline_at):
                outer.deadline_at, outer.budget = at, label
            try:
                yield
            finally:
                outer.deadline_at, outer.budget = saved
            return
        scope = _local.scope = _Scope(at, label)
        try:
            yield
        finally:
            _local.scope = None
            scope.close()

    def get(self, url: str, *, accept: str | None = None) -> FetchResponse:
        """GET ``url``, following redirects (each one checked), within every limit.

        Any HTTP status is returned; the caller decides what a 404 means.
        """
        headers = {"Accept": accept} if accept else {}
        with self._fetching(url) as (scope, deadline):
            seen = [url]
            current = url
            for _ in range(self.settings.max_redirects + 1):
                response = self._request("GET", current, headers, None, scope, deadline)
                location = response.headers.get("location")
                if response.status not in REDIRECT_STATUSES or not location:
                    return response
                target = urljoin(current, location.strip())
                if target.split("#", 1)[0] in (u.split("#", 1)[0] for u in seen):
                    raise FetchError(
                        f"redirect loop fetching {redact(url)}: {redact(current)} redirects"
                        f" back to {redact(target)} (max_redirects is"
                        f" {self.settings.max_redirects})"
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
        form = {str(k): str(v) for k, v in data.items()}
        with self._fetching(url) as (scope, deadline):
            response = self._request("POST", url, {}, form, scope, deadline)
        if response.status in REDIRECT_STATUSES:
            raise FetchError(
                f"POST to {redact(url)} answered with a redirect ({response.status}); OpenID"
                " direct requests are never redirected (OpenID 2.0 section 5.1.2): use the"
                " endpoint's final URL"
            )
        return response

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _fetching(self, url: str) -> Iterator[tuple[_Scope, _Deadline]]:
        """One fetch: its deadline (the tighter of ``total_timeout`` and the scope's budget),
        watched for its whole life, and its scope (a one-shot one outside any)."""
        scope: _Scope | None = getattr(_local, "scope", None)
        own_scope = scope is None
        if scope is None:
            scope = _Scope(None, "")
        total = self.settings.total_timeout
        deadline = _Deadline(time.monotonic() + total, f"total_timeout={total}s")
        if scope.deadline_at is not None and scope.deadline_at < deadline.at:
            deadline = _Deadline(scope.deadline_at, scope.budget)
        _watchdog.add(deadline)
        _local.deadline = deadline
        try:
            yield scope, deadline
        except OpenIDError as exc:
            if deadline.expired or deadline.remaining() <= 0:
                # Whatever broke when the watchdog cut the connection, the cause is the time.
                raise self._timed_out(url, deadline) from exc
            raise
        finally:
            _local.deadline = None
            expired = deadline.finish()
            if own_scope:
                scope.close()
        if expired:
            # The watchdog may have cut a body short that looked complete.
            raise self._timed_out(url, deadline)

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
            addresses = _resolve_in_time(host, port)
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
        scope: _Scope,
        deadline: _Deadline,
    ) -> FetchResponse:
        headers = dict(headers)
        reuse = getattr(_local, "scope", None) is scope
        if not reuse:
            # No scope to reuse the connection in: tell the server not to keep it either.
            headers["Connection"] = "close"
        try:
            # Prepared first: the policy must see, and the pin must hold, the host exactly as
            # it will be connected to (IDNA-encoded, lower-cased).
            prepared = self._session.prepare_request(
                requests.Request(method, url, headers=headers, data=form)
            )
        except (requests.RequestException, ValueError) as exc:
            raise FetchRefusedError(f"refusing to fetch {redact(url)!r}: {exc}") from exc
        host, port, addresses = self._check(prepared.url or url)
        remaining = deadline.remaining()
        if remaining <= 0:
            raise self._timed_out(url, deadline)
        timeout = (
            min(self.settings.connect_timeout, remaining),
            min(self.settings.read_timeout, remaining),
        )
        scheme = urlsplit(prepared.url or url).scheme.lower()
        adapter = scope.adapter((scheme, _pin_key(host, port)[0], port))
        log.debug("%s %s (%s)", method, redact(url), ", ".join(addresses))
        with _pinned(host, port, addresses):
            try:
                response = adapter.send(
                    prepared,
                    stream=True,
                    timeout=timeout,
                    verify=self.settings.verify_tls,
                    proxies={},
                )
            except requests.exceptions.SSLError as exc:
                raise FetchError(f"TLS failure fetching {redact(url)}: {exc}") from exc
            except requests.exceptions.Timeout as exc:
                raise FetchTimeoutError(
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
                if reuse:
                    # Complete: the connection may serve the scope's next fetch.
                    response.raw.release_conn()
            finally:
                response.close()  # closes the connection unless released above
                if not reuse:
                    # We asked the server to close it: a redirect's next hop must not try.
                    scope.close()
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

    def _read_body(self, response: requests.Response, url: str, deadline: _Deadline) -> bytes:
        """Read at most ``max_bytes`` (+1 to detect more), one socket read at a time."""
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
                if deadline.remaining() <= 0:
                    raise self._timed_out(url, deadline)
                chunk = raw.read1(min(_CHUNK, limit + 1 - size), decode_content=False)
                if not chunk:
                    if deadline.expired:
                        raise self._timed_out(url, deadline)
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise ResponseTooLargeError(
                        f"{redact(url)} sent more than max_bytes={limit} bytes; cut off"
                    )
        except (Urllib3HTTPError, OSError) as exc:
            if isinstance(exc, (TimeoutError, Urllib3TimeoutError)):
                raise FetchTimeoutError(
                    f"reading {redact(url)} timed out (read_timeout={self.settings.read_timeout}s)"
                ) from exc
            raise FetchError(f"reading {redact(url)} failed: {exc}") from exc
        return b"".join(chunks)

    @staticmethod
    def _timed_out(url: str, deadline: _Deadline) -> FetchTimeoutError:
        return FetchTimeoutError(
            f"fetching {redact(url)} timed out: no complete answer within {deadline.budget}"
            " (a slow or stalled server)"
        )
