"""``manage.py openid_associate``: the background association fetcher on the site's settings.

Sign-ins in background mode (the default) never wait for Diffie-Hellman: ``begin()`` queues
the OP endpoint and completes statelessly (the OP confirms the answer by
check_authentication). This command makes the queued associations, with the same
code and ``BackgroundFetcher`` as ``openid-plugins associate``, but configured by
``settings.OPENID_PLUGINS`` (by default the site's database) instead of environment
variables. Run ``--once`` from cron, or ``--watch`` as a service.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from openid_plugins.commands import run_associate
from openid_plugins.config import Settings

from ...auth import relying_party_settings


class Command(BaseCommand):
    help = (
        "Make associations with the OpenID providers that sign-ins queued"
        " (--once: drain the queue and exit, for cron; --watch: run until SIGTERM/SIGINT)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--once", action="store_true", help="drain the queue and exit")
        mode.add_argument("--watch", action="store_true", help="run until SIGTERM/SIGINT")
        parser.add_argument("--concurrency", type=int, default=4, help="associations at once")
        parser.add_argument(
            "--poll", type=float, default=5.0, help="--watch: seconds between checks"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stats = run_associate(
            Settings.from_mapping(relying_party_settings()),
            watch=options["watch"],
            concurrency=options["concurrency"],
            poll=options["poll"],
        )
        if not stats.ok:
            raise CommandError(stats.summary(), returncode=1)
        self.stdout.write(stats.summary())
