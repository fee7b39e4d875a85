"""Section ``scaling``: per-operation cost against stored volume, for every backend here.

A store that is fast when empty but slows as it fills is slow in production, where it holds
every nonce of the skew window and an association per OP. Each backend's store is filled in
steps (``Sizes.scaling_nonces`` used nonces; ``Sizes.scaling_associations`` associations
spread over ``Sizes.scaling_ops`` OPs, and a discovery-cache entry per OP), and at each
step the operations a login makes are timed: ``use_nonce`` (a fresh nonce), the newest
association of an OP, one association by handle, ``cache_get``, and one ``cleanup()`` (with
nothing expired: what a sweep costs while the store is full of live entries). The queue is
filled with ``Sizes.scaling_queue`` waiting OP endpoints and ``put`` of a new one and
``claim(limit=1)`` + ``ack`` are timed at each step.

Filling goes through the public API (the file store through a second instance without fsync,
so filling takes seconds rather than minutes; the timed instance fsyncs as configured).
A flat row is the goal; the ratio last/first step is reported per operation.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

from openid_plugins.contracts import Association

from ..context import Context, failure, say
from ..fixtures import log

#: Timed calls per operation and step (cleanup: fewer, it is the slow one by design).
CALLS = 200
CLEANUP_CALLS = 5


def _median_us(call: Callable[[int], Any], count: int) -> dict[str, float]:
    times = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - started)
    times.sort()
    return {
        "median_us": round(statistics.median(times) * 1e6, 1),
        "p95_us": round(times[int(0.95 * (len(times) - 1))] * 1e6, 1),
        "n": count,
    }


def _op(i: int) -> str:
    return f"https://op{i}.scaling.example/server"


class Filler:
    """Grows one store to the next step, through its public API."""

    def __init__(self, store: Any, ops: int) -> None:
        self.store = store
        self.ops = ops
        self.nonces = 0
        self.tag = secrets.token_hex(3)

    def nonces_to(self, count: int, now: float) -> None:
        while self.nonces < count:
            i = self.nonces
            # Spread over the last minute: all inside the skew window, none expired.
            if not self.store.use_nonce(_op(i % self.ops), now - (i % 60), f"f{self.tag}{i}"):
                raise AssertionError("a fresh nonce was refused while filling")
            self.nonces += 1

    def associations(self, count: int, now: float) -> list[tuple[str, str]]:
        handles = []
        for i in range(count):
            server_url = _op(i % self.ops)
            handle = f"h{self.tag}-{i}"
            secret = secrets.token_bytes(32)
            association = Association(handle, secret, now - i, 86400.0, "HMAC-SHA256")
            self.store.store_association(server_url, association)
            handles.append((server_url, handle))
        for i in range(self.ops):
            self.store.cache_set("discovery", _op(i), {"endpoints": [], "i": i}, 3600)
        return handles


def store_curve(ctx: Context, label: str, url: str) -> dict[str, Any]:
    """The timed operations at each step of one store's growth."""
    sizes = ctx.sizes
    rp = ctx.rp(url)
    store = rp.store
    fill_store = store
    if url.startswith("file:"):
        filler_rp = ctx.rp(url, store_options={"file_fsync": False})
        fill_store = filler_rp.store
    filler = Filler(fill_store, sizes.scaling_ops)
    now = time.time()
    started = time.perf_counter()
    handles = filler.associations(sizes.scaling_associations, now)
    fill_seconds = time.perf_counter() - started
    steps = []
    for target in sizes.scaling_nonces:
        started = time.perf_counter()
        filler.nonces_to(target, time.time())
        fill_seconds += time.perf_counter() - started
        tag = secrets.token_hex(3)
        now = time.time()
        row: dict[str, Any] = {"used_nonces": target}
        row["use_nonce"] = _median_us(
            lambda i, now=now, tag=tag: store.use_nonce(_op(i), now, f"t{tag}{i}"), CALLS
        )
        row["get_association_newest"] = _median_us(
            lambda i: store.get_association(_op((i * 7) % sizes.scaling_ops)), CALLS
        )
        row["get_association_by_handle"] = _median_us(
            lambda i: store.get_association(*handles[(i * 37) % len(handles)]), CALLS
        )
        row["cache_get"] = _median_us(
            lambda i: store.cache_get("discovery", _op((i * 11) % sizes.scaling_ops)), CALLS
        )
        row["cleanup"] = _median_us(lambda i: store.cleanup(), CLEANUP_CALLS)
        say(
            f"  {label:<11} {target:>8} nonces: "
            + "  ".join(f"{k} {v['median_us']:.0f}" for k, v in row.items() if k != "used_nonces")
            + " us"
        )
        steps.append(row)
    return {"steps": steps, "fill_seconds": round(fill_seconds, 1), **_flatness(steps)}


