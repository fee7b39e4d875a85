"""Many processes at once: each nonce has exactly one winner among them, and fetcher
processes draining one queue make exactly one association per OP endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from openid_plugins.config import Settings
from openid_plugins.relying_party import RelyingParty
from openid_plugins.testing.contract import ProcessRacers, race_claims, race_nonces
from openid_plugins.testing.python3_openid_op import Python3OP

OP = "https://op.example/server"
RACERS = 8


@pytest.fixture(scope="module")
def racers() -> Iterator[ProcessRacers]:
    pool = ProcessRacers(RACERS)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def op() -> Iterator[Python3OP]:
    provider = Python3OP().start()
    yield provider
    provider.stop()


def test_each_nonce_has_exactly_one_winner_among_processes(
    replset_db_url: str, racers: ProcessRacers
) -> None:
    now = float(int(time.time()))
    nonces = [(OP, now - i, f"race-{i}") for i in range(25)]
    reports = racers.run(race_nonces, replset_db_url, {}, nonces)
    for index in range(len(nonces)):
        winners = sum(1 for wins in reports if wins[index])
        assert winners == 1, f"nonce {index}: {winners} of {RACERS} processes won"


def test_claiming_processes_take_each_item_once(replset_db_url: str, racers: ProcessRacers) -> None:
    urls = [f"https://op{i}.example/server" for i in range(120)]
    with RelyingParty(settings=Settings(store=replset_db_url, queue=replset_db_url)) as rp:
        for url in urls:
            rp.queue.put(url)
            rp.queue.put(url)  # de-duplicated while waiting
        assert rp.queue.pending() == len(urls)
    reports = racers.run(race_claims, replset_db_url, {})
    claimed = sorted(url for report in reports for url in report)
    assert claimed == sorted(urls)


def test_fetcher_processes_associate_each_endpoint_once(
    db_url: str, op: Python3OP, tmp_path
) -> None:  # noqa: ANN001
    """``openid-plugins associate --once`` in four processes, one MongoDB queue and store,
    python3-openid's OP: it is asked for exactly one association per endpoint."""
    op.reset()
    endpoints = [op.endpoint(f"op{n}") for n in range(100, 140)]
    settings = Settings(store=db_url, queue=db_url, data_dir=str(tmp_path))
    with RelyingParty(settings=settings) as rp:
        for url in endpoints:
            rp.queue.put(url)
    env = dict(
        os.environ,
        OPENID_PLUGINS_STORE=db_url,
        OPENID_PLUGINS_QUEUE=db_url,
        OPENID_PLUGINS_DATA_DIR=str(tmp_path),
        # The OP listens on 127.0.0.1.
        OPENID_PLUGINS_FETCH_BLOCK_PRIVATE_ADDRESSES="false",
    )
    # One association at a time per process: the OP's http.server accepts a backlog of 5
    # connections, and resets the ones beyond it.
    cmd = [sys.executable, "-m", "openid_plugins", "associate", "--once", "--concurrency", "1"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert op.counts["associate"] == len(endpoints)
    with RelyingParty(settings=settings) as rp:
        assert all(rp.store.get_association(url) for url in endpoints)
        assert rp.queue.pending() == 0
