"""Section 2, ``begin``: ``begin()`` for a never-seen OP, next to discovery alone.

Every call discovers a new identity page whose OP endpoint is new too (``BenchOP``'s
``/for/opNNN/user``), so no cache helps either library: ours in background mode (discovery
and a queue put: the first login must cost no more than discovery) and inline, python3-openid
with its inline DH association. Discovery is also timed against an OP with Nagle's algorithm
on, to show what that costs a client that keeps its connections.
"""

from __future__ import annotations

import secrets
from typing import Any

from openid.consumer import discover as their_discover
from openid.consumer.consumer import Consumer
from openid.store.memstore import MemoryStore

from openid_plugins.protocol import discovery

from ..context import Context, say, show, speedup
from ..fixtures import REALM, RETURN_TO, Runner, interleave
from ..op import OPProcess


def run(ctx: Context) -> dict[str, Any]:
    say("begin() for a never-seen OP (fresh identity page and OP endpoint per call)")
    op = ctx.op
    sizes = ctx.sizes
    tag = secrets.token_hex(2)

    def fresh(kind: str, i: int) -> str:
        return op.fresh_identity(f"op{kind}{tag}{i + 100}")

    before = op.counts()
    rp_bg = ctx.rp(association="background")
    rp_disc = ctx.rp(association="background")
    rp_inline = ctx.rp(association="inline")
    their_store = MemoryStore()

    def check_bg(i: int, auth: Any) -> None:
        if auth.association is not None or "assoc_handle" in auth.message:
            raise AssertionError("background begin() used an association")

    def check_inline(i: int, auth: Any) -> None:
        if auth.association is None:
            raise AssertionError("inline begin() made no association")

    def check_theirs(i: int, auth: Any) -> None:
        if auth.assoc is None:
            raise AssertionError("python3-openid's begin() made no association")

    cheap = {
        "ours_background": Runner(
            "ours begin() background (discovery + queue)",
            lambda i: rp_bg.begin(fresh("b", i), RETURN_TO, REALM, session={}),
            check=check_bg,
        ),
        "ours_discovery": Runner(
            "ours discovery alone (protocol.discovery)",
            lambda i: discovery.discover(fresh("d", i), rp_disc.fetcher),
        ),
        "ours_rp_discover": Runner(
            "ours RelyingParty.discover() (+ cache write)",
            lambda i: rp_disc.discover(fresh("e", i)),
        ),
        "theirs_discovery": Runner(
            "python3-openid discovery alone",
            lambda i: their_discover.discover(fresh("u", i)),
        ),
    }
    costly = {
        "ours_inline": Runner(
            "ours begin() inline (discovery + DH association)",
            lambda i: rp_inline.begin(fresh("i", i), RETURN_TO, REALM, session={}),
            check=check_inline,
        ),
        "theirs_begin": Runner(
            "python3-openid begin() (discovery + DH association)",
            lambda i: Consumer({}, their_store).begin(fresh("t", i)),
            check=check_theirs,
        ),
    }
    for runners in (cheap, costly):
        for runner in runners.values():
            runner.warm(3)
        interleave(
            list(runners.values()), sizes.begin, sizes.begin_seconds * len(runners), rounds=10
        )
    out: dict[str, Any] = {key: show(r.timing) for key, r in {**cheap, **costly}.items()}
    out["ours_background"]["queued"] = rp_bg.queue.pending()
    associated = op.counts().get("associate", 0) - before.get("associate", 0)
    expected = costly["ours_inline"].done + costly["theirs_begin"].done + 6
    if associated != expected:
        raise AssertionError(f"{associated} associate requests, expected {expected}")

    # An OP without TCP_NODELAY (headers and body written separately): a kept-alive
    # connection waits for the client's delayed ACK; a fresh one does not.
    with OPProcess(nagle=True) as nagle_op:
        nagle = {
            "ours_discovery_nagle_op": Runner(
                "ours discovery, OP without TCP_NODELAY",
                lambda i: discovery.discover(
                    nagle_op.fresh_identity(f"opn{tag}{i + 100}"), rp_disc.fetcher
                ),
            ),
            "theirs_discovery_nagle_op": Runner(
                "python3-openid discovery, OP without TCP_NODELAY",
                lambda i: their_discover.discover(nagle_op.fresh_identity(f"opm{tag}{i + 100}")),
            ),
        }
        for runner in nagle.values():
            runner.warm(2)
        interleave(list(nagle.values()), min(sizes.begin, 20), sizes.begin_seconds)
        out.update({key: show(r.timing) for key, r in nagle.items()})
    ratios = {
        "ours_background_vs_theirs_begin": speedup(out["ours_background"], out["theirs_begin"]),
        "ours_inline_vs_theirs_begin": speedup(out["ours_inline"], out["theirs_begin"]),
        "ours_background_vs_ours_discovery_median": (
            round(out["ours_background"]["median_us"] / out["ours_discovery"]["median_us"], 3)
        ),
        "ours_background_minus_discovery_median_us": round(
            out["ours_background"]["median_us"] - out["ours_discovery"]["median_us"], 1
        ),
    }
    for key, value in ratios.items():
        say(f"  {key}: {value}")
    out["ratios"] = ratios
    return out
