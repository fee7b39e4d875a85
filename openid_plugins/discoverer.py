"""Discovery with a memory: results are kept in the shared store's cache for
``discovery_ttl`` seconds, so a returning user's login (and the re-discovery that verifying
an assertion may need, 11.2) costs no fetch.

The cache is an optimisation: a store that cannot read or write it (disk full, a
permission changed) costs a fetch and a warning, never the login."""

from __future__ import annotations

import logging

from .contracts import Store
from .errors import DiscoveryError, FetchError, IncorrectClaimError, StoreError
from .protocol import discovery, urinorm
from .protocol.discovery import DiscoveryResult, XRIResolver
from .protocol.endpoint import Endpoint
from .protocol.fetch import Fetcher

log = logging.getLogger("openid_plugins.discoverer")

#: The store cache's namespace for discovery results.
DISCOVERY_CACHE = "discovery"


class CachedDiscovery:
    """Normalizes user input (7.2) and discovers it (7.3), through the store's cache."""

    def __init__(
        self, store: Store, fetcher: Fetcher, *, ttl: float, resolve_xri: XRIResolver | None
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.ttl = ttl
        self.resolve_xri = resolve_xri

    def discover(self, user_input: str) -> DiscoveryResult:
        """What the user typed -> the identifier and its endpoints, best first."""
        text = user_input.strip() if isinstance(user_input, str) else ""
        if urinorm.is_xri(text):
            return discovery.discover_xri(urinorm.normalize_xri(text), self.resolve_xri)
        return self.discover_url(urinorm.normalize_identifier(text))

    def endpoints(self, identifier: str) -> list[Endpoint]:
        """The endpoints of a normalized URL identifier (for verification, 11.2)."""
        return self.discover_url(identifier).endpoints

    def discover_url(self, identifier: str) -> DiscoveryResult:
        try:
            cached = self.store.cache_get(DISCOVERY_CACHE, identifier)
        except StoreError as exc:
            log.warning("discovering %s without the cache, which failed: %s", identifier, exc)
            cached = None
        if cached is not None:
            try:
                return DiscoveryResult(
                    claimed_id=cached["claimed_id"],
                    endpoints=[Endpoint.from_dict(e) for e in cached["endpoints"]],
                )
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring a malformed cached discovery result for %s", identifier)
        try:
            result = discovery.discover(identifier, self.fetcher, resolve_xri=self.resolve_xri)
        except IncorrectClaimError:
            raise
        except (DiscoveryError, FetchError) as exc:
            raise IncorrectClaimError(f"discovery of {identifier} failed: {exc}") from exc
        if result.endpoints:
            value = {
                "claimed_id": result.claimed_id,
                "endpoints": [e.to_dict() for e in result.endpoints],
            }
            try:
                self.store.cache_set(DISCOVERY_CACHE, identifier, value, self.ttl)
            except StoreError as exc:
                log.warning("could not cache the discovery of %s (%s); going on", identifier, exc)
        return result
