"""``manage.py openid_cleanup``: remove expired associations, used nonces and cache entries
from the configured store (run it daily from cron; nothing breaks if it never runs, the
tables only grow)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ...auth import get_relying_party


class Command(BaseCommand):
    help = "Remove expired OpenID associations, nonces and cache entries from the store."

    def handle(self, *args: Any, **options: Any) -> None:
        removed = get_relying_party().store.cleanup()
        self.stdout.write(f"removed {removed} expired entries")
