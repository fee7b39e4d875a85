"""The ``django://`` store and queue: the site's own database through Django's ORM.

A Django site then needs no other server or directory for OpenID, and every web server
process and the ``openid_associate`` command share one state. ``django://`` (or
``django://default``) uses the ``default`` database alias; ``django://NAME`` another alias of
``settings.DATABASES``.

Single use of a nonce rests on a unique index (an insert either wins or raises
``IntegrityError``), never on a read before the write, so it holds across processes on every
database. Queue claims take candidates with ``SELECT ... FOR UPDATE SKIP LOCKED`` where the
database has it (PostgreSQL, MySQL 8, MariaDB 10.6) and make each claim a conditional
``UPDATE``, which only one claimer can win on any database (SQLite included).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Q

from openid_plugins.contracts import (
    Association,
    Queue,
    QueueItem,
    Store,
    StoreOptions,
    check_server_url,
)
from openid_plugins.errors import ConfigurationError, OpenIDError, QueueError, StoreError

from .models import CacheEntry, QueuedEndpoint, StoredAssociation, UsedNonce, key_digest

log = logging.getLogger("openid_plugins.django.store")

T = TypeVar("T")
#: How often ``DjangoQueue.wait`` looks for claimable items (the ORM has no notification).
POLL_SECONDS = 0.2


def database_alias(url: str) -> str:
    """The ``DATABASES`` alias a ``django://ALIAS`` URL names (``default`` when none)."""
    alias = unquote(urlsplit(url).netloc) or "default"
    if alias not in connections.settings:
        raise ConfigurationError(
            f"{url!r} names the database alias {alias!r}, which settings.DATABASES lacks"
        )
    return alias


@contextmanager
def _errors(kind: type[OpenIDError], what: str) -> Iterator[None]:
    """A database failure surfaces as the contract's error type, with what was attempted;
    so does text the database cannot hold (a lone surrogate has no UTF-8 form)."""
    try:
        yield
    except DatabaseError as exc:
        raise kind(f"{what} failed in Django's database: {exc}") from exc
    except UnicodeEncodeError as exc:
        raise kind(f"{what} refused: the text has no UTF-8 form ({exc.reason})") from exc


