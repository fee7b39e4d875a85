"""Settings of the example site: OpenID sign-in with openid-plugins-django, for development.

Everything OpenID needs is here: the app, the session middleware, the authentication backend,
and ``OPENID_PLUGINS`` (only because the development OP runs on 127.0.0.1). The OpenID store
and queue are the site's own database (``django://default``, the default).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("EXAMPLE_SITE_SECRET_KEY", "development only: set a real secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "openid_plugins_django",
    "accounts",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "openid_plugins_django.auth.Backend",
]
ROOT_URLCONF = "example_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_SITE_DB", BASE_DIR / "db.sqlite3"),
        # Concurrent writers (web requests, the fetcher thread) wait instead of failing.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
LOGIN_URL = "login"

OPENID_PLUGINS = {
    # The development OP listens on 127.0.0.1, which the private-address guard refuses.
    # Never in production: `manage.py check` warns when DEBUG is False.
    "fetch_block_private_addresses": False,
    # Associations made by a thread of the development server. In production run
    # `python manage.py openid_associate --watch` (or --once from cron) instead.
    "fetcher": "thread",
}
