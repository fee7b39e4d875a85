"""One run of ``run.py``: what its sections share, and how they print what they measured.

A section is handed a ``Context`` and returns its results; the context owns everything that
must be torn down whichever section fails (relying parties, connections, OP processes,
tables on the database servers), so a section never cleans up after itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openid_plugins.relying_party import SESSION_KEY, RelyingParty

from .fixtures import (
    REALM,
    RETURN_TO,
    SERVER_URLS,
    SharedAssociation,
    Timing,
    drop_tables,
    log,
    new_prefix,
    server_version,
    with_prefix,
)
from .op import OPProcess


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
        # Stored volume for the scaling curves (issue 18: 10^3 and 10^5 used nonces, 10^4
        # associations over 10^3 OPs, 10^5 waiting queue items); --quick shrinks them.
        self.scaling_nonces = (1_000, 10_000) if quick else (1_000, 100_000)
        self.scaling_associations = 1_000 if quick else 10_000
        self.scaling_ops = 100 if quick else 1_000
        self.scaling_queue = (1_000, 10_000) if quick else (1_000, 100_000)
        self.concurrency = 400 if quick else 4000


class Context:
    """What the sections share: the OP, a temp directory, the database servers."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.sizes = Sizes(args.quick)
        self.tmp = tmp
        self.op = OPProcess()
        self.results: dict[str, Any] = {}
        #: Lines for the report's "Notes": what was skipped or failed, and why.
        self.notes: list[str] = []
        self.cleanups: list[Callable[[], None]] = []
        self.servers: dict[str, str | None] = {}
        #: Whether openid-plugins-sql is installed (SQLite, PostgreSQL and MariaDB stores).
        self.sql = importlib.util.find_spec("openid_plugins_sql") is not None
        if not self.sql:
            self.note("our SQL stores skipped: openid-plugins-sql is not installed")
        for name, url in SERVER_URLS.items():
            skip = args.no_databases or not self.sql
            self.servers[name] = None if skip else server_version(url)
        self._prefixes: dict[str, list[str]] = {dialect: [] for dialect in SERVER_URLS}

    def note(self, text: str) -> None:
        self.notes.append(text)

    def track_prefix(self, dialect: str) -> str:
        """A new table prefix whose tables are dropped at exit."""
        prefix = new_prefix()
        self._prefixes[dialect].append(prefix)
        return prefix

    def db_url(self, dialect: str) -> str | None:
        """A fresh-prefix URL on a reachable server (tables dropped at exit), else None."""
        if not self.servers.get(dialect):
            return None
        return with_prefix(SERVER_URLS[dialect], self.track_prefix(dialect))

    def sqlite_url(self, name: str) -> str | None:
        return f"sqlite:///{self.tmp / name}" if self.sql else None

    def store_urls(self, name: str) -> dict[str, str | None]:
        """Our store URL per backend (None where there is no server or no SQL plugin), each
        fresh: ``name`` names the file store's folder and the SQLite file."""
        return {
            "memory": "memory://",
            "file": (self.tmp / name).as_uri(),
            "sqlite": self.sqlite_url(f"{name}.db"),
            "postgresql": self.db_url("postgresql"),
            "mysql": self.db_url("mysql"),
        }

    def rp(self, store: str = "memory://", **settings: Any) -> RelyingParty:
        """Our relying party on ``store``, with a memory queue unless told otherwise."""
        settings.setdefault("queue", "memory://")
        settings.setdefault("data_dir", str(self.tmp / "data"))
        # The benchmark OPs listen on 127.0.0.1, which the SSRF guard refuses by default.
        settings.setdefault("fetch_block_private_addresses", False)
        rp = RelyingParty(store=store, **settings)
        self.cleanups.append(rp.close)
        return rp

    def warm_rp(self, store: str, association: SharedAssociation) -> RelyingParty:
        """An inline-mode relying party whose store already holds ``association``, so its
        ``complete()`` verifies signatures without going to the network."""
        rp = self.rp(store, association="inline")
        rp.store.store_association(association.server_url, association.ours())
        return rp

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # keep closing the rest
                log.warning("cleanup failed: %s", exc)
        for dialect, prefixes in self._prefixes.items():
            if prefixes:
                drop_tables(SERVER_URLS[dialect], prefixes)
        self.op.stop()


def our_session_state(ctx: Context, claimed: str) -> dict[str, Any]:
    """What our begin() leaves in the session, from a real (stateless) begin(): the state a
    browser brings back to ``complete()``, so nothing is re-discovered there."""
    rp = ctx.rp(association="stateless")
    session: dict[str, Any] = {}
    rp.begin(claimed, RETURN_TO, REALM, session=session)
    return dict(session[SESSION_KEY])


# -- output ----------------------------------------------------------------------------------


def say(text: str) -> None:
    """Progress on standard output, flushed: a run takes minutes and is often piped."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def show(timing: Timing) -> dict[str, Any]:
    """Print one measurement's line and return it as the report stores it."""
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
    """Ours ops/s over theirs (above 1: we are faster), or None when either is missing."""
    if not ours or not theirs or not theirs.get("ops_per_second"):
        return None
    return round(ours["ops_per_second"] / theirs["ops_per_second"], 2)


def failure(exc: Exception) -> dict[str, str]:
    """A measurement that failed part-way (a database going away, say), as the report keeps
    it so the rest of the run still counts."""
    return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
