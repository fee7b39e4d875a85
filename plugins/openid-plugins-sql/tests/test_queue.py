"""SQLQueue on SQLite, PostgreSQL and MariaDB: de-duplication, claims, leases, wait()."""

from __future__ import annotations

import threading

import pytest
from openid_plugins_sql import SQLQueue

from openid_plugins.contracts import QueueItem, StoreOptions
from openid_plugins.errors import QueueError
from openid_plugins.testing.clock import FakeClock

OPS = [f"https://op{i}.example/server" for i in range(10)]


def test_put_deduplicates_and_claim_is_fifo(queue: SQLQueue) -> None:
    for url in OPS[:3] + OPS[:3]:
        queue.put(url)
    assert queue.pending() == 3
    first = queue.claim(limit=2)
    assert [i.server_url for i in first] == OPS[:2]
    assert [i.server_url for i in queue.claim(limit=5)] == OPS[2:3]
    assert queue.claim() == []
    queue.put(OPS[0])  # already waiting (claimed): dropped
    assert queue.pending() == 3


def test_ack_removes_and_release_returns(queue: SQLQueue) -> None:
    for url in OPS[:3]:
        queue.put(url)
    items = queue.claim()
    queue.ack(items[:1])
    queue.release(items[1:2])
    assert queue.pending() == 2
    again = queue.claim()
    assert [i.server_url for i in again] == [OPS[1]]
    queue.ack([items[2], *again])
    assert queue.pending() == 0
    queue.ack([])
    queue.release([])


def test_an_expired_lease_makes_the_item_claimable_again(queue: SQLQueue, clock: FakeClock) -> None:
    queue.put(OPS[0])
    [stale] = queue.claim(lease=30)
    clock.advance(29)
    assert queue.claim() == []
    clock.advance(2)
    [fresh] = queue.claim(lease=30)
    assert fresh.server_url == OPS[0]
    assert fresh.token != stale.token
    queue.ack([stale])  # the old claimer lost the lease: its ack changes nothing
    queue.release([stale])
    assert queue.pending() == 1
    assert queue.claim() == []
    queue.ack([fresh])
    assert queue.pending() == 0


def test_claims_from_threads_never_overlap(queue: SQLQueue) -> None:
    for url in OPS:
        queue.put(url)
    claimed: list[QueueItem] = []
    barrier = threading.Barrier(6)

    def claimer() -> None:
        barrier.wait()
        claimed.extend(queue.claim(limit=3))

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i.server_url for i in claimed) == sorted(OPS)


def test_items_not_from_this_queue_are_refused(queue: SQLQueue) -> None:
    with pytest.raises(QueueError, match="not claimed from a SQL queue"):
        queue.ack([QueueItem(OPS[0], "/var/lib/queue/abc.claimed")])


def test_wait_reports_claimable_items(queue: SQLQueue, clock: FakeClock) -> None:
    assert queue.wait(0.05) is False
    queue.put(OPS[0])
    assert queue.wait(0.05) is True
    queue.claim(lease=10)
    assert queue.wait(0.05) is False  # waiting but claimed: nothing to take
    clock.advance(11)
    assert queue.wait(0.05) is True


def test_wait_wakes_up_for_a_put_from_another_thread(url: str, options: StoreOptions) -> None:
    with SQLQueue(url, options) as waiter, SQLQueue(url, options) as producer:
        waiter.pending()  # schema ready before the race starts
        result: list[bool] = []
        thread = threading.Thread(target=lambda: result.append(waiter.wait(60)))
        thread.start()
        producer.put(OPS[0])
        thread.join()
        assert result == [True]


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_postgresql_put_sends_a_notify_to_listeners(url: str, options: StoreOptions) -> None:
    with SQLQueue(url, options) as waiter, SQLQueue(url, options) as producer:
        assert waiter._listen() is True
        assert waiter._notified(0.05) is False
        producer.put(OPS[0])
        assert waiter._notified(30) is True
        producer.put(OPS[0])  # a duplicate inserts nothing, so it notifies nobody
        assert waiter._notified(0.05) is False


def test_a_closed_queue_refuses_work(url: str, options: StoreOptions) -> None:
    queue = SQLQueue(url, options)
    queue.put(OPS[0])
    queue.close()
    with pytest.raises(QueueError, match="closed"):
        queue.pending()
