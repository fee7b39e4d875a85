"""Verifying responses to authentication requests (OpenID 2.0 sections 10 and 11), whole.

``AssertionVerifier`` runs every check in this order, cheapest first, and stores nothing
until all have passed: the mode (10.2, 1.1 section 4.2.2), the pins (the OP endpoint among
those the site and the sign-in accept, the claimed identifier of the provider profile's
form), fields present, return_to
(11.1), login delay, nonce format and skew (11.3), discovered information (11.2), the
signature (11.4, with an association or by asking the OP), extensions, and last the
nonce's single use (11.3). It is built from plain collaborators - a store, an association
source, a discovery callable, an HTTP ``post`` and a clock - and knows no plugin engine
and no settings object; the relying party wires it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from ..contracts import Association, Clock, ProviderProfile, Store
from ..errors import (
    CancelledError,
    CheckAuthenticationError,
    ConfigurationError,
    DiscoveryMismatchError,
    FetchError,
    IncompleteAnswerError,
    MissingSessionError,
    OpenIDError,
    ProtocolError,
    ProviderError,
    ReplayAttackError,
    ReturnToMismatchError,
    SetupNeededError,
    SignatureError,
    TookTooLongError,
    UntrustedIdentifierError,
    UntrustedProviderError,
)
from . import nonce
from .association import check_signature
from .endpoint import OPENID_2_0_TYPE, Endpoint
from .fetch import FetchResponse
from .message import Message, excerpt, kv_decode
from .request import IDENTIFIER_SELECT
from .urinorm import is_xri

log = logging.getLogger("openid_plugins.protocol.verify")

#: Longer asserted identifiers are refused before re-discovery: no user types one, and
#: fetching it would let anyone make the site send megabyte requests wherever they like.
MAX_IDENTIFIER_BYTES = 2047
_SCHEMES = ("http", "https")

#: Fields a positive assertion must carry (10.1 for 2.0; 1.1 section 4.2.3.1).
REQUIRED_2 = ("op_endpoint", "return_to", "response_nonce", "assoc_handle", "signed", "sig")
REQUIRED_1 = ("return_to", "identity", "assoc_handle", "signed", "sig")
#: Fields that must be covered by the signature when present (10.1 and 11.4).
MUST_SIGN_2 = ("op_endpoint", "return_to", "response_nonce", "assoc_handle")
MUST_SIGN_IF_PRESENT_2 = ("claimed_id", "identity")
MUST_SIGN_1 = ("return_to", "identity")


def check_fields(message: Message) -> None:
    """Every required field is present and claimed_id/identity come as a pair."""
    required = REQUIRED_2 if message.is_openid2 else REQUIRED_1
    fields = message.fields
    missing = [name for name in required if not fields.get(name)]
    if missing:
        raise IncompleteAnswerError(
            "the positive assertion lacks " + ", ".join(f"openid.{m}" for m in missing)
        )
    if message.is_openid2 and (("claimed_id" in message) != ("identity" in message)):
        raise IncompleteAnswerError(
            "openid.claimed_id and openid.identity must both be present or both absent (10.1)"
        )


def signed_keys(message: Message) -> list[str]:
    """The ``openid.signed`` list, checked to cover every field that must be signed."""
    keys = (message.get("signed") or "").split(",")
    present = set(keys)
    if len(present) != len(keys) or "" in present:
        raise IncompleteAnswerError("openid.signed lists a field twice or an empty name")
    fields = message.fields
    absent = [key for key in keys if key not in fields]
    if absent:
        raise IncompleteAnswerError(
            "openid.signed names fields the response does not carry: " + ", ".join(absent)
        )
    if message.is_openid2:
        must = MUST_SIGN_2 + tuple(k for k in MUST_SIGN_IF_PRESENT_2 if k in fields)
    else:
        must = MUST_SIGN_1
    unsigned = [key for key in must if key not in present]
    if unsigned:
        raise IncompleteAnswerError(
            "the OP did not sign " + ", ".join(f"openid.{k}" for k in unsigned) + " (11.4)"
        )
    return keys


def _split(url: str) -> tuple[str, str, int | None, str, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an invalid port, or a "[" that opens no IPv6 address
        raise ReturnToMismatchError(
            f"{url[:200]!r} has an invalid port or a malformed IPv6 address"
        ) from None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return (
        parts.scheme.lower(),
        (parts.hostname or "").lower(),
        port if port is not None else default,
        parts.path or "/",
        parts.query,
    )


def _bare_pairs(query: str) -> list[tuple[str, str]]:
    """The arguments of a URL query that are not ``openid.*``, decoded as ``parse_qsl``
    decodes them (blank values kept). The OP's own arguments - nearly all of a response's
    URL - are recognised by their prefix and skipped without being decoded; one spelled
    with percent-escapes (``openid%2Emode``) is decoded to be recognised."""
    pairs = []
    for piece in query.split("&"):
        if not piece or piece.startswith("openid."):
            continue
        key, _, value = piece.partition("=")
        key = unquote_plus(key)
        if not key.startswith("openid."):
            pairs.append((key, unquote_plus(value)))
    return pairs


def check_return_to(
    return_to: str,
    current_url: str,
    arguments: Iterable[tuple[object, object]] = (),
) -> None:
    """11.1, as strictly as python-openid: scheme, host, port and path equal, and the
    arguments of the URL the response arrived at that are not the OP's (``openid.*``) are
    exactly return_to's, each with its value, once. A missing or changed one is refused;
    so is a repeated one (a framework that reads the other copy would act on a value the
    OP never signed) and an extra one: 11.1 is the floor, and a site that reads an argument
    no OP signed acts on whatever an attacker appended to the URL.

    ``arguments`` are the request's other arguments as the site's framework parsed them
    (``Message.bare_args``: a form POST's body, or a redirect's query again): each must be
    one of return_to's, with one of its values.

    An OP appends its answer to return_to (4.1.2, 10.1), so the URL usually starts with
    return_to itself; then only the appended tail is looked at, and its ``openid.*``
    arguments are recognised without being decoded: the cost does not grow with the
    answer's length beyond one pass over it.
    """
    if arguments:
        _check_arguments(return_to, arguments)
    if current_url == return_to:
        return
    if current_url.startswith(return_to) and "#" not in return_to:
        # The tail after return_to: its own arguments are return_to's, so what follows its
        # joiner may only be the OP's.
        tail = current_url[len(return_to) :].partition("#")[0]
        if not tail:
            return
        if tail[0] == ("&" if "?" in return_to else "?"):
            # Every argument is the OP's when each "&" starts an "openid." one: two counts
            # in C over the tail; only otherwise is it split and decoded to name the culprit.
            query = "&" + tail[1:]
            if query.count("&") == query.count("&openid."):
                return
            extra = _bare_pairs(tail[1:])
            if extra:
                _refuse_extra(extra[0][0], return_to)
            return
    scheme, host, port, path, expected_query = _split(return_to)
    c_scheme, c_host, c_port, c_path, actual_query = _split(current_url)
    if (scheme, host, port, path) != (c_scheme, c_host, c_port, c_path):
        raise ReturnToMismatchError(
            f"openid.return_to {return_to[:200]!r} does not match the URL the response arrived"
            f" at ({current_url[:200]!r}): pass the full current URL as current_url"
        )
    expected = _multiset(parse_qsl(expected_query, keep_blank_values=True))
    actual = _multiset(_bare_pairs(actual_query))
    if actual == expected:
        return
    for key, values in expected.items():
        if sorted(actual.get(key, ())) != sorted(values):
            raise ReturnToMismatchError(
                f"query argument {key!r} of openid.return_to is missing or different in the"
                " URL the response arrived at"
            )
    extras = [key for key in actual if key not in expected]
    if extras:
        _refuse_extra(extras[0], return_to)


def _multiset(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


def _check_arguments(return_to: str, arguments: Iterable[tuple[object, object]]) -> None:
    """Each argument the site was handed besides the OP's is one of return_to's."""
    expected: dict[str, list[str]] = {}
    for piece in return_to.partition("?")[2].partition("#")[0].split("&"):
        if piece:
            key, _, value = piece.partition("=")
            expected.setdefault(_unquote(key), []).append(_unquote(value))
    for name, given in arguments:
        values = given if isinstance(given, (list, tuple)) else [given]
        allowed = expected.get(name) if isinstance(name, str) else None
        if allowed is None:
            _refuse_extra(name, return_to)
        if any(item not in allowed for item in values):
            raise ReturnToMismatchError(
                f"query argument {name!r} of openid.return_to has another value in the"
                " request's arguments"
            )


def _unquote(text: str) -> str:
    """``unquote_plus``, with a shortcut for what return_to's arguments usually hold: our RP
    nonce, whose only escapes are its timestamp's colons (``%3A``), decoded by a replace."""
    if "+" not in text:
        simple = text.replace("%3A", ":")
        if "%" not in simple:
            return simple
    return unquote_plus(text)


