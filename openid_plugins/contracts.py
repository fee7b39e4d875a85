"""What a backend implements: the ``Store``, ``Queue`` and ``Clock`` interfaces and the records
they keep; and the ``ProviderProfile`` a provider plugin describes an OP with.
``openid_plugins.testing.contract`` is the executable definition of the backend contracts:
a backend that passes it is correct.

Times are POSIX seconds (floats are fine) read from the configured clock, never from ``time``
directly, so tests and the development OP can move time.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from .errors import ConfigurationError, OpenIDError, PluginError, StoreError

#: Maximum length of an OP endpoint URL we accept anywhere (OpenID 2.0 section 5.2.1 bounds
#: indirect messages to 2047 bytes; no usable endpoint is longer).
MAX_SERVER_URL_BYTES = 2047
#: Association handles are 1..255 printable ASCII characters (section 8.2.1).
MAX_HANDLE_LENGTH = 255
#: The ``association`` setting's values, which a ``ProviderProfile`` may also name.
ASSOCIATION_MODES = ("background", "inline", "stateless")


@runtime_checkable
class Clock(Protocol):
    """The time source every expiry, nonce and skew check reads."""

    def now(self) -> float:
        """Current POSIX time in seconds."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()


@dataclass(frozen=True)
class Association:
    """A shared secret with one OP endpoint (OpenID 2.0 section 8)."""

    handle: str
    secret: bytes = field(repr=False)
    issued: float
    lifetime: float
    assoc_type: str

    @property
    def expires(self) -> float:
        return self.issued + self.lifetime

    def remaining(self, now: float) -> float:
        """Seconds of validity left at ``now`` (negative once expired)."""
        return self.expires - now

    def to_json(self) -> str:
        return json.dumps(
            {
                "handle": self.handle,
                "secret": base64.b64encode(self.secret).decode("ascii"),
                "issued": self.issued,
                "lifetime": self.lifetime,
                "assoc_type": self.assoc_type,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Association:
        data = json.loads(text)
        return cls(
            handle=str(data["handle"]),
            secret=base64.b64decode(data["secret"]),
            issued=float(data["issued"]),
            lifetime=float(data["lifetime"]),
            assoc_type=str(data["assoc_type"]),
        )


@dataclass(frozen=True)
class StoreOptions:
    """What every store is built with, besides its URL."""

    clock: Clock = field(default_factory=SystemClock)
    #: Nonces whose timestamp is further than this from ``clock.now()`` are refused, and
    #: used nonces are remembered this long (OpenID 2.0 section 11.3).
    nonce_skew: float = 300.0
    #: Backend-specific settings (e.g. a table prefix), from configuration.
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: False for maintenance (``openid-plugins cleanup``/``associate``): open existing state
    #: only. A backend whose directory, database or tables do not exist raises its
    #: ``StoreError``/``QueueError``/``ConfigurationError`` saying how to create them,
    #: so a typo in a URL is an error rather than a new empty store.
    create: bool = True


class Store(ABC):
    """Associations, used nonces and a small TTL cache, shared by every process of a site.

    Every method is safe to call from several threads and processes at once. Failures of the
    backend raise ``StoreError``; nothing is ever half-written.
    """

    def __init__(self, options: StoreOptions) -> None:
        self.options = options
        self.clock = options.clock

    # -- associations ---------------------------------------------------------------------

    @abstractmethod
    def store_association(self, server_url: str, association: Association) -> None:
        """Keep ``association`` for ``server_url``, replacing one with the same handle."""

    @abstractmethod
    def get_association(self, server_url: str, handle: str | None = None) -> Association | None:
        """The association with ``handle`` or, without one, the newest-issued of those
        still valid; never an expired one."""

    @abstractmethod
    def remove_association(self, server_url: str, handle: str) -> bool:
        """Forget one association; True if it existed."""

    # -- nonces ---------------------------------------------------------------------------

    @abstractmethod
    def use_nonce(self, server_url: str, timestamp: float, salt: str) -> bool:
        """Record a response nonce; True exactly once per (server_url, timestamp, salt), and
        False for a timestamp outside ``nonce_skew`` of now. Atomic across processes."""

    def nonce_in_window(self, timestamp: float) -> bool:
        """Whether a nonce stamped ``timestamp`` may be used now (OpenID 2.0 section 11.3).

        A nonce too far from now is refused outright; one inside the window is remembered
        until it leaves the window, after which this check alone refuses it. NaN would slip
        through a comparison, so non-finite stamps are refused first.
        """
        return math.isfinite(timestamp) and (
            abs(timestamp - self.clock.now()) <= self.options.nonce_skew
        )

    def nonce_seen(self, server_url: str, timestamp: float, salt: str) -> bool:
        """Whether ``use_nonce`` already recorded this nonce, without recording it.

        Lets ``complete()`` name a replay before it asks the OP (a stateless OP answers a
        replay with "invalid"). Advisory only: ``use_nonce`` stays the atomic decision.
        Backends that cannot look up cheaply may keep this default.
        """
        return False

    # -- cache (discovery results, OP capabilities, back-off state) -----------------------

    @abstractmethod
    def cache_get(self, namespace: str, key: str) -> Any | None:
        """A JSON value stored by ``cache_set`` and not yet expired, else None."""

    @abstractmethod
    def cache_set(self, namespace: str, key: str, value: Any, ttl: float) -> None:
        """Keep a JSON-serializable value for ``ttl`` seconds."""

    @abstractmethod
    def cache_delete(self, namespace: str, key: str) -> None:
        """Forget a cached value (no error if absent)."""

    # -- housekeeping ---------------------------------------------------------------------

    @abstractmethod
    def cleanup(self) -> int:
        """Remove expired associations, nonces and cache entries; return how many."""

    def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class QueueItem:
    """One claimed entry: an OP endpoint URL that needs an association."""

    server_url: str
    #: Backend-specific identity of the claim, used by ``ack``/``release``.
    token: str


class Queue(ABC):
    """The conduit of OP endpoint URLs that need an association (seed 000).

    ``put`` may drop a URL that is already waiting. A claimed item belongs to one claimer
    until it is acknowledged, released, or its lease runs out (a crashed fetcher loses
    nothing: its items come back).
    """

    def __init__(self, options: StoreOptions) -> None:
        self.options = options
        self.clock = options.clock

    @abstractmethod
    def put(self, server_url: str) -> None:
        """Ask for an association with ``server_url``."""

    @abstractmethod
    def claim(self, limit: int = 100, lease: float = 60.0) -> list[QueueItem]:
        """Take up to ``limit`` items that nobody else holds, for ``lease`` seconds."""

    @abstractmethod
    def ack(self, items: Iterable[QueueItem]) -> None:
        """Remove items that were dealt with."""

    @abstractmethod
    def release(self, items: Iterable[QueueItem]) -> None:
        """Give items back unprocessed, for another claim."""

    @abstractmethod
    def pending(self) -> int:
        """How many items wait (claimed ones included)."""

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until items may be available; True if they may.

        The default polls; backends with a notification channel (LISTEN/NOTIFY, inotify, a
        condition variable) override it.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.pending():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.5, left))

    def close(self) -> None:
        """Release connections and files."""

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_server_url(server_url: str, error: type[OpenIDError] = StoreError) -> str:
    """Reject keys no backend should ever be asked to keep, with the backend's error type."""
    if not isinstance(server_url, str) or not server_url:
        raise error(f"refused server_url {server_url!r}: pass the OP endpoint URL")
    if len(server_url.encode("utf-8", "surrogatepass")) > MAX_SERVER_URL_BYTES:
        raise error(
            f"refused a server_url longer than {MAX_SERVER_URL_BYTES} bytes (5.2.1):"
            " no OP endpoint is that long"
        )
    return server_url


