"""A real OpenID Provider that none of us wrote: python3-openid's ``openid.server``, served
over HTTP on 127.0.0.1, with identity pages for HTML, XRDS and OP-identifier discovery.

Needs python3-openid (in the ``test`` extra): it is a test dependency, never a runtime one.
Used by the core's interop tests, plugin distributions' tests and the benchmarks. Behaviour
is switched per test through attributes (``decision``, ``allowed_associations`` ...), and
every request is counted by mode so a test can prove what did or did not happen on the wire.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from openid import cryptutil
from openid.association import Association, SessionNegotiator, getSecretSize
from openid.extensions import ax, pape, sreg
from openid.server.server import CheckIDRequest, ProtocolError, Server
from openid.store.memstore import MemoryStore

SREG_DATA = {"nickname": "alice", "email": "alice@example.com", "fullname": "Alice Liddell"}
AX_DATA = {
    "http://axschema.org/contact/email": ["alice@example.com"],
    "http://axschema.org/namePerson/first": ["Alice"],
    "http://axschema.org/namePerson/last": ["Liddell"],
}

XRDS = """<?xml version="1.0" encoding="UTF-8"?>
<xrds:XRDS xmlns:xrds="xri://$xrds" xmlns="xri://$xrd*($v*2.0)" xmlns:openid="http://openid.net/xmlns/1.0">
<XRD><Service priority="0">
<Type>{type}</Type>
<URI>{endpoint}</URI>{local}
</Service></XRD></xrds:XRDS>
"""


class Python3OP:
    """python3-openid's OP on an ephemeral loopback port.

    ``single_connection=True`` serves it the way Perl's ``HTTP::Daemon`` and many embedded
    servers do: one connection at a time, HTTP/1.1 keep-alive, each connection kept until
    the client closes it - so a client holding an idle connection blocks everyone else.
    """

    def __init__(self, *, single_connection: bool = False) -> None:
        self.store = MemoryStore()
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        #: "allow", "cancel", "setup_needed" or "error" (answer to checkid requests; "error"
        #: redirects back with openid.mode=error and ``error_text``)
        self.decision = "allow"
        self.error_text = "the OP failed"
        #: Canned (status, KV body) answers to every associate / check_authentication
        #: request, for OPs that answer the way real ones do (Steam's refusal, a 429 ...).
        self.associate_answer: tuple[int, bytes] | None = None
        self.check_authentication_answer: tuple[int, bytes] | None = None
        #: Sign stateless assertions with one constant handle (Steam signs everything with
        #: "1234567890"); check_authentication still verifies them.
        self.dummy_handle: str | None = None
        #: None = python3-openid's default negotiator; a list of (assoc_type, session_type)
        #: restricts it; [] refuses every association.
        self.allowed_associations: list[tuple[str, str]] | None = None
        self.sreg_data = dict(SREG_DATA)
        self.ax_data = {k: list(v) for k, v in AX_DATA.items()}
        self.last_checkid: CheckIDRequest | None = None
        #: PAPE: the last request seen, and how many seconds ago the user "authenticated".
        self.last_pape = None
        self.auth_age = 0.0
        #: Extension namespaces whose request arguments are echoed back (as ``echo.<key>``),
        #: signed, so a site-defined extension can be tested end to end.
        self.echo_namespaces: set[str] = set()
        #: The identifier answered to identifier_select requests (None: identity("alice")),
        #: and a fragment added to its claimed_id only (identifier recycling, 11.5.1).
        self.select_identity: str | None = None
        self.select_fragment = ""
        if single_connection:
            self.httpd: HTTPServer = HTTPServer(("127.0.0.1", 0), self._handler())
        else:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
            self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._servers: dict[str, Server] = {}

    # -- URLs ------------------------------------------------------------------------------

    def endpoint(self, name: str = "op") -> str:
        return f"{self.base}/{name}"

    def identity(self, user: str = "alice") -> str:
        """An HTML identity page (OpenID 2.0 and 1.x links)."""
        return f"{self.base}/id/{user}"

    def xrds_identity(self, user: str = "alice") -> str:
        return f"{self.base}/xrds-id/{user}"

    def delegating_identity(self, user: str = "alice") -> str:
        """A claimed identifier whose OP-local identifier is ``identity(user)``."""
        return f"{self.base}/delegate/{user}"

    def op_identifier(self) -> str:
        return f"{self.base}/server"

    def elsewhere_identity(self, user: str = "alice") -> str:
        """An identifier whose discovered OP is another endpoint (``/op9``)."""
        return f"{self.base}/elsewhere/{user}"

    def openid1_identity(self, user: str = "alice") -> str:
        return f"{self.base}/v1/{user}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Python3OP:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        self.counts.clear()
        self.decision = "allow"
        self.error_text = "the OP failed"
        self.associate_answer = None
        self.check_authentication_answer = None
        self.dummy_handle = None
        self.allowed_associations = None
        self.select_identity = None
        self.select_fragment = ""
        self.last_pape = None
        self.auth_age = 0.0
        self.echo_namespaces = set()
        self.store = MemoryStore()
        self._servers.clear()

    def forget_associations(self) -> None:
        """Lose every association, as an OP does after a restart or a key rotation."""
        with self.lock:
            self.store = MemoryStore()
            self._servers.clear()

    def server(self, name: str) -> Server:
        with self.lock:
            if name not in self._servers:
                self._servers[name] = Server(self.store, self.endpoint(name))
                if self.dummy_handle is not None:
                    self._sign_with_constant_handle(self._servers[name], self.dummy_handle)
            server = self._servers[name]
        if self.allowed_associations is not None:
            server.negotiator = SessionNegotiator(self.allowed_associations)
        return server

    # -- OpenID ----------------------------------------------------------------------------

    def handle_openid(self, name: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        server = self.server(name)
        request = server.decodeRequest(query)
        if request is None:
            return 400, {"Content-Type": "text/plain"}, b"not an OpenID request"
        with self.lock:
            self.counts[request.mode] += 1
        canned = {
            "associate": self.associate_answer,
            "check_authentication": self.check_authentication_answer,
        }.get(request.mode)
        if canned is not None:
            media = "text/html" if canned[1].lstrip().startswith(b"<") else "text/plain"
            return canned[0], {"Content-Type": f"{media}; charset=utf-8"}, canned[1]
        if request.mode == "associate" and self.allowed_associations == []:
            response = request.answerUnsupported("this OP makes no associations")
        elif isinstance(request, CheckIDRequest):
            self.last_checkid = request
            response = self._answer_checkid(request)
        else:
            response = server.handleRequest(request)
        web = server.encodeResponse(response)
        return (
            web.code,
            dict(web.headers),
            web.body if isinstance(web.body, bytes) else (web.body.encode("utf-8")),
        )

    @staticmethod
    def _sign_with_constant_handle(server: Server, handle: str) -> None:
        signatory = server.signatory
        make = signatory.createAssociation

        def create(dumb: bool = True, assoc_type: str = "HMAC-SHA1") -> Association:
            if not dumb:
                return make(dumb, assoc_type)
            # python3-openid drops a stateless association once checked: make it again.
            existing = signatory.getAssociation(handle, dumb=True)
            if existing is not None:
                return existing
            secret = cryptutil.getBytes(getSecretSize(assoc_type))
            association = Association.fromExpiresIn(
                signatory.SECRET_LIFETIME, handle, secret, assoc_type
            )
            signatory.store.storeAssociation(signatory._dumb_key, association)
            return association

        signatory.createAssociation = create

    def _answer_checkid(self, request: CheckIDRequest):
        if self.decision == "error":
            return ProtocolError(request.message, self.error_text)
        if self.decision == "cancel":
            return request.answer(False)
        if self.decision == "setup_needed" or (request.immediate and self.decision != "allow"):
            return request.answer(False, server_url=request.op_endpoint)
        if request.idSelect():
            identity = self.select_identity or self.identity("alice")
            claimed_id = identity + self.select_fragment
            response = request.answer(True, identity=identity, claimed_id=claimed_id)
        else:
            response = request.answer(True)
        sreg_request = sreg.SRegRequest.fromOpenIDRequest(request)
        if sreg_request.wereFieldsRequested():
            response.addExtension(sreg.SRegResponse.extractResponse(sreg_request, self.sreg_data))
        ax_request = ax.FetchRequest.fromOpenIDRequest(request)
        if ax_request is not None:
            ax_response = ax.FetchResponse(request=ax_request)
            for type_uri in ax_request.requested_attributes:
                for value in self.ax_data.get(type_uri, []):
                    ax_response.addValue(type_uri, value)
            response.addExtension(ax_response)
        pape_request = pape.Request.fromOpenIDRequest(request)
        self.last_pape = pape_request
        if pape_request is not None:
            auth_time = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - self.auth_age)
            )
            response.addExtension(
                pape.Response(
                    auth_policies=pape_request.preferred_auth_policies, auth_time=auth_time
                )
            )
        for namespace in self.echo_namespaces:
            args = request.message.getArgs(namespace)
            if args:
                alias = request.message.namespaces.getAlias(namespace)
                response.fields.namespaces.addAlias(namespace, alias)
                response.fields.updateArgs(namespace, {f"echo.{k}": v for k, v in args.items()})
        return response

    # -- identity pages --------------------------------------------------------------------

    def page(self, path: str) -> tuple[int, dict[str, str], bytes] | None:
        parts = path.strip("/").split("/")
        html = {"Content-Type": "text/html; charset=utf-8"}
        xrds = {"Content-Type": "application/xrds+xml"}
        if len(parts) == 2 and parts[0] == "id":
            links = (
                f'<link rel="openid2.provider" href="{self.endpoint()}">'
                f'<link rel="openid.server" href="{self.endpoint()}">'
            )
            return 200, html, f"<html><head>{links}</head><body>{parts[1]}</body></html>".encode()
        if len(parts) == 2 and parts[0] == "elsewhere":
            links = f'<link rel="openid2.provider" href="{self.endpoint("op9")}">'
            return 200, html, f"<html><head>{links}</head><body></body></html>".encode()
        if len(parts) == 2 and parts[0] == "v1":
            links = f'<link rel="openid.server" href="{self.endpoint("op1")}">'
            return 200, html, f"<html><head>{links}</head><body></body></html>".encode()
        if len(parts) == 2 and parts[0] == "delegate":
            links = (
                f'<link rel="openid2.provider openid.server" href="{self.endpoint()}">'
                f'<link rel="openid2.local_id openid.delegate" href="{self.identity(parts[1])}">'
            )
            return 200, html, f"<html><head>{links}</head><body></body></html>".encode()
        if len(parts) == 2 and parts[0] == "xrds-id":
            body = XRDS.format(
                type="http://specs.openid.net/auth/2.0/signon", endpoint=self.endpoint(), local=""
            )
            return 200, xrds, body.encode()
        if parts == ["server"]:
            body = XRDS.format(
                type="http://specs.openid.net/auth/2.0/server", endpoint=self.endpoint(), local=""
            )
            return 200, xrds, body.encode()
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        op = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Without it, small responses wait ~40 ms for a delayed ACK on loopback.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _respond(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _dispatch(self, query: dict[str, str]) -> None:
                path = urlsplit(self.path).path
                name = path.strip("/")
                if name.startswith("op") and "/" not in name:
                    self._respond(*op.handle_openid(name, query))
                    return
                with op.lock:
                    op.counts["page"] += 1
                page = op.page(path)
                if page is None:
                    self._respond(404, {"Content-Type": "text/plain"}, b"not found")
                else:
                    self._respond(*page)

            def do_GET(self) -> None:
                self._dispatch(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                self._dispatch(dict(parse_qsl(body, keep_blank_values=True)))

        return Handler
