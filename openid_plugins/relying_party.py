"""The facade a site uses: ``RelyingParty.begin()`` sends the user to their OP,
``RelyingParty.complete()`` verifies what comes back.

This module wires: it turns settings into a plugin manager, clock, store, queue, HTTP
fetcher, associator, cached discovery and assertion verifier, and hands each the plain
values and callables it needs. The rules live elsewhere: section 9 in
``protocol.request``, section 11 in ``protocol.verify``, associations in ``associator``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from functools import cached_property, lru_cache
from typing import Any
from urllib.parse import urlsplit

import pluggy

from . import config
from .associator import Associator
from .contracts import ProviderProfile, Queue, Store, op_endpoint_urls
from .discoverer import DISCOVERY_CACHE, CachedDiscovery
from .errors import ConfigurationError, IncorrectClaimError, UntrustedProviderError
from .extensions.base import ExtensionArgs, ExtensionRequest, ExtensionResponse
from .manager import check_pending, make_plugin_manager, provider_profiles, register
from .protocol import discovery, nonce
from .protocol.endpoint import Endpoint
from .protocol.fetch import Fetcher
from .protocol.limits import FetchSettings
from .protocol.message import Message
from .protocol.realm import Realm
from .protocol.request import (
    IDENTIFIER_SELECT,
    MAX_REDIRECT_URL,
    AuthRequest,
    check_return_to_url,
    checkid_message,
)
from .protocol.verify import MAX_IDENTIFIER_BYTES, AssertionVerifier, AuthResult

__all__ = [
    "DISCOVERY_CACHE",
    "IDENTIFIER_SELECT",
    "MAX_IDENTIFIER_BYTES",
    "MAX_REDIRECT_URL",
    "SESSION_KEY",
    "AuthRequest",
    "AuthResult",
    "RelyingParty",
]

log = logging.getLogger("openid_plugins.relying_party")

#: Where begin() keeps its state in the site's session (a JSON-serializable dict).
SESSION_KEY = "openid_plugins"
_SCHEMES = ("http", "https")


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
        if plugin_manager is not None and plugins:
            for plugin in plugins:
                register(self.pm, plugin)
            check_pending(self.pm)
        self.clock = config.get_clock(self.pm)
        self._options = config.make_options(self.settings, self.clock)
        self.store = (
            store
            if isinstance(store, Store)
            else config.open_store(self.pm, self.settings.store_url(), self._options)
        )
        self._queue: Queue | None = queue if isinstance(queue, Queue) else None
        if not self.settings.fetch.block_private_addresses:
            log.warning(
                "the SSRF guard is off (fetch_block_private_addresses=False): anyone who can"
                " type an identifier can make this site fetch loopback and intranet URLs;"
                " keep it off only for development against a local OP"
            )
        self.fetcher = Fetcher(self.settings.fetch, self._check_fetch_url)
        self.associator = Associator(
            self.store,
            self.fetcher,
            self.clock,
            self.settings,
            queue=self._get_queue,
            events=self._association_event,
        )
        self.discovery = CachedDiscovery(
            self.store,
            self.fetcher,
            ttl=self.settings.discovery_ttl,
            resolve_xri=self._resolve_xri,
        )
        self.verifier = AssertionVerifier(
            store=self.store,
            associations=self.associator,
            discover=self.discovery.endpoints,
            post=self.fetcher.post,
            clock=self.clock,
            nonce_skew=self.settings.nonce_skew,
            max_login_delay=self.settings.max_login_delay,
            parse_extensions=self._parse_extensions,
            allowed_op_endpoints=self.settings.allowed_op_endpoints,
            provider_profile=self.provider,
        )
        self._thread = None
        if self.settings.fetcher == "thread" and self.settings.association == "background":
            from .fetcher import BackgroundFetcher, FetcherThread

            self._thread = FetcherThread(
                BackgroundFetcher(self.associator, self._get_queue(), concurrency=4)
            )
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

    # -- the hooks, as the plain callables the protocol layer takes ------------------------

    def _check_fetch_url(self, url: str, addresses: list[str], settings: FetchSettings) -> None:
        self.pm.hook.openid_check_fetch_url(url=url, addresses=addresses, settings=settings)

    def _resolve_xri(self, xri: str) -> list[Endpoint] | None:
        found: list[Endpoint] | None = self.pm.hook.openid_resolve_xri(
            xri=xri, settings=self.settings.fetch
        )
        return found

    def _association_event(self, event: str, server_url: str, details: Mapping[str, Any]) -> None:
        self.pm.hook.openid_association_event(event=event, server_url=server_url, details=details)

    def _parse_extensions(
        self,
        message: Message,
        signed: frozenset[str],
        endpoint: Endpoint,
        requested: tuple[Any, ...],
    ) -> dict[str, Any]:
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

    # -- provider profiles -----------------------------------------------------------------

    @cached_property
    def providers(self) -> Mapping[str, ProviderProfile]:
        """Every provider profile the plugins offer, by name (``openid_providers`` hook).

        When two plugins offer one name, the first pluggy calls (the later registered) wins.
        Read once; ``PluginError`` when a hook returns something else than profiles.
        """
        return provider_profiles(self.pm)

    def provider(self, name: str) -> ProviderProfile:
        """The profile ``begin(provider=name)`` uses; ``ConfigurationError`` when no plugin
        offers one by that name."""
        profile = self.providers.get(name)
        if profile is None:
            offered = ", ".join(sorted(self.providers)) or "none"
            raise ConfigurationError(
                f"no plugin offers a provider profile named {name!r} (offered: {offered})"
            )
        return profile

    # -- begin -----------------------------------------------------------------------------

    def discover(self, user_input: str) -> discovery.DiscoveryResult:
        """Normalize (7.2) and discover (7.3), reusing a cached result when there is one."""
        with self.fetcher.scope(self.settings.fetch.user_timeout):
            return self.discovery.discover(user_input)

    def begin(
        self,
        user_input: str | None = None,
        return_to: str | None = None,
        realm: str | None = None,
        *,
        session: MutableMapping[str, Any],
        immediate: bool = False,
        extensions: Iterable[object] = (),
        association: str | None = None,
        provider: str | None = None,
        op_endpoints: Iterable[str] | None = None,
    ) -> AuthRequest:
        """Discover the user's OP and build the authentication request (section 9).

        ``association`` overrides the configured association mode for this sign-in
        (``"stateless"`` to use no association, for an OP whose associations misbehave).
        ``provider`` names a provider profile (``"steam"``, ``"ubuntu_one"``, or one a plugin
        adds): without ``user_input`` the sign-in starts with directed identity at its OP
        identifier, and its endpoints, association mode and claimed-identifier form apply.
        ``op_endpoints`` pins this sign-in to those OP endpoints (with a profile: to those
        of its endpoints); ``complete()`` then refuses any other OP, as it always refuses
        one missing from the ``allowed_op_endpoints`` setting.

        Raises ``IncorrectURIError`` for input that cannot be normalized,
        ``IncorrectClaimError`` when discovery finds no usable OP and
        ``UntrustedProviderError`` when it finds only OPs that are not accepted.
        """
        if return_to is None:
            raise ConfigurationError("begin() needs return_to, where the OP sends the user back")
        profile = self.provider(provider) if provider is not None else None
        pins = _sign_in_pins(profile, op_endpoints)
        if profile is not None:
            if immediate and not profile.immediate:
                raise ConfigurationError(
                    f"provider {profile.name!r} answers every immediate request with"
                    " setup_needed; call begin() without immediate=True"
                )
            user_input = profile.op_identifier if user_input is None else user_input
            association = profile.association if association is None else association
        if user_input is None:
            raise ConfigurationError("begin() needs the user's identifier or provider=")
        if association is not None and association not in config.ASSOCIATION_MODES:
            raise ConfigurationError(
                f"association={association!r} is not one of {', '.join(config.ASSOCIATION_MODES)}"
            )
        check_return_to_url(return_to)
        if realm is not None and not _parse_realm(realm).matches(return_to):
            raise ConfigurationError(
                f"return_to {return_to!r} is not within realm {realm!r} (9.2.1)"
            )
        # A person is waiting: every fetch shares one budget, and no connection to the OP
        # outlives the call (the user's browser goes there next; see protocol.fetch).
        with self.fetcher.scope(self.settings.fetch.user_timeout):
            result = self.discovery.discover(user_input)
            endpoints = [e for e in result.endpoints if urlsplit(e.server_url).scheme in _SCHEMES]
            if not endpoints:
                raise IncorrectClaimError(
                    f"no usable OpenID endpoint was found for {user_input!r}"
                )
            accepted = [e for e in endpoints if self._accepts(e.server_url, pins)]
            if not accepted:
                raise UntrustedProviderError(
                    f"{user_input!r} is served by {', '.join(e.server_url for e in endpoints)},"
                    " not by an OP endpoint this site or sign-in accepts"
                )
            endpoint = accepted[0]
            assoc = self.associator.association_for_login(endpoint, association)
        extensions = tuple(extensions)
        now = self.clock.now()
        state: dict[str, Any] = {
            "v": 1,
            "endpoint": endpoint.to_dict(),
            "claimed_id": None if endpoint.is_op_identifier else result.claimed_id,
            "started": now,
            "requested": [
                to_session()
                for ext in extensions
                if callable(to_session := getattr(ext, "to_session", None))
            ],
        }
        if association == "stateless":
            state["stateless"] = True
        if pins is not None:
            state["op_endpoints"] = list(pins)
        if profile is not None:
            state["provider"] = profile.name
        # Our own nonce in return_to, which the OP signs, binds the answer to this session:
        # complete() refuses an answer from another sign-in, such as an attacker's own
        # delivered to a victim's browser (login CSRF). OpenID 1.x, which has no
        # response_nonce, also uses it against replays.
        state["return_to"] = bound_return_to = nonce.add_rp_nonce(return_to, now)
        message = checkid_message(
            endpoint,
            result.claimed_id,
            bound_return_to,
            realm or return_to,
            immediate=immediate,
            assoc_handle=assoc.handle if assoc is not None else None,
        )
        self._add_extensions(
            message, ExtensionRequest(extensions=extensions, endpoint=endpoint), profile
        )
        session[SESSION_KEY] = state
        return AuthRequest(message=message, endpoint=endpoint, association=assoc)

    def _accepts(self, server_url: str, pins: tuple[str, ...] | None) -> bool:
        allowed = self.settings.allowed_op_endpoints
        return (not allowed or server_url in allowed) and (pins is None or server_url in pins)

    def _add_extensions(
        self, message: Message, request: ExtensionRequest, profile: ProviderProfile | None
    ) -> None:
        for contribution in self.pm.hook.openid_extension_request_args(request=request):
            items = [contribution] if isinstance(contribution, ExtensionArgs) else contribution
            for args in items or ():
                if profile is not None and not profile.speaks(args.namespace):
                    # Sent all the same: an OP ignores what it does not know, and a profile
                    # that undersells its OP must not silently cost a site its attributes.
                    log.info(
                        "asking %s for %s, which it is not known to answer",
                        profile.name,
                        args.namespace,
                    )
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
        state = session.get(SESSION_KEY)
        stateless = self.settings.association == "stateless" or (
            (state.__class__ is dict or isinstance(state, Mapping))
            and state.get("stateless") is True
        )
        with self.fetcher.scope(self.settings.fetch.user_timeout):
            result = self.verifier.verify(query, current_url, state, stateless=stateless)
        session.pop(SESSION_KEY, None)
        return result


def _sign_in_pins(
    profile: ProviderProfile | None, op_endpoints: Iterable[str] | None
) -> tuple[str, ...] | None:
    """The OP endpoints one sign-in is pinned to (None: not pinned beyond the settings)."""
    pins = None if op_endpoints is None else op_endpoint_urls(op_endpoints, "op_endpoints")
    if profile is None:
        return pins
    if pins is None:
        return profile.op_endpoints
    common = tuple(url for url in pins if url in profile.op_endpoints)
    if not common:
        raise ConfigurationError(
            f"op_endpoints {list(pins)} names none of provider {profile.name!r}'s endpoints"
            f" ({', '.join(profile.op_endpoints)})"
        )
    return common


@lru_cache(maxsize=64)
def _parse_realm(realm: str) -> Realm:
    """A site has one or a few realms; parsing one on every begin() is wasted work."""
    return Realm.parse(realm)
