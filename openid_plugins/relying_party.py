"""The facade a site uses: ``RelyingParty.begin()`` sends the user to their OP,
``RelyingParty.complete()`` verifies what comes back (OpenID 2.0 sections 9 and 11)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any
from urllib.parse import urlsplit

import pluggy

from . import config
from .associator import Associator
from .contracts import Association, Queue, Store
from .errors import (
    CancelledError,
    ConfigurationError,
    DiscoveryError,
    DiscoveryMismatchError,
    FetchError,
    IncompleteAnswerError,
    IncorrectClaimError,
    MissingSessionError,
    OpenIDError,
    ProtocolError,
    ProviderError,
    ReplayAttackError,
    ReturnToMismatchError,
    SetupNeededError,
    SignatureError,
    TookTooLongError,
)
from .extensions.base import ExtensionArgs, ExtensionRequest, ExtensionResponse
from .manager import make_plugin_manager
from .protocol import discovery, nonce, urinorm, verify
from .protocol.association import check_signature
from .protocol.endpoint import OPENID_2_0_TYPE, Endpoint
from .protocol.fetch import Fetcher
from .protocol.message import OPENID2_NS, Message
from .protocol.realm import Realm

log = logging.getLogger("openid_plugins.relying_party")

#: Where begin() keeps its state in the site's session (a JSON-serializable dict).
SESSION_KEY = "openid_plugins"
#: Indirect messages longer than this go by form POST (OpenID 2.0 section 5.2.1).
MAX_REDIRECT_URL = 2047
#: Longer asserted identifiers are refused before re-discovery: no user types one, and
#: fetching it would let anyone make the site send megabyte requests wherever they like.
MAX_IDENTIFIER_BYTES = 2047
DISCOVERY_CACHE = "discovery"
#: 9.1: what an RP sends as claimed_id and identity to let the OP choose the identifier.
IDENTIFIER_SELECT = "http://specs.openid.net/auth/2.0/identifier_select"
#: How long and how many associations complete() keeps in process (see _association).
ASSOCIATION_CACHE_SECONDS = 60.0
ASSOCIATION_CACHE_SIZE = 1024


@dataclass(frozen=True)
class AuthRequest:
    """Where to send the user: a redirect, or a self-submitting form for long messages."""

    message: Message
    endpoint: Endpoint
    association: Association | None

    @cached_property
    def redirect_url(self) -> str:
        return self.message.to_url(self.endpoint.server_url)

    @property
    def needs_form(self) -> bool:
        return len(self.redirect_url) > MAX_REDIRECT_URL

    @property
    def form_html(self) -> str:
        return self.message.to_form_html(self.endpoint.server_url)


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

    @property
    def sreg(self) -> Mapping[str, str]:
        return self.extensions.get("sreg", {})

    @property
    def ax(self) -> Any:
        return self.extensions.get("ax", {})

    @property
    def pape(self) -> Any:
        return self.extensions.get("pape")


class RelyingParty:
    """An OpenID relying party configured from keyword arguments, a mapping or the environment.

    One instance per process is the intended use: it holds the pooled HTTP session, the
    plugin manager and the open store.
    """

    def __init__(
        self,
        store: str | Store | None = None,
        queue: str | Queue | None = None,
        *,
        settings: config.Settings | None = None,
        plugins: Iterable[object] = (),
        plugin_manager: pluggy.PluginManager | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(store, str):
            overrides["store"] = store
        if isinstance(queue, str):
            overrides["queue"] = queue
        self.settings = (settings or config.Settings()).updated(**overrides)
        self.pm = plugin_manager or make_plugin_manager(plugins)
        if plugin_manager is not None:
            for plugin in plugins:
                self.pm.register(plugin)
        self.clock = config.get_clock(self.pm)
        options = config.make_options(self.settings, self.clock)
        self.store = (
            store
            if isinstance(store, Store)
            else config.open_store(self.pm, self.settings.store_url(), options)
        )
        self._queue: Queue | None = queue if isinstance(queue, Queue) else None
        self._options = options
        self.fetcher = Fetcher(self.settings.fetch, self.pm)
        self.associator = Associator(
            self.store, self.fetcher, self.clock, self.settings, self.pm, queue=self._get_queue
        )
        self._associations: dict[tuple[str, str], tuple[Association, float]] = {}
        self._thread = None
        if self.settings.fetcher == "thread" and self.settings.association == "background":
            from .fetcher import FetcherThread

            self._thread = FetcherThread.for_relying_party(self)
            self._thread.start()

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], **kwargs: Any) -> RelyingParty:
        return cls(settings=config.Settings.from_mapping(mapping), **kwargs)

    @classmethod
    def from_env(cls, **kwargs: Any) -> RelyingParty:
        return cls(settings=config.Settings.from_env(), **kwargs)

    @property
    def queue(self) -> Queue:
        return self._get_queue()

    def _get_queue(self) -> Queue:
        if self._queue is None:
            self._queue = config.open_queue(self.pm, self.settings.queue_url(), self._options)
        return self._queue

    def close(self) -> None:
        """Stop the fetcher thread and release the store, queue and HTTP pool."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        self.fetcher.close()
        self.store.close()
        if self._queue is not None:
            self._queue.close()

    def __enter__(self) -> RelyingParty:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- discovery -------------------------------------------------------------------------

    def discover(self, user_input: str) -> discovery.DiscoveryResult:
        """Normalize (7.2) and discover (7.3), reusing a cached result when there is one."""
        text = user_input.strip() if isinstance(user_input, str) else ""
        if urinorm.is_xri(text):
            return discovery.discover_xri(urinorm.normalize_xri(text), self.pm, self.settings.fetch)
        identifier = urinorm.normalize_identifier(text)
        return self._discover_url(identifier)

    def _discover_url(self, identifier: str) -> discovery.DiscoveryResult:
        cached = self.store.cache_get(DISCOVERY_CACHE, identifier)
        if cached is not None:
            try:
                return discovery.DiscoveryResult(
                    claimed_id=cached["claimed_id"],
                    endpoints=[Endpoint.from_dict(e) for e in cached["endpoints"]],
                )
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring a malformed cached discovery result for %s", identifier)
        try:
            result = discovery.discover(identifier, self.fetcher, pm=self.pm)
        except IncorrectClaimError:
            raise
        except (DiscoveryError, FetchError) as exc:
            raise IncorrectClaimError(f"discovery of {identifier} failed: {exc}") from exc
        if result.endpoints:
            self.store.cache_set(
                DISCOVERY_CACHE,
                identifier,
                {
                    "claimed_id": result.claimed_id,
                    "endpoints": [e.to_dict() for e in result.endpoints],
                },
                self.settings.discovery_ttl,
            )
        return result

    # -- begin -----------------------------------------------------------------------------

    def begin(
        self,
        user_input: str,
        return_to: str,
        realm: str | None = None,
        *,
        session: MutableMapping[str, Any],
        immediate: bool = False,
        extensions: Iterable[object] = (),
    ) -> AuthRequest:
        """Discover the user's OP and build the authentication request (section 9).

        Raises ``IncorrectURIError`` for input that cannot be normalized and
        ``IncorrectClaimError`` when discovery finds no usable OP.
        """
        if realm is not None and not _parse_realm(realm).matches(return_to):
            raise ConfigurationError(
                f"return_to {return_to!r} is not within realm {realm!r} (9.2.1)"
            )
        result = self.discover(user_input)
        endpoints = [e for e in result.endpoints if urlsplit(e.server_url).scheme in _SCHEMES]
        if not endpoints:
            raise IncorrectClaimError(f"no usable OpenID endpoint was found for {user_input!r}")
        endpoint = endpoints[0]
        association = self.associator.association_for_login(endpoint)
        extensions = tuple(extensions)
        now = self.clock.now()
        state: dict[str, Any] = {
            "v": 1,
            "endpoint": endpoint.to_dict(),
            "claimed_id": None if endpoint.is_op_identifier else result.claimed_id,
            "started": now,
            "requested": [
                ext.to_session() for ext in extensions if callable(getattr(ext, "to_session", None))
            ],
        }
        # Our own nonce in return_to, which the OP signs, binds the answer to this session:
        # complete() refuses an answer from another sign-in, such as an attacker's own
        # delivered to a victim's browser (login CSRF). OpenID 1.x, which has no
        # response_nonce, also uses it against replays.
        state["return_to"] = bound_return_to = nonce.add_rp_nonce(return_to, now)
        message = self._checkid_message(
            endpoint, result.claimed_id, bound_return_to, realm or return_to, immediate, association
        )
        self._add_extensions(message, ExtensionRequest(extensions=extensions, endpoint=endpoint))
        session[SESSION_KEY] = state
        return AuthRequest(message=message, endpoint=endpoint, association=association)

    def _checkid_message(
        self,
        endpoint: Endpoint,
        claimed_id: str,
        return_to: str,
        realm: str | None,
        immediate: bool,
        association: Association | None,
    ) -> Message:
        fields: dict[str, str] = {
            "mode": "checkid_immediate" if immediate else "checkid_setup",
            "return_to": return_to,
        }
        if endpoint.is_openid2:
            fields["ns"] = OPENID2_NS
            fields["realm"] = realm or return_to
            if endpoint.is_op_identifier:
                # 9.1: let the OP choose the identifier.
                fields["claimed_id"] = fields["identity"] = IDENTIFIER_SELECT
            else:
                fields["claimed_id"] = claimed_id
                fields["identity"] = endpoint.op_local_id or claimed_id
        else:
            fields["trust_root"] = realm or return_to
            fields["identity"] = endpoint.op_local_id or claimed_id
        if association is not None:
            fields["assoc_handle"] = association.handle
        return Message(fields)

    def _add_extensions(self, message: Message, request: ExtensionRequest) -> None:
        for contribution in self.pm.hook.openid_extension_request_args(request=request):
            items = [contribution] if isinstance(contribution, ExtensionArgs) else contribution
            for args in items or ():
                message.add_extension(args.namespace, args.args, args.alias)

    # -- complete --------------------------------------------------------------------------

    def complete(
        self,
        query: Mapping[str, Any],
        current_url: str,
        *,
        session: MutableMapping[str, Any],
    ) -> AuthResult:
        """Verify the OP's response (section 11); every failure is an ``OpenIDError``.

        ``query`` holds the request's arguments (GET or POST); ``current_url`` is the full URL
        the response arrived at. Nothing is stored unless the assertion is valid.
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
            raise ProviderError(
                f"the OpenID provider answered with an error: {message.get('error', '(none)')}",
                contact=message.get("contact"),
                reference=message.get("reference"),
            )
        if mode == "setup_needed" and is_openid2:
            raise SetupNeededError(
                "the OP needs to interact with the user: retry without immediate mode",
                _setup_url(message, session),
            )
        if mode == "id_res" and not is_openid2 and message.get("user_setup_url"):
            raise SetupNeededError(
                "the OP needs to interact with the user: send them to the setup URL",
                _setup_url(message, session),
            )
        if mode != "id_res":
            raise IncompleteAnswerError(f"unexpected openid.mode {mode!r} in the response")
        state = session.get(SESSION_KEY)
        if not isinstance(state, Mapping) or not {"endpoint", "return_to"} <= state.keys():
            raise MissingSessionError(
                "no sign-in was started in this session (call begin() first; are cookies on?)"
            )
        try:
            result = self._verify(message, current_url, state)
        except ProtocolError as exc:
            # A signed field with no KV form (4.1.1) or a malformed extension namespace
            # (section 12): the answer is malformed, whichever check notices it.
            raise IncompleteAnswerError(f"malformed OpenID response: {exc}") from exc
        session.pop(SESSION_KEY, None)
        return result

    def _verify(self, message: Message, current_url: str, state: Mapping[str, Any]) -> AuthResult:
        now = self.clock.now()
        verify.check_fields(message)
        signed = verify.signed_keys(message)
        if message["return_to"] != state["return_to"]:
            raise ReturnToMismatchError(
                "openid.return_to differs from the one this session's request sent: the"
                " response belongs to another sign-in (a second tab?); start again"
            )
        verify.check_return_to(message["return_to"], current_url)
        delay = self.settings.max_login_delay
        if delay and now - float(state.get("started", now)) > delay:
            raise TookTooLongError(
                f"the sign-in took longer than {int(delay)} s at the OP; start again"
            )
        session_endpoint = Endpoint.from_dict(state["endpoint"])
        if session_endpoint.is_openid2 and not message.is_openid2:
            # Without openid.ns a 2.0 answer would be checked by the 1.x rules, against the
            # RP nonce instead of its own response_nonce: a replay in other clothes.
            raise IncompleteAnswerError(
                "an OpenID 1.x answer (no openid.ns) to an OpenID 2.0 request is refused"
            )
        if message.is_openid2:
            timestamp, salt = nonce.parse_nonce(message["response_nonce"])
            verify.check_nonce_time(timestamp, now, self.settings.nonce_skew)
            endpoint = self._verify_discovered_2(message, session_endpoint, state)
            claimed_id = message.get("claimed_id")
            identity = message.get("identity")
            server_url = message["op_endpoint"]
        else:
            timestamp, salt = self._openid1_nonce(message, now)
            endpoint = session_endpoint
            if message["identity"] != session_endpoint.op_local_id:
                raise DiscoveryMismatchError(
                    "openid.identity differs from the identifier this sign-in was started for"
                )
            claimed_id = state.get("claimed_id") or session_endpoint.claimed_id
            identity = message["identity"]
            server_url = session_endpoint.server_url
        verified_by = self._check_signature(message, server_url, signed, timestamp, salt)
        signed_set = frozenset(signed)
        extensions = self._parse_extensions(message, signed_set, endpoint, state)
        if not self.store.use_nonce(server_url, timestamp, salt):
            raise ReplayAttackError(
                "this response was already used once: a replayed assertion is refused"
            )
        return AuthResult(
            claimed_id=claimed_id or "",
            identity=identity or "",
            op_endpoint=server_url,
            endpoint=endpoint,
            signed_fields={key: message[key] for key in signed},
            extensions=extensions,
            verified_by=verified_by,
        )

    def _openid1_nonce(self, message: Message, now: float) -> tuple[float, str]:
        """OpenID 1.x: our own nonce, carried (and signed) inside the return_to that _verify
        has already compared with this session's."""
        timestamp, salt = nonce.split_rp_nonce(message["return_to"])
        verify.check_nonce_time(timestamp, now, self.settings.nonce_skew)
        return timestamp, salt

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
        if "@" in urlsplit(defragged).netloc:
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
        if urinorm.is_xri(defragged):
            raise DiscoveryMismatchError("XRI claimed identifiers cannot be verified here")
        try:
            result = self._discover_url(defragged)
        except OpenIDError as exc:
            raise DiscoveryMismatchError(
                f"the asserted identifier {claimed!r} could not be re-discovered: {exc}"
            ) from exc
        for endpoint in result.endpoints:
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
        self, message: Message, server_url: str, signed: list[str], timestamp: float, salt: str
    ) -> str:
        """11.4: with our association when we have it, else by asking the OP."""
        handle = message["assoc_handle"]
        association = None
        if self.settings.association != "stateless":
            association = self._association(server_url, handle)
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
        request = verify.check_authentication_request(message)
        try:
            response = self.fetcher.post(server_url, request.to_post_args())
        except FetchError as exc:
            raise SignatureError(f"check_authentication with {server_url} failed: {exc}") from exc
        if response.status != 200:
            # 5.1.2: only a 200 answer is a direct response; 400 is an error response, and
            # anything else is a server failure whatever its body says.
            raise SignatureError(
                f"the OP at {server_url} answered check_authentication with HTTP"
                f" {response.status}: the signature is not confirmed"
            )
        valid, invalidate = verify.parse_check_authentication(response.body)
        if not valid:
            raise SignatureError(
                f"the OP at {server_url} did not confirm the signature (check_authentication)"
            )
        if invalidate:
            self._associations.pop((server_url, invalidate), None)
            self.store.remove_association(server_url, invalidate)
            self.associator.handle_invalidated(server_url)
        return "check_authentication"

    def _association(self, server_url: str, handle: str) -> Association | None:
        """The association an assertion names, from a small per-process cache.

        An association never changes once made, so a copy is safe to reuse for a short while;
        it saves a store round trip per login. Removal by another process is seen within
        ``ASSOCIATION_CACHE_SECONDS`` (the secret stays valid meanwhile; only the OP's own
        confirmation invalidates it, and the OP signs nothing new with a handle it dropped).
        """
        now = self.clock.now()
        key = (server_url, handle)
        cached = self._associations.get(key)
        if cached is not None and cached[1] > now:
            return cached[0] if cached[0].expires > now else None
        association = self.store.get_association(server_url, handle)
        if association is not None:
            if len(self._associations) >= ASSOCIATION_CACHE_SIZE:
                self._associations.clear()
            self._associations[key] = (association, now + ASSOCIATION_CACHE_SECONDS)
        return association

    def _parse_extensions(
        self,
        message: Message,
        signed: frozenset[str],
        endpoint: Endpoint,
        state: Mapping[str, Any],
    ) -> dict[str, Any]:
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
        response = ExtensionResponse(
            message=message,
            signed=signed,
            endpoint=endpoint,
            requested=requested,
            clock=self.clock,
        )
        merged: dict[str, Any] = {}
        for part in reversed(self.pm.hook.openid_extension_response(response=response)):
            if part:
                merged.update(part)
        return merged


_SCHEMES = ("http", "https")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(scheme)


def _setup_url(message: Message, session: Mapping[str, Any]) -> str | None:
    """``user_setup_url`` only when it leads to the OP this session's request went to.

    The field is unsigned (OpenID 1.1 section 4.2.2.2): anyone can send a site a "setup
    needed" answer naming a phishing page for the site to redirect its user to.
    """
    url = message.get("user_setup_url")
    state = session.get(SESSION_KEY)
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


@lru_cache(maxsize=64)
def _parse_realm(realm: str) -> Realm:
    """A site has one or a few realms; parsing one on every begin() is wasted work."""
    return Realm.parse(realm)


def _endpoint_matches(endpoint: Endpoint, op_endpoint: str, identity: str) -> bool:
    return (
        endpoint.server_url == op_endpoint
        and (endpoint.op_local_id or "") == identity
        and endpoint.supports(OPENID_2_0_TYPE)
    )
