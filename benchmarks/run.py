"""openid-plugins side by side with python3-openid, in one process, against the same OP
(python3-openid's own, served on 127.0.0.1 by child processes).

    .venv/bin/python benchmarks/run.py [--quick] [--out PATH] [--only complete,begin,...]

Sections (``--only`` takes any of these names):

- ``complete``: ``complete()`` of distinct, signed positive assertions with a warm
  association, no network, per store;
- ``begin``: ``begin()`` for a never-seen OP (ours in background and inline modes,
  python3-openid's inline association), next to discovery alone;
- ``dh``: one Diffie-Hellman association, RP-side CPU only;
- ``login``: a full login (begin, OP, complete) with a warm association, memory stores;
- ``fetcher``: associations for many queued OP endpoints, our concurrent fetcher against
  seed 000's sequential python3-openid loop;
- ``raw``: single-client rates of the databases and the file system, and each of our
  stores' nonce rate as a fraction of them;
- ``profile``: cProfile of ``complete()`` with the memory and SQLite stores.

Writes JSON (``--out``, default ``benchmarks/results/latest.json``) and a Markdown table
beside it (same name, ``.md``). Ratios are speed-ups: ours ops/s divided by theirs (above 1
means we are faster). No benchmark is run by the test suite.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import logging
import os
import pstats
import secrets
import sqlite3
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402
from _fixtures import (  # noqa: E402
    MYSQL_URL,
    PG_URL,
    REALM,
    RETURN_TO,
    OPProcess,
    Runner,
    SharedAssociation,
    Timing,
    drop_tables,
    interleave,
    machine,
    measure,
    new_prefix,
    psycopg2_dsn,
    run_in_thread,
    server_version,
    signed_assertions,
    with_prefix,
)

from openid_plugins.relying_party import SESSION_KEY, RelyingParty  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SECTIONS = ("complete", "begin", "dh", "login", "fetcher", "raw", "profile")
log = logging.getLogger("openid_plugins.benchmarks")


# -- sizes -------------------------------------------------------------------------------------


class Sizes:
    """Call counts and time caps: every loop stops at whichever comes first."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.complete = 300 if quick else 3000
        self.complete_seconds = 3.0 if quick else 20.0
        self.begin = 15 if quick else 150
        self.begin_seconds = 4.0 if quick else 25.0
        self.dh = 15 if quick else 200
        self.dh_seconds = 3.0 if quick else 20.0
        self.login = 30 if quick else 300
        self.login_seconds = 4.0 if quick else 20.0
        self.fetcher = 100 if quick else 1000
        self.fetcher_seconds = 60.0 if quick else 240.0
        # With a round trip per association the sequential loop is latency-bound (about
        # 70 ms each at 50 ms): fewer endpoints keep the run short at the same steady rate.
        self.fetcher_rtt = 60 if quick else 300
        self.raw = 500 if quick else 3000
        self.raw_seconds = 2.0 if quick else 10.0
        self.profile = 500 if quick else 3000


# -- context -------------------------------------------------------------------------------------


class Context:
    """What the sections share: the OP, a temp directory, the database servers."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.sizes = Sizes(args.quick)
        self.tmp = tmp
        self.op = OPProcess()
        self.results: dict[str, Any] = {}
        self.cleanups: list[Callable[[], None]] = []
        self.servers: dict[str, str | None] = {}
        #: Whether openid-plugins-sql is installed (SQLite, PostgreSQL and MariaDB stores).
        self.sql = importlib.util.find_spec("openid_plugins_sql") is not None
        if not self.sql:
            self.results.setdefault("notes", []).append(
                "our SQL stores skipped: openid-plugins-sql is not installed"
            )
        for name, url in (("postgresql", PG_URL), ("mysql", MYSQL_URL)):
            skip = args.no_databases or not self.sql
            self.servers[name] = None if skip else server_version(url)
        self._prefixes: dict[str, list[str]] = {"postgresql": [], "mysql": []}

    def track_prefix(self, dialect: str) -> str:
        """A new table prefix whose tables are dropped at exit."""
        prefix = new_prefix()
        self._prefixes[dialect].append(prefix)
        return prefix

    def db_url(self, dialect: str) -> str | None:
        """A fresh-prefix URL on a reachable server (tables dropped at exit), else None."""
        if not self.servers.get(dialect):
            return None
        prefix = self.track_prefix(dialect)
        return with_prefix(PG_URL if dialect == "postgresql" else MYSQL_URL, prefix)

    def sqlite_url(self, name: str) -> str | None:
        return f"sqlite:///{self.tmp / name}" if self.sql else None

    def rp(self, store: str = "memory://", **settings: Any) -> RelyingParty:
        settings.setdefault("queue", "memory://")
        settings.setdefault("data_dir", str(self.tmp / "data"))
        # The benchmark OPs listen on 127.0.0.1, which the SSRF guard refuses by default.
        settings.setdefault("fetch_block_private_addresses", False)
        rp = RelyingParty(store=store, **settings)
        self.cleanups.append(rp.close)
        return rp

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # keep closing the rest
                log.warning("cleanup failed: %s", exc)
        for dialect, prefixes in self._prefixes.items():
            if prefixes:
                drop_tables(PG_URL if dialect == "postgresql" else MYSQL_URL, prefixes)
        self.op.stop()


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def show(timing: Timing) -> dict[str, Any]:
    data = timing.to_dict()
    median = f"{data['median_us']:.0f} us" if data["median_us"] is not None else "-"
    p95 = f"{data['p95_us']:.0f} us" if data["p95_us"] is not None else "-"
    cpu = f"  RP CPU {data['cpu_median_us']:.0f} us" if "cpu_median_us" in data else ""
    say(
        f"  {timing.name:<44} {data['ops_per_second']:>10.1f} ops/s  median {median:>10}"
        f"  p95 {p95:>10}{cpu}  (n={data['count']})"
    )
    for note in timing.notes:
        say(f"    note: {note}")
    return data


def speedup(ours: dict[str, Any], theirs: dict[str, Any]) -> float | None:
    if not ours or not theirs or not theirs.get("ops_per_second"):
        return None
    return round(ours["ops_per_second"] / theirs["ops_per_second"], 2)


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


# -- 1. complete() -------------------------------------------------------------------------------


def our_session_state(ctx: Context, claimed: str) -> dict[str, Any]:
    """What our begin() leaves in the session, from a real (stateless) begin()."""
    rp = ctx.rp(association="stateless")
    session: dict[str, Any] = {}
    rp.begin(claimed, RETURN_TO, REALM, session=session)
    return dict(session[SESSION_KEY])


def their_endpoint(claimed: str):  # noqa: ANN201 - openid.consumer.discover.OpenIDServiceEndpoint
    """What python3-openid's begin() keeps in the session, from its own discovery."""
    from openid.consumer.consumer import Consumer

    return Consumer({}, None).begin(claimed).endpoint