def queue_curve(ctx: Context, label: str, url: str) -> dict[str, Any]:
    """put and claim+ack at each number of waiting items."""
    rp = ctx.rp(queue=url)
    queue = rp.queue
    tag = secrets.token_hex(3)
    waiting = 0
    steps = []
    fill_seconds = 0.0
    for target in ctx.sizes.scaling_queue:
        started = time.perf_counter()
        while waiting < target:
            queue.put(f"https://q{tag}-{waiting}.scaling.example/server")
            waiting += 1
        fill_seconds += time.perf_counter() - started
        row: dict[str, Any] = {"waiting": target}
        row["put"] = _median_us(
            lambda i, t=target: queue.put(f"https://new{tag}-{t}-{i}.scaling.example/"),
            CALLS // 2,
        )

        def claim_ack(i: int) -> None:
            items = queue.claim(limit=1, lease=600)
            if len(items) != 1:
                raise AssertionError(f"claim(limit=1) returned {len(items)} items")
            queue.ack(items)

        # As many claimed as put: the backlog stays at the step.
        row["claim_ack"] = _median_us(claim_ack, CALLS // 2)
        say(
            f"  {label:<11} {target:>8} waiting: put {row['put']['median_us']:.0f} us,"
            f" claim+ack {row['claim_ack']['median_us']:.0f} us"
        )
        steps.append(row)
    return {"steps": steps, "fill_seconds": round(fill_seconds, 1), **_flatness(steps)}


def _flatness(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per operation, the median at the largest step over the median at the smallest."""
    first, last = steps[0], steps[-1]
    return {
        "last_over_first": {
            key: round(last[key]["median_us"] / first[key]["median_us"], 2)
            for key, value in first.items()
            if isinstance(value, dict) and first[key]["median_us"]
        }
    }


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    say(
        f"scaling: per-op cost (median us) with {', '.join(map(str, sizes.scaling_nonces))} used"
        f" nonces, {sizes.scaling_associations} associations over {sizes.scaling_ops} OPs"
    )
    out: dict[str, Any] = {
        "sizes": {
            "used_nonces": list(sizes.scaling_nonces),
            "associations": sizes.scaling_associations,
            "ops": sizes.scaling_ops,
            "queue_waiting": list(sizes.scaling_queue),
        },
        "stores": {},
        "queues": {},
    }
    for label, url in ctx.store_urls("scaling").items():
        if url is None:
            out["stores"][label] = {"skipped": "no server (or no SQL plugin)"}
            continue
        try:
            out["stores"][label] = store_curve(ctx, label, url)
        except Exception as exc:  # a database going away mid-run: report, go on
            log.exception("scaling of the %s store failed", label)
            out["stores"][label] = failure(exc)
    for label, url in ctx.store_urls("scaling-queue").items():
        if url is None:
            out["queues"][label] = {"skipped": "no server (or no SQL plugin)"}
            continue
        try:
            out["queues"][label] = queue_curve(ctx, label, url)
        except Exception as exc:
            log.exception("scaling of the %s queue failed", label)
            out["queues"][label] = failure(exc)
    return out
