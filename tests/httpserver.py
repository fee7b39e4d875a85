"""A real HTTP server on 127.0.0.1 for tests: no mocked network anywhere.

    with LocalHTTPServer() as server:
        server.route("/id", 200, {"Content-Type": "text/html"}, b"<html>...")
        server.route("/dyn", lambda request: (200, {}, request.query.encode()))
        fetch(server.url("/id"))
        assert server.requests[0].path == "/id"

A route is either a fixed ``(status, headers, body)`` or a callable taking a ``Request`` and
returning one. ``headers`` is a mapping or a list of pairs (repeat a header with a list);
``body`` is bytes or an iterable of bytes, streamed chunk by chunk (for endless or slow
responses; no Content-Length is sent unless given). Unknown paths are 404 with an empty body.

Import the ``http_server`` fixture into a test module, or wrap ``LocalHTTPServer`` in a
fixture of your own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
Body = bytes | Iterable[bytes]
Reply = tuple[int, Headers, Body]


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    #: Set when the server stops: long-running response generators should end.
    stopping: threading.Event = field(repr=False, default_factory=threading.Event)

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Buffered, so headers and body leave in one segment: unbuffered writes meet Nagle and
    # delayed ACKs on kept-alive connections and cost ~40 ms per request.
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            stopping=self.server.stopping,
        )
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(request)
            route = owner.routes.get(parts.path)
        reply: Reply = (404, {}, b"") if route is None else route(request)
        self._send(*reply)

    def _send(self, status: int, headers: Headers, body: Body) -> None:
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        names = {name.lower() for name, _ in pairs}
        self.send_response(status)
        for name, value in pairs:
            self.send_header(name, value)
        if isinstance(body, bytes | bytearray):
            if "content-length" not in names:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        # Streamed: the end of the body is the end of the connection.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        try:
            for chunk in body:
                if self.server.stopping.is_set():
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, which is what these tests provoke

    do_GET = do_POST = do_HEAD = do_PUT = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: LocalHTTPServer
    stopping: threading.Event


class LocalHTTPServer:
    """A threaded HTTP server on 127.0.0.1 with an ephemeral port."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[Request], Reply]] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LocalHTTPServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        server.stopping = threading.Event()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return self._server.server_address[1]

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base + path

    def route(
        self,
        path: str,
        status_or_handler: int | Callable[[Request], Reply] = 200,
        headers: Headers = (),
        body: Body = b"",
    ) -> str:
        """Serve ``path`` (query strings are not part of the match); return its URL."""
        if callable(status_or_handler):
            handler = status_or_handler
        else:
            fixed: Reply = (status_or_handler, headers, body)

            def handler(request: Request) -> Reply:
                return fixed

        with self.lock:
            self.routes[path] = handler
        return self.url(path)

    def redirect(self, path: str, target: str, status: int = 302) -> str:
        """Serve a redirect from ``path`` to ``target`` (relative or absolute)."""
        return self.route(path, status, {"Location": target})

    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        with self.lock:
            return [request.path for request in self.requests]


@pytest.fixture
def http_server() -> Iterable[LocalHTTPServer]:
    with LocalHTTPServer() as server:
        yield server
