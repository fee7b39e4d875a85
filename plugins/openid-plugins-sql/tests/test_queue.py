"""SQLQueue on SQLite, PostgreSQL and MariaDB: de-duplication, claims, leases, wait()."""

from __future__ import annotations

import pytest
from openid_plugins_sql import SQLQueue

from openid_plugins.contracts import QueueItem, StoreOptions
from openid_plugins.errors import QueueError

OPS = [f"https://op{i}.example/server" for i in range(10)]


def test_put_deduplicates_and_claim_is_fifo(queue: SQLQueue) -> None:
    for url in OPS[:3] + OPS[:3]:
        queue.put(url)
    assert queue.pending() == 3
    first = queue.claim(limit=2)
    assert [i.server_url for i in first] == OPS[:2]
    assert [i.server_url for i in queue.claim(limit=5)] == OPS[2:3]
    assert queue.claim() == []


def test_a_url_asked_for_again_while_claimed_is_queued_once_more(queue: SQLQueue) -> None:
    queue.put(OPS[0])
    [first] = queue.claim()
    queue.put(OPS[0])  # a new need, after the claimer started
    queue.put(OPS[0])  # ...which is waiting now: dropped
    assert queue.pending() == 2
    queue.release([first])  # the waiting row already stands for the URL: this one goes
    assert queue.pending() == 1
    [second] = queue.claim()
    assert second.server_url == OPS[0]
    assert queue.claim() == []


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_items_not_from_this_queue_are_refused(queue: SQLQueue) -> None:
    with pytest.raises(QueueError, match="not claimed from a SQL queue"):
        queue.ack([QueueItem(OPS[0], "/var/lib/queue/abc.claimed")])


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_postgresql_put_sends_a_notify_to_listeners(url: str, options: StoreOptions) -> None:
    with SQLQueue(url, options) as waiter, SQLQueue(url, options) as producer:
        waiter._listen()
        assert waiter._notified(0.05) is False
        producer.put(OPS[0])
        assert waiter._notified(30) is True
        producer.put(OPS[0])  # a duplicate inserts nothing, so it notifies nobody
        assert waiter._notified(0.05) is False


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_a_closed_queue_refuses_work(url: str, options: StoreOptions) -> None:
    queue = SQLQueue(url, options)
    queue.put(OPS[0])
    queue.close()
    with pytest.raises(QueueError, match="closed"):
        queue.pending()
