"""``MemcachedStore``: associations, used nonces and the cache in memcached, via pymemcache.

Layout (every key is ``<prefix>:<kind>:<sha256 hex>``, at most 131 bytes, so any input makes
a valid memcached key: at most 250 bytes, no spaces, no control characters):

- ``n``: a used nonce, written with ``add`` (atomic "use once"); it lives until its
  timestamp leaves the skew window, after which the window check alone refuses it.
- ``a``: one association (``Association.to_json``), living until it expires.
- ``i``: per OP endpoint, the index of its live handles (memcached cannot list keys),
  changed only with ``gets``/``cas``, so concurrent writers never lose each other's entries.
- ``c``: one cache entry, ``{"v": value, "e": expires}``.
- ``<prefix>:epoch:<n>``: per server, the restart guard's marker (see ``_epoch``): since
  when that server has kept every used nonce.

Values are JSON, never pickle: whoever can write to memcached must not be able to run code
in the site. Expiry is decided by the store's clock (the value says when it ends); the
memcached TTL only frees the memory, so a clock moved by tests or by the development OP
behaves as with every other store.

Several servers go through pymemcache's ``HashClient`` with a ring that never drops a
server: a key always lives on the same server. HashClient's default removes a failing
server from the ring, which would send a nonce's key to another server that never saw it
(a replay) and silently return "not stored" while the server is retried; here a server that
is down makes the operations whose keys live on it fail with ``StoreError`` until it
returns, and keys on the other servers keep working.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.client.rendezvous import RendezvousHash

from openid_plugins.contracts import Association, Store, StoreOptions, check_server_url
from openid_plugins.errors import StoreError

from .target import Target, parse_target

log = logging.getLogger("openid_plugins.memcached")

#: memcached reads an expiry above 30 days as an absolute Unix time; stay relative.
MAX_TTL = 30 * 24 * 3600
#: gets/cas rounds before an index update gives up (each conflict means another writer
#: succeeded, so running out takes a storm of writers on one OP endpoint).
CAS_ATTEMPTS = 32
#: Handles kept in one index; an OP endpoint never needs more than a few live ones.
MAX_INDEX_ENTRIES = 64
#: How long an emptied index lingers (it holds nothing; this only frees memory).
EMPTY_INDEX_TTL = 60
#: How often (seconds, per process and server) the restart guard reads its marker again
#: when nothing failed: bounds how long a ``flush_all`` or an evicted marker goes unnoticed.
EPOCH_RECHECK = 10.0


def _blake2b_64(text: str, seed: int) -> int:
    """The ring's hash. pymemcache's default (murmur3 in pure Python) cost more than the
    memcached round trip it routes, and only this store reads its keys. Part of the layout:
    every process of a site must place a key on the same server, so changing it (or the
    seed, always 0 here) moves nonces away from their records, a replay window."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"openid-ring")
    return int.from_bytes(digest.digest(), "big") ^ seed


class _FixedRing(RendezvousHash):
    """A rendezvous hash whose servers never leave: HashClient calls ``remove_node`` when it
    marks a server dead, and a nonce must never move to a server that did not record it."""

    def __init__(self) -> None:
        super().__init__(hash_function=_blake2b_64)

    def remove_node(self, node: str) -> None:
        log.warning("memcached server %s is failing; its keys wait for it to return", node)


def make_client(target: Target) -> PooledClient | HashClient:
    """A thread-safe pooled client for one server, or a fixed-ring HashClient for several.

    Replies are always awaited (``default_noreply=False``): a write that cannot be confirmed
    is a failure, never a success.
    """
    common: dict[str, Any] = {
        "connect_timeout": target.connect_timeout,
        "timeout": target.timeout,
        "no_delay": True,
        "max_pool_size": target.max_pool_size,
        "default_noreply": False,
        "tls_context": target.tls_context(),
    }
    if len(target.servers) == 1:
        return PooledClient(target.servers[0], **common)
    return HashClient(
        list(target.servers),
        hasher=_FixedRing,
        use_pooling=True,
        ignore_exc=False,
        # Every failure raises at once; the server stays in the ring (see _FixedRing) and
        # is tried again on the next operation, so recovery needs no dead-time wait.
        retry_attempts=0,
        dead_timeout=math.inf,
        **common,
    )


def _ttl(seconds: float) -> int:
    """A relative memcached expiry covering ``seconds`` (at least 1: 0 means "never")."""
    if not math.isfinite(seconds):
        return MAX_TTL
    return max(1, min(MAX_TTL, math.ceil(seconds) + 1))