def _refuse_extra(key: object, return_to: str) -> NoReturn:
    raise ReturnToMismatchError(
        f"the response carries the argument {str(key)[:80]!r} besides the OP's (openid.*) and"
        f" those of openid.return_to {return_to[:200]!r}: nobody signed it, so the response"
        " is refused"
    )


def check_nonce_time(timestamp: float, now: float, skew: float) -> None:
    """11.3: a nonce from further than ``skew`` seconds away is refused (a replay store only
    remembers nonces that long)."""
    if timestamp < now - skew:
        raise TookTooLongError(
            f"the response nonce is {int(now - timestamp)} s old, more than the allowed"
            f" {int(skew)} s: the login took too long or the OP's clock is wrong; sign in again"
        )
    if timestamp > now + skew:
        raise TookTooLongError(
            f"the response nonce is {int(timestamp - now)} s in the future, more than the allowed"
            f" {int(skew)} s: the OP's clock is wrong"
        )


def check_authentication_request(message: Message) -> Message:
    """11.4.2.1: an exact copy of the assertion with mode ``check_authentication``."""
    fields = dict(message.fields)
    fields["mode"] = "check_authentication"
    return Message(fields)


def parse_check_authentication(body: bytes) -> tuple[bool, str | None]:
    """11.4.2.2: ``is_valid`` and the ``invalidate_handle`` the OP confirms, if any."""
    try:
        fields = kv_decode(body)
    except ProtocolError as exc:
        fields, problem = {}, f" ({exc})"
    else:
        problem = ""
    if "is_valid" not in fields:
        # Not an answer to check_authentication at all (an HTML page, a proxy's note):
        # say what came instead of calling the signature bad.
        raise CheckAuthenticationError(
            f"the OP's check_authentication answer is not KV form with is_valid{problem}:"
            f" it sent {excerpt(body.decode('utf-8', 'replace'), 100)!r}"
        )
    return fields["is_valid"] == "true", fields.get("invalidate_handle") or None


