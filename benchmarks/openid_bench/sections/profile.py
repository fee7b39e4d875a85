"""Section ``profile``: cProfile of ``complete()`` on the memory and SQLite stores.

The same warm-association calls as section 1 (answers by redirect, with the URL the browser
arrived at), under the profiler, so a missed target can be
explained by where the time goes (the report's verdict on ``complete()`` quotes the largest
self-time entry). The full listing is written beside ``--out`` as
``profile_complete_<store>.txt``, with paths shortened so listings compare across machines.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sysconfig
import time
from pathlib import Path
from typing import Any

from openid_plugins.relying_party import SESSION_KEY

from ..context import Context, our_session_state, say
from ..fixtures import ROOT, SharedAssociation, as_delivered, signed_assertions

#: Untimed calls before the profiled ones.
WARMUP = 10


def run(ctx: Context) -> dict[str, Any]:
    say("cProfile of complete() (memory and SQLite stores)")
    op = ctx.op
    claimed = op.identity("alice")
    state = our_session_state(ctx, claimed)
    out: dict[str, Any] = {}
    for label, url in (("memory", "memory://"), ("sqlite", ctx.sqlite_url("prof.db"))):
        if url is None:
            continue
        shared = SharedAssociation.new(op.endpoint("op"))
        rp = ctx.warm_rp(url, shared)
        count = ctx.sizes.profile
        return_to = state["return_to"]
        signed = signed_assertions(count + WARMUP, shared, claimed, return_to)
        delivered = as_delivered(signed, return_to, "GET")
        fresh = dict(state, started=time.time())
        for query, current_url in delivered[count:]:
            rp.complete(query, current_url, session={SESSION_KEY: fresh})
        sessions = [{SESSION_KEY: fresh} for _ in range(count)]
        profiler = cProfile.Profile()
        profiler.enable()
        for (query, current_url), session in zip(delivered[:count], sessions):
            rp.complete(query, current_url, session=session)
        profiler.disable()
        path = ctx.args.out.parent / f"profile_complete_{label}.txt"
        out[label] = summarise(profiler, count, path)
        say(f"  {label}: {out[label]['us_per_complete_under_profiler']} us/call profiled")
        for row in out[label]["top_self"][:8]:
            say(f"    {row['self_pct']:5.1f}% self  {row['function']}")
    return out


def summarise(profiler: cProfile.Profile, count: int, path: Path) -> dict[str, Any]:
    """What the report keeps of ``count`` profiled calls: the top functions by self and
    cumulative time, self time summed by where the code comes from; the listing goes to
    ``path``."""
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    rows = []
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({func})",
                "calls_per_complete": round(ncalls / count, 2),
                "self_pct": round(100 * tottime / total, 1),
                "cumulative_pct": round(100 * cumtime / total, 1),
            }
        )
    origins: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        origin = _origin(filename)
        origins[origin] = origins.get(origin, 0.0) + 100 * tottime / total
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    paths = sysconfig.get_paths()
    listing = text.getvalue().replace(paths["purelib"] + "/", "site-packages/")
    listing = listing.replace(str(ROOT) + "/", "")
    path.write_text(listing.replace(paths["stdlib"] + "/", "<stdlib>/"))
    return {
        "calls": count,
        "us_per_complete_under_profiler": round(total / count * 1e6, 1),
        "self_pct_by_origin": {k: round(v, 1) for k, v in sorted(origins.items())},
        "top_self": sorted(rows, key=lambda r: r["self_pct"], reverse=True)[:15],
        "top_cumulative": sorted(rows, key=lambda r: r["cumulative_pct"], reverse=True)[:25],
        "file": str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path),
    }


def _origin(filename: str) -> str:
    """Which code a profiled function belongs to, so its share of the time can be summed."""
    short = _short(filename)
    if short.startswith("site-packages/"):
        return short.split("/")[1]
    if short.startswith("openid_plugins/"):
        return "openid_plugins"
    if short.startswith("plugins/"):
        return short.split("/")[1]
    return "builtins (C)" if short.startswith("~") else "stdlib"


def _short(filename: str) -> str:
    """``filename`` from the first folder that says whose code it is."""
    for marker in ("site-packages/", "openid_plugins/", "plugins/", "lib/python"):
        if marker in filename:
            return filename[filename.index(marker) :]
    return filename
