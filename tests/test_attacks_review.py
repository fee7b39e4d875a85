"""Adversarial review of ``RelyingParty.complete()``: what an attacker can send a site.

The attacker runs a web site and an OP endpoint of their own (``EvilSite``, a real HTTP
server on 127.0.0.1) with which the relying party holds an association whose secret the
attacker knows - as it would after the attacker signed in once with their own identifier.
The victim's identifiers live at python3-openid's OP (``op``), a provider none of us wrote.
Every forged response is signed for real with the attacker's association, so a refusal
proves a check and not a broken signature; each attack also has a control in which the same
machinery signs the attacker in as *themselves*, which must succeed.

After each refusal the test checks that nothing was stored: the response nonce can still be
used exactly once and every association is still there (often by completing the genuine
response afterwards).
"""

from __future__ import annotations

import base64
import copy
import hmac
import json
import re
import secrets
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import pytest
from conftest import REALM, RETURN_TO, query_of
from httpserver import LocalHTTPServer, Request

from openid_plugins import hookimpl
from openid_plugins.contracts import Association
from openid_plugins.errors import (
    DiscoveryMismatchError,
    IncompleteAnswerError,
    ReplayAttackError,
    ReturnToMismatchError,
    SetupNeededError,
    SignatureError,
    TookTooLongError,
)
from openid_plugins.extensions.sreg import SREG_1_1_NS, SReg
from openid_plugins.manager import make_plugin_manager
from openid_plugins.protocol import nonce as nonce_module
from openid_plugins.protocol.association import HMAC_SHA1, HMAC_SHA256
from openid_plugins.protocol.endpoint import OPENID_IDP_2_0_TYPE
from openid_plugins.protocol.message import OPENID2_NS, Message
from openid_plugins.relying_party import SESSION_KEY, RelyingParty
from openid_plugins.testing.clock import FakeClock

HTML = {"Content-Type": "text/html; charset=utf-8"}
KV = {"Content-Type": "text/plain; charset=utf-8"}
XRDS_TYPE = {"Content-Type": "application/xrds+xml"}
#: Fields an OpenID 2.0 OP signs at the least (10.1).
SIGNED_2 = ("op_endpoint", "claimed_id", "identity", "return_to", "response_nonce", "assoc_handle")
#: What an OpenID 1.1 OP signs at the least (1.1 section 4.2.3).
SIGNED_1 = ("mode", "identity", "return_to")


class ClockPlugin:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    @hookimpl
    def openid_clock(self) -> FakeClock:
        return self.clock


def _page(*links: tuple[str, str]) -> bytes:
    tags = "".join(f'<link rel="{rel}" href="{href}">' for rel, href in links)
    return f"<html><head>{tags}</head><body></body></html>".encode()