WARMUP = 20


def our_complete(
    ctx: Context, label: str, store_url: str, shared: SharedAssociation, claimed: str, state: dict
) -> Runner:
    """Our ``complete()`` on a store holding the shared association."""
    rp = ctx.rp(store_url, association="inline")
    rp.store.store_association(shared.server_url, shared.ours())
    # begin() binds its answer to the session with an RP nonce in return_to; the OP signs
    # that return_to and the browser comes back to it.
    return_to = state["return_to"]
    queries = iter(signed_assertions(ctx.sizes.complete + WARMUP, shared, claimed, return_to))
    state = dict(state, started=time.time())
    box: dict[str, Any] = {}

    def prepare(i: int) -> None:
        box["session"] = {SESSION_KEY: state}

    def call(i: int) -> Any:
        return rp.complete(next(queries), return_to, session=box["session"])

    def check(i: int, result: Any) -> None:
        if result.verified_by != "association" or result.claimed_id != claimed:
            raise AssertionError(f"ours {label}: unexpected result {result!r}")

    return Runner(f"ours {label}", call, prepare=prepare, check=check).warm(WARMUP)


def their_complete(
    ctx: Context, label: str, store: Any, shared: SharedAssociation, claimed: str, endpoint: Any
) -> Runner:
    """python3-openid's ``Consumer.complete()`` on a store holding the shared association."""
    from openid.consumer.consumer import Consumer

    store.storeAssociation(shared.server_url, shared.theirs())
    queries = iter(signed_assertions(ctx.sizes.complete + WARMUP, shared, claimed))
    # One Consumer reused, its session replaced per call: kinder to python3-openid than the
    # Consumer per request its documentation asks for.
    consumer = Consumer({}, store)

    def prepare(i: int) -> None:
        consumer.session = {consumer._token_key: endpoint}

    def call(i: int) -> Any:
        return consumer.complete(next(queries), RETURN_TO)

    def check(i: int, response: Any) -> None:
        if response.status != "success":
            raise AssertionError(
                f"python3-openid {label}: {response.status}: {getattr(response, 'message', '')}"
            )

    return Runner(f"python3-openid {label}", call, prepare=prepare, check=check).warm(WARMUP)


def their_stores(ctx: Context) -> list[tuple[str, str, Callable[[], Any]]]:
    """(label, which of our stores it compares with, factory) for python3-openid's stores."""
    from openid.store.filestore import FileOpenIDStore
    from openid.store.memstore import MemoryStore

    stores: list[tuple[str, str, Callable[[], Any]]] = [
        ("memory", "memory", MemoryStore),
        ("file", "file", lambda: FileOpenIDStore(str(ctx.tmp / "theirs-file"))),
    ]
    try:
        from openid.store import sqlstore
    except ImportError as exc:
        # python3-openid 3.2.0's sqlstore module imports psycopg2 at class definition, so
        # without it even SQLiteStore is unavailable.
        ctx.results.setdefault("notes", []).append(
            f"python3-openid SQL stores skipped: {exc} (pip install psycopg2-binary)"
        )
        return stores

    def sqlite_store(wal: bool) -> Any:
        conn = sqlite3.connect(str(ctx.tmp / f"theirs-{'wal' if wal else 'default'}.db"))
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
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
    ctx.results.setdefault("notes", []).append(
        "python3-openid MySQLStore skipped: it needs MySQLdb (mysqlclient), not installed"
    )
    return stores


def section_complete(ctx: Context) -> dict[str, Any]:
    say("complete(): warm association, distinct signed assertions, no network")
    op = ctx.op
    claimed = op.identity("alice")
    shared = SharedAssociation.new(op.endpoint("op"))
    state = our_session_state(ctx, claimed)
    endpoint = their_endpoint(claimed)
    before = op.counts()

    ours_urls = {
        "memory": "memory://",
        "file": (ctx.tmp / "ours-file").as_uri(),
        "sqlite": ctx.sqlite_url("ours.db"),
        "postgresql": ctx.db_url("postgresql"),
        "mysql": ctx.db_url("mysql"),
    }
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
        try:
            mine = our_complete(ctx, match, url, shared, claimed, state)
            others = [
                (label, their_complete(ctx, label, factory(), shared, claimed, endpoint))
                for label, factory in theirs_by_match.get(match, [])
            ]
            runners = [mine] + [runner for _, runner in others]
            interleave(runners, sizes.complete, sizes.complete_seconds * len(runners))
        except Exception as exc:  # a database going away mid-run: report, go on
            log.exception("complete() with the %s stores failed", match)
            ours[match] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        ours[match] = show(mine.timing)
        for label, runner in others:
            theirs[label] = show(runner.timing)
            ratios[label] = speedup(ours[match], theirs[label])
            say(f"    speed-up vs python3-openid {label}: {ratios[label]}x")
    after = op.counts()
    network = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    network = {k: v for k, v in network.items() if v}
    # Counted from after the two discoveries that set up the sessions: none is expected.
    say(f"  OP requests from the first complete() on: {network}")
    return {"ours": ours, "theirs": theirs, "speedup": ratios, "op_requests": network}


# -- 2. begin() for a never-seen OP --------------------------------------------------------------


def section_begin(ctx: Context) -> dict[str, Any]:
    from openid.consumer import discover as their_discover
    from openid.consumer.consumer import Consumer
    from openid.store.memstore import MemoryStore

    from openid_plugins.protocol import discovery

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
            lambda i: discovery.discover(fresh("d", i), rp_disc.fetcher, pm=rp_disc.pm),
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
                    nagle_op.fresh_identity(f"opn{tag}{i + 100}"), rp_disc.fetcher, pm=rp_disc.pm
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


# -- 3. one DH association, RP side -------------------------------------------------------------