# -- the verifier ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthResult:
    """A verified positive assertion."""

    claimed_id: str
    identity: str
    op_endpoint: str
    endpoint: Endpoint
    #: The signed ``openid.*`` fields (names without the prefix): the only trustworthy ones.
    signed_fields: Mapping[str, str]
    extensions: Mapping[str, Any] = field(default_factory=dict)
    #: "association" when checked with a shared secret, "check_authentication" when the OP
    #: confirmed the signature (stateless mode).
    verified_by: str = "association"
    #: The provider profile the sign-in was started with (``begin(provider=...)``), if any.
    provider: str | None = None
    #: The user's id at that provider, read from the claimed identifier by the profile's
    #: pattern (Steam: the 64-bit SteamID as a string; ``int(result.provider_id)``).
    provider_id: str | None = None

    @property
    def sreg(self) -> Mapping[str, str]:
        sreg: Mapping[str, str] = self.extensions.get("sreg", {})
        return sreg

    @property
    def ax(self) -> Any:
        return self.extensions.get("ax", {})

    @property
    def pape(self) -> Any:
        return self.extensions.get("pape")


class AssociationSource(Protocol):
    """Where the verifier finds the association an assertion names, and reports one the
    OP confirmed is gone (the ``Associator``)."""

    def for_assertion(self, server_url: str, handle: str) -> Association | None: ...

    def invalidated(self, server_url: str, handle: str) -> None: ...


