"""The contract kit on a backend: this is all a store or queue distribution's tests need
(shown by docs/plugins.rst). Here the core's memory backend, which lives in one process."""

import secrets

import pytest

from openid_plugins.testing.contract import QueueContract, StoreContract


class TestMemoryStore(StoreContract):
    multiprocess = False  # memory:// cannot be shared between processes

    @pytest.fixture
    def store_url(self) -> str:
        return f"memory://{secrets.token_hex(8)}"  # a new store; this URL reopens the same one


class TestMemoryQueue(QueueContract):
    multiprocess = False

    @pytest.fixture
    def queue_url(self) -> str:
        return f"memory://{secrets.token_hex(8)}"
