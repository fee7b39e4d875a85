"""The ``django://`` store and queue pass the core's contract kit, on SQLite and PostgreSQL
(whichever is Django's database in this run), across threads and spawned processes; the
plugin costs nothing where Django is not used; models, migrations and checks agree."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from openid_plugins_django.plugin import DEFAULT_URL

from openid_plugins.testing.contract import QueueContract, StoreContract


class TestDjangoStore(StoreContract):
    @pytest.fixture
    def store_url(self) -> str:
        return DEFAULT_URL  # emptied after each test by conftest's clean_site


class TestDjangoQueue(QueueContract):
    @pytest.fixture
    def queue_url(self) -> str:
        return DEFAULT_URL


def test_the_plugin_manager_does_not_import_django():
    """Installing this distribution costs nothing to processes that do not use django://."""
    code = (
        "import sys; from openid_plugins.manager import make_plugin_manager;"
        "from openid_plugins.backends import store_schemes;"
        "assert 'django' in store_schemes(make_plugin_manager());"
        "assert 'django' not in sys.modules, 'django was imported'"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_models_and_migrations_agree():
    """No model change without its migration (on every Django of the test matrix)."""
    call_command("makemigrations", "openid_plugins_django", "--check", "--dry-run", verbosity=0)


def test_django_system_checks_pass():
    errors = [m for m in run_checks(include_deployment_checks=False) if m.is_serious()]
    assert errors == []
