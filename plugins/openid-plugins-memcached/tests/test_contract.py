"""The core's Store contract kit against one real memcached and against two (HashClient).

Each test gets its own key prefix (on the URL for one server, in ``StoreOptions.extra`` for
two), so both ways of passing options are covered, the kit's racing processes included.

The restart guard is off here: the kit stamps nonces up to ``nonce_skew`` in the past on a
fresh prefix, and the guard refuses exactly those (a prefix or server first met after a
nonce was stamped cannot know whether it was used before). test_restart_guard.py covers it.
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
        servers = memcached_servers[: self.server_count]
        if self.server_count == 1:
            return url_for(servers, prefix) + "&restart_guard=false"
        return url_for(servers)

    @pytest.fixture
    def store_extra(self, prefix: str) -> dict[str, Any]:
        return {} if self.server_count == 1 else {"prefix": prefix, "restart_guard": False}


class TestOneServer(MemcachedContract):
    server_count = 1


class TestTwoServers(MemcachedContract):
    server_count = 2
