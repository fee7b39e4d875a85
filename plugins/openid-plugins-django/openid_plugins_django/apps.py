"""The Django app: claim -> user links, the django:// store and queue, checks, commands."""

from __future__ import annotations

from django.apps import AppConfig


class OpenIDPluginsDjangoConfig(AppConfig):
    name = "openid_plugins_django"
    verbose_name = "OpenID sign-in"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