def section_dh(ctx: Context) -> dict[str, Any]:
    from openid import cryptutil
    from openid.consumer.consumer import DiffieHellmanSHA256ConsumerSession
    from openid.dh import DiffieHellman
    from openid.message import OPENID2_NS as THEIR_NS
    from openid.message import Message as TheirMessage

    from openid_plugins.protocol import association
    from openid_plugins.protocol.association import (
        DEFAULT_DH_GROUP,
        DH_SHA256,
        FFDHE2048_GROUP,
        DHSession,
    )

    say("one DH-SHA256 association, RP-side CPU only (OP answer computed untimed)")
    sizes = ctx.sizes
    out: dict[str, Any] = {}

    def server_answer(consumer_public: int, group: Any, mac_key: bytes) -> dict[str, str]:
        """The OP's side (8.4.2), by python3-openid's server code path, untimed."""
        server = DiffieHellman(group.modulus, group.generator)
        enc = server.xorSecret(consumer_public, mac_key, cryptutil.sha256)
        answer = {
            "dh_server_public": cryptutil.longToBase64(server.public),
            "enc_mac_key": cryptutil.toBase64(enc),
        }
        # python3-openid returns bytes or str depending on the helper; the wire is text.
        return {k: v.decode("ascii") if isinstance(v, bytes) else v for k, v in answer.items()}

    def ours(label: str, group: Any) -> Timing:
        timing = Timing(f"ours DHSession {label}")
        deadline = time.monotonic() + sizes.dh_seconds
        for i in range(sizes.dh + 1):
            mac_key = secrets.token_bytes(32)
            started = time.perf_counter()
            session = DHSession(DH_SHA256, group)
            session.request_args()
            first = time.perf_counter() - started
            answer = server_answer(session.public, group, mac_key)
            started = time.perf_counter()
            secret = session.extract_secret(answer)
            second = time.perf_counter() - started
            if secret != mac_key:
                raise AssertionError("our DH session extracted the wrong MAC key")
            if i:  # the first one builds the cached group parameters
                timing.seconds.append(first + second)
            if time.monotonic() > deadline:
                timing.notes.append(f"stopped after {i} of {sizes.dh} ({sizes.dh_seconds:.0f} s)")
                break
        return timing

    def theirs(label: str, group: Any) -> Timing:
        timing = Timing(f"python3-openid DH consumer session {label}")
        deadline = time.monotonic() + sizes.dh_seconds
        for i in range(sizes.dh + 1):
            mac_key = secrets.token_bytes(32)
            started = time.perf_counter()
            session = DiffieHellmanSHA256ConsumerSession(
                DiffieHellman(group.modulus, group.generator)
            )
            session.getRequest()
            first = time.perf_counter() - started
            answer = server_answer(session.dh.public, group, mac_key)
            message = TheirMessage.fromOpenIDArgs({"ns": THEIR_NS, **answer})
            started = time.perf_counter()
            secret = session.extractSecret(message)
            second = time.perf_counter() - started
            if secret != mac_key:
                raise AssertionError("python3-openid extracted the wrong MAC key")
            if i:
                timing.seconds.append(first + second)
            if time.monotonic() > deadline:
                timing.notes.append(f"stopped after {i} of {sizes.dh} ({sizes.dh_seconds:.0f} s)")
                break
        return timing

    out["ours_default_group"] = show(ours("default group (1024-bit, App. B)", DEFAULT_DH_GROUP))
    out["theirs_default_group"] = show(theirs("default group (1024-bit)", DEFAULT_DH_GROUP))
    out["ours_ffdhe2048"] = show(ours("ffdhe2048 (RFC 7919)", FFDHE2048_GROUP))
    out["theirs_ffdhe2048"] = show(theirs("ffdhe2048", FFDHE2048_GROUP))
    out["speedup"] = {
        "default_group": speedup(out["ours_default_group"], out["theirs_default_group"]),
        "ffdhe2048": speedup(out["ours_ffdhe2048"], out["theirs_ffdhe2048"]),
        "ours_ffdhe2048_vs_theirs_default": speedup(
            out["ours_ffdhe2048"], out["theirs_default_group"]
        ),
    }
    # What each library asks an OP for first: python3-openid always uses Appendix B's group.
    preferred = getattr(association, "PREFERRED_DH_GROUP", DEFAULT_DH_GROUP)
    out["ours_requests_first"] = "ffdhe2048" if preferred == FFDHE2048_GROUP else "default"
    out["speedup"]["as_requested_first"] = out["speedup"][
        "ours_ffdhe2048_vs_theirs_default"
        if out["ours_requests_first"] == "ffdhe2048"
        else "default_group"
    ]
    for key, value in out["speedup"].items():
        say(f"  speed-up {key}: {value}x")
    return out


# -- 4. full login ---------------------------------------------------------------------------


def section_login(ctx: Context) -> dict[str, Any]:
    from openid.consumer.consumer import Consumer
    from openid.store.memstore import MemoryStore

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


# -- 5. the fetcher ----------------------------------------------------------------------------


