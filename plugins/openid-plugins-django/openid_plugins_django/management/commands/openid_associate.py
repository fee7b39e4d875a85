"""``manage.py openid_associate``: the background association fetcher on the site's settings.

Sign-ins in background mode (the default) never wait for Diffie-Hellman: ``begin()`` queues
the OP endpoint and completes statelessly (the OP confirms the answer by
check_authentication). This command makes the queued associations, with the same
``BackgroundFetcher`` as ``openid-plugins associate``, but configured by
``settings.OPENID_PLUGINS`` (by default the site's database) instead of environment
variables. Run ``--once`` from cron, or ``--watch`` as a service.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from openid_plugins.config import Settings
from openid_plugins.fetcher import BackgroundFetcher
from openid_plugins.relying_party import RelyingParty

from ...auth import relying_party_settings

log = logging.getLogger("openid_plugins.django.commands")


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
        settings = Settings.from_mapping(relying_party_settings()).updated(
            association="background", fetcher="none"
        )
        with RelyingParty(settings=settings) as rp:
            fetcher = BackgroundFetcher(rp.associator, rp.queue, concurrency=options["concurrency"])
            if options["watch"]:
                stop = threading.Event()

                def request_stop(signum: int, frame: object) -> None:
                    log.info("signal %d: stopping after the current pass", signum)
                    stop.set()

                signal.signal(signal.SIGTERM, request_stop)
                signal.signal(signal.SIGINT, request_stop)
                stats = fetcher.watch(stop, poll=options["poll"])
            else:
                stats = fetcher.run_once()
        if not stats.ok:
            raise CommandError(stats.summary(), returncode=1)
        self.stdout.write(stats.summary())