class DjangoStore(Store):
    """``Store`` on the ORM; expiry follows ``options.clock``, never the database's clock."""

    def __init__(self, options: StoreOptions, alias: str = "default") -> None:
        super().__init__(options)
        self.alias = alias

    def _run(self, what: str, work: Callable[[], T]) -> T:
        with _errors(StoreError, what):
            return work()

    def _upsert(self, model: Any, key: str, values: dict[str, Any], what: str) -> None:
        """Replace the row with this unique key, or insert it.

        The UPDATE comes first so the transaction writes before it reads: on SQLite a
        read-then-write transaction fails at once ("database is locked") when another
        connection writes. Two first inserts of one key race on the unique index; the loser
        runs again and updates the winner's row.
        """
        rows = model.objects.using(self.alias)
        for attempt in (1, 2):
            try:
                with _errors(StoreError, what), transaction.atomic(using=self.alias):
                    if not rows.filter(key=key).update(**values):
                        rows.create(key=key, **values)
                return
            except StoreError as exc:
                if attempt == 2 or not isinstance(exc.__cause__, IntegrityError):
                    raise

    # -- associations ---------------------------------------------------------------------

    def store_association(self, server_url: str, association: Association) -> None:
        check_server_url(server_url)
        if not math.isfinite(association.expires):
            raise StoreError(f"association {association.handle!r} has no finite expiry")
        key = key_digest(server_url, association.handle)
        values = {
            "server_url": server_url,
            "server_hash": key_digest(server_url),
            "handle": association.handle,
            "secret": association.secret,
            "issued": association.issued,
            "lifetime": association.lifetime,
            "expires": association.expires,
            "assoc_type": association.assoc_type,
        }

        self._upsert(StoredAssociation, key, values, "storing an association")

    def get_association(self, server_url: str, handle: str | None = None) -> Association | None:
        check_server_url(server_url)
        now = self.clock.now()
        rows = StoredAssociation.objects.using(self.alias).filter(expires__gt=now)
        if handle is None:
            rows = rows.filter(server_hash=key_digest(server_url)).order_by("-issued")
        else:
            rows = rows.filter(key=key_digest(server_url, handle))
        row = self._run("reading an association", rows.first)
        if row is None:
            return None
        return Association(
            handle=row.handle,
            secret=bytes(row.secret),
            issued=row.issued,
            lifetime=row.lifetime,
            assoc_type=row.assoc_type,
        )

    def remove_association(self, server_url: str, handle: str) -> bool:
        check_server_url(server_url)
        rows = StoredAssociation.objects.using(self.alias).filter(
            key=key_digest(server_url, handle)
        )
        deleted, _ = self._run("removing an association", rows.delete)
        return deleted > 0

    # -- nonces ---------------------------------------------------------------------------

    def use_nonce(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        if not self.nonce_in_window(timestamp):
            return False
        key = key_digest(server_url, float(timestamp), salt)
        expires = timestamp + self.options.nonce_skew
        try:
            # atomic(): inside a site's transaction (ATOMIC_REQUESTS) the failed insert
            # rolls back to a savepoint instead of breaking the request's transaction.
            with _errors(StoreError, "recording a nonce"), transaction.atomic(using=self.alias):
                UsedNonce.objects.using(self.alias).create(key=key, expires=expires)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return False  # the unique index: this nonce was used before
            raise
        return True

    def nonce_seen(self, server_url: str, timestamp: float, salt: str) -> bool:
        check_server_url(server_url)
        if not math.isfinite(timestamp):
            return False
        rows = UsedNonce.objects.using(self.alias).filter(
            key=key_digest(server_url, float(timestamp), salt)
        )
        return self._run("looking up a nonce", rows.exists)

    # -- cache ----------------------------------------------------------------------------

    def cache_get(self, namespace: str, key: str) -> Any | None:
        rows = CacheEntry.objects.using(self.alias).filter(
            key=key_digest(namespace, key), expires__gt=self.clock.now()
        )
        text = self._run("reading the cache", lambda: rows.values_list("value", flat=True).first())
        return None if text is None else json.loads(text)

    def cache_set(self, namespace: str, key: str, value: Any, ttl: float) -> None:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cache values must be JSON-serializable: {exc}") from exc
        digest = key_digest(namespace, key)
        defaults = {"value": text, "expires": self.clock.now() + ttl}

        self._upsert(CacheEntry, digest, defaults, "writing the cache")

    def cache_delete(self, namespace: str, key: str) -> None:
        rows = CacheEntry.objects.using(self.alias).filter(key=key_digest(namespace, key))
        self._run("deleting from the cache", rows.delete)

    # -- housekeeping ---------------------------------------------------------------------

    def cleanup(self) -> int:
        now = self.clock.now()
        removed = 0
        for model in (StoredAssociation, UsedNonce, CacheEntry):
            rows = model.objects.using(self.alias).filter(expires__lte=now)
            removed += self._run("removing expired entries", rows.delete)[0]
        return removed


class DjangoQueue(Queue):
    """``Queue`` on the ORM: one row per waiting or claimed OP endpoint URL."""

    def __init__(self, options: StoreOptions, alias: str = "default") -> None:
        super().__init__(options)
        self.alias = alias

    def _rows(self) -> Any:
        return QueuedEndpoint.objects.using(self.alias)

    def _claimable(self, now: float) -> Any:
        return self._rows().filter(claimed_until__lte=now)

    def put(self, server_url: str) -> None:
        check_server_url(server_url, QueueError)
        digest = key_digest(server_url)
        with _errors(QueueError, "queueing an OP endpoint"):
            # Only a *waiting* copy makes this one redundant: a claimed one may be handled
            # already, and this is a new need (the contract's "put while claimed").
            if not self._claimable(self.clock.now()).filter(server_hash=digest).exists():
                self._rows().create(server_url=server_url, server_hash=digest)

    def claim(self, limit: int = 100, lease: float = 60.0) -> list[QueueItem]:
        if limit <= 0:
            return []
        claimed: list[QueueItem] = []
        seen: set[int] = set()
        with _errors(QueueError, "claiming queued OP endpoints"):
            while len(claimed) < limit:
                batch = self._claim_batch(limit - len(claimed), lease, seen)
                if batch is None:
                    break
                claimed.extend(batch)
        return claimed

    def _claim_batch(self, limit: int, lease: float, seen: set[int]) -> list[QueueItem] | None:
        """Claim up to ``limit`` waiting rows; None when there were none left to try."""
        rows = self._claimable(self.clock.now()).exclude(pk__in=seen).order_by("pk")
        if not connections[self.alias].features.has_select_for_update_skip_locked:
            # SQLite: read, then claim each row by a conditional UPDATE (no transaction
            # around both: SQLite fails a read-then-write transaction when another writes).
            candidates = list(rows.values_list("pk", "server_url")[:limit])
            seen.update(pk for pk, _ in candidates)
            return self._take(candidates, lease) if candidates else None
        # Rows another claimer holds locked are skipped, not waited for, and stay locked
        # by us until our claims are written.
        with transaction.atomic(using=self.alias):
            locked = rows.select_for_update(skip_locked=True)
            candidates = list(locked.values_list("pk", "server_url")[:limit])
            seen.update(pk for pk, _ in candidates)
            return self._take(candidates, lease) if candidates else None

    def _take(self, candidates: list[tuple[int, str]], lease: float) -> list[QueueItem]:
        """Each claim is an UPDATE that only matches a still-waiting row: one claimer wins."""
        now = self.clock.now()
        taken = []
        for pk, server_url in candidates:
            token = secrets.token_hex(16)
            won = self._claimable(now).filter(pk=pk).update(claimed_until=now + lease, token=token)
            if won:
                taken.append(QueueItem(server_url=server_url, token=f"{pk}:{token}"))
        return taken

    def _matching(self, items: Iterable[QueueItem]) -> Q | None:
        condition = None
        for item in items:
            pk, _, token = item.token.partition(":")
            if not pk.isdigit():
                continue
            one = Q(pk=int(pk), token=token)
            condition = one if condition is None else condition | one
        return condition

    def ack(self, items: Iterable[QueueItem]) -> None:
        condition = self._matching(items)
        if condition is not None:
            with _errors(QueueError, "acknowledging queued OP endpoints"):
                self._rows().filter(condition).delete()

    def release(self, items: Iterable[QueueItem]) -> None:
        condition = self._matching(items)
        if condition is not None:
            with _errors(QueueError, "releasing queued OP endpoints"):
                self._rows().filter(condition).update(claimed_until=0.0, token="")

    def pending(self) -> int:
        with _errors(QueueError, "counting queued OP endpoints"):
            return self._rows().count()

    def wait(self, timeout: float) -> bool:
        """Poll for a claimable item: the ORM has no portable notification channel."""
        deadline = time.monotonic() + timeout
        while True:
            with _errors(QueueError, "looking for queued OP endpoints"):
                if self._claimable(self.clock.now()).exists():
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL_SECONDS, left))
