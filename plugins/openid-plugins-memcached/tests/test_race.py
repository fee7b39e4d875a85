"""Many processes race to use the same nonces, each through its own store opened by URL:
every nonce has exactly one winner, with one server and with two (HashClient)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import new_prefix, url_for

from openid_plugins.testing.contract import ProcessRacers, race_nonces

PROCESSES = 10
NONCES = 50
OP = "https://op.example/server"


@pytest.fixture(scope="module")
def racers() -> Iterator[ProcessRacers]:
    pool = ProcessRacers(PROCESSES)
    yield pool
    pool.close()


def test_same_nonces_exactly_one_winner(servers, racers: ProcessRacers) -> None:
    url = url_for(servers, new_prefix())
    # Stamped a minute ahead (inside the skew window), after the test servers started: the
    # restart guard, on here, refuses nonces stamped before their server's start.
    now = int(time.time() + 60)
    # Each nonce is raced by every process at once (a barrier before each one).
    nonces = [(OP, float(now - i % 30), f"race-{i}") for i in range(NONCES)]
    reports = racers.run(race_nonces, url, {}, nonces)
    assert len(reports) == PROCESSES
    for index in range(NONCES):
        winners = sum(1 for wins in reports if wins[index])
        assert winners == 1, f"nonce {index}: {winners} processes won"
    # A second round: every nonce is now a replay for every process.
    again = racers.run(race_nonces, url, {}, nonces)
    assert not any(any(wins) for wins in again)
