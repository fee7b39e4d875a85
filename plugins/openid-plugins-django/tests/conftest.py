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
from dataclasses import dataclass
from html.parser import HTMLParser
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
from django.test.utils import setup_test_environment  # noqa: E402
from openid_plugins_django import auth  # noqa: E402

from openid_plugins.testing.python3_openid_op import Python3OP  # noqa: E402

setup_test_environment()  # the test client records each response's template context
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


class FormParser(HTMLParser):
    """The action and fields of the first form in a page (an auto-submitting OpenID form)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = values.get("action") or ""
        elif tag == "input" and values.get("name"):
            self.fields[values["name"]] = values.get("value") or ""


def form_of(page: str) -> tuple[str, dict[str, str]]:
    parser = FormParser()
    parser.feed(page)
    assert parser.action is not None, page[:500]
    return parser.action, parser.fields


@dataclass
class Answer:
    """How the OP sends the browser back: a redirect (GET) or a self-submitting form (POST)."""

    url: str
    form: dict[str, str] | None = None


class Browser:
    """A user's browser: Django's test client (with CSRF checks) for the site, requests for
    the OP."""

    def __init__(self) -> None:
        self.site = Client(enforce_csrf_checks=True)
        self.http = requests.Session()

    def start(self, identifier: str, **query: str):
        """Submit the login form; return the site's response (a redirect or a form)."""
        return self.site.get("/login/", {"openid": identifier, **query})

    def to_op(self, response) -> Answer:
        """Follow the site's redirect or form to the OP; return how it answers (not followed)."""
        if response.status_code == 302:
            answer = self.http.get(response["Location"], allow_redirects=False)
        else:
            assert response.status_code == 200, response.content[:500]
            action, fields = form_of(response.content.decode())
            answer = self.http.post(action, data=fields, allow_redirects=False)
        if answer.status_code in (302, 303):
            return Answer(answer.headers["Location"])
        assert answer.status_code == 200, answer.text[:500]
        return Answer(*form_of(answer.text))

    def sign_in(self, identifier: str) -> str:
        """Go through the OP; return the URL it sends the browser back to (not followed)."""
        response = self.start(identifier)
        assert response.status_code == 302, response.content
        answer = self.to_op(response)
        assert answer.form is None, "the OP answered by form"
        return answer.url

    def finish(self, answer: str | Answer):
        if isinstance(answer, str):
            return self.site.get(answer)
        if answer.form is None:
            return self.site.get(answer.url)
        return self.site.post(answer.url, answer.form)


@pytest.fixture
def browser():
    return Browser()
