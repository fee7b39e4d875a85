"""Section 1, ``complete``: ``complete()`` of distinct, signed positive assertions with a warm
association and no network, per store, ours against python3-openid's.

Each call gets what a web framework hands a site (``fixtures.as_delivered``): for an answer
by redirect, the URL the browser arrived at (return_to plus the OP's whole ``openid.*``
query) and that query parsed; for a form POST (measured on the stores in ``POST_STORES``),
the bare return_to and the form's fields. Both libraries get the same.

Both libraries' stores hold one association secret under the same handle, and each
library's session holds what its own ``begin()`` put there (from a real discovery), so the
measured call is verification alone; the OP's request counts prove nothing went over the
wire. Contenders for the same store take turns, so other load falls on both.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from openid.consumer.consumer import Consumer
from openid.store.filestore import FileOpenIDStore
from openid.store.memstore import MemoryStore

from openid_plugins.relying_party import SESSION_KEY

from ..context import Context, failure, our_session_state, say, show, speedup
from ..fixtures import (
    PG_URL,
    RETURN_TO,
    Runner,
    SharedAssociation,
    as_delivered,
    interleave,
    log,
    psycopg2_dsn,
    signed_assertions,
    use_wal,
)

#: Untimed calls before the timed ones: caches, connections, prepared statements.
WARMUP = 20
#: Stores on which the form POST delivery is measured too (GET is measured on all).
POST_STORES = ("memory",)


def variant(label: str, method: str) -> str:
    """A result's key: the store's label, plus the delivery when it is not a redirect."""
    return label if method == "GET" else f"{label} (form POST)"


def their_endpoint(claimed: str) -> Any:
    """What python3-openid's begin() keeps in the session (an ``OpenIDServiceEndpoint``),
    from its own discovery."""
    return Consumer({}, None).begin(claimed).endpoint


def our_complete(
    ctx: Context,
    label: str,
    store_url: str,
    shared: SharedAssociation,
    claimed: str,
    state: dict,
    method: str = "GET",
) -> Runner:
    """Our ``complete()`` on a store holding the shared association."""
    rp = ctx.warm_rp(store_url, shared)
    # begin() binds its answer to the session with an RP nonce in return_to; the OP signs
    # that return_to and the browser comes back to it.
    return_to = state["return_to"]
    signed = signed_assertions(ctx.sizes.complete + WARMUP, shared, claimed, return_to)
    deliveries = iter(as_delivered(signed, return_to, method))
    state = dict(state, started=time.time())
    box: dict[str, Any] = {}

    def prepare(i: int) -> None:
        box["session"] = {SESSION_KEY: state}

    def call(i: int) -> Any:
        query, current_url = next(deliveries)
        return rp.complete(query, current_url, session=box["session"])

    def check(i: int, result: Any) -> None:
        if result.verified_by != "association" or result.claimed_id != claimed:
            raise AssertionError(f"ours {label}: unexpected result {result!r}")

    name = f"ours {variant(label, method)}"
    return Runner(name, call, prepare=prepare, check=check).warm(WARMUP)


def their_complete(
    ctx: Context,
    label: str,
    store: Any,
    shared: SharedAssociation,
    claimed: str,
    endpoint: Any,
    method: str = "GET",
) -> Runner:
    """python3-openid's ``Consumer.complete()`` on a store holding the shared association."""
    store.storeAssociation(shared.server_url, shared.theirs())
    signed = signed_assertions(ctx.sizes.complete + WARMUP, shared, claimed)
    deliveries = iter(as_delivered(signed, RETURN_TO, method))
    # One Consumer reused, its session replaced per call: kinder to python3-openid than the
    # Consumer per request its documentation asks for.
    consumer = Consumer({}, store)

    def prepare(i: int) -> None:
        consumer.session = {consumer._token_key: endpoint}

    def call(i: int) -> Any:
        query, current_url = next(deliveries)
        return consumer.complete(query, current_url)

    def check(i: int, response: Any) -> None:
        if response.status != "success":
            raise AssertionError(
                f"python3-openid {label}: {response.status}: {getattr(response, 'message', '')}"
            )

    name = f"python3-openid {variant(label, method)}"
    return Runner(name, call, prepare=prepare, check=check).warm(WARMUP)


