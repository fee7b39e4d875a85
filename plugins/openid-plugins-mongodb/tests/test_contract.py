"""The core's Store and Queue contract kit, on a replica-set server and a standalone one.

The prefix goes in the URL for the store and in ``StoreOptions.extra`` for the queue: the
kit's racing processes open backends from URL and extra, so both paths are covered.
"""

from __future__ import annotations

from typing import Any

import pytest

from openid_plugins.testing.contract import QueueContract, StoreContract


class TestMongoStore(StoreContract):
    @pytest.fixture
    def store_url(self, db_url: str) -> str:
        return f"{db_url}?collection_prefix=s_"


class TestMongoQueue(QueueContract):
    @pytest.fixture
    def queue_url(self, db_url: str) -> str:
        return db_url

    @pytest.fixture
    def queue_extra(self) -> dict[str, Any]:
        return {"collection_prefix": "q_"}