def fetcher_run(ctx: Context, count: int, rtt_ms: float) -> dict[str, Any]:
    """Associations for ``count`` queued endpoints on fresh OP processes whose answers to
    ``associate`` wait ``rtt_ms``: our ``BackgroundFetcher.run_once()``, then seed 000's
    sequential loop. Also the CPU time the OP processes spent per association, which on
    this machine comes out of the same cores as the relying party's."""
    from openid.consumer.consumer import GenericConsumer
    from openid.consumer.discover import OPENID_2_0_TYPE, OpenIDServiceEndpoint
    from openid.store.memstore import MemoryStore

    from openid_plugins.fetcher import BackgroundFetcher

    sizes = ctx.sizes
    processes = ctx.args.op_processes
    concurrency = ctx.args.concurrency
    say(
        f"associations for {count} queued OP endpoints over {processes} extra OP processes,"
        f" associate answers delayed {rtt_ms:g} ms"
        f" (ours: BackgroundFetcher concurrency {concurrency}; theirs: seed 000's loop)"
    )
    ops = [OPProcess(rtt_ms=rtt_ms) for _ in range(processes)]
    ctx.cleanups.extend(op.stop for op in ops)

    def op_cpu() -> float | None:
        seconds = [op.cpu_seconds() for op in ops]
        return None if None in seconds else sum(s for s in seconds if s is not None)

    def op_cpu_ms(before: float | None, done: int) -> float | None:
        after = op_cpu()
        if before is None or after is None or not done:
            return None
        return round((after - before) / done * 1e3, 2)

    tag = secrets.token_hex(2)
    ours_urls = [ops[i % processes].endpoint(f"opf{tag}{i}") for i in range(count)]
    their_urls = [ops[i % processes].endpoint(f"opg{tag}{i}") for i in range(count)]
    out: dict[str, Any] = {"endpoints": count, "op_processes": processes, "rtt_ms": rtt_ms}

    rp = ctx.rp(association="background")
    for url in ours_urls:
        rp.queue.put(url)
    fetcher = BackgroundFetcher(rp.associator, rp.queue, concurrency=concurrency)
    op_before = op_cpu()
    cpu = time.process_time()
    started = time.perf_counter()
    stats = run_in_thread(fetcher.run_once, sizes.fetcher_seconds * 2)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    ours_op_cpu = op_cpu_ms(op_before, stats.made)
    missing = [url for url in ours_urls if rp.store.get_association(url) is None]
    if stats.made != count or missing:
        raise AssertionError(f"our fetcher: {stats.summary()}; {len(missing)} missing")
    ours = Timing(f"ours BackgroundFetcher ({concurrency} threads, rtt {rtt_ms:g} ms)")
    ours.batch_seconds, ours.batch_count, ours.batch_cpu_seconds = elapsed, count, cpu
    ours.seconds = sorted(stats.timings.values())
    out["ours"] = show(ours)
    out["ours"]["note"] = "median/p95: one association as seen by its worker thread"

    consumer = GenericConsumer(MemoryStore())
    theirs = Timing(f"python3-openid sequential loop (seed 000, rtt {rtt_ms:g} ms)")
    deadline = time.monotonic() + sizes.fetcher_seconds
    op_before = op_cpu()
    cpu = time.process_time()
    started = time.perf_counter()
    for i, url in enumerate(their_urls):
        endpoint = OpenIDServiceEndpoint()
        endpoint.server_url = url
        endpoint.type_uris = [OPENID_2_0_TYPE]
        one = time.perf_counter()
        if consumer.store.getAssociation(url):
            continue
        association = consumer._negotiateAssociation(endpoint)
        if association is None:
            raise AssertionError(f"python3-openid failed to associate with {url}")
        consumer.store.storeAssociation(url, association)
        theirs.seconds.append(time.perf_counter() - one)
        if time.monotonic() > deadline:
            theirs.notes.append(f"stopped after {i + 1} of {count} ({sizes.fetcher_seconds:.0f} s)")
            break
    theirs.batch_seconds = time.perf_counter() - started
    theirs.batch_count = len(theirs.seconds)
    theirs.batch_cpu_seconds = time.process_time() - cpu
    their_op_cpu = op_cpu_ms(op_before, theirs.batch_count)
    out["theirs"] = show(theirs)
    associations = sum(op.counts().get("associate", 0) for op in ops)
    for op in ops:
        op.stop()
    out["op_associate_requests"] = associations
    out["speedup"] = speedup(out["ours"], out["theirs"])
    # What each association costs the OP (ours asks for ffdhe2048, which python3-openid's
    # OP computes in pure Python; its own loop asks for the 1024-bit group).
    out["op_cpu_ms_per_association"] = {"ours": ours_op_cpu, "theirs": their_op_cpu}
    # Our fetcher's ceilings: its own CPU alone (one core, the GIL) when the OPs are
    # elsewhere; and here, where every association's OP and RP CPU share the machine's cores.
    ours_cpu = out["ours"]["cpu_us_per_op"]
    out["ours_rp_cpu_bound_ops_per_second"] = round(1e6 / ours_cpu, 1) if ours_cpu else None
    out["ours_machine_cpu_bound_ops_per_second"] = (
        round(nproc() / (ours_op_cpu / 1e3 + ours_cpu / 1e6), 1) if ours_op_cpu else None
    )
    out["speedup_rp_cpu_per_association"] = round(
        out["theirs"]["cpu_us_per_op"] / out["ours"]["cpu_us_per_op"], 2
    )
    say(
        f"  associate requests served: {associations}; speed-up: {out['speedup']}x;"
        f" RP CPU per association: ours {out['ours']['cpu_us_per_op']:.0f} us, theirs"
        f" {out['theirs']['cpu_us_per_op']:.0f} us; OP CPU per association (ms):"
        f" {out['op_cpu_ms_per_association']}; ours bound by this machine's CPUs at"
        f" {out['ours_machine_cpu_bound_ops_per_second']} associations/s"
    )
    return out


def section_fetcher(ctx: Context) -> dict[str, Any]:
    """The fetcher on loopback (OPs answer at once, as the earlier runs measured it) and with
    a simulated network round trip on every ``associate``, which is what a concurrent
    fetcher exists to hide: real OPs are remote."""
    out: dict[str, Any] = {}
    for key, count, rtt_ms in (
        ("loopback", ctx.sizes.fetcher, 0.0),
        ("rtt", ctx.sizes.fetcher_rtt, ctx.args.rtt_ms),
    ):
        try:
            out[key] = fetcher_run(ctx, count, rtt_ms)
        except Exception as exc:  # reported; the other variant still runs
            log.exception("the fetcher's %s variant failed", key)
            out[key] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return out


# -- 6. raw rates -------------------------------------------------------------------------------


def raw_sqlite(ctx: Context, wal: bool) -> Runner:
    path = ctx.tmp / f"raw-{'wal' if wal else 'default'}-{secrets.token_hex(3)}.db"
    conn = sqlite3.connect(str(path), isolation_level=None)
    ctx.cleanups.append(conn.close)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE nonces (k TEXT PRIMARY KEY, expires REAL)")
    label = "WAL, synchronous=NORMAL" if wal else "default journal"
    return Runner(
        f"raw SQLite INSERT autocommit ({label})",
        lambda i: conn.execute("INSERT INTO nonces VALUES (?, ?)", (f"{i:064d}", 1.0)),
    )


def raw_postgresql(ctx: Context) -> Runner:
    import psycopg
    from openid_plugins_sql.target import parse_target

    conninfo = parse_target(PG_URL).url.set(drivername="postgresql").render_as_string(False)
    prefix = ctx.track_prefix("postgresql")
    conn = psycopg.connect(conninfo, autocommit=True)
    ctx.cleanups.append(conn.close)
    conn.execute(f"CREATE TABLE {prefix}raw (k VARCHAR(64) PRIMARY KEY, expires DOUBLE PRECISION)")
    cursor = conn.cursor()
    insert = f"INSERT INTO {prefix}raw VALUES (%s, %s)"
    return Runner(
        "raw PostgreSQL INSERT autocommit (psycopg 3)",
        lambda i: cursor.execute(insert, (f"{i:064d}", 1.0)),
    )


