"""Django configured in-process (in-memory SQLite, migrations applied) and python3-openid's OP
on 127.0.0.1, so every test signs in over real HTTP against an OP none of us wrote."""

from __future__ import annotations

import sys
from pathlib import Path

import django
import pytest
import requests
from django.conf import settings

sys.path.insert(0, str(Path(__file__).parent))

import settings_for_tests  # noqa: E402

settings.configure(**{k: v for k, v in vars(settings_for_tests).items() if k.isupper()})
django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from openid_plugins_django import auth  # noqa: E402

from openid_plugins.testing.python3_openid_op import Python3OP  # noqa: E402

call_command("migrate", verbosity=0, interactive=False)


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
    """Each test starts with no users, links or sessions and a fresh relying party."""
    import site_urls
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session

    auth.reset_relying_party()
    site_urls.LOGIN_OPTIONS.clear()
    yield
    auth.reset_relying_party()
    User.objects.all().delete()
    Session.objects.all().delete()


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
