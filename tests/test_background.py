"""Background associations (seed 000): logins never wait for Diffie-Hellman."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace

from conftest import REALM, RETURN_TO, query_of

from openid_plugins import hookimpl
from openid_plugins.fetcher import BackgroundFetcher


def login(rp, browser, identifier):
    session: dict = {}
    auth = rp.begin(identifier, RETURN_TO, REALM, session=session)
    back = browser.visit_op(auth)
    return auth, rp.complete(query_of(back), back, session=session)


def test_first_login_is_stateless_then_fetcher_associates(op, make_rp, browser):
    rp = make_rp(association="background")
    auth, first = login(rp, browser, op.identity())
    assert auth.association is None
    assert op.counts["associate"] == 0
    assert first.verified_by == "check_authentication"
    assert rp.queue.pending() == 1

    stats = BackgroundFetcher(rp.associator, rp.queue).run_once()
    assert (stats.made, stats.failed) == (1, 0)
    assert op.counts["associate"] == 1
    assert rp.queue.pending() == 0

    checks = op.counts["check_authentication"]
    auth, second = login(rp, browser, op.identity())
    assert auth.association is not None
    assert second.verified_by == "association"
    assert op.counts["check_authentication"] == checks


def test_endpoint_is_queued_once(op, make_rp, browser):
    rp = make_rp(association="background")
    for _ in range(3):
        login(rp, browser, op.identity())
    assert rp.queue.pending() == 1


def test_fetcher_skips_endpoints_that_have_an_association(op, make_rp, browser):
    rp = make_rp(association="background")
    login(rp, browser, op.identity())
    fetcher = BackgroundFetcher(rp.associator, rp.queue)
    fetcher.run_once()
    rp.queue.put(op.endpoint())
    stats = fetcher.run_once()
    assert (stats.made, stats.skipped) == (0, 1)
    assert op.counts["associate"] == 1


def test_refusing_op_is_not_requeued(op, make_rp, browser):
    op.allowed_associations = []
    rp = make_rp(association="background")
    login(rp, browser, op.identity())
    stats = BackgroundFetcher(rp.associator, rp.queue).run_once()
    assert stats.refused == 1 and stats.failed == 0
    _, result = login(rp, browser, op.identity())
    assert result.verified_by == "check_authentication"
    assert rp.queue.pending() == 0


def test_dead_op_backs_off(make_rp):
    rp = make_rp(association="background", fetch_connect_timeout=1, fetch_read_timeout=1)
    dead = "http://127.0.0.1:9/op"
    rp.queue.put(dead)
    stats = BackgroundFetcher(rp.associator, rp.queue).run_once()
    assert stats.failed == 1
    assert not rp.associator.needs_association(dead)


def test_association_near_expiry_is_renewed_in_background(op, make_rp, browser):
    rp = make_rp(association="background")
    login(rp, browser, op.identity())
    BackgroundFetcher(rp.associator, rp.queue).run_once()
    association = rp.store.get_association(op.endpoint())
    # Make it enter its renewal window while still usable: 30 of its 120 minutes left.
    now = rp.clock.now()
    rp.store.store_association(
        op.endpoint(), replace(association, issued=now - 5400, lifetime=7200)
    )
    auth, result = login(rp, browser, op.identity())
    assert auth.association is not None and result.verified_by == "association"
    assert rp.queue.pending() == 1


def test_fetcher_thread_inside_the_site(op, make_rp, browser):
    rp = make_rp(association="background", fetcher="thread")
    login(rp, browser, op.identity())
    deadline = time.monotonic() + 30
    while rp.store.get_association(op.endpoint()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    auth, result = login(rp, browser, op.identity())
    assert result.verified_by == "association"
    rp.close()


def test_two_fetcher_processes_make_one_association_per_op(op, tmp_path):
    """Two `openid-plugins associate --once` processes drain one file queue concurrently."""
    from openid_plugins.config import Settings
    from openid_plugins.relying_party import RelyingParty

    store_url = (tmp_path / "store").as_uri()
    queue_url = (tmp_path / "queue").as_uri()
    endpoints = [op.endpoint(f"op{n}") for n in range(10, 40)]
    with RelyingParty(settings=Settings(store=store_url, queue=queue_url)) as rp:
        for url in endpoints:
            rp.queue.put(url)
        assert rp.queue.pending() == len(endpoints)
    env = dict(
        os.environ,
        OPENID_PLUGINS_STORE=store_url,
        OPENID_PLUGINS_QUEUE=queue_url,
        OPENID_PLUGINS_FETCH_BLOCK_PRIVATE_ADDRESSES="false",  # the test OP is on 127.0.0.1
    )
    cmd = [sys.executable, "-m", "openid_plugins", "associate", "--once", "--concurrency", "4"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert op.counts["associate"] == len(endpoints)
    with RelyingParty(settings=Settings(store=store_url, queue=queue_url)) as rp:
        assert all(rp.store.get_association(url) for url in endpoints)
        assert rp.queue.pending() == 0


def test_watch_mode_associates_as_items_arrive_and_stops_on_sigterm(op, tmp_path):
    import signal

    from openid_plugins.config import Settings
    from openid_plugins.relying_party import RelyingParty

    store_url = (tmp_path / "store").as_uri()
    queue_url = (tmp_path / "queue").as_uri()
    env = dict(
        os.environ,
        OPENID_PLUGINS_STORE=store_url,
        OPENID_PLUGINS_QUEUE=queue_url,
        OPENID_PLUGINS_FETCH_BLOCK_PRIVATE_ADDRESSES="false",  # the test OP is on 127.0.0.1
    )
    cmd = [sys.executable, "-m", "openid_plugins", "associate", "--watch", "--poll", "0.2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        with RelyingParty(settings=Settings(store=store_url, queue=queue_url)) as rp:
            rp.queue.put(op.endpoint("op77"))
            deadline = time.monotonic() + 30
            while rp.store.get_association(op.endpoint("op77")) is None:
                assert time.monotonic() < deadline, "the watching fetcher made no association"
                assert proc.poll() is None
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "made 1" in out


class EventLog:
    def __init__(self):
        self.events: list[tuple[str, str, dict]] = []

    @hookimpl
    def openid_association_event(self, event, server_url, details):
        self.events.append((event, server_url, dict(details)))


def test_hook_openid_association_event_reaches_plugins(op, make_rp, browser):
    events = EventLog()
    rp = make_rp(association="background", plugins=[events])
    login(rp, browser, op.identity())
    BackgroundFetcher(rp.associator, rp.queue).run_once()
    kinds = [(event, url) for event, url, _ in events.events]
    assert kinds == [("queued", op.endpoint()), ("made", op.endpoint())]
    made = events.events[-1][2]
    assert made["assoc_type"] == "HMAC-SHA256" and made["seconds"] > 0


def test_refusal_and_failure_events(op, make_rp, browser):
    events = EventLog()
    op.allowed_associations = []
    rp = make_rp(association="inline", plugins=[events], fetch_connect_timeout=1)
    login(rp, browser, op.identity())
    rp.queue.put("http://127.0.0.1:9/op")
    BackgroundFetcher(rp.associator, rp.queue).run_once()
    assert [event for event, _, _ in events.events] == ["refused", "failed"]
    assert "retry_in" in events.events[-1][2]
