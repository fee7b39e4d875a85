"""Local OPs that behave like Steam and Ubuntu One, for testing a "Sign in with ..." button.

Written from the providers' public behaviour (their XRDS documents and the messages anyone
can observe), on top of ``DevelopmentProvider``: real HTTP servers on 127.0.0.1 that a
site's test suite points the built-in profiles at::

    from openid_plugins.profiles import steam_profile
    from openid_plugins.testing.lookalikes import SteamLikeProvider

    class LocalSteam:                    # replaces the built-in "steam" profile
        def __init__(self, op): self.op = op
        @hookimpl
        def openid_providers(self): return [steam_profile(self.op.base_url)]

    with SteamLikeProvider() as op:
        rp = RelyingParty(plugins=[LocalSteam(op)], fetch_block_private_addresses=False)
        auth = rp.begin(provider="steam", return_to=return_to, session=session)
        ...                              # follow auth.redirect_url, then rp.complete()
        assert result.provider_id == op.users[0]

What they reproduce:

- ``SteamLikeProvider`` (steamcommunity.com/openid): the OP identifier ``/openid`` and each
  claimed id ``/openid/id/<SteamID64>`` serve a bare XRDS (one service, no ``LocalID``,
  no extension types); every associate request is refused with HTTP 200 and no suggested
  type; assertions carry the constant dummy ``assoc_handle`` ``1234567890`` and a signed
  list that starts with ``signed`` and omits ``ns``; each is confirmed once through
  ``check_authentication``. Extension arguments are ignored.
- ``UbuntuOneLikeProvider`` (login.ubuntu.com): directed identity at ``/`` with the
  endpoint ``/+openid``, case-sensitive claimed ids ``/+id/<id>``, associations, SREG and
  AX, the Launchpad teams extension (``teams``: user -> team names), and setup_needed
  for every ``checkid_immediate``.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Iterable, Mapping

from ..contracts import Association, Clock
from ..errors import IncompleteAnswerError
from ..protocol.association import HMAC_SHA1, check_signature, sign
from ..protocol.endpoint import OPENID_2_0_TYPE, OPENID_IDP_2_0_TYPE
from ..protocol.message import OPENID2_NS, Message
from ..protocol.nonce import make_nonce
from .provider import DevelopmentProvider, Reply, _kv, _redirect

#: The handle Steam puts in every assertion: it associates with nobody.
STEAM_DUMMY_HANDLE = "1234567890"
#: Steam's signed list, in Steam's order: ``signed`` first, no ``ns``.
STEAM_SIGNED: tuple[str, ...] = ("signed", "op_endpoint", "claimed_id", "identity", "return_to")
STEAM_SIGNED += ("response_nonce", "assoc_handle")
TEAMS_NS = "http://ns.launchpad.net/2007/openid-teams"


def bare_xrds(service_type: str, uri: str, extension_types: Iterable[str] = ()) -> Reply:
    """An XRDS document with one OpenID service and no ``LocalID``, as Steam serves."""
    types = "".join(f"<Type>{html.escape(t)}</Type>" for t in (service_type, *extension_types))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xrds:XRDS xmlns:xrds="xri://$xrds" xmlns="xri://$xrd*($v*2.0)">\n\t<XRD>\n'
        f'\t\t<Service priority="0">\n\t\t\t{types}\n'
        f"\t\t\t<URI>{html.escape(uri)}</URI>\n\t\t</Service>\n\t</XRD>\n</xrds:XRDS>\n"
    )
    return 200, {"Content-Type": "application/xrds+xml"}, body.encode("utf-8")


class _Lookalike(DevelopmentProvider):
    """A ``DevelopmentProvider`` at another provider's URL layout, serving bare XRDS."""

    #: Paths of the OP identifier and the endpoint, and the claimed ids' prefix.
    OP_IDENTIFIER_PATH = "/"
    ENDPOINT_PATH = "/openid"
    ID_PREFIX = "/id/"
    #: Extension type URIs the XRDS documents list.
    EXTENSION_TYPES: tuple[str, ...] = ()

    @property
    def op_identifier_url(self) -> str:
        return self.base_url + self.OP_IDENTIFIER_PATH

    @property
    def endpoint(self) -> str:
        return self.base_url + self.ENDPOINT_PATH

    def identity_url(self, user: str) -> str:
        return self.base_url + self.ID_PREFIX + self._known(user)

    def respond(self, method: str, path: str, args: Mapping[str, list[str]]) -> Reply:
        if path == self.ENDPOINT_PATH:
            return self._openid(method, args)
        if path == self.OP_IDENTIFIER_PATH:
            return bare_xrds(OPENID_IDP_2_0_TYPE, self.endpoint, self.EXTENSION_TYPES)
        if path.startswith(self.ID_PREFIX) and path[len(self.ID_PREFIX) :] in self.users:
            return bare_xrds(OPENID_2_0_TYPE, self.endpoint, self.EXTENSION_TYPES)
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found\n"