def raw_mysql(ctx: Context) -> Runner:
    import pymysql
    from openid_plugins_sql.target import parse_target

    u = parse_target(MYSQL_URL).url
    conn = pymysql.connect(
        host=u.host,
        port=u.port or 3306,
        user=u.username,
        password=u.password or "",
        database=u.database,
        autocommit=True,
    )
    ctx.cleanups.append(conn.close)
    prefix = ctx.track_prefix("mysql")
    cursor = conn.cursor()
    cursor.execute(f"CREATE TABLE {prefix}raw (k VARCHAR(64) PRIMARY KEY, expires DOUBLE)")
    insert = f"INSERT INTO {prefix}raw VALUES (%s, %s)"
    return Runner(
        "raw MariaDB INSERT autocommit (PyMySQL)",
        lambda i: cursor.execute(insert, (f"{i:064d}", 1.0)),
    )


def raw_files(ctx: Context, fsync_dir: bool) -> Runner:
    directory = ctx.tmp / f"raw-files-{secrets.token_hex(3)}"
    directory.mkdir()
    dir_fd = os.open(directory, os.O_RDONLY)
    ctx.cleanups.append(lambda: os.close(dir_fd))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL

    def create(i: int) -> None:
        os.close(os.open(directory / f"{i:064d}", flags, 0o600))
        if fsync_dir:
            os.fsync(dir_fd)

    label = " + fsync(dir)" if fsync_dir else ""
    return Runner(f"raw O_CREAT|O_EXCL file creation{label}", create)


def our_nonce_rate(ctx: Context, label: str, url: str) -> Runner:
    store = ctx.rp(url).store
    server = "https://op.example/server"
    now = time.time()
    store.use_nonce(server, now, "warm-up")  # creates tables and directories
    return Runner(f"ours {label} use_nonce", lambda i: store.use_nonce(server, now, f"n{i}"))


def section_raw(ctx: Context) -> dict[str, Any]:
    say("raw single-client rates of this machine, and our stores' nonce rates")
    sizes = ctx.sizes
    # Each of our stores takes turns with its backend's raw rate: (store label, URL,
    # {raw key: raw runner factory}, the raw key its fraction is taken of).
    groups: list[tuple[str, str | None, dict[str, Callable[[], Runner]], str | None]] = [
        ("memory", "memory://", {}, None),
        (
            "file",
            (ctx.tmp / "nonce-file").as_uri(),
            {
                "file": lambda: raw_files(ctx, fsync_dir=False),
                "file_fsync_dir": lambda: raw_files(ctx, fsync_dir=True),
            },
            "file_fsync_dir",
        ),
        (
            "sqlite",
            ctx.sqlite_url("nonce.db"),
            {
                "sqlite_default": lambda: raw_sqlite(ctx, wal=False),
                "sqlite_wal": lambda: raw_sqlite(ctx, wal=True),
            },
            "sqlite_wal",
        ),
        (
            "postgresql",
            ctx.db_url("postgresql"),
            {"postgresql": lambda: raw_postgresql(ctx)},
            "postgresql",
        ),
        ("mysql", ctx.db_url("mysql"), {"mysql": lambda: raw_mysql(ctx)}, "mysql"),
    ]
    raw: dict[str, Any] = {}
    nonce: dict[str, Any] = {}
    fractions: dict[str, Any] = {}
    complete = ctx.results.get("complete", {}).get("ours", {})
    for label, url, raw_factories, backend in groups:
        if url is None:
            continue
        try:
            mine = our_nonce_rate(ctx, label, url)
            raws = {key: factory() for key, factory in raw_factories.items()}
            runners = [mine, *raws.values()]
            interleave(runners, sizes.raw, sizes.raw_seconds * len(runners))
        except Exception as exc:  # a database going away mid-run: report, go on
            log.exception("raw rates for %s failed", label)
            nonce[label] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        nonce[label] = show(mine.timing)
        raw.update({key: show(runner.timing) for key, runner in raws.items()})
        if backend:
            raw_rate = raw[backend]["ops_per_second"]
            fractions[label] = {
                "backend": backend,
                "nonce_fraction_of_raw": round(nonce[label]["ops_per_second"] / raw_rate, 3),
                "complete_fraction_of_raw": (
                    round(complete[label]["ops_per_second"] / raw_rate, 3)
                    if complete.get(label, {}).get("ops_per_second")
                    else None
                ),
            }
            say(f"    {label}: {fractions[label]}")
    raw["memcached"] = {"skipped": "no memcached server or store plugin yet"}
    return {"raw": raw, "ours_use_nonce": nonce, "fraction_of_raw": fractions}


# -- profile ---------------------------------------------------------------------------------


def section_profile(ctx: Context) -> dict[str, Any]:
    say("cProfile of complete() (memory and SQLite stores)")
    op = ctx.op
    claimed = op.identity("alice")
    state = our_session_state(ctx, claimed)
    out: dict[str, Any] = {}
    for label, url in (("memory", "memory://"), ("sqlite", ctx.sqlite_url("prof.db"))):
        if url is None:
            continue
        shared = SharedAssociation.new(op.endpoint("op"))
        rp = ctx.rp(url, association="inline")
        rp.store.store_association(shared.server_url, shared.ours())
        count = ctx.sizes.profile
        return_to = state["return_to"]
        queries = signed_assertions(count + 10, shared, claimed, return_to)
        fresh = dict(state, started=time.time())
        for query in queries[count:]:
            rp.complete(query, return_to, session={SESSION_KEY: fresh})
        sessions = [{SESSION_KEY: fresh} for _ in range(count)]
        profiler = cProfile.Profile()
        profiler.enable()
        for query, session in zip(queries[:count], sessions):
            rp.complete(query, return_to, session=session)
        profiler.disable()
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
        by_self = sorted(rows, key=lambda r: r["self_pct"], reverse=True)[:15]
        by_cum = sorted(rows, key=lambda r: r["cumulative_pct"], reverse=True)[:25]
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        path = ctx.args.out.parent / f"profile_complete_{label}.txt"
        paths = sysconfig.get_paths()
        listing = text.getvalue().replace(paths["purelib"] + "/", "site-packages/")
        listing = listing.replace(str(ROOT) + "/", "")
        path.write_text(listing.replace(paths["stdlib"] + "/", "<stdlib>/"))
        out[label] = {
            "calls": count,
            "us_per_complete_under_profiler": round(total / count * 1e6, 1),
            "self_pct_by_origin": {k: round(v, 1) for k, v in sorted(origins.items())},
            "top_self": by_self,
            "top_cumulative": by_cum,
            "file": str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path),
        }
        say(f"  {label}: {out[label]['us_per_complete_under_profiler']} us/call profiled")
        for row in by_self[:8]:
            say(f"    {row['self_pct']:5.1f}% self  {row['function']}")
    return out


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
    for marker in ("site-packages/", "openid_plugins/", "plugins/", "lib/python"):
        if marker in filename:
            return filename[filename.index(marker) :]
    return filename