class EvilSite:
    """The attacker's identity pages and OP endpoint. The endpoint answers every
    ``check_authentication`` with ``check_auth_reply`` (by default ``is_valid:true``, for
    anything) and counts the requests it gets by ``openid.mode``."""

    def __init__(self, server: LocalHTTPServer) -> None:
        self.server = server
        self.endpoint = server.url("/op")
        self.check_auth_reply: tuple[int, dict[str, str], bytes] = (200, KV, b"is_valid:true\n")
        self.modes: Counter[str] = Counter()
        server.route("/op", self._op)
        server.route("/me", 200, HTML, _page(("openid2.provider", self.endpoint)))
        server.route("/me1", 200, HTML, _page(("openid.server", self.endpoint)))
        xrds = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<xrds:XRDS xmlns:xrds="xri://$xrds"'
            ' xmlns="xri://$xrd*($v*2.0)"><XRD><Service priority="0">'
            f"<Type>{OPENID_IDP_2_0_TYPE}</Type><URI>{self.endpoint}</URI>"
            "</Service></XRD></xrds:XRDS>\n"
        )
        server.route("/server", 200, XRDS_TYPE, xrds.encode())

    @property
    def identity(self) -> str:
        """The attacker's own OpenID 2.0 identifier, served by the attacker's OP."""
        return self.server.url("/me")

    @property
    def identity1(self) -> str:
        """The attacker's own OpenID 1.1 identifier."""
        return self.server.url("/me1")

    @property
    def op_identifier(self) -> str:
        return self.server.url("/server")

    def reset(self) -> None:
        self.check_auth_reply = (200, KV, b"is_valid:true\n")
        self.modes.clear()
        with self.server.lock:
            self.server.requests.clear()

    def _op(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        text = request.body.decode("utf-8", "replace") if request.body else request.query
        mode = dict(parse_qsl(text, keep_blank_values=True)).get("openid.mode", "")
        self.modes[mode] += 1
        if mode == "check_authentication":
            return self.check_auth_reply
        return 400, KV, b"error:this OP makes no associations\n"


@pytest.fixture(scope="module")
def evil_server():
    with LocalHTTPServer() as server:
        yield EvilSite(server)


@pytest.fixture
def evil(evil_server):
    evil_server.reset()
    return evil_server


@pytest.fixture(scope="module")
def plugin_manager():
    """Loading the entry points is most of what a RelyingParty costs to make; relying
    parties without plugins of their own share one manager."""
    return make_plugin_manager()


@dataclass
class World:
    """A relying party, the victim's OP (A), the attacker's site and OP (E), and the
    associations the relying party holds with each."""

    rp: RelyingParty
    op: object
    evil: EvilSite
    #: RP <-> the victim's OP: a secret the attacker does not know.
    ours: Association
    #: RP <-> the victim's OpenID 1.1 endpoint.
    ours1: Association
    #: RP <-> the attacker's OP: the attacker knows this secret.
    theirs: Association

    @property
    def victim(self) -> str:
        return self.op.identity("alice")

    @property
    def victim1(self) -> str:
        return self.op.openid1_identity("alice")

    @property
    def victim_op(self) -> str:
        return self.op.endpoint()

    @property
    def victim_op1(self) -> str:
        return self.op.endpoint("op1")

    def begin(self, identifier: str, return_to: str = RETURN_TO, **kwargs) -> tuple[dict, str]:
        """A fresh session for ``identifier``; returns it and the return_to it sent."""
        session: dict = {}
        auth = self.rp.begin(identifier, return_to, REALM, session=session, **kwargs)
        return session, auth.message["return_to"]

    def forge2(
        self,
        return_to: str,
        *,
        claimed_id: str | None = None,
        identity: str | None = None,
        op_endpoint: str | None = None,
        handle: str | None = None,
        extra: dict[str, str] | None = None,
        signed: list[str] | None = None,
        nonce: str | None = None,
        signer: Association | None = None,
    ) -> tuple[dict[str, str], str]:
        """An OpenID 2.0 positive assertion signed with the attacker's secret; by default
        a genuine one for the attacker's own identifier."""
        claimed_id = claimed_id or self.evil.identity
        fields = {
            "ns": OPENID2_NS,
            "mode": "id_res",
            "op_endpoint": op_endpoint or self.evil.endpoint,
            "claimed_id": claimed_id,
            "identity": identity or claimed_id,
            "return_to": return_to,
            "response_nonce": nonce or nonce_module.make_nonce(self.rp.clock.now()),
            "assoc_handle": handle or self.theirs.handle,
            **(extra or {}),
        }
        keys = signed if signed is not None else [*SIGNED_2, *(extra or {})]
        return _signed(fields, keys, signer or self.theirs)

    def forge1(
        self,
        return_to: str,
        *,
        identity: str | None = None,
        handle: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> tuple[dict[str, str], str]:
        """An OpenID 1.1 positive assertion signed with the attacker's secret."""
        fields = {
            "mode": "id_res",
            "identity": identity or self.evil.identity1,
            "return_to": return_to,
            "assoc_handle": handle or self.theirs.handle,
            **(extra or {}),
        }
        return _signed(fields, [*SIGNED_1, *(extra or {})], self.theirs)

    def assert_nothing_stored(self, query: dict[str, str]) -> None:
        """No nonce of ``query`` was used (at any endpoint involved) and every
        association is still in the store. Consumes the nonce: call it last."""
        message = Message.from_query(query)
        if message.is_openid2:
            timestamp, salt = nonce_module.parse_nonce(message["response_nonce"])
        else:
            timestamp, salt = nonce_module.split_rp_nonce(message["return_to"])
        for server_url in {self.victim_op, self.victim_op1, self.evil.endpoint}:
            assert self.rp.store.use_nonce(server_url, timestamp, salt), server_url
        for server_url, association in self.installed():
            assert self.rp.store.get_association(server_url, association.handle) == association

    def installed(self) -> list[tuple[str, Association]]:
        return [
            (self.victim_op, self.ours),
            (self.victim_op1, self.ours1),
            (self.evil.endpoint, self.theirs),
        ]


def _signed(fields: dict[str, str], keys: list[str], signer: Association):
    """Sign as an OP does (section 6), computed here rather than with the library's own
    ``sign`` so that the code under test is not its own oracle."""
    fields = dict(fields, signed=",".join(keys))
    text = "".join(f"{key}:{fields.get(key, '')}\n" for key in keys)
    fields["sig"] = _raw_sig(signer, text.encode("utf-8", "surrogatepass"))
    response = {f"openid.{key}": value for key, value in fields.items()}
    # What the site's framework hands over: its own arguments and the response's.
    return {**query_of(fields["return_to"]), **response}, _arrived_at(fields["return_to"], response)


def _association(handle: str, assoc_type: str, now: float, lifetime: float = 86400.0):
    size = 32 if assoc_type == HMAC_SHA256 else 20
    return Association(handle, secrets.token_bytes(size), now, lifetime, assoc_type)


@pytest.fixture
def make_world(op, evil, make_rp, plugin_manager):
    def make(**settings) -> World:
        settings.setdefault("association", "inline")
        if "plugins" not in settings:
            settings["plugin_manager"] = plugin_manager
        rp = make_rp(**settings)
        now = rp.clock.now()
        world = World(
            rp=rp,
            op=op,
            evil=evil,
            ours=_association("{HMAC-SHA256}{ours}{victim}", HMAC_SHA256, now),
            ours1=_association("{HMAC-SHA1}{ours}{victim}", HMAC_SHA1, now),
            theirs=_association("evil-handle", HMAC_SHA256, now),
        )
        for server_url, association in world.installed():
            rp.store.store_association(server_url, association)
        return world

    return make


@pytest.fixture
def world(make_world) -> World:
    return make_world()


# -- an assertion signed by the attacker's OP (OpenID 2.0) -------------------------------------

VICTIM, ATTACKER = "victim", "attacker"


@pytest.mark.parametrize("handle", ["ours", "theirs"])
@pytest.mark.parametrize("identity", [VICTIM, ATTACKER])
@pytest.mark.parametrize("op_endpoint", [VICTIM, ATTACKER])
@pytest.mark.parametrize("claimed", [VICTIM, ATTACKER])
@pytest.mark.parametrize("session_for", [VICTIM, ATTACKER])
def test_openid2_assertion_from_the_attackers_op(
    world, session_for, claimed, op_endpoint, identity, handle
):
    """Every combination of claimed_id / identity / op_endpoint / assoc_handle, victim's or
    attacker's, signed by the attacker's OP, in a session begun for either identifier. Only
    the attacker's own identifier at the attacker's own OP is accepted; the attacker's OP
    is never even asked about anything else."""
    pick = {VICTIM: world.victim, ATTACKER: world.evil.identity}
    session, return_to = world.begin(pick[session_for])
    query, url = world.forge2(
        return_to,
        claimed_id=pick[claimed],
        identity=pick[identity],
        op_endpoint={VICTIM: world.victim_op, ATTACKER: world.evil.endpoint}[op_endpoint],
        handle={"ours": world.ours.handle, "theirs": world.theirs.handle}[handle],
    )
    if claimed == identity == op_endpoint == ATTACKER:
        result = world.rp.complete(query, url, session=session)
        assert result.claimed_id == world.evil.identity
        # Another OP's handle is unknown at this OP: the attacker's OP is asked, and it is
        # the discovered OP for this identifier, so its answer counts.
        expected = "association" if handle == "theirs" else "check_authentication"
        assert result.verified_by == expected
        return
    expected_error = (
        SignatureError
        if (claimed, identity, op_endpoint) == (VICTIM, VICTIM, VICTIM)
        else DiscoveryMismatchError
    )
    with pytest.raises(expected_error):
        world.rp.complete(query, url, session=session)
    assert world.evil.modes["check_authentication"] == 0
    # The victim's OP is asked only about a handle the relying party does not hold with it.
    asked = 1 if expected_error is SignatureError and handle == "theirs" else 0
    assert world.op.counts["check_authentication"] == asked
    world.assert_nothing_stored(query)


# -- the same in OpenID 1.1, where the session names the OP -------------------------------------


@pytest.mark.parametrize("handle", ["ours", "theirs"])
@pytest.mark.parametrize("identity", [VICTIM, ATTACKER])
@pytest.mark.parametrize("session_for", [VICTIM, ATTACKER])
def test_openid1_assertion_from_the_attackers_op(world, session_for, identity, handle):
    pick = {VICTIM: world.victim1, ATTACKER: world.evil.identity1}
    session, return_to = world.begin(pick[session_for])
    query, url = world.forge1(
        return_to,
        identity=pick[identity],
        handle={"ours": world.ours1.handle, "theirs": world.theirs.handle}[handle],
    )
    if session_for == identity == ATTACKER:
        result = world.rp.complete(query, url, session=session)
        assert result.claimed_id == world.evil.identity1
        assert result.op_endpoint == world.evil.endpoint
        return
    expected_error = SignatureError if session_for == identity == VICTIM else DiscoveryMismatchError
    with pytest.raises(expected_error):
        world.rp.complete(query, url, session=session)
    assert world.evil.modes["check_authentication"] == 0
    world.assert_nothing_stored(query)


# -- mixing OpenID 1.1 and 2.0 ------------------------------------------------------------------


def test_openid1_response_to_an_openid2_session(world):
    """A 1.1-format answer (no openid.ns) to a 2.0 request is refused whoever signed it,
    and a second RP nonce changes the return_to the session sent."""
    session, return_to = world.begin(world.victim)
    query, url = world.forge1(return_to, identity=world.victim, handle=world.ours.handle)
    with pytest.raises(IncompleteAnswerError, match="1.x answer"):
        world.rp.complete(query, url, session=session)
    with_nonce = nonce_module.add_rp_nonce(return_to, world.rp.clock.now())
    second, url = world.forge1(with_nonce, identity=world.victim, handle=world.ours.handle)
    with pytest.raises(ReturnToMismatchError):
        world.rp.complete(second, url, session=session)
    assert world.op.counts["check_authentication"] == 0
    world.assert_nothing_stored(query)


def test_openid2_answer_replayed_without_openid_ns(world):
    """Accepted once as 2.0 (its response_nonce used); replayed with ``openid.ns``
    removed it must not pass as 1.x, where only the RP nonce would be checked."""
    session, return_to = world.begin(world.evil.identity)
    saved = copy.deepcopy(session)
    query, url = world.forge2(return_to, signed=["mode", *SIGNED_2])
    world.rp.complete(query, url, session=session)
    del query["openid.ns"]
    with pytest.raises(IncompleteAnswerError, match="1.x answer"):
        world.rp.complete(query, url, session=saved)


@pytest.mark.parametrize("op_endpoint", [VICTIM, ATTACKER])
def test_openid2_response_to_an_openid1_session(world, op_endpoint):
    """A 2.0-format answer about an identifier discovered as OpenID 1.1 only: the endpoint
    is not a 2.0 endpoint for it (11.2, protocol version), whoever signed."""
    session, return_to = world.begin(world.victim1)
    endpoint = {VICTIM: world.victim_op1, ATTACKER: world.evil.endpoint}[op_endpoint]
    query, url = world.forge2(
        return_to, claimed_id=world.victim1, op_endpoint=endpoint, handle=world.ours1.handle
    )
    with pytest.raises(DiscoveryMismatchError):
        world.rp.complete(query, url, session=session)
    world.assert_nothing_stored(query)


@pytest.mark.parametrize("strip", ["ns", "ns-and-2.0-fields"])
def test_genuine_openid2_response_without_openid_ns(op, make_rp, browser, strip):
    """Removing openid.ns turns a genuine 2.0 answer into a 1.x one, which a 2.0 session
    refuses (no RP nonce); the genuine answer is still accepted afterwards."""
    rp = make_rp(association="stateless")
    session: dict = {}
    back = browser.visit_op(rp.begin(op.identity(), RETURN_TO, REALM, session=session))
    query = query_of(back)
    broken = dict(query)
    del broken["openid.ns"]
    if strip == "ns-and-2.0-fields":
        for key in ("openid.op_endpoint", "openid.claimed_id", "openid.response_nonce"):
            del broken[key]
        broken["openid.signed"] = ",".join(
            k for k in query["openid.signed"].split(",") if f"openid.{k}" in broken
        )
    with pytest.raises(IncompleteAnswerError):
        rp.complete(broken, back, session=session)
    assert op.counts["check_authentication"] == 0
    result = rp.complete(query, back, session=session)
    assert result.claimed_id == op.identity()


# -- delegation and directed identity ----------------------------------------------------------


@pytest.mark.parametrize(
    "identity, op_endpoint, error",
    [
        ("local", ATTACKER, DiscoveryMismatchError),
        ("local", VICTIM, SignatureError),
        ("claimed", VICTIM, DiscoveryMismatchError),
        ("claimed", ATTACKER, DiscoveryMismatchError),
    ],
)
def test_delegated_identifier_asserted_by_another_op(world, identity, op_endpoint, error):
    """The victim's claimed identifier delegates to an OP-local identifier at OP A; the
    attacker's OP asserts it."""
    claimed = world.op.delegating_identity("alice")
    session, return_to = world.begin(claimed)
    query, url = world.forge2(
        return_to,
        claimed_id=claimed,
        identity={"local": world.op.identity("alice"), "claimed": claimed}[identity],
        op_endpoint={VICTIM: world.victim_op, ATTACKER: world.evil.endpoint}[op_endpoint],
    )
    with pytest.raises(error):
        world.rp.complete(query, url, session=session)
    assert world.evil.modes["check_authentication"] == 0
    world.assert_nothing_stored(query)


def test_attackers_page_delegating_to_the_victims_local_id(world):
    """An attacker's page naming the victim's OP-local identifier signs in as the
    attacker's page: ``claimed_id`` is what identifies the user (11.5), never ``identity``."""
    page = world.evil.server.route(
        "/delegate",
        200,
        HTML,
        _page(("openid2.provider", world.evil.endpoint), ("openid2.local_id", world.victim)),
    )
    session, return_to = world.begin(page)
    query, url = world.forge2(return_to, claimed_id=page, identity=world.victim)
    result = world.rp.complete(query, url, session=session)
    assert result.claimed_id == page
    assert result.identity == world.victim


@pytest.mark.parametrize(
    "claimed, op_endpoint, error",
    [
        (VICTIM, ATTACKER, DiscoveryMismatchError),
        (VICTIM, VICTIM, SignatureError),
        ("op-identifier", ATTACKER, DiscoveryMismatchError),
        (ATTACKER, ATTACKER, None),
    ],
)
def test_directed_identity_claimed_id_chosen_by_the_attackers_op(
    world, claimed, op_endpoint, error
):
    """Signing in through the attacker's OP identifier: the OP picks the claimed_id, and
    only one it is the discovered OP for is accepted (an OP identifier never is, 11.2)."""
    session, return_to = world.begin(world.evil.op_identifier)
    assert session[SESSION_KEY]["claimed_id"] is None
    chosen = {
        VICTIM: world.victim,
        ATTACKER: world.evil.identity,
        "op-identifier": world.evil.op_identifier,
    }[claimed]
    endpoint = {VICTIM: world.victim_op, ATTACKER: world.evil.endpoint}[op_endpoint]
    query, url = world.forge2(return_to, claimed_id=chosen, op_endpoint=endpoint)
    if error is None:
        assert world.rp.complete(query, url, session=session).claimed_id == chosen
        return
    with pytest.raises(error):
        world.rp.complete(query, url, session=session)
    world.assert_nothing_stored(query)


# -- identifier spellings: fragments, case, dots, userinfo, encodings --------------------------


def test_fragment_on_the_attackers_own_identifier_is_kept(world):
    """11.5.1: the fragment is part of the claimed identifier (identifier recycling) but
    not of discovery (11.2)."""
    session, return_to = world.begin(world.evil.op_identifier)
    claimed = world.evil.identity + "#2"
    query, url = world.forge2(return_to, claimed_id=claimed, identity=world.evil.identity)
    assert world.rp.complete(query, url, session=session).claimed_id == claimed


def _victim_spellings(world: World) -> dict[str, str]:
    port = world.op.base.rsplit(":", 1)[1]
    return {
        "fragment": world.victim + "#attacker",
        "scheme-case": world.victim.replace("http://", "HTTP://"),
        "host-name": f"http://localhost:{port}/id/alice",
        "host-case": f"http://LOCALHOST:{port}/id/alice",
        "trailing-dot": f"http://localhost.:{port}/id/alice",
        "userinfo": world.victim.replace("http://", "http://alice@"),
        "default-port-twice": world.victim.replace(f":{port}", f":{port}:"),
        "percent-encoded": world.victim.replace("/alice", "/%61lice"),
        "dot-segment": world.victim.replace("/id/", "/id/./"),
        "empty-query": world.victim + "?",
    }


@pytest.mark.parametrize(
    "spelling",
    [
        "fragment",
        "scheme-case",
        "host-name",
        "host-case",
        "trailing-dot",
        "userinfo",
        "default-port-twice",
        "percent-encoded",
        "dot-segment",
        "empty-query",
    ],
)
def test_other_spellings_of_the_victims_identifier(world, spelling):
    """No spelling of the victim's identifier gets through the attacker's OP, in a
    directed-identity session (rediscovery) or one begun for the victim (fast path)."""
    claimed = _victim_spellings(world)[spelling]
    for start in (world.evil.op_identifier, world.victim):
        session, return_to = world.begin(start)
        query, url = world.forge2(return_to, claimed_id=claimed, identity=claimed)
        with pytest.raises(DiscoveryMismatchError):
            world.rp.complete(query, url, session=session)
        assert world.evil.modes["check_authentication"] == 0
        world.assert_nothing_stored(query)


def test_userinfo_in_a_claimed_id_the_op_chose(world):
    """``http://bank.example@evil.example/`` is refused in what users type (RFC 9110
    4.2.4); an OP choosing it in directed identity must not slip it past that rule."""
    session, return_to = world.begin(world.evil.op_identifier)
    claimed = world.evil.identity.replace("http://", "http://victim.example@")
    query, url = world.forge2(return_to, claimed_id=claimed, identity=claimed)
    with pytest.raises(DiscoveryMismatchError, match="user name"):
        world.rp.complete(query, url, session=session)
    assert world.evil.modes["check_authentication"] == 0
    world.assert_nothing_stored(query)


# -- check_authentication ------------------------------------------------------------------------


def _unknown_handle_login(world: World) -> tuple[dict, dict[str, str], str]:
    """A genuine assertion for the attacker's own identifier under a handle the relying
    party does not hold: it must ask the attacker's OP (the discovered one) to verify."""
    session, return_to = world.begin(world.evil.identity)
    query, url = world.forge2(return_to, handle="private-handle")
    return session, query, url


@pytest.mark.parametrize(
    "reply",
    [
        (500, KV, b"is_valid:true\n"),
        (400, KV, b"ns:http://specs.openid.net/auth/2.0\nis_valid:true\n"),
        (200, HTML, b"<html><body>is_valid true</body></html>"),
        (200, KV, b"\xff\xfeis_valid:true\n"),
        (200, KV, b"is_valid:TRUE\n"),
        (200, KV, b""),
        (302, {"Location": "/op"}, b""),
        (200, KV, b"is_valid:true\n" + b"x" * (1024 * 1024)),
    ],
    ids=["http-500", "http-400", "html", "not-utf8", "uppercase", "empty", "redirect", "oversize"],
)
def test_check_authentication_answer_that_is_not_a_confirmation(world, reply):
    session, query, url = _unknown_handle_login(world)
    world.evil.check_auth_reply = reply
    with pytest.raises(SignatureError):
        world.rp.complete(query, url, session=session)
    assert world.evil.modes["check_authentication"] == 1
    world.evil.check_auth_reply = (200, KV, b"is_valid:true\n")
    assert world.rp.complete(query, url, session=session).verified_by == "check_authentication"


# -- return_to -----------------------------------------------------------------------------------

RETURN_TO_Q = "https://rp.example/finish?next=%2Fhome&lang=en"


def _arrived_at(base: str, query: dict[str, str]) -> str:
    """The URL the browser brings the response to: ``base`` (its own query and fragment
    kept) with the response's arguments added."""
    base, _, fragment = base.partition("#")
    response = {k: v for k, v in query.items() if k.startswith("openid.")}
    encoded = urlencode(response, errors="surrogatepass")
    url = f"{base}{'&' if '?' in base else '?'}{encoded}"
    return f"{url}#{fragment}" if fragment else url


@pytest.mark.parametrize(
    "current",
    [
        "https://rp.example/finish?lang=en&next=/home",
        "https://RP.Example/finish?next=%2Fhome&lang=en",
        "https://rp.example:443/finish?next=%2Fhome&lang=en",
        "https://rp.example/finish?next=%2Fhome&lang=en#top",
    ],
    ids=["reordered-decoded", "host-case", "default-port", "fragment"],
)
def test_return_to_equivalent_current_url_is_accepted(world, current):
    """11.1: host case, the default port and percent-encoding do not change the URL."""
    session, return_to = world.begin(world.evil.identity, RETURN_TO_Q)
    query, _ = world.forge2(return_to)
    assert world.rp.complete(query, _arrived_at(_bound(current, return_to), query), session=session)


@pytest.mark.parametrize(
    "current",
    [
        "http://rp.example/finish?next=%2Fhome&lang=en",
        "https://rp.example:8443/finish?next=%2Fhome&lang=en",
        "https://evil.example/finish?next=%2Fhome&lang=en",
        "https://rp.example./finish?next=%2Fhome&lang=en",
        "https://rp.example/Finish?next=%2Fhome&lang=en",
        "https://rp.example/fin%69sh?next=%2Fhome&lang=en",
        "https://rp.example/finish/?next=%2Fhome&lang=en",
        "https://rp.example/finish;x?next=%2Fhome&lang=en",
        "https://rp.example/finish?lang=en",
        "https://rp.example/finish?next=https://evil.example/&lang=en",
        "https://rp.example/finish?next=%2Fhome&lang=en&next=https://evil.example/",
        "https://rp.example/finish?next=https://evil.example/&next=%2Fhome&lang=en",
        "https://rp.example:99999/finish?next=%2Fhome&lang=en",
    ],
    ids=[
        "scheme",
        "port",
        "host",
        "trailing-dot",
        "path-case",
        "path-encoded",
        "path-slash",
        "path-params",
        "arg-missing",
        "arg-changed",
        "arg-duplicated-after",
        "arg-duplicated-before",
        "bad-port",
    ],
)
def test_return_to_that_does_not_match_the_current_url(world, current, request):
    """11.1: scheme, authority and path equal, and every return_to argument present with
    the same value - once: a framework reading the other copy would act on an unsigned
    value."""
    session, return_to = world.begin(world.evil.identity, RETURN_TO_Q)
    query, url = world.forge2(return_to)
    # Each URL differs from return_to in one way only: the argument, or the rest.
    reason = "argument 'next'" if "arg-" in request.node.name else "does not match|invalid port"
    with pytest.raises(ReturnToMismatchError, match=reason):
        world.rp.complete(query, _arrived_at(_bound(current, return_to), query), session=session)
    world.assert_nothing_stored(query)


def _refused_as_unsigned(world, session, query, url) -> None:
    with pytest.raises(ReturnToMismatchError, match="argument 'admin'"):
        world.rp.complete(query, url, session=session)


@pytest.mark.parametrize(
    "where", ["after", "before", "between", "encoded-key", "blank-value", "no-value"]
)
def test_extra_argument_in_the_url_of_a_redirect_is_refused(world, where):
    """issue 14, as python-openid: an argument that is neither the OP's (openid.*) nor
    return_to's is refused wherever it sits in the URL, however it is spelled, even when
    the site's parsed arguments lack it (a framework may read the URL itself)."""
    session, return_to = world.begin(world.evil.identity, RETURN_TO_Q)
    query, url = world.forge2(return_to)
    base, _, tail = url.partition("?")
    extra = {
        "after": "admin=1",
        "before": "admin=1",
        "between": "admin=1",
        "encoded-key": "%61dmin=1",
        "blank-value": "admin=",
        "no-value": "admin",
    }[where]
    if where == "before":
        url = f"{base}?{extra}&{tail}"
    elif where == "between":
        own, _, response = tail.partition("&openid.")
        url = f"{base}?{own}&{extra}&openid.{response}"
    else:
        url = f"{url}&{extra}"
    _refused_as_unsigned(world, session, query, url)
    # The site's framework hands the extra argument over too: refused as well.
    _refused_as_unsigned(world, session, {**query, "admin": "1"}, url)
    world.assert_nothing_stored(query)


def test_extra_argument_in_the_arguments_alone_is_refused(world):
    """A framework that merges arguments from elsewhere (a form body, cookies) hands the
    site one the URL lacks: it is refused too, whether single or a list of values."""
    session, return_to = world.begin(world.evil.identity, RETURN_TO_Q)
    query, url = world.forge2(return_to)
    _refused_as_unsigned(world, session, {**query, "admin": "1"}, url)
    _refused_as_unsigned(world, session, {**query, "admin": ["1"]}, url)
    with pytest.raises(ReturnToMismatchError, match="argument 'next'"):
        world.rp.complete({**query, "next": "https://evil.example/"}, url, session=session)
    with pytest.raises(ReturnToMismatchError, match="argument 'next'"):
        world.rp.complete({**query, "next": ["/home", "/x"]}, url, session=session)
    world.assert_nothing_stored(query)


def test_form_post_answer_with_an_extra_argument_is_refused(world):
    """An answer by form POST (5.2.1): the URL is the bare return_to and the body the OP's
    fields. An extra argument in the URL's query, or in the body, is refused; a body
    argument of return_to's with another value too. The control completes afterwards."""
    session, return_to = world.begin(world.evil.identity, RETURN_TO_Q)
    query, _ = world.forge2(return_to)
    body = {key: value for key, value in query.items() if key.startswith("openid.")}
    _refused_as_unsigned(world, session, body, return_to + "&admin=1")
    _refused_as_unsigned(world, session, {**body, "admin": "1"}, return_to)
    with pytest.raises(ReturnToMismatchError, match="argument 'lang'"):
        world.rp.complete({**body, "lang": "fr"}, return_to, session=session)
    world.assert_nothing_stored(query)
    session, return_to = world.begin(world.evil.identity, RETURN_TO_Q)
    query, _ = world.forge2(return_to)
    body = {key: value for key, value in query.items() if key.startswith("openid.")}
    result = world.rp.complete(body, return_to, session=session)
    assert result.claimed_id == world.evil.identity


def _bound(current: str, return_to: str) -> str:
    """``current`` with the RP nonce that begin() added to return_to, as the site's real
    URL carries it."""
    argument = return_to[return_to.index(nonce_module.RP_NONCE_ARG) :]
    base, hash_sign, fragment = current.partition("#")
    return f"{base}&{argument}{hash_sign}{fragment}"


def test_signed_return_to_other_than_the_sessions(world):
    """The OP signs a return_to with an argument added (and the site's URL has it): it is
    not the one this session sent."""
    session, return_to = world.begin(world.evil.identity, RETURN_TO_Q)
    query, url = world.forge2(return_to + "&admin=1")
    with pytest.raises(ReturnToMismatchError, match="another sign-in"):
        world.rp.complete(query, url, session=session)
    world.assert_nothing_stored(query)


# -- the signed list -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signed",
    [
        [*SIGNED_2, "return_to"],
        [SIGNED_2[0], "", *SIGNED_2[1:]],
        [*SIGNED_2, ""],
        list(SIGNED_2[1:]),
        [*SIGNED_2, "no_such_field"],
    ],
    ids=["duplicate", "empty-entry", "trailing-comma", "op_endpoint-unsigned", "absent-field"],
)
def test_signed_list_tricks(world, signed):
    """The signature is genuine over exactly the list given; the list itself is wrong."""
    session, return_to = world.begin(world.evil.identity)
    query, url = world.forge2(return_to, signed=signed)
    with pytest.raises(IncompleteAnswerError):
        world.rp.complete(query, url, session=session)
    world.assert_nothing_stored(query)


def test_unsigned_ns_is_accepted_but_cannot_be_removed(world):
    """10.1 does not require openid.ns to be signed; without it the answer would read as
    OpenID 1.x, which this 2.0 session refuses."""
    session, return_to = world.begin(world.evil.identity)
    query, url = world.forge2(return_to)
    assert "ns" not in query["openid.signed"].split(",")
    stripped = {k: v for k, v in query.items() if k != "openid.ns"}
    with pytest.raises(IncompleteAnswerError):
        world.rp.complete(stripped, url, session=session)
    assert world.rp.complete(query, url, session=session).claimed_id == world.evil.identity


@pytest.mark.parametrize(
    "extra, added",
    [
        ({"a:b": "1"}, {}),
        ({"ns.e": "http://e.example/", "e.v": "line\nbreak"}, {}),
        ({"ns.sreg": SREG_1_1_NS, "sreg.email": "x@e.example"}, {"openid.ns.x": SREG_1_1_NS}),
        ({}, {"openid.ns.mode": "http://e.example/"}),
    ],
    ids=["colon-in-signed-key", "newline-in-signed-value", "namespace-twice", "reserved-alias"],
)
def test_fields_no_op_could_have_sent(world, extra, added):
    """Fields with no KV form cannot have been signed as they read, and two aliases for one
    namespace or a reserved alias are malformed (section 12): each is a malformed answer
    (``IncompleteAnswerError``), never a bare ``ProtocolError``."""
    session, return_to = world.begin(world.evil.identity)
    fields = {
        "ns": OPENID2_NS,
        "mode": "id_res",
        "op_endpoint": world.evil.endpoint,
        "claimed_id": world.evil.identity,
        "identity": world.evil.identity,
        "return_to": return_to,
        "response_nonce": nonce_module.make_nonce(world.rp.clock.now()),
        "assoc_handle": world.theirs.handle,
        **extra,
    }
    query, _ = _signed(fields, [*SIGNED_2, *extra], world.theirs)
    query = {k: v for k, v in query.items() if k.startswith("openid.")} | added
    with pytest.raises(IncompleteAnswerError):
        world.rp.complete(query, _arrived_at(return_to, query), session=session)
    world.assert_nothing_stored(query)


def _raw_sig(association: Association, data: bytes) -> str:
    digest = {HMAC_SHA256: "sha256", HMAC_SHA1: "sha1"}[association.assoc_type]
    return base64.b64encode(hmac.digest(association.secret, data, digest)).decode()


# -- oversize and unusual input --------------------------------------------------------------------

MB = 1024 * 1024


@pytest.mark.parametrize(
    "where",
    ["sig", "signed-value", "unsigned-value", "claimed_id", "key"],
)
def test_lone_surrogates_are_a_malformed_answer(world, where):
    """A str with a lone surrogate (a framework decoding with surrogateescape, or JSON
    "\\ud800") has no UTF-8 form (4.1.2): a typed error, never UnicodeEncodeError."""
    session, return_to = world.begin(world.evil.identity)
    bad = "\ud800"
    extra = {"ns.e": "http://e.example/", "e.v": bad} if where == "signed-value" else None
    claimed = world.evil.identity + bad if where == "claimed_id" else None
    query, _ = (
        world.forge2(return_to, extra=extra, claimed_id=claimed, handle="private-handle")
        if where in ("signed-value", "claimed_id")
        else world.forge2(return_to)
    )
    if where == "sig":
        query["openid.sig"] = bad
    elif where == "unsigned-value":
        query["openid.e.unsigned"] = bad
    elif where == "key":
        query[f"openid.{bad}"] = "x"
    with pytest.raises(IncompleteAnswerError):
        world.rp.complete(query, _arrived_at(return_to, {}), session=session)
    assert world.evil.modes["check_authentication"] == 0
    world.assert_nothing_stored(query)


# -- unsigned answers --------------------------------------------------------------------------


@pytest.mark.parametrize("openid2", [True, False], ids=["openid2", "openid1"])
def test_setup_url_elsewhere_than_the_op_is_not_passed_on(world, openid2):
    """``user_setup_url`` is unsigned: anyone can send a site a "setup needed" answer
    naming a phishing page for the site to redirect its user to. Only a URL at the OP the
    session's request went to is passed on."""
    session, return_to = world.begin(world.victim if openid2 else world.victim1, immediate=True)
    server = world.victim_op if openid2 else world.victim_op1
    fields = {"mode": "setup_needed"} if openid2 else {"mode": "id_res"}
    if openid2:
        fields["ns"] = OPENID2_NS
    for setup_url, passed_on in [
        ("https://evil.example/phish", False),
        (server.replace("127.0.0.1", "127.0.0.2"), False),
        ("javascript:alert(1)", False),
        (server + "?openid.mode=checkid_setup", True),
    ]:
        query = {f"openid.{k}": v for k, v in fields.items()}
        query["openid.user_setup_url"] = setup_url
        for state in ({}, copy.deepcopy(session)):
            with pytest.raises(SetupNeededError) as raised:
                world.rp.complete(query, return_to, session=state)
            expected = setup_url if passed_on and state else None
            assert raised.value.setup_url == expected, (setup_url, bool(state))


# -- replays -------------------------------------------------------------------------------------

_OTHER_PROCESS = """
import json, sys
from openid_plugins import RelyingParty
from openid_plugins.errors import OpenIDError
data = json.load(sys.stdin)
with RelyingParty(store=data["store"], queue="memory://", association="inline") as rp:
    try:
        result = rp.complete(data["query"], data["url"], session=data["session"])
    except OpenIDError as exc:
        print(type(exc).__name__)
    else:
        print("accepted", result.verified_by)
"""


def test_replay_across_processes_sharing_a_file_store(make_world, tmp_path):
    """Accepted in one process, replayed in another with a copy of the session cookie."""
    world = make_world(store=(tmp_path / "store").as_uri())
    session, return_to = world.begin(world.evil.identity)
    query, url = world.forge2(return_to)
    data = {"store": (tmp_path / "store").as_uri(), "query": query, "url": url, "session": session}
    child = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.stdout.strip() == "accepted association", child.stderr
    with pytest.raises(ReplayAttackError):
        world.rp.complete(query, url, session=session)


def test_stateless_replay_is_refused_before_asking_the_op(op, make_rp, browser):
    rp = make_rp(association="stateless")
    session: dict = {}
    back = browser.visit_op(rp.begin(op.identity(), RETURN_TO, REALM, session=session))
    saved = copy.deepcopy(session)
    assert rp.complete(query_of(back), back, session=session).verified_by == (
        "check_authentication"
    )
    with pytest.raises(ReplayAttackError):
        rp.complete(query_of(back), back, session=saved)
    assert op.counts["check_authentication"] == 1


def test_openid1_replay_with_a_copied_session_and_with_another(world):
    """OpenID 1.1 has no response nonce: the RP's own nonce in return_to is used once, and
    another session's return_to carries another nonce."""
    session, return_to = world.begin(world.evil.identity1)
    query, url = world.forge1(return_to)
    saved = copy.deepcopy(session)
    world.rp.complete(query, url, session=session)
    with pytest.raises(ReplayAttackError):
        world.rp.complete(query, url, session=saved)
    other, _ = world.begin(world.evil.identity1)
    with pytest.raises(ReturnToMismatchError):
        world.rp.complete(query, url, session=other)


START = 1_800_000_000.0
SKEW = 300


@pytest.fixture(params=["memory", "file"])
def clocked_world(request, make_world, tmp_path):
    clock = FakeClock(START)
    store = "memory://" if request.param == "memory" else (tmp_path / "store").as_uri()
    world = make_world(
        store=store, plugins=[ClockPlugin(clock)], max_login_delay=0, nonce_skew=SKEW
    )
    return world, clock


@pytest.mark.parametrize("offset", [-SKEW, SKEW])
def test_nonce_exactly_at_the_skew_edge(clocked_world, offset):
    """Accepted at the edge, remembered while it is inside the window (cleanup included),
    refused as too old or too new one second past it."""
    world, clock = clocked_world
    session, return_to = world.begin(world.evil.identity)
    saved = copy.deepcopy(session)
    nonce = nonce_module.make_nonce(START + offset, "edge")
    query, url = world.forge2(return_to, nonce=nonce)
    world.rp.complete(query, url, session=session)
    assert world.rp.store.cleanup() >= 0
    with pytest.raises(ReplayAttackError):
        world.rp.complete(query, url, session=copy.deepcopy(saved))
    clock.advance(1 if offset < 0 else -1)
    with pytest.raises(TookTooLongError):
        world.rp.complete(query, url, session=saved)


@pytest.mark.parametrize("offset", [-SKEW - 1, SKEW + 1])
def test_nonce_one_second_past_the_skew(clocked_world, offset):
    world, _ = clocked_world
    session, return_to = world.begin(world.evil.identity)
    nonce = nonce_module.make_nonce(START + offset, "past")
    query, url = world.forge2(return_to, nonce=nonce)
    with pytest.raises(TookTooLongError):
        world.rp.complete(query, url, session=session)
    assert world.evil.modes["check_authentication"] == 0


ODD_SALTS = [
    "/",
    "..",
    "../../../../etc/passwd",
    "a/b",
    "a%2Fb",
    "a\\b",
    "'\"<>&;|`$(){}[]",
    "~!@#$%^*_+=-?,.:",
    "nul%00",
    "~" * 235,
]


_STORE_NAME = re.compile(r"[0-9a-f]{64}(\.json|\.[0-9a-f]{64})?|LAYOUT|cleanup-stamp")


def test_odd_salts_in_a_file_store(make_world, tmp_path):
    """Every printable salt is data: each is used once, lookalikes stay distinct, and no
    file appears outside the store's own layout."""
    root = tmp_path / "store"
    world = make_world(store=root.as_uri())
    now = world.rp.clock.now()
    for salt in ODD_SALTS:
        session, return_to = world.begin(world.evil.identity)
        saved = copy.deepcopy(session)
        query, url = world.forge2(return_to, nonce=nonce_module.make_nonce(now, salt))
        world.rp.complete(query, url, session=session)
        with pytest.raises(ReplayAttackError):
            world.rp.complete(query, url, session=saved)
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
    # Every file is named by a digest (or is the store's own bookkeeping).
    names = {p.name for p in root.rglob("*") if p.is_file()}
    assert names and all(_STORE_NAME.fullmatch(name) for name in names), names


@pytest.mark.parametrize(
    "salt", [" space", "tab\there", "é", "~" * 236], ids=["space", "tab", "non-ascii", "too-long"]
)
def test_salts_outside_10_1(world, salt):
    session, return_to = world.begin(world.evil.identity)
    stamp = nonce_module.make_nonce(world.rp.clock.now(), "")
    query, url = world.forge2(return_to, nonce=stamp + salt)
    with pytest.raises(IncompleteAnswerError):
        world.rp.complete(query, url, session=session)
    assert world.evil.modes["check_authentication"] == 0


# -- association handles -----------------------------------------------------------------------


def test_expired_association_is_not_used_even_from_the_process_cache(make_world):
    """A secret that signed fine while valid (and sits in the per-process cache) verifies
    nothing once expired: the OP is asked instead, and it knows no such handle."""
    clock = FakeClock(START)
    world = make_world(plugins=[ClockPlugin(clock)], max_login_delay=0)
    short = Association("{HMAC-SHA256}{short}", secrets.token_bytes(32), START, 120.0, HMAC_SHA256)
    world.rp.store.store_association(world.victim_op, short)
    fields = dict(
        claimed_id=world.victim, op_endpoint=world.victim_op, handle=short.handle, signer=short
    )
    session, return_to = world.begin(world.victim)
    query, url = world.forge2(return_to, **fields)
    assert world.rp.complete(query, url, session=session).verified_by == "association"
    clock.advance(121)
    session, return_to = world.begin(world.victim)
    query, url = world.forge2(return_to, **fields)
    with pytest.raises(SignatureError):
        world.rp.complete(query, url, session=session)
    assert world.op.counts["check_authentication"] == 1
    world.assert_nothing_stored(query)


HOSTILE_HANDLES = ["../../../../tmp/x", "a/b", "..", "/", "{HMAC-SHA256}/../ours", "~" * 255]


def test_handles_with_path_characters_in_a_file_store(make_world, tmp_path):
    """A handle is data: with the attacker's own OP it signs and verifies, anywhere else it
    is an unknown handle, and it names no file."""
    root = tmp_path / "store"
    world = make_world(store=root.as_uri())
    now = world.rp.clock.now()
    for handle in HOSTILE_HANDLES:
        association = Association(handle, secrets.token_bytes(32), now, 3600.0, HMAC_SHA256)
        world.rp.store.store_association(world.evil.endpoint, association)
        session, return_to = world.begin(world.evil.identity)
        query, url = world.forge2(return_to, handle=handle, signer=association)
        assert world.rp.complete(query, url, session=session).verified_by == "association"
        session, return_to = world.begin(world.victim)
        query, url = world.forge2(
            return_to,
            claimed_id=world.victim,
            op_endpoint=world.victim_op,
            handle=handle,
            signer=association,
        )
        with pytest.raises(SignatureError):
            world.rp.complete(query, url, session=session)
    assert world.evil.modes["check_authentication"] == 0
    assert world.op.counts["check_authentication"] == len(HOSTILE_HANDLES)
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
    names = {p.name for p in root.rglob("*") if p.is_file()}
    assert all(_STORE_NAME.fullmatch(name) for name in names), names
    for server_url, association in world.installed():
        assert world.rp.store.get_association(server_url, association.handle) == association


@pytest.mark.parametrize("valid", [True, False])
def test_invalidate_handle_confirmed_by_the_attackers_op(world, valid):
    """The attacker's OP, asked to verify, "confirms" that the victim's OP's handle and
    its own are invalid: it can only ever remove its own association, and only with
    is_valid:true (11.4.2.2)."""
    session, query, url = _unknown_handle_login(world)
    for handle in (world.ours.handle, world.ours1.handle):
        query["openid.invalidate_handle"] = handle
        answer = f"is_valid:{'true' if valid else 'false'}\ninvalidate_handle:{handle}\n"
        world.evil.check_auth_reply = (200, KV, answer.encode())
        if valid:
            assert world.rp.complete(query, url, session=copy.deepcopy(session))
            session, query, url = _unknown_handle_login(world)
        else:
            with pytest.raises(SignatureError):
                world.rp.complete(query, url, session=session)
    for server_url, association in world.installed():
        assert world.rp.store.get_association(server_url, association.handle) == association
    query["openid.invalidate_handle"] = world.theirs.handle
    answer = f"is_valid:{'true' if valid else 'false'}\ninvalidate_handle:{world.theirs.handle}\n"
    world.evil.check_auth_reply = (200, KV, answer.encode())
    if valid:
        world.rp.complete(query, url, session=session)
        assert world.rp.store.get_association(world.evil.endpoint, world.theirs.handle) is None
    else:
        with pytest.raises(SignatureError):
            world.rp.complete(query, url, session=session)
        assert world.rp.store.get_association(world.evil.endpoint, world.theirs.handle)


def test_genuine_association_handle_in_an_attackers_assertion(op, make_rp, browser):
    """A real association with the victim's OP (made by a genuine login): the attacker
    names its handle but cannot sign with it, and the association survives for the next
    genuine login."""
    rp = make_rp(association="inline")
    session: dict = {}
    back = browser.visit_op(rp.begin(op.identity(), RETURN_TO, REALM, session=session))
    genuine = query_of(back)
    handle = genuine["openid.assoc_handle"]
    forged = dict(genuine)
    forged["openid.response_nonce"] = nonce_module.make_nonce(rp.clock.now(), "forged")
    with pytest.raises(SignatureError):
        rp.complete(forged, back, session=copy.deepcopy(session))
    assert op.counts["check_authentication"] == 0
    result = rp.complete(genuine, back, session=session)
    assert result.verified_by == "association"
    assert rp.store.get_association(op.endpoint(), handle) is not None


def test_fifty_thousand_arguments(world):
    """50,000 signed extension fields and 50,000 unsigned openid.* ones: the signed ones
    are reported, nothing else is. 50,000 arguments that are neither the OP's nor
    return_to's are refused as unsigned (issue 14)."""
    session, return_to = world.begin(world.evil.identity)
    extra = {"ns.big": "http://big.example/"} | {f"big.f{i}": str(i) for i in range(50_000)}
    query, url = world.forge2(return_to, extra=extra)
    query |= {f"openid.junk{i}": "x" for i in range(50_000)}
    site = {f"site{i}": "x" for i in range(50_000)}
    # So long an answer comes by form POST (5.2.2): the URL is return_to itself.
    with pytest.raises(ReturnToMismatchError, match="argument 'site0'"):
        world.rp.complete(query | site, return_to, session=session)
    result = world.rp.complete(query, return_to, session=session)
    assert len(result.signed_fields) == len(SIGNED_2) + len(extra)
    assert result.signed_fields["big.f49999"] == "49999"
    assert not any(key.startswith("junk") for key in result.signed_fields)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("signed-value", None),
        ("deep-unicode-value", None),
        ("sig", SignatureError),
        ("nonce", IncompleteAnswerError),
        ("return_to", ReturnToMismatchError),
        ("identity", DiscoveryMismatchError),
        ("claimed_id", DiscoveryMismatchError),
        ("4k-claimed_id", DiscoveryMismatchError),
        ("unicode-claimed_id", DiscoveryMismatchError),
    ],
)
def test_oversize_values(world, case, expected):
    """A megabyte in one field, or 200,000 combining characters: a typed error, or the
    value, signed, reported intact - never a crash."""
    session, return_to = world.begin(world.evil.identity)
    big = "x" * MB
    deep = "e" + "\u0301" * 200_000 + "\U0001f600"
    kwargs: dict = {
        "signed-value": {"extra": {"ns.e": "http://e.example/", "e.v": big}},
        "deep-unicode-value": {"extra": {"ns.e": "http://e.example/", "e.v": deep}},
        "sig": {},
        "nonce": {"nonce": nonce_module.make_nonce(world.rp.clock.now(), "") + big},
        "return_to": {},
        "identity": {"identity": world.evil.identity + big},
        "claimed_id": {"claimed_id": world.evil.identity + "/" + big},
        "4k-claimed_id": {"claimed_id": world.evil.identity + "/" + "x" * 4096},
        "unicode-claimed_id": {"claimed_id": world.evil.identity + "/" + deep},
    }[case]
    signed_return_to = return_to + "&x=" + big if case == "return_to" else return_to
    query, _ = world.forge2(signed_return_to, **kwargs)
    # So long an answer comes by form POST (5.2.2): the URL is return_to itself.
    url = signed_return_to
    if case == "sig":
        query["openid.sig"] = "A" * MB
    if expected is None:
        result = world.rp.complete(query, url, session=session)
        assert result.signed_fields["e.v"] == kwargs["extra"]["e.v"]
        return
    with pytest.raises(expected, match="longer than" if "claimed_id" in case else None):
        world.rp.complete(query, url, session=session)
    assert world.evil.modes["check_authentication"] == 0
    # A huge claimed_id is not fetched: anyone could make the site send such requests.
    assert all(len(request.target) < 2048 for request in world.evil.server.requests)
    if case != "nonce":
        world.assert_nothing_stored(query)


