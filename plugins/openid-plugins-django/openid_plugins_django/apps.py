"""The Django app holding the claim -> user links."""

from __future__ import annotations

from django.apps import AppConfig


class OpenIDPluginsDjangoConfig(AppConfig):
    name = "openid_plugins_django"
    verbose_name = "OpenID sign-in"
    default_auto_field = "django.db.models.BigAutoField"
