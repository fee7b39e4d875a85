"""The ``django`` plugin (entry point group ``openid_plugins``): the ``django://`` store and
queue, in the site's own database.

Nothing here imports Django: the plugin manager loads this module in every process that uses
openid-plugins, Django site or not. Django is imported when a ``django://`` URL is opened.
"""

from __future__ import annotations

import os

from openid_plugins.contracts import Backend, StoreOptions
from openid_plugins.errors import ConfigurationError
from openid_plugins.hookspecs import hookimpl

SCHEME = "django"
#: The store and queue a Django site gets when ``OPENID_PLUGINS`` names none.
DEFAULT_URL = "django://default"


def _django_ready() -> None:
    """Django must be configured, and this app installed, before its tables are used.

    Outside a Django process (``openid-plugins associate --store django://`` from a shell)
    ``DJANGO_SETTINGS_MODULE`` says which site's settings to load.
    """
    import django
    from django.apps import apps
    from django.conf import settings

    if not settings.configured:
        if not os.environ.get("DJANGO_SETTINGS_MODULE"):
            raise ConfigurationError(
                "django:// stores live in a Django site's database: run inside the site"
                " (python manage.py openid_associate) or set DJANGO_SETTINGS_MODULE"
            )
        django.setup()
    elif not apps.ready:
        raise ConfigurationError("django:// was opened before django.setup() finished")
    if not apps.is_installed("openid_plugins_django"):
        raise ConfigurationError(
            'django:// needs "openid_plugins_django" in INSTALLED_APPS (and migrate)'
        )


def open_store(url: str, options: StoreOptions):  # noqa: ANN201 - a DjangoStore
    _django_ready()
    from .store import DjangoStore, database_alias

    return DjangoStore(options, database_alias(url))


def open_queue(url: str, options: StoreOptions):  # noqa: ANN201 - a DjangoQueue
    _django_ready()
    from .store import DjangoQueue, database_alias

    return DjangoQueue(options, database_alias(url))


@hookimpl
def openid_backends() -> list[Backend]:
    return [
        Backend(
            kind="store",
            schemes=(SCHEME,),
            open=open_store,
            description="the Django site's database, through the ORM (django://ALIAS)",
        ),
        Backend(
            kind="queue",
            schemes=(SCHEME,),
            open=open_queue,
            description="a table in the Django site's database; SKIP LOCKED claims",
        ),
    ]
