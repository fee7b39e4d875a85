"""Section ``concurrency``: one ``RelyingParty`` used by 8 threads (a threaded WSGI server)
and 4 processes on one store (a pre-forking server), ``complete()`` throughput and p99.

The calls are section 1's: distinct signed assertions delivered as a redirect (the real
URL), a warm association, no network. Threads share one relying party and its store; each
process opens its own relying party on the same store URL (memory is per process, so it has
no process row). Every worker starts at one barrier; throughput is all calls over the wall
time from the barrier to the last worker's end; latencies are per call, pooled.

Python runs one thread at a time, so threads can only help where a call waits (a database
round trip, an fsync); processes use both cores, and SQL stores should scale with them
until the server (on the same two cores here) saturates.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

from openid_plugins.relying_party import SESSION_KEY, RelyingParty

from ..context import Context, failure, our_session_state, say
from ..fixtures import SharedAssociation, as_delivered, log, signed_assertions

THREADS = 8
PROCESSES = 4


def _latencies(rp: RelyingParty, delivered: list, state: dict, claimed: str) -> list[float]:
    times = []
    for query, current_url in delivered:
        started = time.perf_counter()
        result = rp.complete(query, current_url, session={SESSION_KEY: state})
        times.append(time.perf_counter() - started)
        if result.claimed_id != claimed:
            raise AssertionError(f"unexpected result {result!r}")
    return times


def _summary(times: list[float], wall: float, workers: int) -> dict[str, Any]:
    times = sorted(times)
    pick = lambda q: round(times[min(len(times) - 1, int(q * len(times)))] * 1e6, 1)  # noqa: E731
    return {
        "workers": workers,
        "calls": len(times),
        "ops_per_second": round(len(times) / wall, 1),
        "median_us": pick(0.5),
        "p99_us": pick(0.99),
    }


def _work(
    url: str, settings: dict, shared: SharedAssociation, claimed: str, state: dict, count: int
) -> tuple[RelyingParty, list]:
    rp = RelyingParty(store=url, **settings)
    rp.store.store_association(shared.server_url, shared.ours())
    signed = signed_assertions(count, shared, claimed, state["return_to"])
    return rp, as_delivered(signed, state["return_to"], "GET")


def with_threads(
    url: str,
    settings: dict,
    shared: SharedAssociation,
    claimed: str,
    state: dict,
    *,
    threads: int,
    count: int,
) -> dict[str, Any]:
    rp, delivered = _work(url, settings, shared, claimed, state, count + 20)
    _latencies(rp, delivered[:20], state, claimed)  # warm-up: connections, caches
    shares = [delivered[20 + i :: threads] for i in range(threads)]
    results: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = _latencies(rp, shares[i], state, claimed)
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started
    rp.close()
    if errors:
        raise errors[0]
    return _summary([t for r in results for t in r], wall, threads)


def _process_main(args: tuple) -> tuple[float, float, list[float]]:
    """One process: its own relying party on the shared store, started at the barrier."""
    url, settings, shared, claimed, state, count, barrier = args
    rp, delivered = _work(url, settings, shared, claimed, state, count + 20)
    _latencies(rp, delivered[:20], state, claimed)
    barrier.wait()
    started = time.time()
    times = _latencies(rp, delivered[20:], state, claimed)
    ended = time.time()
    rp.close()
    return started, ended, times


def with_processes(
    url: str,
    settings: dict,
    shared: SharedAssociation,
    claimed: str,
    state: dict,
    *,
    processes: int,
    count: int,
) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager:
        barrier = manager.Barrier(processes)
        per = count // processes
        args = [(url, settings, shared, claimed, state, per, barrier) for _ in range(processes)]
        with spawn.Pool(processes) as pool:
            runs = pool.map(_process_main, args)
    wall = max(end for _, end, _ in runs) - min(start for start, _, _ in runs)
    return _summary([t for _, _, times in runs for t in times], wall, processes)


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    say(
        f"concurrency: complete() by 1 and {THREADS} threads on one RelyingParty, and by"
        f" {PROCESSES} processes on one store ({sizes.concurrency} calls each way)"
    )
    op = ctx.op
    claimed = op.identity("alice")
    shared = SharedAssociation.new(op.endpoint("op"))
    state = dict(our_session_state(ctx, claimed), started=time.time() + 600)
    settings = {
        "association": "inline",
        "queue": "memory://",
        "data_dir": str(ctx.tmp / "data"),
        "fetch_block_private_addresses": False,
    }
    urls = ctx.store_urls("concurrency")
    out: dict[str, Any] = {}
    for label, url in urls.items():
        if url is None:
            out[label] = {"skipped": "no server (or no SQL plugin)"}
            continue
        row: dict[str, Any] = {}
        try:
            common = (url, settings, shared, claimed, state)
            row["1 thread"] = with_threads(*common, threads=1, count=sizes.concurrency)
            row[f"{THREADS} threads"] = with_threads(
                *common, threads=THREADS, count=sizes.concurrency
            )
            if label != "memory":
                row[f"{PROCESSES} processes"] = with_processes(
                    *common, processes=PROCESSES, count=sizes.concurrency
                )
        except Exception as exc:  # a database going away mid-run: report, go on
            log.exception("concurrency with the %s store failed", label)
            row["error"] = failure(exc)
        out[label] = row
        say(
            f"  {label:<11} "
            + "; ".join(
                f"{k}: {v['ops_per_second']:.0f} ops/s, median {v['median_us']:.0f} us,"
                f" p99 {v['p99_us']:.0f} us"
                for k, v in row.items()
                if isinstance(v, dict) and "ops_per_second" in v
            )
        )
    return out
