"""Django set up in-process on a fresh database, and python3-openid's OP on 127.0.0.1, so every
test signs in over real HTTP against an OP none of us wrote.

Django's database is a new SQLite file, or with ``OPENID_DJANGO_TEST_DB=postgresql`` a new
PostgreSQL database on 127.0.0.1:5432 (dropped at the end); it holds the claims, the
sessions and the default ``django://`` store and queue.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import django
import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["openid_plugins.testing.contract"]

DB = os.environ.setdefault("OPENID_DJANGO_TEST_DB", "sqlite")
_tmp = tempfile.mkdtemp(prefix="openid-django-tests-")
if DB == "postgresql":
    import psycopg

    DB_NAME = f"openid_django_test_{os.getpid()}"
    ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
        admin.execute(f"CREATE DATABASE {DB_NAME}")
else:
    DB_NAME = os.path.join(_tmp, "site.sqlite3")
os.environ["OPENID_DJANGO_TEST_DB_NAME"] = DB_NAME
os.environ["DJANGO_SETTINGS_MODULE"] = "settings_for_tests"
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402
from django.test import Client  # noqa: E402
from openid_plugins_django import auth  # noqa: E402

from openid_plugins.testing.python3_openid_op import Python3OP  # noqa: E402

call_command("migrate", verbosity=0, interactive=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Drop the test database (PostgreSQL) and the temporary directory."""
    connections.close_all()
    if DB == "postgresql":
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    shutil.rmtree(_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def op_server():
    op = Python3OP().start()
    yield op
    op.stop()


@pytest.fixture
def op(op_server):
    op_server.reset()
    return op_server


@pytest.fixture(autouse=True)
def clean_site():
    """Each test starts with no users, links, sessions or OpenID state, and a fresh relying
    party."""
    import site_urls
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session
    from openid_plugins_django import models

    auth.reset_relying_party()
    site_urls.LOGIN_OPTIONS.clear()
    yield
    auth.reset_relying_party()
    for model in (
        User,
        Session,
        models.StoredAssociation,
        models.UsedNonce,
        models.CacheEntry,
        models.QueuedEndpoint,
    ):
        model.objects.all().delete()


class Browser:
    """A user's browser: Django's test client for the site, requests for the OP."""

    def __init__(self) -> None:
        self.site = Client()
        self.http = requests.Session()

    def start(self, identifier: str, **query: str):
        """Submit the login form; return the site's response (a redirect or a form)."""
        return self.site.get("/login/", {"openid": identifier, **query})

    def sign_in(self, identifier: str) -> str:
        """Go through the OP; return the URL it sends the browser back to (not followed)."""
        response = self.start(identifier)
        assert response.status_code == 302, response.content
        answer = self.http.get(response["Location"], allow_redirects=False)
        assert answer.status_code in (302, 303), answer.text
        return answer.headers["Location"]

    def finish(self, answer_url: str):
        return self.site.get(answer_url)


@pytest.fixture
def browser():
    return Browser()
