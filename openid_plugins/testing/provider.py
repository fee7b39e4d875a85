"""A development OpenID Provider: small, real, and on 127.0.0.1.

It lets a site's own test suite (and ``openid-plugins demo``) sign users in without any
external OP. It speaks OpenID 2.0 and answers OpenID 1.1 requests in 1.1 form; users are
approved without a UI, so a test drives a login with an HTTP client alone::

    with DevelopmentProvider(users=("alice", "bob")) as op:
        rp = RelyingParty(store="memory://", **op.rp_settings)  # the SSRF guard off: loopback
        auth = rp.begin(op.identity_url("alice"), return_to, session=session)
        back = requests.get(auth.redirect_url, allow_redirects=False).headers["Location"]
        result = rp.complete(query_of(back), back, session=session)
        assert op.counts["check_authentication"] == 1

Knobs switch behaviour per test: ``deny``, ``refuse_associations``,
``allowed_associations``, ``clock_skew``, ``select_user``, ``sreg_data``, ``ax_data``.

The protocol rules live in the library's protocol modules (``association``, ``nonce``,
``realm``, ``message``); this module only arranges them the OP's way round, so it also
reads as a walk through what an OP does. Associations and nonces are kept in memory.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import re
import secrets
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ..contracts import Association, Clock, SystemClock
from ..errors import ConfigurationError, IncompleteAnswerError, OpenIDError, ProtocolError
from ..extensions.ax import AX_NS, SCHEMA
from ..extensions.sreg import SREG_FIELDS, SREG_NAMESPACES
from ..protocol.association import (
    DEFAULT_DH_GROUP,
    HMAC_SHA1,
    HMAC_SHA256,
    NO_ENCRYPTION,
    DHGroup,
    DHSession,
    allowed_types,
    b64_btwoc_decode,
    b64_btwoc_encode,
    check_signature,
    sign,
    unmask_mac_key,
)
from ..protocol.endpoint import (
    OPENID_1_1_TYPE,
    OPENID_2_0_TYPE,
    OPENID_IDP_2_0_TYPE,
)
from ..protocol.message import OPENID2_NS, Message, kv_encode
from ..protocol.nonce import make_nonce
from ..protocol.realm import Realm

log = logging.getLogger("openid_plugins.testing.provider")

IDENTIFIER_SELECT = "http://specs.openid.net/auth/2.0/identifier_select"
#: Modes counted by name in ``counts``; anything else counts as "invalid".
MODES = ("associate", "checkid_setup", "checkid_immediate", "check_authentication")
#: 5.2.1: indirect messages longer than this go by an HTML form POST instead (5.2.2).
MAX_REDIRECT_URL = 2047
_USER_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}\Z")
_KEY_SIZES = {HMAC_SHA1: hashlib.sha1().digest_size, HMAC_SHA256: hashlib.sha256().digest_size}

Reply = tuple[int, dict[str, str], bytes]


def default_sreg(user: str) -> dict[str, str]:
    """The SREG profile a user gets unless a test sets ``sreg_data``."""
    return {"nickname": user, "email": f"{user}@example.com", "fullname": user.capitalize()}


def default_ax(user: str) -> dict[str, list[str]]:
    """The AX attributes (type URI -> values) a user gets unless a test sets ``ax_data``."""
    return {
        SCHEMA["email"]: [f"{user}@example.com"],
        SCHEMA["nickname"]: [user],
        SCHEMA["first"]: [user.capitalize()],
    }


@dataclass(frozen=True)
class _Stored:
    association: Association
    #: Shared with an RP through ``associate`` (True), or private to the OP for stateless
    #: responses (False); only private ones are ever checked for an RP (11.4.2.1).
    shared: bool


class DevelopmentProvider:
    """An OpenID Provider in a daemon thread; a context manager that starts and stops it."""

    def __init__(
        self,
        users: Iterable[str] = ("alice",),
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self.users = tuple(users)
        if not self.users:
            raise ConfigurationError("DevelopmentProvider needs at least one user name")
        for user in self.users:
            if not isinstance(user, str) or not _USER_RE.match(user):
                raise ConfigurationError(
                    f"user name {user!r} must be 1-64 letters, digits or ._~- (it is a URL path)"
                )
        self.host = host
        self.port = port
        self.clock: Clock = clock or SystemClock()
        #: Answer every authentication request negatively (cancel / setup_needed).
        self.deny = False
        #: Answer every associate request ``unsupported-type`` with no suggestion.
        self.refuse_associations = False
        #: (assoc_type, session_type) pairs accepted; None means every pair the transport
        #: allows. A mismatch is answered with the first allowed pair as a suggestion.
        self.allowed_associations: list[tuple[str, str]] | None = None
        #: Seconds added to the time stamped into response nonces (a wrong OP clock).
        self.clock_skew = 0.0
        #: The user an identifier_select request is answered for (default: the first).
        self.select_user: str | None = None
        self.association_lifetime = 86400.0
        self.sreg_data: dict[str, dict[str, str]] = {u: default_sreg(u) for u in self.users}
        self.ax_data: dict[str, dict[str, list[str]]] = {u: default_ax(u) for u in self.users}
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._associations: dict[str, _Stored] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> DevelopmentProvider:
        if self._httpd is not None:
            return self
        try:
            httpd = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        except OSError as exc:
            raise ConfigurationError(
                f"the development OP cannot listen on {self.host}:{self.port} ({exc});"
                " choose another port, or port=0 for any free one"
            ) from exc
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            # A short poll interval makes stop() quick (it waits for the loop to notice).
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openid-dev-op",
            daemon=True,
        )
        self._thread.start()
        log.info("development OP listening at %s", self.endpoint)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> DevelopmentProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget associations and counts and put every knob back to its default."""
        with self._lock:
            self._counts.clear()
            self._associations.clear()
        self.deny = self.refuse_associations = False
        self.allowed_associations = None
        self.clock_skew = 0.0
        self.select_user = None
        self.sreg_data = {u: default_sreg(u) for u in self.users}
        self.ax_data = {u: default_ax(u) for u in self.users}

    def forget_associations(self) -> None:
        """Lose every association, as an OP restarted without its store would."""
        with self._lock:
            self._associations.clear()

    # -- URLs ------------------------------------------------------------------------------

    @property
    def rp_settings(self) -> dict[str, object]:
        """The settings a relying party needs to sign in here: this OP listens on a loopback
        address, which the SSRF guard refuses by default. Pass them explicitly
        (``RelyingParty(..., **op.rp_settings)``); the relying party logs a warning that the
        guard is off, and production settings never carry them."""
        return {"fetch_block_private_addresses": False}

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise ConfigurationError("the development OP is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        host = f"[{host!s}]" if ":" in str(host) else str(host)
        return f"http://{host}:{port}"

    @property
    def endpoint(self) -> str:
        """The OP Endpoint URL (where every OpenID message is sent)."""
        return f"{self.base_url}/openid"

    def identity_url(self, user: str) -> str:
        """An HTML identity page with OpenID 2.0 and 1.x links (7.3.3)."""
        return f"{self.base_url}/id/{self._known(user)}"

    def openid1_identity_url(self, user: str) -> str:
        """An HTML identity page with only OpenID 1.x links: logins through it use 1.1."""
        return f"{self.base_url}/id1/{self._known(user)}"

    def xrds_url(self, user: str) -> str:
        """An XRDS document for a claimed identifier (7.3.2.1.2)."""
        return f"{self.base_url}/xrds/{self._known(user)}"

    @property
    def op_identifier_url(self) -> str:
        """An XRDS document with the server type: directed identity (7.3.2.1.1)."""
        return f"{self.base_url}/server"

    @property
    def counts(self) -> Counter[str]:
        """A snapshot of the OpenID requests received, by mode."""
        with self._lock:
            return Counter(self._counts)

    def _known(self, user: str) -> str:
        if user not in self.users:
            raise ConfigurationError(f"{user!r} is not a user of this OP ({', '.join(self.users)})")
        return user

    def _user_for(self, identity: str) -> str | None:
        for user in self.users:
            if identity in (self.identity_url(user), self.openid1_identity_url(user)):
                return user
            if identity == self.xrds_url(user):
                return user
        return None

    # -- HTTP ------------------------------------------------------------------------------

    def respond(self, method: str, path: str, args: Mapping[str, list[str]]) -> Reply:
        """The reply to one HTTP request: identity pages, XRDS, or the OP endpoint."""
        parts = path.strip("/").split("/")
        if path == "/openid":
            return self._openid(method, args)
        if path in ("", "/"):
            return _html(200, self._index())
        if parts == ["server"]:
            return _xrds(OPENID_IDP_2_0_TYPE, self.endpoint)
        if len(parts) == 2 and parts[1] in self.users:
            kind, user = parts
            if kind == "id":
                return _html(200, self._identity_page(user, openid2=True))
            if kind == "id1":
                return _html(200, self._identity_page(user, openid2=False))
            if kind == "xrds":
                return _xrds(OPENID_2_0_TYPE, self.endpoint)
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found\n"

    def _identity_page(self, user: str, *, openid2: bool) -> str:
        endpoint = html.escape(self.endpoint)
        if openid2:
            local = html.escape(self.identity_url(user))
            links = (
                f'<link rel="openid2.provider" href="{endpoint}">\n'
                f'<link rel="openid2.local_id" href="{local}">\n'
                f'<link rel="openid.server" href="{endpoint}">\n'
                f'<link rel="openid.delegate" href="{local}">\n'
            )
        else:
            links = f'<link rel="openid.server" href="{endpoint}">\n'
        return (
            f"<!DOCTYPE html>\n<html><head><title>{user}</title>\n{links}</head>"
            f"<body><p>OpenID identity page of {user}.</p></body></html>\n"
        )

    def _index(self) -> str:
        rows = "".join(
            f"<li>{u}: <code>{html.escape(self.identity_url(u))}</code></li>" for u in self.users
        )
        return (
            "<!DOCTYPE html>\n<html><head><title>Development OpenID Provider</title></head><body>"
            f"<h1>Development OpenID Provider</h1><p>Endpoint: <code>{self.endpoint}</code></p>"
            f"<p>OP identifier: <code>{self.op_identifier_url}</code></p>"
            f"<p>Users (approved without asking):</p><ul>{rows}</ul></body></html>\n"
        )

    # -- the OP endpoint -------------------------------------------------------------------

    def _openid(self, method: str, args: Mapping[str, list[str]]) -> Reply:
        if not any(key.startswith("openid.") for key in args):
            if method == "GET":
                # OpenID 1.1 appendix B: a GET without arguments gets an explanation.
                return _html(200, "<p>This is an OpenID server endpoint.</p>\n")
            return _direct_error("the request carries no openid.* arguments", openid2=True)
        try:
            message = Message.from_query(args)
            openid2 = message.is_openid2
        except ProtocolError as exc:
            return _direct_error(str(exc), openid2=True)
        mode = message.mode or ""
        with self._lock:
            self._counts[mode if mode in MODES else "invalid"] += 1
        log.debug("%s %s request", method, mode)
        try:
            if mode == "associate":
                return self._associate(message)
            if mode == "check_authentication":
                return self._check_authentication(message)
            if mode in ("checkid_setup", "checkid_immediate"):
                return self._checkid(message)
            raise ProtocolError(f"openid.mode {mode!r} is not one this OP answers")
        except ProtocolError as exc:
            if method == "GET" or mode.startswith("checkid_"):
                return _indirect_error(message, str(exc))
            return _direct_error(str(exc), openid2=openid2)

    # -- associate (section 8) -------------------------------------------------------------

    def _associate(self, message: Message) -> Reply:
        openid2 = message.is_openid2
        # OpenID 1.1 section 4.1.1: assoc_type defaults to HMAC-SHA1 and a blank
        # session_type means no encryption; 2.0 (8.1.1) requires both.
        assoc_type = message.get("assoc_type") or ("" if openid2 else HMAC_SHA1)
        session_type = message.get("session_type") or ("" if openid2 else NO_ENCRYPTION)
        if not assoc_type or not session_type:
            raise ProtocolError("openid.assoc_type and openid.session_type are required (8.1.1)")
        # 8.4.1: no-encryption only where the transport is encrypted; allowed_types applies
        # that rule and 8.4.2's hash pairing to both sides alike.
        pairs = allowed_types(self.endpoint, openid2=openid2)
        if self.allowed_associations is not None:
            pairs = [pair for pair in self.allowed_associations if pair in pairs]
        if self.refuse_associations:
            pairs = []
        if (assoc_type, session_type) not in pairs:
            return self._unsupported(assoc_type, session_type, pairs, openid2)

        secret = secrets.token_bytes(_KEY_SIZES[assoc_type])
        fields = {"ns": OPENID2_NS} if openid2 else {}
        if session_type == NO_ENCRYPTION:
            fields["mac_key"] = base64.b64encode(secret).decode("ascii")
        else:
            fields.update(_dh_fields(message, session_type, secret))
        association = self._new_association(assoc_type, secret, shared=True)
        fields.update(
            assoc_type=assoc_type,
            assoc_handle=association.handle,
            expires_in=str(int(association.lifetime)),
        )
        if openid2 or session_type != NO_ENCRYPTION:
            fields["session_type"] = session_type
        return _kv(200, fields)

    def _unsupported(
        self, assoc_type: str, session_type: str, pairs: list[tuple[str, str]], openid2: bool
    ) -> Reply:
        # 8.2.4: a direct error with error_code unsupported-type and, when there is one,
        # the pair the OP would accept.
        fields = {"ns": OPENID2_NS} if openid2 else {}
        fields["error"] = f"{assoc_type}/{session_type} is not supported here" + (
            f"; try {pairs[0][0]}/{pairs[0][1]}" if pairs else "; use stateless mode"
        )
        fields["error_code"] = "unsupported-type"
        if pairs:
            fields["assoc_type"], fields["session_type"] = pairs[0]
        return _kv(400, fields)

    def _new_association(self, assoc_type: str, secret: bytes, *, shared: bool) -> Association:
        now = self.clock.now()
        kind = "shared" if shared else "private"
        association = Association(
            handle=f"{kind}-{int(now)}-{secrets.token_urlsafe(12)}",
            secret=secret,
            issued=now,
            lifetime=self.association_lifetime,
            assoc_type=assoc_type,
        )
        with self._lock:
            for handle in [h for h, s in self._associations.items() if _expired(s, now)]:
                del self._associations[handle]
            self._associations[association.handle] = _Stored(association, shared)
        return association

    # -- checkid (sections 9 and 10) -------------------------------------------------------

    def _checkid(self, message: Message) -> Reply:
        openid2 = message.is_openid2
        return_to = message.get("return_to")
        realm_text = message.get("realm" if openid2 else "trust_root") or return_to
        if return_to is None:
            if realm_text is None:
                raise ProtocolError("openid.realm must be sent when return_to is omitted (9.1)")
            # 10: no return_to means the RP wants no answer.
            return _html(200, "<p>Done: the relying party asked for no response.</p>\n")
        if not _is_http_url(return_to):
            raise ProtocolError(f"openid.return_to {return_to!r} is not an http(s) URL")
        try:
            realm = Realm.parse(realm_text or return_to)
        except OpenIDError as exc:
            raise ProtocolError(f"the realm is invalid: {exc}") from None
        if not realm.matches(return_to):
            # 9.2.1 (OpenID 1.1 4.2.3: "MUST descend from the trust_root").
            raise ProtocolError(f"return_to {return_to!r} is not within the realm {realm_text!r}")

        identity = message.get("identity")
        claimed_id = message.get("claimed_id") if openid2 else identity
        if (identity is None) != (claimed_id is None):
            raise ProtocolError("openid.claimed_id and openid.identity must come together (9.1)")
        if identity is None:
            raise ProtocolError("this development OP only answers requests about an identifier")
        user: str | None
        if openid2 and identity == IDENTIFIER_SELECT:
            # 10: the OP chooses the identifier (here without asking).
            user = self.select_user or self.users[0]
            identity = claimed_id = self.identity_url(user)
        else:
            user = self._user_for(identity)
        if user is None or self.deny:
            return _redirect(return_to, self._negative(message))
        return _redirect(return_to, self._positive(message, user, claimed_id or identity, identity))

    def _negative(self, message: Message) -> Message:
        openid2 = message.is_openid2
        fields = {"ns": OPENID2_NS} if openid2 else {}
        if message.mode != "checkid_immediate":
            fields["mode"] = "cancel"  # 10.2.2
        elif openid2:
            fields["mode"] = "setup_needed"  # 10.2.1
        else:
            # OpenID 1.1 section 4.2.2.2: id_res with where the user can set things up.
            setup = Message(dict(message.fields, mode="checkid_setup")).to_url(self.endpoint)
            fields.update(mode="id_res", user_setup_url=setup)
        return Message(fields)

    def _positive(self, request: Message, user: str, claimed_id: str, identity: str) -> Message:
        openid2 = request.is_openid2
        fields = {"ns": OPENID2_NS} if openid2 else {}
        fields["mode"] = "id_res"
        if openid2:
            fields.update(op_endpoint=self.endpoint, claimed_id=claimed_id)
        fields.update(identity=identity, return_to=request["return_to"])
        if openid2:
            # 10.1: unique, starting with the OP's current time.
            fields["response_nonce"] = make_nonce(self.clock.now() + self.clock_skew)
        association, invalidated = self._signing_association(request.get("assoc_handle"))
        fields["assoc_handle"] = association.handle
        if invalidated:
            fields["invalidate_handle"] = invalidated
        response = Message(fields)
        self._add_extensions(request, response, user)
        # 10.1: at least these, plus every extension field (ns.<alias>, <alias>.<key>).
        if openid2:
            base = ["op_endpoint", "claimed_id", "identity", "return_to", "response_nonce"]
            signed = [*base, "assoc_handle"]
        else:
            signed = ["mode", "identity", "return_to"]  # OpenID 1.1 section 4.3.3
        signed += [key for key in response.fields if "." in key]
        response.fields["signed"] = ",".join(signed)
        response.fields["sig"] = sign(association, response.fields, signed)
        return response

    def _signing_association(self, handle: str | None) -> tuple[Association, str | None]:
        """The RP's shared association when it is valid; otherwise a new private one, and
        the RP's unknown handle to invalidate (10, OpenID 1.1 section 4.2.3)."""
        if handle:
            with self._lock:
                stored = self._associations.get(handle)
            if stored is not None and stored.shared and not _expired(stored, self.clock.now()):
                return stored.association, None
        secret = secrets.token_bytes(_KEY_SIZES[HMAC_SHA256])
        return self._new_association(HMAC_SHA256, secret, shared=False), handle or None

    def _add_extensions(self, request: Message, response: Message, user: str) -> None:
        """The extension answers, added before signing (an OP built on this one adds its
        own here)."""
        self._add_sreg(request, response, user)
        self._add_ax(request, response, user)

    def _add_sreg(self, request: Message, response: Message, user: str) -> None:
        """SREG 1.0 section 4: only requested fields, under the namespace the RP used."""
        namespace = next((ns for ns in SREG_NAMESPACES if request.alias_for(ns)), None)
        if namespace is None:
            return
        args = request.get_args(namespace)
        wanted = f"{args.get('required', '')},{args.get('optional', '')}".split(",")
        data = self.sreg_data.get(user, {})
        values = {f: data[f] for f in dict.fromkeys(wanted) if f in SREG_FIELDS and f in data}
        if values:
            response.add_extension(namespace, values, "sreg")

    def _add_ax(self, request: Message, response: Message, user: str) -> None:
        """AX fetch (section 5.2): the requested attributes the user has, as many values
        as ``count.<alias>`` allows. AX exists only in OpenID 2.0 (AX section 2)."""
        if not request.is_openid2:
            return
        args = request.get_args(AX_NS)
        mode = args.get("mode")
        if mode == "store_request":
            refusal = {"mode": "store_response_failure", "error": "this OP stores nothing"}
            response.add_extension(AX_NS, refusal, "ax")
            return
        if mode != "fetch_request":
            return
        data = self.ax_data.get(user, {})
        answer = {"mode": "fetch_response"}
        requested = f"{args.get('required', '')},{args.get('if_available', '')}".split(",")
        for alias in dict.fromkeys(a for a in requested if a):
            uri = args.get(f"type.{alias}")
            values = list(data.get(uri, ())) if uri else []
            if not uri or not values:
                continue
            count = args.get(f"count.{alias}")
            answer[f"type.{alias}"] = uri
            if count is None:  # 5.1: absent means one value, sent as value.<alias>
                answer[f"value.{alias}"] = values[0]
                continue
            if count.isdigit():
                values = values[: int(count)]
            answer[f"count.{alias}"] = str(len(values))
            for number, value in enumerate(values, 1):
                answer[f"value.{alias}.{number}"] = value
        response.add_extension(AX_NS, answer, "ax")

    # -- check_authentication (11.4.2) -----------------------------------------------------

    def _check_authentication(self, message: Message) -> Reply:
        handle, sig, signed = (message.get(k) for k in ("assoc_handle", "sig", "signed"))
        if not (handle and sig and signed):
            raise ProtocolError("check_authentication needs assoc_handle, sig and signed")
        now = self.clock.now()
        # The signature was made over the id_res message (OpenID 1.1 section 4.4.3).
        fields = dict(message.fields, mode="id_res")
        with self._lock:
            stored = self._associations.get(handle)
            valid = False
            # 11.4.2.1: only private associations, never shared ones.
            if stored is not None and not stored.shared and not _expired(stored, now):
                try:
                    valid = check_signature(stored.association, fields, signed, sig)
                except IncompleteAnswerError:
                    valid = False
            if valid:
                # 11.4.2.1: one verification per response (per response_nonce). Each
                # private association signs exactly one response, so forgetting it
                # answers any replay with is_valid:false.
                del self._associations[handle]
            invalidate = message.get("invalidate_handle")
            if invalidate:
                known = self._associations.get(invalidate)
                if known is not None and known.shared and not _expired(known, now):
                    invalidate = None
        answer = {"ns": OPENID2_NS} if message.is_openid2 else {"mode": "id_res"}
        answer["is_valid"] = "true" if valid else "false"
        if invalidate:
            answer["invalidate_handle"] = invalidate  # 11.4.2.2: confirmed invalid
        return _kv(200, answer)


def _dh_fields(message: Message, session_type: str, secret: bytes) -> dict[str, str]:
    """8.2.3: our DH public key and the MAC key masked with H(shared secret), in the RP's
    group (8.1.2: defaults unless the RP sent dh_modulus and dh_gen)."""
    public = message.get("dh_consumer_public")
    if not public:
        raise ProtocolError("openid.dh_consumer_public is required for a DH session (8.1.2)")
    group = DEFAULT_DH_GROUP
    if message.get("dh_modulus") or message.get("dh_gen"):
        group = DHGroup(
            b64_btwoc_decode(message.get("dh_modulus") or b64_btwoc_encode(group.modulus)),
            b64_btwoc_decode(message.get("dh_gen") or b64_btwoc_encode(group.generator)),
        )
    consumer_public = b64_btwoc_decode(public)
    if not 1 < consumer_public < group.modulus - 1:
        raise ProtocolError("openid.dh_consumer_public is out of range (1 < y < p-1)")
    try:
        # DHSession is written for the RP, but DH is symmetric: our key pair in the RP's
        # group, and the XOR that unmasks a key also masks it.
        session = DHSession(session_type, group)
        masked = unmask_mac_key(session.exchange(consumer_public), secret, session_type)
    except OpenIDError as exc:
        raise ProtocolError(f"the Diffie-Hellman exchange failed: {exc}") from None
    return {
        "dh_server_public": b64_btwoc_encode(session.public),
        "enc_mac_key": base64.b64encode(masked).decode("ascii"),
    }


def _expired(stored: _Stored, now: float) -> bool:
    return stored.association.remaining(now) <= 0


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _kv(status: int, fields: Mapping[str, str]) -> Reply:
    # 5.1.2: direct responses are Key-Value form, text/plain.
    return status, {"Content-Type": "text/plain; charset=utf-8"}, kv_encode(fields)


def _direct_error(text: str, *, openid2: bool) -> Reply:
    # 5.1.2.2 (OpenID 1.1 appendix B): HTTP 400 with an "error" field.
    fields = {"ns": OPENID2_NS} if openid2 else {}
    fields["error"] = text.replace("\n", " ")
    return _kv(400, fields)


def _indirect_error(message: Message, text: str) -> Reply:
    """5.2.3: back to return_to with mode=error when it is a usable URL; else a page."""
    return_to = message.get("return_to")
    if not return_to or not _is_http_url(return_to):
        return _html(400, f"<p>OpenID request refused: {html.escape(text)}</p>\n")
    fields = {"ns": OPENID2_NS} if message.is_openid2 else {}
    fields.update(mode="error", error=text)
    return _redirect(return_to, Message(fields))


def _redirect(return_to: str, message: Message) -> Reply:
    url = message.to_url(return_to)
    if len(url) > MAX_REDIRECT_URL:
        return _html(200, message.to_form_html(return_to))  # 5.2.2
    return 302, {"Location": url, "Content-Type": "text/plain; charset=utf-8"}, b""


def _html(status: int, text: str) -> Reply:
    return status, {"Content-Type": "text/html; charset=utf-8"}, text.encode("utf-8")


def _xrds(service_type: str, endpoint: str) -> Reply:
    extension_types = "".join(f"<Type>{ns}</Type>" for ns in (*SREG_NAMESPACES, AX_NS))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xrds:XRDS xmlns:xrds="xri://$xrds" xmlns="xri://$xrd*($v*2.0)">\n<XRD>\n'
        f'<Service priority="0"><Type>{service_type}</Type>{extension_types}'
        f"<URI>{html.escape(endpoint)}</URI></Service>\n"
    )
    if service_type == OPENID_2_0_TYPE:
        body += (
            f'<Service priority="1"><Type>{OPENID_1_1_TYPE}</Type>'
            f"<URI>{html.escape(endpoint)}</URI></Service>\n"
        )
    body += "</XRD>\n</xrds:XRDS>\n"
    return 200, {"Content-Type": "application/xrds+xml"}, body.encode("utf-8")


def _handler_for(provider: DevelopmentProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        #: Idle keep-alive connections are closed after this many seconds.
        timeout = 30
        # Headers and body go out in two writes; without TCP_NODELAY the second waits for
        # the client's delayed ACK (about 40 ms per request on Linux).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

        def _reply(self, args: Mapping[str, list[str]]) -> None:
            status, headers, body = provider.respond(self.command, urlsplit(self.path).path, args)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._reply(parse_qs(urlsplit(self.path).query, keep_blank_values=True))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            self._reply(parse_qs(body, keep_blank_values=True))

    return Handler
