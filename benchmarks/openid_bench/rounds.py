"""Contenders taking turns: each measured operation runs a round at a time, alternating
order every round, so load from other processes falls on all of them alike. Ratios are
medians of per-round ratios. Shared by the SQL, memcached and MongoDB store benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


class Contender:
    """One measured operation: ``call(i)`` with a fresh ``i`` each time, timed per round.
    ``prepare(count)``, if given, runs untimed before each round (e.g. signing the round's
    assertions)."""

    def __init__(
        self,
        name: str,
        call: Callable[[int], Any],
        prepare: Callable[[int], None] | None = None,
    ) -> None:
        self.name, self.call, self.prepare = name, call, prepare
        self.done = 0
        self.rounds: list[tuple[int, float]] = []  # (calls, seconds)

    def run(self, count: int) -> None:
        call, start = self.call, self.done
        if self.prepare is not None:
            self.prepare(count)
        began = time.perf_counter()
        for i in range(start, start + count):
            call(i)
        self.rounds.append((count, time.perf_counter() - began))
        self.done += count

    def rates(self) -> list[float]:
        return [count / seconds for count, seconds in self.rounds]

    def totals(self) -> tuple[int, float]:
        """(calls, seconds) over every round."""
        return sum(c for c, _ in self.rounds), sum(s for _, s in self.rounds)

    def report(self) -> dict[str, float]:
        calls, seconds = self.totals()
        return {
            "ops": calls,
            "seconds": round(seconds, 4),
            "per_second": round(calls / seconds, 1),
            "median_round_per_second": round(statistics.median(self.rates()), 1),
        }


def take_turns(contenders: list[Contender], ops: int, rounds: int, *, warmup: int = 50) -> None:
    """``warmup`` untimed calls of each contender (connections, caches, code paths), then
    ``ops`` calls of each in ``rounds`` rounds, the order reversed every round."""
    for contender in contenders:
        contender.run(min(warmup, ops))
        contender.rounds.clear()
    per_round = max(1, ops // rounds)
    for number in range(rounds):
        order = contenders if number % 2 == 0 else contenders[::-1]
        for contender in order:
            contender.run(per_round)


def ratio(mine: Contender, raw: Contender) -> float:
    """Median over the rounds of ``mine``'s rate divided by ``raw``'s in the same round."""
    return round(statistics.median(m / r for m, r in zip(mine.rates(), raw.rates())), 3)


def slowdown(mine: Contender, raw: Contender) -> float:
    """How many times as long ``mine`` takes as ``raw`` (median of per-round ratios)."""
    return round(statistics.median(r / m for m, r in zip(mine.rates(), raw.rates())), 3)