class SteamLikeProvider(_Lookalike):
    """An OP that answers like steamcommunity.com/openid; users are SteamID64s."""

    OP_IDENTIFIER_PATH = "/openid"
    ENDPOINT_PATH = "/openid/login"
    ID_PREFIX = "/openid/id/"

    def __init__(
        self,
        users: Iterable[str] = ("76561197960287930",),
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(users, host, port, clock)
        #: response_nonce -> the private secret that signed it (Steam's handle is constant,
        #: so the nonce is what identifies a response).
        self._secrets: dict[str, bytes] = {}

    def _associate(self, message: Message) -> Reply:
        # An error with HTTP 200 and no assoc_type/session_type: nothing to retry with.
        return _kv(
            200,
            {
                "ns": OPENID2_NS,
                "error_code": "unsupported-type",
                "error": "Association type not supported",
            },
        )

    def _positive(self, request: Message, user: str, claimed_id: str, identity: str) -> Message:
        nonce = make_nonce(self.clock.now() + self.clock_skew)
        fields = {
            "ns": OPENID2_NS,
            "mode": "id_res",
            "op_endpoint": self.endpoint,
            "claimed_id": claimed_id,
            "identity": identity,
            "return_to": request["return_to"],
            "response_nonce": nonce,
            "assoc_handle": STEAM_DUMMY_HANDLE,
            "signed": ",".join(STEAM_SIGNED),
        }
        secret = secrets.token_bytes(20)
        with self._lock:
            self._secrets[nonce] = secret
        fields["sig"] = sign(self._private(secret), fields, STEAM_SIGNED)
        return Message(fields)

    def _check_authentication(self, message: Message) -> Reply:
        nonce = message.get("response_nonce") or ""
        with self._lock:
            # One confirmation per response: the secret is forgotten once asked about.
            secret = self._secrets.pop(nonce, None)
        valid = False
        if secret is not None and message.get("assoc_handle") == STEAM_DUMMY_HANDLE:
            fields = dict(message.fields, mode="id_res")
            try:
                valid = check_signature(
                    self._private(secret), fields, message.get("signed") or "", message["sig"]
                )
            except (IncompleteAnswerError, KeyError):  # a listed field is missing
                valid = False
        return _kv(200, {"ns": OPENID2_NS, "is_valid": "true" if valid else "false"})

    def _private(self, secret: bytes) -> Association:
        return Association(STEAM_DUMMY_HANDLE, secret, self.clock.now(), 300.0, HMAC_SHA1)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._secrets.clear()


class UbuntuOneLikeProvider(_Lookalike):
    """An OP that answers like login.ubuntu.com; user names are the case-sensitive ids."""

    OP_IDENTIFIER_PATH = "/"
    ENDPOINT_PATH = "/+openid"
    ID_PREFIX = "/+id/"
    EXTENSION_TYPES = (TEAMS_NS,)

    def __init__(
        self,
        users: Iterable[str] = ("AbCd3Fg",),
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(users, host, port, clock)
        #: user -> the Launchpad teams they belong to.
        self.teams: dict[str, set[str]] = {user: set() for user in self.users}
        #: When set, sent as ``is_member`` whatever was asked (a buggy or hostile OP).
        self.teams_answer: str | None = None

    def _checkid(self, message: Message) -> Reply:
        if message.mode == "checkid_immediate" and message.get("return_to"):
            setup_needed = Message({"ns": OPENID2_NS, "mode": "setup_needed"})
            return _redirect(message["return_to"], setup_needed)
        return super()._checkid(message)

    def _add_extensions(self, request: Message, response: Message, user: str) -> None:
        super()._add_extensions(request, response, user)
        asked = request.get_args(TEAMS_NS).get("query_membership")
        if asked is None:
            return
        names = [name for name in asked.split(",") if name in self.teams.get(user, ())]
        answer = self.teams_answer if self.teams_answer is not None else ",".join(names)
        response.add_extension(TEAMS_NS, {"is_member": answer}, "lp")

    def reset(self) -> None:
        super().reset()
        self.teams = {user: set() for user in self.users}
        self.teams_answer = None
