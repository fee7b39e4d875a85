"""The TTL indexes remove dead entries without ``cleanup``: a SecantusDB server in this
process sweeping every second (mongod sweeps every 60 s), and entries whose expiry, plus the
index's grace, lies in the past."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
from conftest import unavailable
from openid_plugins_mongodb import MongoStore
from openid_plugins_mongodb.schema import TTL_GRACE

from openid_plugins.contracts import Association, StoreOptions

OP = "https://op.example/server"
PATIENCE = 60.0


@pytest.fixture
def sweeping_server(tmp_path: Path) -> Iterator[str]:
    try:
        from secantus import SecantusDBServer
    except ImportError:
        unavailable("secantusdb is not installed (pip install -e '.[test]')")
    server = SecantusDBServer(port=0, storage_path=str(tmp_path / "ttl"), ttl_sweep_seconds=1)
    server.start()
    try:
        yield server.uri.rstrip("/")
    finally:
        server.stop()


def test_the_server_sweeps_what_expired_beyond_the_grace(sweeping_server: str) -> None:
    url = f"{sweeping_server}/ttl"
    long_ago = TTL_GRACE + 600
    with MongoStore(url, StoreOptions()) as store:
        now = store.clock.now()
        store.store_association(OP, Association("dead", b"s" * 20, now - long_ago, 60, "HMAC-SHA1"))
        store.store_association(OP, Association("live", b"s" * 20, now, 3600, "HMAC-SHA1"))
        store.cache_set("ns", "dead", 1, -long_ago)
        store.cache_set("ns", "live", 2, 3600)
        # Expired, but within the grace: the server keeps it; reads ignore it anyway.
        store.cache_set("ns", "graced", 3, -60)
        assert store.cache_get("ns", "graced") is None

    client = pymongo.MongoClient(url)
    try:
        db = client.get_default_database()
        deadline = time.monotonic() + PATIENCE
        while db.openid_associations.count_documents({}) > 1 or (
            db.openid_cache.count_documents({}) > 2
        ):
            assert time.monotonic() < deadline, "the TTL indexes removed nothing"
            time.sleep(0.1)
        assert [d["handle"] for d in db.openid_associations.find()] == ["live"]
        assert sorted(d["key"] for d in db.openid_cache.find()) == ["graced", "live"]
    finally:
        client.close()
