"""Which OpenID claims sign in which users."""

from __future__ import annotations

import hashlib
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
