"""The Store and Queue contracts run against the built-in memory and file backends, plus
what is specific to ``memory://`` naming."""

from __future__ import annotations

import uuid

import pytest

# The contract's asserts are pytest-rewritten (detailed failure messages) only if registered
# before the import below; a conftest's ``pytest_plugins`` line would do the same.
pytest.register_assert_rewrite("openid_plugins.testing.contract")

from openid_plugins.config import open_queue, open_store  # noqa: E402
from openid_plugins.contracts import Association, StoreOptions  # noqa: E402
from openid_plugins.manager import make_plugin_manager  # noqa: E402
from openid_plugins.queues.file import FileQueue  # noqa: E402
from openid_plugins.queues.memory import MemoryQueue  # noqa: E402
from openid_plugins.stores.file import FileStore  # noqa: E402
from openid_plugins.stores.memory import MemoryStore  # noqa: E402
from openid_plugins.testing.contract import QueueContract, StoreContract  # noqa: E402

pytest_plugins = ["openid_plugins.testing.contract"]


class TestMemoryStore(StoreContract):
    multiprocess = False

    @pytest.fixture
    def store_url(self):
        return f"memory://contract-{uuid.uuid4().hex}"


class TestFileStore(StoreContract):
    @pytest.fixture
    def store_url(self, tmp_path):
        return (tmp_path / "store dir").as_uri()


class TestMemoryQueue(QueueContract):
    multiprocess = False

    @pytest.fixture
    def queue_url(self):
        return f"memory://contract-{uuid.uuid4().hex}"


class TestFileQueue(QueueContract):
    @pytest.fixture
    def queue_url(self, tmp_path):
        return (tmp_path / "queue").as_uri()


def test_entry_points_make_the_builtin_backends(tmp_path):
    pm = make_plugin_manager()
    options = StoreOptions()
    assert isinstance(open_store(pm, "memory://", options), MemoryStore)
    assert isinstance(open_store(pm, (tmp_path / "s").as_uri(), options), FileStore)
    assert isinstance(open_queue(pm, "memory://", options), MemoryQueue)
    assert isinstance(open_queue(pm, (tmp_path / "q").as_uri(), options), FileQueue)


def test_memory_names_select_shared_instances():
    pm = make_plugin_manager()
    name = f"memory://named-{uuid.uuid4().hex}"
    assoc = Association("h", b"s" * 20, 1000.0, 10**12, "HMAC-SHA1")
    open_store(pm, name, StoreOptions()).store_association("https://op/", assoc)
    assert open_store(pm, name, StoreOptions()).get_association("https://op/") == assoc
    assert open_store(pm, name + "x", StoreOptions()).get_association("https://op/") is None

    fresh = open_store(pm, "memory://", StoreOptions())
    fresh.store_association("https://op/", assoc)
    assert open_store(pm, "memory://", StoreOptions()).get_association("https://op/") is None

    open_queue(pm, name, StoreOptions()).put("https://op/")
    assert open_queue(pm, name, StoreOptions()).pending() == 1
    open_queue(pm, "memory://", StoreOptions()).put("https://op/")
    assert open_queue(pm, "memory://", StoreOptions()).pending() == 0