# -- extensions ----------------------------------------------------------------------------------


def test_extension_args_without_a_signed_alias_declaration(world):
    """OpenID 2.0: SREG values are reported only when ``ns.<alias>`` is signed too, and a
    signed declaration cannot be re-pointed."""
    session, return_to = world.begin(world.evil.identity, extensions=[SReg(optional=["email"])])
    saved = copy.deepcopy(session)
    extra = {"ns.sreg": SREG_1_1_NS, "sreg.email": "alice@victim.example"}
    signed = [*SIGNED_2, "sreg.email"]
    query, url = world.forge2(return_to, extra=extra, signed=signed)
    assert world.rp.complete(query, url, session=session).sreg == {}
    session = copy.deepcopy(saved)
    query, url = world.forge2(return_to, extra=extra)
    query["openid.ns.sreg"] = "http://example.com/not-sreg"
    with pytest.raises(SignatureError):
        world.rp.complete(query, url, session=session)
    query["openid.ns.sreg"] = SREG_1_1_NS
    assert world.rp.complete(query, url, session=session).sreg == {"email": "alice@victim.example"}


def test_openid1_alias_redeclared_by_an_unsigned_namespace(world):
    """A 1.1 answer signs ``x.email`` for some other extension; anyone on the way adds
    ``openid.ns.x=<SREG>``: the value must not be reported as the SREG email."""
    session, return_to = world.begin(world.evil.identity1, extensions=[SReg(optional=["email"])])
    query, url = world.forge1(return_to, extra={"x.email": "admin@victim.example"})
    query["openid.ns.x"] = SREG_1_1_NS
    result = world.rp.complete(query, url, session=session)
    assert "email" not in result.sreg
    # Declared and signed by the OP itself, the alias means what it says.
    session, return_to = world.begin(world.evil.identity1, extensions=[SReg(optional=["email"])])
    extra = {"ns.x": SREG_1_1_NS, "x.email": "admin@victim.example"}
    query, url = world.forge1(return_to, extra=extra)
    assert world.rp.complete(query, url, session=session).sreg == {"email": extra["x.email"]}


# -- binding the answer to the session ------------------------------------------------------


def test_login_csrf_an_answer_from_another_session(world):
    """The victim has a sign-in under way; the attacker, signed in as themselves in their
    own session, makes the victim's browser deliver the attacker's (unused) answer. It
    must not sign the victim in as the attacker: the answer belongs to another sign-in."""
    victims_session, _ = world.begin(world.victim)
    _, attackers_return_to = world.begin(world.evil.identity)
    query, url = world.forge2(attackers_return_to)
    with pytest.raises(ReturnToMismatchError, match="another sign-in"):
        world.rp.complete(query, url, session=victims_session)
    world.assert_nothing_stored(query)
