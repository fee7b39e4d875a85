"""What the contract kit cannot see: the indexes, the consistency settings, the CLI, a dead
server, and nonce inserts whose outcome is unknown (mongod's ``failCommand`` fail point,
which SecantusDB implements too)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import pymongo
import pytest
from conftest import fail_point
from openid_plugins_mongodb import MongoQueue, MongoStore
from openid_plugins_mongodb.schema import TTL_GRACE

from openid_plugins.cli import main
from openid_plugins.contracts import Association, StoreOptions
from openid_plugins.errors import QueueError, StoreError
from openid_plugins.testing.clock import FakeClock

OP = "https://op.example/server"
EXPECTED = {
    "associations": {"_id_", "server_url_handle", "newest", "ttl"},
    "nonces": {"_id_", "ttl"},
    "cache": {"_id_", "ttl"},
    "queue": {"_id_", "waiting", "claimable"},
}


def indexes(db_url: str, prefix: str) -> dict[str, dict[str, dict]]:
    client = pymongo.MongoClient(db_url)
    try:
        db = client.get_default_database()
        return {
            name: db[prefix + name].index_information()
            for name in EXPECTED
            if prefix + name in db.list_collection_names()
        }
    finally:
        client.close()


def test_first_use_creates_the_indexes(db_url: str, options: StoreOptions) -> None:
    with MongoStore(db_url, options) as store:
        store.use_nonce(OP, options.clock.now(), "s")
    found = indexes(db_url, "openid_")
    assert {name: set(info) for name, info in found.items()} == EXPECTED
    assert found["associations"]["server_url_handle"]["unique"] is True
    assert found["queue"]["waiting"]["unique"] is True
    for name in ("associations", "nonces", "cache"):
        assert found[name]["ttl"]["expireAfterSeconds"] == TTL_GRACE


def collections(db_url: str) -> list[str]:
    client = pymongo.MongoClient(db_url)
    try:
        return client.get_default_database().list_collection_names()
    finally:
        client.close()


def test_create_indexes_false_refuses_until_the_command_made_them(
    db_url: str, options: StoreOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = StoreOptions(clock=options.clock, extra={"create_indexes": "false"})
    refused = pytest.raises(StoreError, match=f"run: openid-plugins mongodb upgrade {db_url}$")
    with MongoStore(db_url, extra) as store, refused:
        store.cache_set("ns", "k", 1, 60)
    assert collections(db_url) == []  # nothing created, not even by the insert

    assert main(["mongodb", "upgrade", db_url]) == 0
    assert main(["mongodb", "upgrade", db_url]) == 0  # idempotent
    out = capsys.readouterr().out
    assert "7 indexes in place" in out and "openid_nonces.ttl" in out
    assert {n: set(i) for n, i in indexes(db_url, "openid_").items()} == EXPECTED
    with MongoStore(db_url, extra) as store:
        store.cache_set("ns", "k", 1, 60)
        assert store.cache_get("ns", "k") == 1
    assert main(["mongodb", "upgrade", db_url, "--collection-prefix", "b_"]) == 0
    assert set(indexes(db_url, "b_")) == set(EXPECTED)


@pytest.mark.parametrize(
    "command", [["cleanup"], ["associate", "--once", "--quiet", "--queue", "URL"]]
)
def test_maintenance_commands_create_nothing_and_say_how_to(
    command: list[str], db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """StoreOptions.create is false for cleanup and associate: a mistyped database or
    prefix is an error naming the command that creates the indexes, not a new empty store."""
    url = f"{db_url}?collection_prefix=typo_"
    argv = [url if arg == "URL" else arg for arg in command]
    assert main([*argv, "--store", url]) == 1
    err = capsys.readouterr().err
    assert "lacks the indexes typo_associations.server_url_handle" in err
    assert f"run: openid-plugins mongodb upgrade {db_url} --collection-prefix typo_" in err
    assert collections(db_url) == []

    assert main(["mongodb", "upgrade", url]) == 0
    assert main([*argv, "--store", url]) == 0
    assert set(collections(db_url)) == {f"typo_{name}" for name in EXPECTED}


def test_upgrade_command_reports_a_dead_server() -> None:
    url = "mongodb://127.0.0.1:9/db?serverSelectionTimeoutMS=300"
    assert main(["mongodb", "upgrade", url]) == 1


def test_ttl_dates_follow_the_remaining_time_not_the_clock(db_url: str) -> None:
    """A clock far from the wall clock (tests, a site's own Clock) still gets entries swept
    after their remaining lifetime, never at once."""
    clock = FakeClock(start=1_000_000_000.0)  # 2001
    with MongoStore(db_url, StoreOptions(clock=clock, nonce_skew=300.0)) as store:
        store.store_association(OP, Association("h", b"s" * 20, clock.now(), 600, "HMAC-SHA1"))
        assert store.use_nonce(OP, clock.now(), "salt") is True
    client = pymongo.MongoClient(db_url, tz_aware=True)
    try:
        db = client.get_default_database()
        now = datetime.now(timezone.utc)
        assoc = db.openid_associations.find_one()["expire_at"]
        nonce = db.openid_nonces.find_one()["expire_at"]
    finally:
        client.close()
    assert 590 <= (assoc - now).total_seconds() <= 600
    assert 290 <= (nonce - now).total_seconds() <= 300


def test_writes_wait_for_a_majority_and_reads_go_to_the_primary(db_url: str) -> None:
    with MongoStore(db_url, StoreOptions()) as store:
        for name in ("associations", "nonces", "cache"):
            collection = store._handle.collection(name)
            assert collection.write_concern.document["w"] == "majority"
            assert collection.read_preference == pymongo.ReadPreference.PRIMARY


def test_dead_server_is_a_store_error_within_the_selection_timeout() -> None:
    url = "mongodb://127.0.0.1:9/db?serverSelectionTimeoutMS=300"
    with MongoStore(url, StoreOptions()) as store:
        with pytest.raises(StoreError, match="reachable within the server selection timeout"):
            store.use_nonce(OP, store.clock.now(), "s")
        with pytest.raises(StoreError, match="reachable"):
            store.get_association(OP)
    with MongoQueue(url, StoreOptions()) as queue, pytest.raises(QueueError, match="reachable"):
        queue.put(OP)


def test_nonce_insert_lost_on_the_wire_is_a_store_error(db_url: str, server: str) -> None:
    """The connection closes under the insert (and under pymongo's one retry on a replica
    set): nobody knows whether it was stored, so the login fails; it is not accepted."""
    with MongoStore(db_url, StoreOptions()) as store:
        now = store.clock.now()
        store.use_nonce(OP, now, "warm-up")  # connected, indexes made
        with (
            fail_point(server, 2, failCommands=["insert"], closeConnection=True),
            pytest.raises(StoreError, match="outcome is unknown"),
        ):
            store.use_nonce(OP, now, "lost")
        # pymongo reconnects by itself; this server closed the connection before the insert
        # ran, so the nonce was never stored and is usable once.
        assert store.use_nonce(OP, now, "lost") is True
        assert store.use_nonce(OP, now, "lost") is False


def test_nonce_insert_unconfirmed_by_a_majority_is_a_store_error(db_url: str, server: str) -> None:
    """The insert happened but a majority never confirmed it: a StoreError, and the stored
    nonce refuses every later use (fail closed, both times)."""
    with MongoStore(db_url, StoreOptions()) as store:
        now = store.clock.now()
        store.use_nonce(OP, now, "warm-up")
        wc_error = {
            "code": 64,
            "codeName": "WriteConcernFailed",
            "errmsg": "waiting for replication timed out",
            "errInfo": {"wtimeout": True},
        }  # noqa: E501
        with (
            fail_point(server, 1, failCommands=["insert"], writeConcernError=wc_error),
            pytest.raises(StoreError, match="majority"),
        ):
            store.use_nonce(OP, now, "unconfirmed")
        assert store.use_nonce(OP, now, "unconfirmed") is False


def test_one_lost_reply_is_retried_by_pymongo_on_a_replica_set(
    replset_db_url: str, replset_server: str
) -> None:
    """Retryable writes: the driver resends the insert once under the same transaction
    number, so a single network error costs nothing and the nonce is used exactly once."""
    with MongoStore(replset_db_url, StoreOptions()) as store:
        now = store.clock.now()
        store.use_nonce(OP, now, "warm-up")
        with fail_point(replset_server, 1, failCommands=["insert"], closeConnection=True):
            assert store.use_nonce(OP, now, "retried") is True
        assert store.use_nonce(OP, now, "retried") is False


def test_queue_waits_on_a_change_stream_on_a_replica_set_and_polls_otherwise(
    db_url: str, server: str, replset_server: str, options: StoreOptions
) -> None:
    with MongoQueue(db_url, options) as queue, MongoQueue(db_url, options) as producer:
        assert queue.wait(0) is False
        assert queue._change_streams is (server == replset_server)
        timer = threading.Timer(0.2, producer.put, args=(OP,))
        timer.start()
        try:
            assert queue.wait(60) is True
        finally:
            timer.join()
        [item] = queue.claim()
        assert queue.wait(0.1) is False  # claimed: nothing claimable


def test_queue_refuses_tokens_it_never_issued(db_url: str, options: StoreOptions) -> None:
    from openid_plugins.contracts import QueueItem

    with MongoQueue(db_url, options) as queue, pytest.raises(QueueError):
        queue.ack([QueueItem(OP, "not-a-token")])


def _use_in_child(store: MongoStore, stamp: float, results: Any) -> None:
    """The parent's store and a queue opened in the child share the child's own client."""
    with MongoQueue(store.target.uri + "?collection_prefix=openid_", store.options) as queue:
        queue.put(OP)
        results.put(store.use_nonce(OP, stamp, "forked"))
        store.close()
        results.put(queue.pending())  # the child's client outlives the store's close


def test_a_forked_child_gets_a_client_of_its_own(db_url: str) -> None:
    """pymongo clients are not fork-safe: a store used before a fork (a pre-forking web
    server) makes a new client in the child instead of sharing the parent's sockets."""
    import multiprocessing
    import warnings

    ctx = multiprocessing.get_context("fork")
    with MongoStore(db_url, StoreOptions()) as store:
        stamp = store.clock.now()
        assert store.use_nonce(OP, stamp, "parent") is True
        results = ctx.Queue()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
            child = ctx.Process(target=_use_in_child, args=(store, stamp, results))
            child.start()
        child.join(60)
        assert child.exitcode == 0
        assert results.get(timeout=10) is True
        assert results.get(timeout=10) == 1
        assert store.use_nonce(OP, stamp, "forked") is False
        assert store.use_nonce(OP, stamp, "parent-after") is True


def test_a_closed_store_refuses_work(db_url: str) -> None:
    store = MongoStore(db_url, StoreOptions())
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="after close"):
        store.get_association(OP)
