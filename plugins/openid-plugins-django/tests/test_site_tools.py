"""What a Django site gets around the seed's API: ``openid_associate`` and ``openid_cleanup``,
the system checks and the admin for linked claims."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from openid_plugins_django import auth
from openid_plugins_django.models import (
    CacheEntry,
    OpenIDClaim,
    QueuedEndpoint,
    StoredAssociation,
    UsedNonce,
)

GUARD_OFF = {"fetch_block_private_addresses": False}
TESTS = Path(__file__).parent
#: Bound on waiting for another process (a hung one fails the test).
PATIENCE = 60.0


def test_openid_associate_once_makes_the_association_the_next_login_uses(op, browser):
    # First sign-in: no association yet, so the endpoint is queued and the OP confirms the
    # answer itself (check_authentication).
    assert browser.finish(browser.sign_in(op.identity())).json()["anonymous"] is True
    assert op.last_checkid.assoc_handle is None
    assert op.counts["check_authentication"] == 1
    assert list(QueuedEndpoint.objects.values_list("server_url", flat=True)) == [op.endpoint()]

    out = io.StringIO()
    call_command("openid_associate", "--once", stdout=out)
    assert "made 1" in out.getvalue()
    assert op.counts["associate"] == 1
    assert StoredAssociation.objects.count() == 1
    assert QueuedEndpoint.objects.count() == 0

    # Every later sign-in (any web server process: the association is in the database)
    # sends the handle and is verified locally.
    auth.reset_relying_party()
    for _ in range(2):
        assert browser.finish(browser.sign_in(op.identity())).json()["anonymous"] is True
        assert op.last_checkid.assoc_handle == StoredAssociation.objects.get().handle
    assert op.counts["check_authentication"] == 1


def test_openid_associate_watch_serves_the_queue_until_sigterm(op):
    """``--watch`` in its own process (it owns the signal handlers), on the test settings."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "django", "openid_associate", "--watch", "--poll", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        auth.get_relying_party().queue.put(op.endpoint())
        deadline = time.monotonic() + PATIENCE
        while not StoredAssociation.objects.exists():
            assert watcher.poll() is None, watcher.communicate()
            assert time.monotonic() < deadline, "no association after a minute"
            time.sleep(0.1)
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=PATIENCE)
    assert watcher.returncode == 0, err
    assert "made 1" in out
    assert op.counts["associate"] == 1


def test_openid_associate_fails_loudly_when_an_association_fails():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{s.getsockname()[1]}/op"  # closed again: nobody answers
    auth.get_relying_party().queue.put(gone)
    with pytest.raises(CommandError, match="failed 1"):
        call_command("openid_associate", "--once", stdout=io.StringIO())
    assert StoredAssociation.objects.count() == 0


def test_openid_cleanup_removes_expired_entries():
    rp = auth.get_relying_party()
    now = rp.clock.now()
    UsedNonce.objects.create(key="a" * 64, expires=now - 1)
    UsedNonce.objects.create(key="b" * 64, expires=now + 600)
    CacheEntry.objects.create(key="c" * 64, value="1", expires=now - 1)
    out = io.StringIO()
    call_command("openid_cleanup", stdout=out)
    assert out.getvalue().strip() == "removed 2 expired entries"
    assert list(UsedNonce.objects.values_list("key", flat=True)) == ["b" * 64]


def openid_checks() -> dict[str, str]:
    return {
        m.id: m.msg
        for m in run_checks(tags=["openid_plugins"])
        if m.id.startswith("openid_plugins_django.")
    }


def test_checks_pass_for_a_configured_site():
    guarded = {"fetch_block_private_addresses": True}  # the core's default soon
    with override_settings(OPENID_PLUGINS=guarded, DEBUG=False):
        assert openid_checks() == {}
    with override_settings(DEBUG=True):  # the test OP on 127.0.0.1 is fine while developing
        assert openid_checks() == {}


def test_check_private_address_guard_off_in_production():
    with override_settings(OPENID_PLUGINS=GUARD_OFF, DEBUG=False):
        assert set(openid_checks()) == {"openid_plugins_django.W001"}


@pytest.mark.parametrize(
    ("plugins", "code", "text"),
    [
        ({"store": "redis://127.0.0.1/0"}, "E002", "redis://"),
        ({"store": "file"}, "E002", "not a URL"),
        ({"queue": "nosuch:///x"}, "E003", "nosuch://"),
        ({"store": "memory://"}, "W002", "one process"),
        ({"no_such_setting": 1}, "E001", "no_such_setting"),
    ],
)
def test_check_store_and_queue(plugins, code, text):
    with override_settings(OPENID_PLUGINS=plugins, DEBUG=False):
        found = openid_checks()
    assert text in found[f"openid_plugins_django.{code}"]


def test_check_session_middleware_and_backend():
    middleware = [m for m in settings.MIDDLEWARE if "SessionMiddleware" not in m]
    backends = ["django.contrib.auth.backends.ModelBackend"]
    with override_settings(MIDDLEWARE=middleware, AUTHENTICATION_BACKENDS=backends):
        found = openid_checks()
    assert {"openid_plugins_django.E004", "openid_plugins_django.E005"} <= set(found)


def test_admin_lists_searches_and_unlinks_claims():
    admin = User.objects.create_superuser("root", "root@example.com", "pw")
    alice = User.objects.create_user("alice", "alice@example.com")
    bob = User.objects.create_user("bob", "bob@example.net")
    auth.linkOpenID(alice, "https://alice.example/")
    auth.linkOpenID(bob, "https://openid.example/bob")
    client = Client()
    client.force_login(admin)
    url = "/admin/openid_plugins_django/openidclaim/"

    page = client.get(url).content.decode()
    assert "https://alice.example/" in page and "https://openid.example/bob" in page
    for query, shown, hidden in [
        ("alice", "https://alice.example/", "https://openid.example/bob"),  # user name
        ("openid.example", "https://openid.example/bob", "https://alice.example/"),  # claim
        ("example.net", "https://openid.example/bob", "https://alice.example/"),  # e-mail
    ]:
        page = client.get(url, {"q": query}).content.decode()
        assert shown in page and hidden not in page, query

    link = OpenIDClaim.objects.get(user=alice)
    response = client.post(url, {"action": "unlink", "_selected_action": [link.pk]}, follow=True)
    assert "Unlinked 1 OpenID claim" in response.content.decode()
    assert auth.getOpenIDs(alice) == []
    assert auth.getOpenIDs(bob) == ["https://openid.example/bob"]