# -- targets and the Markdown table -----------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue #7: the measured value, whether it is met, how it is computed,
    and why, in one line built from the measurements."""
    found: list[dict[str, Any]] = []

    def add(name: str, value: Any, met: bool | None, how: str, why: str) -> None:
        found.append({"target": name, "value": value, "met": met, "how": how, "why": why})

    complete = results.get("complete", {})
    profile = results.get("profile", {})
    pairs = [("memory", "memory"), ("sqlite", "sqlite (WAL, synchronous=NORMAL)")]
    for ours_label, their_label in pairs if complete else []:
        ratio = complete.get("speedup", {}).get(their_label)
        mine = complete.get("ours", {}).get(ours_label, {})
        other = complete.get("theirs", {}).get(their_label, {})
        if ratio is None or "median_us" not in mine:
            continue
        why = (
            f"median {mine['median_us']:.0f} us per call against python3-openid's"
            f" {other['median_us']:.0f} us"
        )
        top = (profile.get(ours_label, {}).get("top_self") or [{}])[0]
        floor = results.get("raw", {}).get("raw", {}).get("sqlite_wal", {})
        if ours_label == "memory" and top.get("self_pct", 100) < 15:
            why += (
                f"; 10x needs {other['median_us'] / 10:.0f} us, and the profile has no hotspot"
                f" left (the largest, {top['function'].split('(')[-1].rstrip(')')}, is"
                f" {top['self_pct']}% self): parsing, HMAC and the nonce check in Python"
            )
        elif ours_label == "sqlite" and floor.get("median_us", 0) >= other["median_us"] / 20:
            why += (
                f"; 10x needs {other['median_us'] / 10:.0f} us, while one raw WAL INSERT (the"
                f" nonce every complete() must write) takes {floor['median_us']:.0f} us here"
            )
        add(
            f"complete() >= 10x python3-openid ({ours_label} store)",
            ratio,
            ratio >= 10,
            f"ours ops/s / python3-openid {their_label} ops/s",
            why,
        )
    raw = results.get("raw", {})
    for label, entry in raw.get("fraction_of_raw", {}).items():
        value = entry["nonce_fraction_of_raw"]
        mine = raw["ours_use_nonce"][label]
        backend = raw["raw"][entry["backend"]]
        why = (
            f"use_nonce {mine['median_us']:.0f} us median ({mine['cpu_median_us']:.0f} us of"
            f" our CPU) against {backend['median_us']:.0f} us ({backend['cpu_median_us']:.0f} us)"
            f" for the {backend['name'].removeprefix('raw ')}"
        )
        if value < 1 / 1.5 and mine["cpu_median_us"] > 1.5 * backend["median_us"]:
            why += ": the gap is this process's own CPU per call (store and SQL layer code)"
        add(
            f"{label} store within 1.5x of its raw rate (use_nonce)",
            value,
            value >= 1 / 1.5,
            f"ours use_nonce ops/s / raw {entry['backend']} ops/s >= 0.667",
            why,
        )
    dh = results.get("dh", {}).get("speedup", {})
    if dh:
        first = results["dh"]["ours_requests_first"]
        value = dh.get("as_requested_first")
        add(
            "RP-side DH >= 10x faster (the group each library asks for first)",
            value,
            value is not None and value >= 10,
            f"python3-openid (1024-bit default group) time / ours ({first} group)",
            f"we ask for {first} first (1024-bit DH is considered breakable since Logjam), a"
            f" group twice the size of python3-openid's; on the same group: ffdhe2048"
            f" {dh.get('ffdhe2048')}x, the 1024-bit default {dh.get('default_group')}x",
        )
    begin = results.get("begin", {})
    if begin.get("ratios"):
        ratios = begin["ratios"]
        value = ratios.get("ours_background_vs_ours_discovery_median")
        cache_write = begin["ours_rp_discover"]["median_us"] - begin["ours_discovery"]["median_us"]
        add(
            "first-login begin() costs no more than discovery",
            value,
            value is not None and value <= 1.10,
            "median background begin() / median discovery <= 1.10",
            f"{ratios.get('ours_background_minus_discovery_median_us'):.0f} us over discovery's"
            f" {begin['ours_discovery']['median_us']:.0f} us median, of which about"
            f" {cache_write:.0f} us is the discovery-cache write, the rest the queue put and"
            " building the request",
        )
    fetcher = results.get("fetcher", {})
    rtt, loop = fetcher.get("rtt", {}), fetcher.get("loopback", {})
    if rtt.get("speedup") is not None:
        op_cpu = rtt["op_cpu_ms_per_association"]
        why = (
            "judged with the round trip because real OPs are remote; the OPs here share"
            f" this machine's {nproc()} cores and spend {op_cpu['ours']} ms of CPU on each of"
            f" our associations (ffdhe2048 in pure Python) against {op_cpu['theirs']} ms on each"
            " 1024-bit one of the loop's, which caps our fetcher at about"
            f" {rtt['ours_machine_cpu_bound_ops_per_second']} associations/s"
        )
        if loop.get("speedup") is not None:
            drop = 1 - rtt["ours"]["ops_per_second"] / loop["ours"]["ops_per_second"]
            their_drop = 1 - rtt["theirs"]["ops_per_second"] / loop["theirs"]["ops_per_second"]
            why += (
                f"; the {rtt['rtt_ms']:g} ms round trip costs our fetcher {drop:.0%} of its"
                f" loopback rate and the loop {their_drop:.0%}; on loopback"
                f" ({loop['endpoints']} endpoints) the speed-up is {loop['speedup']}x, both"
                " sides bound by CPU"
            )
        add(
            f"fetcher >= 10x the sequential loop ({rtt['endpoints']} endpoints,"
            f" {rtt['rtt_ms']:g} ms round trip per associate)",
            rtt["speedup"],
            rtt["speedup"] >= 10,
            "ours associations/s / python3-openid loop associations/s, round-trip variant",
            why,
        )
    return found


def nproc() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _fmt(data: dict[str, Any] | None) -> tuple[str, str, str, str]:
    if not data or "ops_per_second" not in data:
        return ("-", "-", "-", "-")
    median = "-" if data.get("median_us") is None else f"{data['median_us']:,.0f}"
    p95 = "-" if data.get("p95_us") is None else f"{data['p95_us']:,.0f}"
    cpu = data.get("cpu_median_us", data.get("cpu_us_per_op"))
    return (f"{data['ops_per_second']:,.1f}", median, p95, "-" if cpu is None else f"{cpu:,.0f}")


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    r = report["results"]
    lines = [
        "# openid-plugins vs python3-openid",
        "",
        f"- date: {report['date']}  (mode: {'quick' if report['quick'] else 'full'},"
        f" {report['seconds']:.0f} s)",
        f"- machine: `{m['uname']}`",
        f"- nproc: {m['nproc']}; CPU: {m['cpu']}",
        f"- Python {m['python']}; python3-openid {m['python3-openid']}; cryptography"
        f" {m['cryptography']}; SQLite {m['sqlite']}",
    ]
    src = report.get("source", {})
    if src.get("commit"):
        dirty = src["uncommitted_changes"]
        state = f"uncommitted changes in {', '.join(dirty)}" if dirty else "no uncommitted changes"
        lines.append(f"- code: commit {src['commit'][:12]} ({state})")
    for name, version in report.get("servers", {}).items():
        lines.append(f"- {name}: {version or 'unreachable (skipped)'}")
    lines += [
        "",
        "Speed-up = ours ops/s / python3-openid ops/s (above 1: we are faster). Times in"
        " microseconds per call; RP CPU is the benchmark process's CPU time per call (the OPs"
        " run in child processes, so it is the relying party's own work). Contenders for the"
        " same store take turns in rounds, so other load on the machine falls on both.",
        f"- load average at start / end: {report['load'][0]} / {report['load'][1]}",
        "",
        "## Targets",
        "",
        "| target | measured | met? | how |",
        "|---|---|---|---|",
    ]
    for t in report["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['value']} | {met} | {t['how']} |")

    def table(title: str, rows: list[tuple[str, dict[str, Any] | None]]) -> None:
        lines.extend(["", f"## {title}", "", "| what | ops/s | median us | p95 us | RP CPU us |"])
        lines.append("|---|---|---|---|---|")
        for name, data in rows:
            name = name.replace("|", "\\|")
            if data and ("skipped" in data or "error" in data):
                why = f"skipped: {data['skipped']}" if "skipped" in data else data["error"]
                lines.append(f"| {name} | {why} | | | |")
            else:
                lines.append(f"| {name} | {' | '.join(_fmt(data))} |")

    if "complete" in r:
        c = r["complete"]
        rows = [(f"ours {k}", v) for k, v in c["ours"].items()]
        rows += [(f"python3-openid {k}", v) for k, v in c["theirs"].items()]
        table("1. complete(), warm association, no network", rows)
        lines.append("")
        lines.append(
            "Speed-ups: "
            + "; ".join(f"vs {k}: {v}x" for k, v in c["speedup"].items())
            + ". OP requests from the first complete() on (the two discoveries that set up"
            f" the sessions come before): {c['op_requests'] or 'none'}."
        )
    if "begin" in r:
        b = r["begin"]
        table(
            "2. begin() for a never-seen OP",
            [
                ("ours begin(), background (discovery + queue put)", b["ours_background"]),
                ("ours discovery alone", b["ours_discovery"]),
                ("ours RelyingParty.discover() (discovery + cache write)", b["ours_rp_discover"]),
                ("ours begin(), inline (discovery + DH association)", b["ours_inline"]),
                ("python3-openid begin() (discovery + DH association)", b["theirs_begin"]),
                ("python3-openid discovery alone", b["theirs_discovery"]),
                ("ours discovery, OP without TCP_NODELAY", b["ours_discovery_nagle_op"]),
                (
                    "python3-openid discovery, OP without TCP_NODELAY",
                    b["theirs_discovery_nagle_op"],
                ),
            ],
        )
        lines.append("")
        lines.append("Ratios: " + "; ".join(f"{k}: {v}" for k, v in b["ratios"].items()))
    if "dh" in r:
        d = r["dh"]
        table(
            "3. one DH-SHA256 association, RP-side CPU only",
            [
                ("ours, default 1024-bit group", d["ours_default_group"]),
                ("python3-openid, default 1024-bit group", d["theirs_default_group"]),
                ("ours, ffdhe2048", d["ours_ffdhe2048"]),
                ("python3-openid, ffdhe2048", d["theirs_ffdhe2048"]),
            ],
        )
        lines.append("")
        lines.append("Speed-ups: " + "; ".join(f"{k}: {v}x" for k, v in d["speedup"].items()))
    if "login" in r:
        g = r["login"]
        table(
            "4. full login, warm association, memory stores",
            [("ours", g["ours"]), ("python3-openid", g["theirs"])],
        )
        lines.append("")
        lines.append(f"Speed-up: {g['speedup']}x. OP requests: {g['op_requests']}.")
    if "fetcher" in r:
        f = r["fetcher"]
        variants = [(key, f[key]) for key in ("loopback", "rtt") if "ours" in f.get(key, {})]
        rows = []
        for _, v in variants:
            where = f"{v['endpoints']} endpoints, {v['rtt_ms']:g} ms per associate"
            rows += [
                (f"ours BackgroundFetcher ({where})", v["ours"]),
                (f"python3-openid loop ({where})", v["theirs"]),
            ]
        processes = variants[0][1]["op_processes"] if variants else "-"
        table(f"5. associations for queued endpoints ({processes} OP processes)", rows)
        lines.extend(
            [
                "",
                "| variant | speed-up | OP CPU per association, ours / theirs (ms) |"
                " RP CPU per association, theirs / ours | ours bound by this machine's CPUs |",
                "|---|---|---|---|---|",
            ]
        )
        for key, v in variants:
            op_cpu = v["op_cpu_ms_per_association"]
            lines.append(
                f"| {key} ({v['rtt_ms']:g} ms) | {v['speedup']}x | {op_cpu['ours']} /"
                f" {op_cpu['theirs']} | {v['speedup_rp_cpu_per_association']}x |"
                f" {v['ours_machine_cpu_bound_ops_per_second']} associations/s |"
            )
        for key in ("loopback", "rtt"):
            if "error" in f.get(key, {}):
                lines.append(f"| {key} | {f[key]['error']} | | | |")
        lines.append("")
        lines.append(
            "ops/s is associations per second of wall time; median/p95 are per association;"
            " RP CPU is this process's CPU per association. The round-trip variant delays every"
            " answer to `associate` by sleeping in the OP's handler thread (no CPU), as a remote"
            " OP would: real OPs are remote, and hiding that wait is what a concurrent fetcher is"
            " for. On loopback both contenders are bound by CPU, and the OPs share this"
            " machine's cores with the relying party. \"Ours bound by this machine's CPUs\" is"
            " cores / (OP CPU + RP CPU) per association."
        )
    if "raw" in r:
        w = r["raw"]
        table("6. raw single-client rates", [(v.get("name", k), v) for k, v in w["raw"].items()])
        table("6. our stores' use_nonce rates", [(k, v) for k, v in w["ours_use_nonce"].items()])
        lines.extend(
            [
                "",
                "| store | backend | use_nonce / raw | complete() / raw |",
                "|---|---|---|---|",
            ]
        )
        for k, v in w["fraction_of_raw"].items():
            lines.append(
                f"| {k} | {v['backend']} | {v['nonce_fraction_of_raw']} |"
                f" {v['complete_fraction_of_raw']} |"
            )
    if "profile" in r:
        for label, p in r["profile"].items():
            lines.extend(
                [
                    "",
                    f"## Profile of complete(), {label} store"
                    f" ({p['us_per_complete_under_profiler']} us/call under cProfile;"
                    f" full listing in `{Path(p['file']).name}`)",
                    "",
                    "| function | calls/complete | self % | cumulative % |",
                    "|---|---|---|---|",
                ]
            )
            for row in p["top_self"][:12]:
                lines.append(
                    f"| `{row['function']}` | {row['calls_per_complete']} | {row['self_pct']} |"
                    f" {row['cumulative_pct']} |"
                )
    if report.get("notes"):
        lines.extend(["", "## Notes", ""])
        lines.extend(f"- {note}" for note in report["notes"])
    if report["targets"]:
        lines.extend(["", "## Targets: met / missed and why", ""])
        for t in report["targets"]:
            met = "n/a" if t["met"] is None else ("met" if t["met"] else "**missed**")
            lines.append(f"- {t['target']}: {met} ({t['value']}): {t['why']}.")
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------


def source_state() -> dict[str, Any]:
    """The commit measured, and whether the code it imports had uncommitted changes: several
    people work in one tree, so a run can pick up someone's unfinished edit."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    import openid_plugins

    changed = git("status", "--porcelain", "--", "openid_plugins", "plugins", "benchmarks", "tests")
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "uncommitted_changes": [line[3:] for line in changed.splitlines()],
        "imported_from": str(Path(openid_plugins.__file__).resolve().parent.parent),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: about a minute")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--op-processes", type=int, default=4, help="extra OPs for the fetcher")
    parser.add_argument("--concurrency", type=int, default=16, help="our fetcher's threads")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=50.0,
        help="simulated network round trip of each associate in the fetcher's RTT variant",
    )
    parser.add_argument(
        "--no-databases", action="store_true", help="skip PostgreSQL and MariaDB entirely"
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    started = time.monotonic()
    load_start = os.getloadavg()
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="openid-bench-") as tmp:
        ctx = Context(args, Path(tmp))
        try:
            say(f"OP at {ctx.op.base}; servers: {ctx.servers}")
            for section in SECTIONS:
                if section in sections:
                    began = time.monotonic()
                    try:
                        ctx.results[section] = globals()[f"section_{section}"](ctx)
                    except Exception as exc:  # reported; the other sections still run
                        log.exception("section %s failed", section)
                        ctx.results.setdefault("notes", []).append(
                            f"section {section} failed: {type(exc).__name__}: {exc}"
                        )
                    say(f"  ({section}: {time.monotonic() - began:.1f} s)")
        finally:
            ctx.close()
    notes = ctx.results.pop("notes", [])
    notes += [
        "python3-openid has no discovery cache: its begin() discovers on every login; ours"
        " reuses the discovery result kept in the store (discovery_ttl).",
        "Our associate requests ask for RFC 7919 ffdhe2048 first, on purpose: 1024-bit DH is"
        " considered breakable since Logjam (2015), so we do not ask for the group"
        " python3-openid's OP handles fastest. That OP honours dh_modulus and computes its"
        " 2048-bit DH in pure Python (two pow(), about 45 ms), several times the cost of the"
        " 1024-bit group python3-openid's relying party uses. Where the OPs share the"
        " machine's CPUs (inline begin(), the fetcher runs), their side sets the wall time;"
        " the RP CPU column is the relying party's own share.",
        "Fetcher, round-trip variant: only the answer to associate is delayed; connection"
        " set-up is not, for either library (python3-openid connects per request, our pool"
        " keeps connections, and real OPs are distinct hosts where neither could reuse one)."
        f" It queues {ctx.sizes.fetcher_rtt} endpoints rather than {ctx.sizes.fetcher} to keep"
        " the run short: the sequential loop pays the round trip on every association, and the"
        " rates are steady well before that.",
        "python3-openid's FileOpenIDStore never fsyncs; ours fsyncs the nonce directory for"
        " every nonce by default (file_fsync), hence the fsync(dir) raw rate it is held to.",
        "Absolute rates move with other load on the machine (see the load average); ratios"
        " are steadier because contenders take turns.",
    ]
    report = {
        "benchmark": "benchmarks/run.py",
        "date": date,
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "load": [" ".join(f"{x:.2f}" for x in load) for load in (load_start, os.getloadavg())],
        "machine": machine(),
        "source": source_state(),
        "servers": ctx.servers,
        "sections": sections,
        "results": ctx.results,
        "notes": notes,
    }
    report["targets"] = targets(ctx.results)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    say("targets:")
    for t in report["targets"]:
        verdict = "n/a " if t["met"] is None else ("MET " if t["met"] else "MISS")
        say(f"  {verdict} {t['target']}: {t['value']}")
    say(f"wrote {args.out} and {args.out.with_suffix('.md')} in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
