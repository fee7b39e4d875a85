"""``python manage.py devserver``: the example site and a development OpenID provider, in one
command.

It applies the migrations, starts ``openid_plugins.testing.provider.DevelopmentProvider``
(users alice and bob, approved without a password) on 127.0.0.1, and runs Django's
development server. Stop both with Ctrl-C.
"""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from openid_plugins.testing.provider import DevelopmentProvider

from ... import dev


class Command(BaseCommand):
    help = "Run the example site and a development OpenID provider on 127.0.0.1."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="the site's port")
        parser.add_argument("--op-port", type=int, default=8001, help="the provider's port")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0, interactive=False)
        with DevelopmentProvider(users=("alice", "bob"), port=options["op_port"]) as op:
            dev.identity_urls[:] = [op.identity_url(user) for user in op.users]
            self.stdout.write(f"Development OpenID provider: {op.base_url}/")
            for url in dev.identity_urls:
                self.stdout.write(f"  sign in as {url}")
            self.stdout.write(f"Example site: http://127.0.0.1:{options['port']}/login/")
            self.stdout.flush()
            # No autoreloader: it would run this command again in a child process, with a
            # second provider on the same port.
            call_command("runserver", f"127.0.0.1:{options['port']}", use_reloader=False)
