"""The ``django://`` store and queue pass the core's contract kit, on SQLite and PostgreSQL
(whichever is Django's database in this run), across threads and spawned processes."""

from __future__ import annotations

import pytest
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
