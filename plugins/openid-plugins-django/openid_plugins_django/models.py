"""Which OpenID claims sign in which users, and the tables of the ``django://`` store and queue."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models


def claim_digest(claim: str) -> str:
    """The indexed key of a claim.

    Claimed identifiers may be up to 2047 bytes long (the core's limit), more than MySQL and
    MariaDB can put in a unique index; a SHA-256 hex digest fits every database.
    """
    return hashlib.sha256(claim.encode("utf-8")).hexdigest()


class OpenIDClaim(models.Model):
    """One claimed identifier linked to one user; a claim signs in at most one user."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="openid_claims"
    )
    claim = models.TextField()
    claim_hash = models.CharField(max_length=64, unique=True, editable=False)

    class Meta:
        verbose_name = "OpenID claim"

    def __str__(self) -> str:
        return self.claim

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.claim_hash = claim_digest(self.claim)
        super().save(*args, **kwargs)


def key_digest(*parts: str | float) -> str:
    """The indexed key of a record named by several parts (server URL, handle, salt ...).

    JSON keeps the parts apart (``("ab", "c")`` and ``("a", "bc")`` differ) and the digest fits
    any database's unique index, whatever characters or length an OP or identifier uses.
    """
    text = json.dumps(parts, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- the ``django://`` store and queue (openid_plugins_django.store) ------------------------


class StoredAssociation(models.Model):
    """An association with one OP endpoint (OpenID 2.0 section 8), unique per handle."""

    server_url = models.TextField()
    server_hash = models.CharField(max_length=64, db_index=True)
    #: ``key_digest(server_url, handle)``: one association per handle and endpoint.
    key = models.CharField(max_length=64, unique=True)
    handle = models.TextField()
    secret = models.BinaryField()
    issued = models.FloatField()
    lifetime = models.FloatField()
    expires = models.FloatField(db_index=True)
    assoc_type = models.CharField(max_length=32)

    class Meta:
        verbose_name = "OpenID association"


class UsedNonce(models.Model):
    """A response nonce already accepted (OpenID 2.0 section 11.3).

    The unique ``key`` is what makes a nonce usable once: two processes inserting the same
    one cannot both succeed, whatever the database's isolation level.
    """

    key = models.CharField(max_length=64, unique=True)
    expires = models.FloatField(db_index=True)

    class Meta:
        verbose_name = "used OpenID nonce"


class CacheEntry(models.Model):
    """A cached JSON value (discovery results, OP capabilities, back-off state)."""

    key = models.CharField(max_length=64, unique=True)
    value = models.TextField()
    expires = models.FloatField(db_index=True)

    class Meta:
        verbose_name = "OpenID cache entry"


class QueuedEndpoint(models.Model):
    """An OP endpoint URL waiting for the association fetcher (``openid_associate``)."""

    server_url = models.TextField()
    server_hash = models.CharField(max_length=64, db_index=True)
    #: Until when a fetcher holds it; 0 (or a past time) means it is waiting.
    claimed_until = models.FloatField(default=0.0, db_index=True)
    #: Who holds it: a fresh random token per claim, so a late ``ack`` of an expired
    #: claim cannot remove the item from its new holder.
    token = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        verbose_name = "queued OP endpoint"