def their_stores(ctx: Context) -> list[tuple[str, str, Callable[[], Any]]]:
    """(label, which of our stores it compares with, factory) for python3-openid's stores."""
    stores: list[tuple[str, str, Callable[[], Any]]] = [
        ("memory", "memory", MemoryStore),
        ("file", "file", lambda: FileOpenIDStore(str(ctx.tmp / "theirs-file"))),
    ]
    try:
        from openid.store import sqlstore
    except ImportError as exc:
        # python3-openid 3.2.0's sqlstore module imports psycopg2 at class definition, so
        # without it even SQLiteStore is unavailable.
        ctx.note(f"python3-openid SQL stores skipped: {exc} (pip install psycopg2-binary)")
        return stores

    def sqlite_store(wal: bool) -> Any:
        conn = sqlite3.connect(str(ctx.tmp / f"theirs-{'wal' if wal else 'default'}.db"))
        if wal:
            use_wal(conn)
        store = sqlstore.SQLiteStore(conn)
        store.createTables()
        ctx.cleanups.append(conn.close)
        return store

    stores.append(("sqlite (default journal)", "sqlite", lambda: sqlite_store(False)))
    stores.append(("sqlite (WAL, synchronous=NORMAL)", "sqlite", lambda: sqlite_store(True)))
    if ctx.servers.get("postgresql"):

        def pg_store() -> Any:
            import psycopg2

            conn = psycopg2.connect(psycopg2_dsn(PG_URL))
            prefix = ctx.track_prefix("postgresql")
            store = sqlstore.PostgreSQLStore(
                conn, associations_table=f"{prefix}assoc", nonces_table=f"{prefix}nonces"
            )
            store.createTables()
            ctx.cleanups.append(conn.close)
            return store

        stores.append(("postgresql", "postgresql", pg_store))
    ctx.note("python3-openid MySQLStore skipped: it needs MySQLdb (mysqlclient), not installed")
    return stores


def run(ctx: Context) -> dict[str, Any]:
    say("complete(): warm association, distinct signed assertions, no network")
    op = ctx.op
    claimed = op.identity("alice")
    shared = SharedAssociation.new(op.endpoint("op"))
    state = our_session_state(ctx, claimed)
    endpoint = their_endpoint(claimed)
    before = op.counts()

    ours_urls = ctx.store_urls("ours")
    theirs_by_match: dict[str, list[tuple[str, Callable[[], Any]]]] = {}
    for label, match, factory in their_stores(ctx):
        theirs_by_match.setdefault(match, []).append((label, factory))

    ours: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    ratios: dict[str, float | None] = {}
    sizes = ctx.sizes
    for match, url in ours_urls.items():
        if url is None:
            ours[match] = {"skipped": "no server (unreachable, --no-databases or no SQL plugin)"}
            say(f"  ours {match}: skipped (no server)")
            continue
        for method in ("GET", "POST") if match in POST_STORES else ("GET",):
            key = variant(match, method)
            try:
                mine = our_complete(ctx, match, url, shared, claimed, state, method)
                others = [
                    (
                        variant(label, method),
                        their_complete(ctx, label, factory(), shared, claimed, endpoint, method),
                    )
                    for label, factory in theirs_by_match.get(match, [])
                ]
                runners = [mine] + [runner for _, runner in others]
                interleave(runners, sizes.complete, sizes.complete_seconds * len(runners))
            except Exception as exc:  # a database going away mid-run: report, go on
                log.exception("complete() with the %s stores failed", key)
                ours[key] = failure(exc)
                continue
            ours[key] = show(mine.timing)
            for label, runner in others:
                theirs[label] = show(runner.timing)
                ratios[label] = speedup(ours[key], theirs[label])
                say(f"    speed-up vs python3-openid {label}: {ratios[label]}x")
    after = op.counts()
    network = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    network = {k: v for k, v in network.items() if v}
    # Counted from after the two discoveries that set up the sessions: none is expected.
    say(f"  OP requests from the first complete() on: {network}")
    return {"ours": ours, "theirs": theirs, "speedup": ratios, "op_requests": network}