@dataclass(frozen=True)
class Backend:
    """A store or queue that a plugin provides, announced by the ``openid_backends`` hook.

    One record says everything the core needs: which URL schemes it serves (for resolution,
    ``openid-plugins plugins`` and the unknown-scheme message) and how to open one. The core
    calls ``open`` only with URLs of these schemes, so ``open`` never re-checks the scheme,
    and it is called only when the backend is used: import a heavy driver inside it, not at
    the plugin module's top, so that installing a backend costs nothing to sites that do
    not use it.
    """

    #: ``"store"`` or ``"queue"``.
    kind: Literal["store", "queue"]
    #: Lower-case URL schemes (``"postgresql"``); a ``+driver`` suffix in a URL is ignored
    #: when matching (``postgresql+psycopg://`` is served by ``"postgresql"``).
    schemes: tuple[str, ...]
    #: ``open(url, options)`` returns a ``Store`` (or ``Queue``) for ``url``.
    open: Callable[[str, StoreOptions], Store | Queue] = field(repr=False)
    #: False when other processes cannot see this backend's state (``memory://``): commands
    #: that hand work to another process refuse it.
    shared: bool = True
    #: One line for ``openid-plugins plugins -v``.
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("store", "queue"):
            raise PluginError(f"Backend.kind must be 'store' or 'queue', not {self.kind!r}")
        if isinstance(self.schemes, str) or not self.schemes:
            raise PluginError("Backend.schemes must be a non-empty tuple of scheme names")
        object.__setattr__(self, "schemes", tuple(s.lower() for s in self.schemes))


