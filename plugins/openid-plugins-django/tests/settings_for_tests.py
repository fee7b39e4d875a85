"""Django settings of the test site: database sessions, CSRF checks, the OpenID backend.

Django's database is SQLite (a file, so threads and spawned processes share it) unless
``OPENID_DJANGO_TEST_DB=postgresql``; conftest names the database in
``OPENID_DJANGO_TEST_DB_NAME`` before Django loads this module, and so do the processes the
contract kit spawns, which inherit the environment.
"""

import os

SECRET_KEY = "openid-plugins-django tests only"
ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
USE_TZ = True
_NAME = os.environ["OPENID_DJANGO_TEST_DB_NAME"]
if os.environ.get("OPENID_DJANGO_TEST_DB", "sqlite") == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": 5432,
            "USER": "postgres",
            "NAME": _NAME,
        }
    }
else:
    # IMMEDIATE: a transaction takes the write lock when it starts, so concurrent writers
    # wait (timeout) instead of failing with "database is locked" (Django 5.1+).
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _NAME,
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
        }
    }
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "openid_plugins_django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(os.path.dirname(__file__), "templates")],
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
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "openid_plugins_django.auth.Backend",
]
ROOT_URLCONF = "site_urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The default store and queue (django://default), with the test OP on 127.0.0.1.
OPENID_PLUGINS = {"fetch_block_private_addresses": False}
