"""Making and keeping associations with OPs (OpenID 2.0 section 8) for every association
mode: ``inline`` negotiates during ``begin()``, ``background`` only queues the endpoint for the
fetcher, ``stateless`` never associates.

It is the one owner of an association's life: making it, the per-process copy logins
verify with, renewal before expiry, and invalidation when the OP confirms a handle is gone.
It also remembers what a login must not pay for again: an OP that refuses associations (for
``refusal_ttl``; python3-openid retries on every login) and an OP that failed recently
(exponential, capped back-off), both kept in the shared store so every process knows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .config import Settings
from .contracts import Association, Clock, Queue, Store
from .errors import AssociationError, AssociationRefusedError, FetchError, ProtocolError
from .protocol.association import negotiate
from .protocol.endpoint import Endpoint
from .protocol.fetch import Fetcher
from .protocol.message import Message

log = logging.getLogger("openid_plugins.associator")

REFUSED = "assoc-refused"
BACKOFF = "assoc-backoff"
#: Whether a queued endpoint speaks OpenID 2.0, so the fetcher sends the right request.
VERSION = "op-version"
BACKOFF_FIRST = 30.0
BACKOFF_MAX = 3600.0
#: Do not queue the same endpoint again from this process within this many seconds.
REQUEUE_AFTER = 60.0
#: How long and how many associations ``for_assertion`` keeps in process.
ASSOCIATION_CACHE_SECONDS = 60.0
ASSOCIATION_CACHE_SIZE = 1024

#: Observes the association lifecycle: (event, server_url, details); the relying party
#: passes the ``openid_association_event`` hook.
EventSink = Callable[[str, str, Mapping[str, Any]], None]


class Associator:
    """Shared by ``RelyingParty`` (inline and background modes) and the fetcher."""

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        clock: Clock,
        settings: Settings,
        *,
        queue: Callable[[], Queue],
        events: EventSink | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.clock = clock
        self.settings = settings
        self._events = events
        self._queue = queue
        #: Renew an association this long before it expires (capped at a quarter of its
        #: lifetime), well before ``association_margin`` makes logins stop using it.
        self.renew_before = 3600.0
        self._lock = threading.Lock()
        self._queued: dict[str, float] = {}
        self._expiries: dict[str, float] = {}
        self._cache: dict[tuple[str, str], tuple[Association, float]] = {}

    # -- what a login uses -----------------------------------------------------------------

    def usable(self, server_url: str) -> Association | None:
        """The newest association that still has more than ``association_margin`` left."""
        association = self.store.get_association(server_url)
        if association is None:
            return None
        if association.remaining(self.clock.now()) <= self.settings.association_margin:
            return None
        return association

    def association_for_login(
        self, endpoint: Endpoint, mode: str | None = None
    ) -> Association | None:
        """The association ``begin()`` should use, per ``mode`` (default: the configured one)."""
        mode = mode or self.settings.association
        if mode == "stateless":
            return None
        association = self.usable(endpoint.server_url)
        if mode == "inline":
            if association is not None or not self._may_try(endpoint.server_url):
                return association
            try:
                return self.associate(endpoint.server_url, openid2=endpoint.is_openid2)
            except AssociationRefusedError:
                return None  # an ordinary case, reported once by associate()
            except AssociationError as exc:
                log.warning("continuing statelessly with %s: %s", endpoint.server_url, exc)
                return None
        if association is None or self._renewal_due(association):
            self.request_background(endpoint.server_url, openid2=endpoint.is_openid2)
        return association

    def for_assertion(self, server_url: str, handle: str) -> Association | None:
        """The association an assertion names, from a small per-process cache.

        An association never changes once made, so a copy is safe to reuse for a short while;
        it saves a store round trip per login. Removal by another process is seen within
        ``ASSOCIATION_CACHE_SECONDS`` (the secret stays valid meanwhile; only the OP's own
        confirmation invalidates it, and the OP signs nothing new with a handle it dropped).
        """
        now = self.clock.now()
        key = (server_url, handle)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0] if cached[0].expires > now else None
        association = self.store.get_association(server_url, handle)
        if association is not None:
            with self._lock:
                if len(self._cache) >= ASSOCIATION_CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = (association, now + ASSOCIATION_CACHE_SECONDS)
        return association

    def invalidated(self, server_url: str, handle: str) -> None:
        """The OP confirmed (11.4.2.2) that ``handle`` is gone: forget it everywhere and,
        in background mode, ask for a new association."""
        with self._lock:
            self._cache.pop((server_url, handle), None)
            self._queued.pop(server_url, None)
        self.store.remove_association(server_url, handle)
        if self.settings.association == "background":
            # The recorded protocol version (if any) stays in the cache for the fetcher.
            self.request_background(server_url)

    def _renewal_due(self, association: Association) -> bool:
        window = min(self.renew_before, association.lifetime / 4)
        return association.remaining(self.clock.now()) <= window

    def _may_try(self, server_url: str) -> bool:
        """False while the OP is known to refuse associations or is backing off."""
        if self.store.cache_get(REFUSED, server_url) is not None:
            return False
        backoff = self.store.cache_get(BACKOFF, server_url)
        return not (backoff and float(backoff.get("until", 0)) > self.clock.now())

    def needs_association(self, server_url: str) -> bool:
        """Whether the fetcher should associate with ``server_url`` now."""
        association = self.usable(server_url)
        if association is not None and not self._renewal_due(association):
            return False
        return self._may_try(server_url)

    # -- background requests ---------------------------------------------------------------

    def request_background(self, server_url: str, *, openid2: bool = True) -> None:
        """Queue the endpoint for the fetcher (seed 000), at most once a minute per process.

        A 1.x-only OP is recorded, so the fetcher sends it a 1.1 associate request."""
        now = time.monotonic()
        with self._lock:
            if now - self._queued.get(server_url, -REQUEUE_AFTER) < REQUEUE_AFTER:
                return
            self._queued[server_url] = now
        if not self._may_try(server_url):
            return
        if not openid2:
            self.store.cache_set(VERSION, server_url, {"openid2": False}, 30 * 86400.0)
        self._queue().put(server_url)
        self._event("queued", server_url)

    # -- making associations ---------------------------------------------------------------

    def associate(self, server_url: str, *, openid2: bool | None = None) -> Association:
        """Negotiate an association (8.2.4: one retry with the OP's suggestion) and store it.

        Raises ``AssociationRefusedError`` (remembered for ``refusal_ttl``) or
        ``AssociationError`` (the OP backs off exponentially).
        """
        if openid2 is None:
            openid2 = (self.store.cache_get(VERSION, server_url) or {}).get("openid2", True)

        def post(message: Message) -> Message:
            response = self.fetcher.post(server_url, message.to_post_args())
            if response.status not in (200, 400):
                raise AssociationError(
                    f"{server_url} answered the associate request with HTTP {response.status}"
                )
            return Message.from_kv(response.body)

        started = time.perf_counter()
        try:
            # One scope: the retries of one negotiation may share a connection, closed at
            # the end (inside begin()'s scope, inline, this joins it and its budget).
            with self.fetcher.scope():
                association = negotiate(server_url, post, self.clock, openid2=bool(openid2))
        except AssociationRefusedError as exc:
            # Many OPs do this on purpose (Steam: "Associations not supported"): one INFO
            # line, then no attempt from any process for refusal_ttl.
            self.store.cache_set(
                REFUSED, server_url, {"reason": str(exc)}, self.settings.refusal_ttl
            )
            log.info("%s; not asking again for %.0f s", exc, self.settings.refusal_ttl)
            self._event("refused", server_url, reason=str(exc))
            raise
        except (AssociationError, FetchError, ProtocolError) as exc:
            delay = self._back_off(server_url)
            self._event("failed", server_url, reason=str(exc), retry_in=delay)
            # A failed fetch of server_url itself: its reason, so the URL is named once.
            why = exc.reason if isinstance(exc, FetchError) and exc.url == server_url else exc
            raise AssociationError(
                f"could not associate with {server_url}: {why}; retrying in {delay:.0f} s"
            ) from exc
        self.store.store_association(server_url, association)
        self.store.cache_delete(BACKOFF, server_url)
        with self._lock:
            self._expiries[server_url] = association.expires
            self._queued.pop(server_url, None)
        elapsed = time.perf_counter() - started
        self._event("made", server_url, seconds=elapsed, assoc_type=association.assoc_type)
        return association

    def _back_off(self, server_url: str) -> float:
        previous = self.store.cache_get(BACKOFF, server_url) or {}
        failures = int(previous.get("failures", 0)) + 1
        delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
        self.store.cache_set(
            BACKOFF,
            server_url,
            {"failures": failures, "until": self.clock.now() + delay},
            delay + BACKOFF_MAX,
        )
        return delay

    def due_for_renewal(self) -> list[str]:
        """Endpoints this process associated with whose association nears expiry."""
        now = self.clock.now()
        with self._lock:
            due = [
                url for url, expires in self._expiries.items() if expires - now <= self.renew_before
            ]
            for url in due:
                del self._expiries[url]
        return due

    def _event(self, event: str, server_url: str, **details: Any) -> None:
        if self._events is not None:
            self._events(event, server_url, details)