def op_endpoint_urls(
    values: Iterable[str], what: str, error: type[OpenIDError] = ConfigurationError
) -> tuple[str, ...]:
    """A list of OP endpoint URLs to pin, checked: absolute http(s) URLs, at least one.

    They are compared with ``openid.op_endpoint`` exactly, as 11.2 compares it with the
    discovered endpoint, so write each as the OP's XRDS names it.
    """
    if isinstance(values, str):
        raise error(f"{what} must be a list of URLs, not the single string {values!r}")
    urls = tuple(values)
    if not urls:
        raise error(f"{what} names no OP endpoint")
    for url in urls:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise error(f"{what}: {url!r} is not an absolute http(s) URL")
        if len(url.encode()) > MAX_SERVER_URL_BYTES:
            raise error(f"{what}: {url[:60]!r}... is longer than {MAX_SERVER_URL_BYTES} bytes")
    return urls


_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class ProviderProfile:
    """An OpenID provider a site offers by name, announced by the ``openid_providers`` hook:
    ``rp.begin(provider="steam", return_to=..., session=...)``.

    A profile turns what every integration of a big OP re-implements by hand into one
    choice: the sign-in starts with directed identity at the OP identifier, the OP
    endpoints are pinned (``complete()`` refuses an assertion from any other before doing
    anything else), the claimed identifier must have the OP's form (checked before any
    discovery), and ``AuthResult.provider_id`` is the user's id at that provider.
    """

    #: What sites pass as ``begin(provider=...)``: lower-case letters, digits, ``_.-``.
    name: str
    #: The OP identifier discovery starts from (7.3.1: an XRDS with the server type).
    op_identifier: str
    #: The OP endpoint URLs assertions may come from, exactly as the OP's XRDS names them.
    op_endpoints: tuple[str, ...]
    #: A regular expression the whole claimed identifier must match (``re.fullmatch``, case
    #: sensitive). Its group ``id``, when it has one, is ``AuthResult.provider_id``;
    #: otherwise the whole claimed identifier is.
    claimed_id_pattern: str
    #: The association mode that works with this OP (``"stateless"`` for one that refuses
    #: every association); None leaves the site's ``association`` setting in charge. A
    #: site's explicit ``begin(association=...)`` still wins.
    association: str | None = None
    #: False for an OP that answers every ``checkid_immediate`` with setup_needed:
    #: ``begin(immediate=True)`` is then a ``ConfigurationError`` rather than a round trip
    #: whose answer is known in advance.
    immediate: bool = True
    #: Namespace URIs of the extensions the OP answers (None: unknown), for a site deciding
    #: what to ask (``profile.speaks(SREG_1_1_NS)``); asking for another is logged, not
    #: prevented (an OP ignores what it does not know).
    extensions: tuple[str, ...] | None = None
    #: One line for documentation and ``openid-plugins plugins -v``.
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _PROFILE_NAME.match(self.name):
            raise PluginError(
                f"ProviderProfile.name {self.name!r} must be 1-64 lower-case letters, digits"
                " or _.- (it is what sites pass as begin(provider=...))"
            )
        what = f"provider profile {self.name!r}"
        op_endpoint_urls([self.op_identifier], f"{what}: op_identifier", PluginError)
        endpoints = op_endpoint_urls(self.op_endpoints, f"{what}: op_endpoints", PluginError)
        object.__setattr__(self, "op_endpoints", endpoints)
        if self.association is not None and self.association not in ASSOCIATION_MODES:
            raise PluginError(
                f"{what}: association={self.association!r} is not one of"
                f" {', '.join(ASSOCIATION_MODES)} or None"
            )
        if self.extensions is not None:
            if isinstance(self.extensions, str):
                raise PluginError(f"{what}: extensions must be a tuple of namespace URIs")
            object.__setattr__(self, "extensions", tuple(self.extensions))
        try:
            self.claimed_id_regex  # noqa: B018 - compiled now, so a bad pattern fails at load
        except (re.error, TypeError) as exc:
            raise PluginError(f"{what}: claimed_id_pattern does not compile: {exc}") from exc

    @cached_property
    def claimed_id_regex(self) -> re.Pattern[str]:
        return re.compile(self.claimed_id_pattern)

    def read_claimed_id(self, claimed_id: str) -> str | None:
        """The user's id at this provider, or None when ``claimed_id`` is not of the form
        this provider issues (another host, another path, a fragment, a wrong case)."""
        if len(claimed_id) > MAX_SERVER_URL_BYTES:
            return None
        match = self.claimed_id_regex.fullmatch(claimed_id)
        if match is None:
            return None
        return match.group("id") if "id" in self.claimed_id_regex.groupindex else claimed_id

    def speaks(self, namespace: str) -> bool:
        """Whether the OP answers the extension with this namespace URI."""
        return self.extensions is None or namespace in self.extensions
