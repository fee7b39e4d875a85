"""The core's Store contract kit against one real memcached and against two (HashClient).

Each test gets its own key prefix (on the URL for one server, in ``StoreOptions.extra`` for
two), so both ways of passing options are covered, the kit's racing processes included.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import MemcachedServer, new_prefix, url_for

from openid_plugins.testing.contract import StoreContract


class MemcachedContract(StoreContract):
    #: memcached expires keys itself: cleanup() has nothing to count.
    cleanup_counts = False
    server_count = 1

    @pytest.fixture
    def prefix(self) -> str:
        return new_prefix()

    @pytest.fixture
    def store_url(self, memcached_servers: list[MemcachedServer], prefix: str) -> str:
        in_url = prefix if self.server_count == 1 else None
        return url_for(memcached_servers[: self.server_count], in_url)

    @pytest.fixture
    def store_extra(self, prefix: str) -> dict[str, Any]:
        return {} if self.server_count == 1 else {"prefix": prefix}


class TestOneServer(MemcachedContract):
    server_count = 1


class TestTwoServers(MemcachedContract):
    server_count = 2