#: Re-discovers an asserted identifier (11.2): a URL without fragment -> its endpoints.
Discover = Callable[[str], "list[Endpoint]"]
#: POSTs form arguments to a URL (check_authentication, 11.4.2).
Post = Callable[[str, Mapping[str, str]], FetchResponse]
#: Parses the extensions of a verified assertion:
#: (message, signed keys, endpoint, what the request asked for) -> {name: value}.
ParseExtensions = Callable[
    [Message, frozenset[str], Endpoint, tuple[Any, ...]], Mapping[str, Any]
]
#: The provider profile of a name kept in the session by ``begin(provider=...)``.
ProfileLookup = Callable[[str], ProviderProfile]


class AssertionVerifier:
    """Section 11, given the session state ``begin()`` left and the OP's response."""

    def __init__(
        self,
        *,
        store: Store,
        associations: AssociationSource,
        discover: Discover,
        post: Post,
        clock: Clock,
        nonce_skew: float,
        max_login_delay: float,
        parse_extensions: ParseExtensions,
        allowed_op_endpoints: Collection[str] = (),
        provider_profile: ProfileLookup | None = None,
    ) -> None:
        self.store = store
        self.associations = associations
        self.discover = discover
        self.post = post
        self.clock = clock
        self.nonce_skew = nonce_skew
        self.max_login_delay = max_login_delay
        self.parse_extensions = parse_extensions
        self.allowed_op_endpoints = frozenset(allowed_op_endpoints)
        self.provider_profile = provider_profile

    def verify(
        self,
        query: Mapping[str, Any],
        current_url: str,
        state: Any,
        *,
        stateless: bool = False,
    ) -> AuthResult:
        """Verify the OP's response; every failure is an ``OpenIDError``.

        ``state`` is what ``begin()`` kept in the session (None when there is none);
        ``stateless`` skips associations and asks the OP (11.4.2). Nothing is stored unless
        the assertion is valid.
        """
        try:
            message = Message.from_query(query)
            is_openid2 = message.is_openid2
        except ProtocolError as exc:
            raise IncompleteAnswerError(f"malformed OpenID response: {exc}") from exc
        if not _has_utf8_form(message.fields):
            raise IncompleteAnswerError(
                "the OpenID response carries text with no UTF-8 form (a lone surrogate, as"
                " decoding with surrogateescape makes); pass the request's arguments as"
                " decoded UTF-8"
            )
        mode = message.mode
        if mode == "cancel":
            # The pending sign-in is kept: a cancel is unsigned, and a forged one (a link an
            # attacker gets the user to follow) must not abort a real login under way.
            raise CancelledError("the user cancelled the sign-in at their OpenID provider")
        if mode == "error":
            # Unsigned free text from anyone who can send the user here: quoted and cut.
            text = message.get("error")
            raise ProviderError(
                "the OpenID provider answered with an error: "
                + (repr(excerpt(text)) if text else "(it gave no openid.error text)"),
                contact=message.get("contact"),
                reference=message.get("reference"),
            )
        if mode == "setup_needed" and is_openid2:
            raise SetupNeededError(
                "the OP needs to interact with the user: retry without immediate mode",
                setup_url(message, state),
            )
        if mode == "id_res" and not is_openid2 and message.get("user_setup_url"):
            raise SetupNeededError(
                "the OP needs to interact with the user: send them to the setup URL",
                setup_url(message, state),
            )
        if mode != "id_res":
            raise IncompleteAnswerError(f"unexpected openid.mode {mode!r} in the response")
        profile = self._check_pins(message, state)
        # A session's state is a dict; the ABC check is for other mappings only.
        if not (state.__class__ is dict or isinstance(state, Mapping)) or not {
            "endpoint",
            "return_to",
        } <= state.keys():
            raise MissingSessionError(
                "no sign-in was started in this session (call begin() first; are cookies on?)"
            )
        try:
            return self._verify(message, current_url, state, stateless, profile)
        except ProtocolError as exc:
            # A signed field with no KV form (4.1.1) or a malformed extension namespace
            # (section 12): the answer is malformed, whichever check notices it.
            raise IncompleteAnswerError(f"malformed OpenID response: {exc}") from exc

    def _check_pins(self, message: Message, state: Any) -> ProviderProfile | None:
        """The OP endpoint must be one the site (``allowed_op_endpoints``) and this sign-in
        (``begin(op_endpoints=...)`` or its provider profile) accept, and the claimed
        identifier of the form the profile says its OP issues; return that profile.

        Checked before anything else: an assertion from an OP nobody pinned costs no
        discovery, no signature check and no request to the OP that sent it (which may
        answer ``is_valid:true`` to anything), and an identifier on another host is never
        fetched. An absent field is left to ``check_fields``.
        """
        session = state if isinstance(state, Mapping) else {}
        if message.is_openid2:
            op_endpoint = message.get("op_endpoint")
        else:  # 1.x names no OP: the one this session's request went to answers
            endpoint = session.get("endpoint")
            op_endpoint = endpoint.get("server_url") if isinstance(endpoint, Mapping) else None
        pinned = session.get("op_endpoints")
        for allowed, by in (
            (self.allowed_op_endpoints, "this site (allowed_op_endpoints)"),
            (pinned, "this sign-in (begin(op_endpoints=...) or its provider profile)"),
        ):
            if op_endpoint is not None and allowed and op_endpoint not in allowed:
                raise UntrustedProviderError(
                    f"the assertion comes from {op_endpoint[:200]!r}, an OP endpoint"
                    f" {by} does not accept: it is refused unchecked"
                )
        name = session.get("provider")
        if name is None:
            return None
        if not isinstance(name, str) or self.provider_profile is None:
            # Never skip a profile's checks: a verifier that cannot look one up refuses.
            raise ConfigurationError(
                f"this sign-in was started with provider {name!r} and no provider profile"
                " lookup was given to the verifier"
            )
        profile = self.provider_profile(name)
        claimed_id = message.get("claimed_id")
        if claimed_id is not None and profile.read_claimed_id(claimed_id) is None:
            raise UntrustedIdentifierError(
                f"the claimed identifier {claimed_id[:200]!r} is not of the form provider"
                f" {name!r} issues: it is refused without discovery"
            )
        return profile

    def _verify(
        self,
        message: Message,
        current_url: str,
        state: Mapping[str, Any],
        stateless: bool,
        profile: ProviderProfile | None,
    ) -> AuthResult:
        now = self.clock.now()
        check_fields(message)
        signed = signed_keys(message)
        if message["return_to"] != state["return_to"]:
            raise ReturnToMismatchError(
                "openid.return_to differs from the one this session's request sent: the"
                " response belongs to another sign-in (a second tab?); start again"
            )
        check_return_to(message["return_to"], current_url, message.bare_args)
        try:
            started = float(state.get("started", now))
            session_endpoint = Endpoint.from_dict(state["endpoint"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MissingSessionError(
                f"the sign-in state in this session is damaged ({exc!r}); start again"
            ) from None
        delay = self.max_login_delay
        if delay and now - started > delay:
            raise TookTooLongError(
                f"the sign-in took longer than {int(delay)} s at the OP; start again"
            )
        if session_endpoint.is_openid2 and not message.is_openid2:
            # Without openid.ns a 2.0 answer would be checked by the 1.x rules, against the
            # RP nonce instead of its own response_nonce: a replay in other clothes.
            raise IncompleteAnswerError(
                "an OpenID 1.x answer (no openid.ns) to an OpenID 2.0 request is refused"
            )
        if message.is_openid2:
            timestamp, salt = nonce.parse_nonce(message["response_nonce"])
            check_nonce_time(timestamp, now, self.nonce_skew)
            endpoint = self._verify_discovered_2(message, session_endpoint, state)
            claimed_id = message.get("claimed_id")
            identity = message.get("identity")
            server_url = message["op_endpoint"]
        else:
            # OpenID 1.x: our own nonce, carried (and signed) inside the return_to that was
            # compared with this session's above.
            timestamp, salt = nonce.split_rp_nonce(message["return_to"])
            check_nonce_time(timestamp, now, self.nonce_skew)
            endpoint = session_endpoint
            if message["identity"] != session_endpoint.op_local_id:
                raise DiscoveryMismatchError(
                    "openid.identity differs from the identifier this sign-in was started for"
                )
            claimed_id = state.get("claimed_id") or session_endpoint.claimed_id
            identity = message["identity"]
            server_url = session_endpoint.server_url
        verified_by = self._check_signature(
            message, server_url, signed, timestamp, salt, stateless
        )
        extensions = self._extensions(message, frozenset(signed), endpoint, state)
        if not self.store.use_nonce(server_url, timestamp, salt):
            raise ReplayAttackError(
                "this response was already used once: a replayed assertion is refused"
            )
        return AuthResult(
            claimed_id=claimed_id or "",
            identity=identity or "",
            op_endpoint=server_url,
            endpoint=endpoint,
            signed_fields={key: message.fields[key] for key in signed},
            extensions=extensions,
            verified_by=verified_by,
            provider=profile.name if profile is not None else None,
            provider_id=profile.read_claimed_id(claimed_id or "") if profile is not None else None,
        )

    def _verify_discovered_2(
        self, message: Message, session_endpoint: Endpoint, state: Mapping[str, Any]
    ) -> Endpoint:
        """11.2: the OP endpoint must be authoritative for the asserted identifier."""
        claimed = message.get("claimed_id")
        op_endpoint = message["op_endpoint"]
        if claimed is None:
            raise IncompleteAnswerError(
                "the assertion names no identifier; this relying party only signs users in"
            )
        identity = message["identity"]
        if claimed == IDENTIFIER_SELECT or identity == IDENTIFIER_SELECT:
            raise IncompleteAnswerError(
                "the OP answered with the identifier_select placeholder instead of choosing an"
                " identifier (10.1)"
            )
        defragged = claimed.partition("#")[0]
        if len(claimed) > MAX_IDENTIFIER_BYTES or len(claimed.encode()) > MAX_IDENTIFIER_BYTES:
            raise DiscoveryMismatchError(
                f"the asserted identifier is longer than {MAX_IDENTIFIER_BYTES} bytes"
                f" ({claimed[:60]!r}...); it is refused without discovery"
            )
        try:
            netloc = urlsplit(defragged).netloc
        except ValueError:  # e.g. "http://[x": a "[" that opens no IPv6 address
            raise DiscoveryMismatchError(
                f"the asserted identifier {claimed[:200]!r} is not a valid URL"
            ) from None
        if "@" in netloc:
            # RFC 9110 4.2.4, as for user input (urinorm): "https://bank.example@evil.example/"
            # exists to mislead, and in directed identity the OP alone chose it.
            raise DiscoveryMismatchError(
                f"the asserted identifier {claimed!r} has a user name before its host;"
                " such identifiers are refused"
            )
        expected = state.get("claimed_id")
        if (
            expected
            and expected.partition("#")[0] == defragged
            and _endpoint_matches(session_endpoint, op_endpoint, identity)
        ):
            return session_endpoint
        if is_xri(defragged):
            raise DiscoveryMismatchError("XRI claimed identifiers cannot be verified here")
        try:
            endpoints = self.discover(defragged)
        except OpenIDError as exc:
            raise DiscoveryMismatchError(
                f"the asserted identifier {claimed!r} could not be re-discovered: {exc}"
            ) from exc
        for endpoint in endpoints:
            if endpoint.is_op_identifier:
                continue
            if _endpoint_matches(endpoint, op_endpoint, identity) and (
                (endpoint.claimed_id or "").partition("#")[0] == defragged
            ):
                return endpoint
        raise DiscoveryMismatchError(
            f"{op_endpoint} is not an OpenID provider for {claimed!r} according to its discovered"
            " information (11.2): the assertion is refused"
        )

    def _check_signature(
        self,
        message: Message,
        server_url: str,
        signed: list[str],
        timestamp: float,
        salt: str,
        stateless: bool,
    ) -> str:
        """11.4: with our association when we have it, else by asking the OP."""
        handle = message["assoc_handle"]
        association = None if stateless else self.associations.for_assertion(server_url, handle)
        if association is not None:
            if not check_signature(association, message.fields, signed, message["sig"]):
                raise SignatureError(
                    "the signature of the assertion does not verify: it was tampered with"
                )
            invalidated = message.get("invalidate_handle")
            if invalidated:
                # 11.4.2.2 makes only the OP's check_authentication answer authoritative.
                log.info(
                    "OP asked to invalidate %s; confirmed only via check_authentication",
                    invalidated,
                )
            return "association"
        if self.store.nonce_seen(server_url, timestamp, salt):
            # Named before the OP is asked: a stateless OP would only answer "invalid".
            raise ReplayAttackError(
                "this response was already used once: a replayed assertion is refused"
            )
        request = check_authentication_request(message)
        try:
            response = self.post(server_url, request.to_post_args())
        except FetchError as exc:
            raise CheckAuthenticationError(
                f"check_authentication with {server_url} failed: {exc}"
            ) from exc
        if response.status != 200:
            # 5.1.2: only a 200 answer is a direct response; 400 is an error response, and
            # anything else is a server failure whatever its body says.
            raise CheckAuthenticationError(
                f"the OP at {server_url} answered check_authentication with"
                f" {response.describe()}: the signature is not confirmed"
            )
        valid, invalidate = parse_check_authentication(response.body)
        if not valid:
            raise SignatureError(
                f"the OP at {server_url} did not confirm the signature (check_authentication)"
            )
        if invalidate:
            self.associations.invalidated(server_url, invalidate)
        return "check_authentication"

    def _extensions(
        self,
        message: Message,
        signed: frozenset[str],
        endpoint: Endpoint,
        state: Mapping[str, Any],
    ) -> Mapping[str, Any]:
        requested = tuple(state.get("requested") or ())
        if not requested and message.is_openid2 and not message.extension_aliases():
            # Nothing asked for and no extension namespace declared: nothing to parse.
            return {}
        if not message.is_openid2:
            unsigned = [k for k in message.fields if k.startswith("ns.") and k not in signed]
            if unsigned:
                # OpenID 1.x has no namespace declarations: one added unsigned would re-point
                # a signed alias at another extension (signed_args checks this for 2.0 only).
                message = Message({k: v for k, v in message.fields.items() if k not in unsigned})
        return self.parse_extensions(message, signed, endpoint, requested)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(scheme)


def setup_url(message: Message, state: Any) -> str | None:
    """``user_setup_url`` only when it leads to the OP this session's request went to.

    The field is unsigned (OpenID 1.1 section 4.2.2.2): anyone can send a site a "setup
    needed" answer naming a phishing page for the site to redirect its user to.
    """
    url = message.get("user_setup_url")
    if not url or not isinstance(state, Mapping) or not isinstance(state.get("endpoint"), Mapping):
        return None
    try:
        origin = _origin(url)
        same = origin[0] in _SCHEMES and origin == _origin(str(state["endpoint"].get("server_url")))
    except ValueError:  # an invalid port
        same = False
    if not same:
        log.warning("ignoring a user_setup_url that does not lead to the session's OP")
        return None
    return url


def _has_utf8_form(fields: Mapping[str, str]) -> bool:
    """4.1.2: messages are UTF-8. A str holding a lone surrogate cannot be encoded, so no
    OP signed it, and it would break signature checks and fetches with a bare
    UnicodeEncodeError."""
    try:
        "".join([*fields, *fields.values()]).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _endpoint_matches(endpoint: Endpoint, op_endpoint: str, identity: str) -> bool:
    return (
        endpoint.server_url == op_endpoint
        and (endpoint.op_local_id or "") == identity
        and endpoint.supports(OPENID_2_0_TYPE)
    )