class _Failing:
    """Every client failure (refused, timed out, server error, a reply cut off) inside the
    ``with`` block as a ``StoreError``: the operation is not known to have happened. A class,
    not a generator-based context manager: it runs on every login and costs a quarter."""

    __slots__ = ("store", "what")

    def __init__(self, store: MemcachedStore, what: str) -> None:
        self.store, self.what = store, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        # pymemcache raises socket, protocol and its own errors: all mean "not done".
        if exc is None or isinstance(exc, StoreError) or not isinstance(exc, Exception):
            return
        # A server that failed may come back restarted and empty: read its marker again.
        self.store._epochs.clear()
        raise StoreError(
            f"memcached ({self.store._display}) could not {self.what}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


class MemcachedStore(Store):
    """The ``memcached://`` store. See the module docstring for the layout."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        super().__init__(options)
        self.target = parse_target(url, options.extra)
        self._prefix = self.target.prefix
        self._display = self.target.display
        self._client = make_client(self.target)
        #: Whether the servers' eviction setting was looked at (once per store object).
        self._eviction_checked = False
        #: Server name ("host:port") -> its pymemcache client.
        self._servers: dict[str, Any] = getattr(self._client, "clients", None) or {
            self._display.removeprefix("memcached://"): self._client
        }
        self._ring = getattr(self._client, "hasher", None)
        self._only = next(iter(self._servers))
        #: The restart guard's state: server name -> (marker time, monotonic time read).
        self._epochs: dict[str, tuple[float, float]] = {}
        self._epoch_keys: dict[str, bytes] = {}
        #: Servers found without a marker by a store that may not write one (warned once).
        self._unmarked: set[str] = set()

    # -- plumbing -------------------------------------------------------------------------

    def _key(self, kind: str, *parts: str) -> bytes:
        """``<prefix>:<kind>:<sha256 of the parts>``. Each part is preceded by its length, so
        no two part lists share an encoding ("ab","c" vs "a","bc"); surrogatepass lets a
        lone surrogate from hostile input hash instead of failing."""
        text = "".join([f"{len(part)}:{part}" for part in parts])
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self._prefix}:{kind}:{digest}".encode("ascii")

    def _nonce_key(self, server_url: str, timestamp: float, salt: str) -> bytes:
        # float(): 5 and 5.0 are the same instant and must be the same nonce.
        return self._key("n", server_url, repr(float(timestamp)), salt)

    def _failing(self, what: str) -> _Failing:
        return _Failing(self, what)

    # -- nonces (OpenID 2.0 section 11.3) ---------------------------------------------------

    def use_nonce(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        if not self.nonce_in_window(timestamp):
            return False
        if not self._eviction_checked:
            self._check_eviction()
        # Remembered until the stamp leaves the window; from then on the window check
        # above refuses it without asking memcached.
        ttl = _ttl(timestamp + self.options.nonce_skew - self.clock.now())
        key = self._nonce_key(server_url, timestamp, salt)
        name, client = self._server(key)
        # Nonces are stamped in whole seconds (10.1): one issued in the second the marker
        # was written is refused too, as it may have been used just before the loss.
        if self.target.restart_guard and timestamp < self._epoch(name):
            raise StoreError(
                f"memcached {name} lost or may have lost its used nonces (restart, flush or"
                " first use) after this response was issued, so whether it was used before"
                " cannot be known: refused (sign in again)"
            )
        with self._failing("record a nonce"):
            stored = client.add(key, b"1", expire=ttl, noreply=False)
        # add answers STORED or NOT_STORED; anything else raised above (fail closed).
        return stored is True

    # -- the restart guard ------------------------------------------------------------------

    def _epoch(self, name: str) -> float:
        """Since when server ``name`` has kept every used nonce: the time in its
        marker, written with ``add`` (no expiry) by the first store that found none.

        A restart, a ``flush_all`` or an eviction of the marker loses it together with the
        used nonces, so the next store to look writes a new one, and nonces stamped before
        it are refused: that server cannot know whether they were used. Each process reads
        the marker when it first needs it, again after any failure (a restart breaks every
        connection a process holds, so no process uses a restarted server without failing
        on it first) and at most every ``EPOCH_RECHECK`` seconds otherwise. Every store
        operation makes sure of the marker of the server it uses, so a login's begin()
        normally sets it before the OP stamps the answer that complete() will check.
        """
        cached = self._epochs.get(name)
        if cached is not None and time.monotonic() - cached[1] < EPOCH_RECHECK:
            return cached[0]
        marker = self._epoch_key(name)
        client = self._servers[name]
        with self._failing("read its restart marker"):
            raw = client.get(marker)
            if raw is None and not self.options.create:
                return self._no_marker(name)
            if raw is None:
                client.add(marker, _dumps(self.clock.now()), expire=0, noreply=False)
                raw = client.get(marker)  # ours, or the one a faster store just wrote
        try:
            epoch = float(json.loads(raw))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"memcached {name} holds a malformed restart marker") from exc
        self._epochs[name] = (epoch, time.monotonic())
        return epoch

    def _no_marker(self, name: str) -> float:
        """No marker, and ``StoreOptions.create`` false (``cleanup``, ``associate``): write
        none. The marker is the one key kept without an expiry, so a maintenance command
        with a mistyped prefix would leave it behind for good; and such a command records
        no nonces, so it does not need one (the site's next store writes it). Its nonces,
        if any were asked, would be refused (no marker: nothing known), and it is not
        remembered, so the next operation looks again."""
        if name not in self._unmarked:
            self._unmarked.add(name)
            log.warning(
                "memcached %s has no restart marker for prefix %r: no site has used this"
                " store since the server started (check the URL and prefix), or it lost its"
                " data; a maintenance command does not write one",
                name,
                self._prefix,
            )
        return math.inf

    def _server(self, key: bytes) -> tuple[str, Any]:
        """The name and pooled client of the server that holds ``key``. Single-key
        operations go to that client directly: the ring is consulted once, not again by
        HashClient."""
        name = self._ring.get_node(key) if self._ring is not None else self._only
        return name, self._servers[name]

    def _epoch_key(self, name: str) -> bytes:
        """A marker key that the ring places on server ``name`` (probed once per server)."""
        found = self._epoch_keys.get(name)
        if found is not None:
            return found
        # Rendezvous hashing gives each server about 1/n of all keys: a few probes suffice.
        i = 0
        while True:
            key = f"{self._prefix}:epoch:{i}".encode("ascii")
            if self._ring is None or self._ring.get_node(key) == name:
                self._epoch_keys[name] = key
                return key
            i += 1

    def _client_for(self, key: bytes) -> Any:
        """The client of ``key``'s server, once the server's marker is known (``_epoch``)."""
        name, client = self._server(key)
        if self.target.restart_guard:
            self._epoch(name)
        return client

    def _check_eviction(self) -> None:
        """Warn once about every server that may evict: a nonce evicted before its stamp
        leaves the skew window could be used again. A server started with ``-M`` refuses
        to store instead (``use_nonce`` then raises ``StoreError``: fail closed)."""
        try:
            settings = {name: client.stats("settings") for name, client in self._servers.items()}
        except Exception:  # down: use_nonce's own add reports it
            return
        self._eviction_checked = True
        for name, values in settings.items():
            if values.get(b"evictions", b"on") != b"off":
                log.warning(
                    "memcached %s may evict used nonces before their skew window ends (a"
                    " replay would then pass); start the server that keeps nonces with -M",
                    name,
                )

    def nonce_seen(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        if not self.nonce_in_window(timestamp):
            return False
        key = self._nonce_key(server_url, timestamp, salt)
        client = self._client_for(key)
        with self._failing("look up a nonce"):
            return client.get(key) is not None

    # -- associations ---------------------------------------------------------------------

    def store_association(self, server_url: str, association: Association) -> None:
        check_server_url(server_url)
        now = self.clock.now()
        key = self._key("a", server_url, association.handle)
        client = self._client_for(key)
        with self._failing("store an association"):
            client.set(
                key,
                association.to_json().encode("ascii"),
                expire=_ttl(association.remaining(now)),
                noreply=False,
            )
        entry = [association.handle, association.issued, association.expires]

        def add(entries: list[list[Any]]) -> list[list[Any]]:
            kept = [e for e in entries if e[0] != association.handle]
            return [*kept, entry]

        self._change_index(server_url, add)

    def get_association(self, server_url: str, handle: str | None = None) -> Association | None:
        check_server_url(server_url)
        now = self.clock.now()
        if handle is not None:
            key = self._key("a", server_url, handle)
            client = self._client_for(key)
            with self._failing("read an association"):
                raw = client.get(key)
            found = self._association(raw, handle)
            return found if found is not None and found.remaining(now) > 0 else None
        index_key = self._key("i", server_url)
        client = self._client_for(index_key)
        with self._failing("read an association index"):
            raw_index = client.get(index_key)
        handles = [e[0] for e in self._entries(raw_index) if e[2] > now]
        if not handles:
            return None
        keys = {self._key("a", server_url, h): h for h in handles}
        with self._failing("read associations"):
            raws = self._client.get_many(list(keys))
        # An evicted association is simply absent: it costs a new one, nothing more.
        live = [
            assoc
            for key, raw in raws.items()
            if (assoc := self._association(raw, keys[key])) is not None
            and assoc.remaining(now) > 0
        ]
        return max(live, key=lambda a: a.issued, default=None)

    def remove_association(self, server_url: str, handle: str) -> bool:
        check_server_url(server_url)
        key = self._key("a", server_url, handle)
        client = self._client_for(key)
        with self._failing("remove an association"):
            existed = client.delete(key, noreply=False)
        self._change_index(server_url, lambda entries: [e for e in entries if e[0] != handle])
        return bool(existed)

    def _association(self, raw: bytes | None, handle: str) -> Association | None:
        if raw is None:
            return None
        try:
            assoc = Association.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"memcached holds a malformed association: {exc}") from exc
        return assoc if assoc.handle == handle else None

    def _entries(self, raw: bytes | None) -> list[list[Any]]:
        """An index value: ``[[handle, issued, expires], ...]``."""
        if raw is None:
            return []
        try:
            entries = json.loads(raw)
            return [[str(h), float(i), float(e)] for h, i, e in entries]
        except (ValueError, TypeError) as exc:
            raise StoreError(f"memcached holds a malformed association index: {exc}") from exc

    def _change_index(
        self, server_url: str, change: Callable[[list[list[Any]]], list[list[Any]]]
    ) -> None:
        """Apply ``change`` to the server URL's index with gets/cas, retrying on conflict.

        Expired entries are dropped on every change, and the index lives as long as its
        longest-lived entry.
        """
        key = self._key("i", server_url)
        client = self._client_for(key)
        for _ in range(CAS_ATTEMPTS):
            now = self.clock.now()
            with self._failing("read an association index"):
                raw, token = client.gets(key)
            entries = [e for e in change(self._entries(raw)) if e[2] > now]
            entries = sorted(entries, key=lambda e: e[1])[-MAX_INDEX_ENTRIES:]
            ttl = _ttl(max((e[2] for e in entries), default=now + EMPTY_INDEX_TTL) - now)
            value = _dumps(entries)
            with self._failing("update an association index"):
                if token is None:
                    done = raw is None and client.add(key, value, expire=ttl, noreply=False)
                else:
                    # False: another writer changed it; None: it vanished. Both: read again.
                    done = client.cas(key, value, token, expire=ttl, noreply=False)
            if done:
                return
        raise StoreError(
            f"memcached ({self._display}): the association index of {server_url!r} "
            f"kept changing under {CAS_ATTEMPTS} attempts"
        )

    # -- cache ----------------------------------------------------------------------------

    def cache_get(self, namespace: str, key: str) -> Any | None:
        cache_key = self._key("c", namespace, key)
        client = self._client_for(cache_key)
        with self._failing("read the cache"):
            raw = client.get(cache_key)
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            value, expires = entry["v"], float(entry["e"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"memcached holds a malformed cache entry: {exc}") from exc
        return value if expires > self.clock.now() else None

    def cache_set(self, namespace: str, key: str, value: Any, ttl: float) -> None:
        try:
            data = _dumps({"v": value, "e": self.clock.now() + ttl})
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cache values must be JSON-serializable: {exc}") from exc
        cache_key = self._key("c", namespace, key)
        client = self._client_for(cache_key)
        with self._failing("write the cache"):
            client.set(cache_key, data, expire=_ttl(ttl), noreply=False)

    def cache_delete(self, namespace: str, key: str) -> None:
        cache_key = self._key("c", namespace, key)
        client = self._client_for(cache_key)
        with self._failing("delete from the cache"):
            client.delete(cache_key, noreply=False)

    # -- housekeeping ---------------------------------------------------------------------

    def cleanup(self) -> int:
        """Nothing to do: every key was written with a TTL and memcached drops it once that
        has passed (and cannot list keys to count them). Always 0."""
        return 0

    def close(self) -> None:
        with self._failing("close its connections"):
            self._client.close()
