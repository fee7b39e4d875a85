"""Section 4, ``login``: a full login (begin, the OP, complete) with a warm association, on
memory stores, ours against python3-openid's.

The browser is a ``requests.Session`` that follows the OP's redirect by hand, so every call
crosses the wire as a real login does; the OP's request counts show how many went out, and
a ``check_authentication`` among them would mean the warm association was not used.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from openid.consumer.consumer import Consumer
from openid.store.memstore import MemoryStore

from ..context import Context, say, show, speedup
from ..fixtures import REALM, RETURN_TO, measure


def query_of(url: str) -> dict[str, str]:
    """The query of the URL the OP redirects the browser back to, as a web framework would
    hand it to the relying party."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def run(ctx: Context) -> dict[str, Any]:
    say("full login (begin, OP, complete), warm association, memory stores")
    op = ctx.op
    sizes = ctx.sizes
    claimed = op.identity("alice")
    out: dict[str, Any] = {}

    rp = ctx.rp(association="inline")
    browser = requests.Session()

    def ours(i: int) -> Any:
        session: dict[str, Any] = {}
        auth = rp.begin(claimed, RETURN_TO, REALM, session=session)
        back = browser.get(auth.redirect_url, allow_redirects=False).headers["Location"]
        return rp.complete(query_of(back), back, session=session)

    def check_ours(i: int, result: Any) -> None:
        if result.verified_by != "association":
            raise AssertionError(f"our login was verified by {result.verified_by}")

    before = op.counts()
    out["ours"] = show(
        measure("ours login", ours, sizes.login, sizes.login_seconds, check=check_ours, warmup=3)
    )

    store = MemoryStore()
    their_browser = requests.Session()

    def theirs(i: int) -> Any:
        session: dict[str, Any] = {}
        auth = Consumer(session, store).begin(claimed)
        url = auth.redirectURL(REALM, RETURN_TO)
        back = their_browser.get(url, allow_redirects=False).headers["Location"]
        # A new Consumer per HTTP request, as python3-openid's documentation asks.
        return Consumer(session, store).complete(query_of(back), back)

    def check_theirs(i: int, response: Any) -> None:
        if response.status != "success":
            raise AssertionError(f"python3-openid login: {response.status}")

    out["theirs"] = show(
        measure(
            "python3-openid login",
            theirs,
            sizes.login,
            sizes.login_seconds,
            check=check_theirs,
            warmup=3,
        )
    )
    after = op.counts()
    out["op_requests"] = {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }
    if out["op_requests"].get("check_authentication"):
        raise AssertionError("a warm-association login fell back to check_authentication")
    out["speedup"] = speedup(out["ours"], out["theirs"])
    say(f"  OP requests: {out['op_requests']}")
    say(f"  speed-up: {out['speedup']}x")
    return out
