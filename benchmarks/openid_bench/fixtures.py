"""Helpers every benchmark shares: timing loops that take turns, machine facts, the database
servers and raw connections to them, and positive assertions signed up front.

Both entry points use them (``run.py``'s sections and ``bench_sql_stores.py``), so a
database URL, a table prefix or a raw connection means the same thing in every result file.
Nothing here keeps state between calls; a run's state is ``context.Context``.
"""

from __future__ import annotations

import gc
import logging
import os
import platform
import secrets
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import cryptography
import requests

from openid_plugins.contracts import Association
from openid_plugins.protocol.association import sign
from openid_plugins.protocol.message import OPENID2_NS
from openid_plugins.protocol.nonce import make_nonce

if TYPE_CHECKING:
    from openid.association import Association as TheirAssociation

log = logging.getLogger("openid_plugins.benchmarks")

#: The repository root: results default to ``benchmarks/results`` below it, and profile
#: listings and ``git status`` name files relative to it.
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"

RETURN_TO = "https://rp.example/finish"
REALM = "https://rp.example/"
PG_URL = os.environ.get(
    "OPENID_PLUGINS_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("OPENID_PLUGINS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
#: The database servers by dialect, as our SQL store's URLs name them.
SERVER_URLS = {"postgresql": PG_URL, "mysql": MYSQL_URL}


# -- timing ----------------------------------------------------------------------------------


@dataclass
class Timing:
    """Per-call wall times of one measurement."""

    name: str
    seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Set for whole-batch measurements (the fetcher): total wall time of ``count`` calls.
    batch_seconds: float | None = None
    batch_count: int | None = None
    #: CPU seconds of this process per call (the OPs run in other processes, so this is
    #: the relying party's own work), or for a batch in total.
    cpu_seconds: list[float] = field(default_factory=list)
    batch_cpu_seconds: float | None = None

    @property
    def count(self) -> int:
        return self.batch_count if self.batch_count is not None else len(self.seconds)

    @property
    def ops_per_second(self) -> float:
        if self.batch_seconds is not None:
            return self.count / self.batch_seconds if self.batch_seconds else 0.0
        total = sum(self.seconds)
        return len(self.seconds) / total if total else 0.0

    def percentile(self, fraction: float) -> float | None:
        if not self.seconds:
            return None
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]

    def to_dict(self) -> dict[str, Any]:
        median = statistics.median(self.seconds) if self.seconds else None
        p95 = self.percentile(0.95)
        data: dict[str, Any] = {
            "name": self.name,
            "count": self.count,
            "ops_per_second": round(self.ops_per_second, 2),
            "median_us": None if median is None else round(median * 1e6, 1),
            "p95_us": None if p95 is None else round(p95 * 1e6, 1),
        }
        if self.cpu_seconds:
            data["cpu_median_us"] = round(statistics.median(self.cpu_seconds) * 1e6, 1)
        if self.batch_seconds is not None:
            data["total_seconds"] = round(self.batch_seconds, 3)
        if self.batch_cpu_seconds is not None:
            data["cpu_total_seconds"] = round(self.batch_cpu_seconds, 3)
            data["cpu_us_per_op"] = round(self.batch_cpu_seconds / max(1, self.count) * 1e6, 1)
        if self.notes:
            data["notes"] = self.notes
        return data


class Runner:
    """Times ``call(i)`` one call at a time, so several runners can take turns.

    ``prepare(i)`` runs untimed before each call (building a session dict, say) and
    ``check(i, result)`` untimed after it, so every call is proven to have done the work.
    """

    def __init__(
        self,
        name: str,
        call: Callable[[int], Any],
        *,
        prepare: Callable[[int], Any] | None = None,
        check: Callable[[int, Any], None] | None = None,
    ) -> None:
        self.timing = Timing(name)
        self.call = call
        self.prepare = prepare
        self.check = check
        self.done = 0

    def warm(self, count: int) -> Runner:
        for i in range(count):
            self._one(-1 - i)
        return self

    def _one(self, i: int) -> tuple[float, float]:
        if self.prepare:
            self.prepare(i)
        cpu = time.process_time()
        started = time.perf_counter()
        result = self.call(i)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if self.check:
            self.check(i, result)
        return elapsed, cpu

    def run(self, count: int, deadline: float) -> bool:
        """Up to ``count`` more timed calls; False once ``deadline`` (monotonic) passed."""
        gc.collect()
        for _ in range(count):
            elapsed, cpu = self._one(self.done)
            self.timing.seconds.append(elapsed)
            self.timing.cpu_seconds.append(cpu)
            self.done += 1
            if time.monotonic() > deadline:
                return False
        return True


def measure(
    name: str,
    call: Callable[[int], Any],
    count: int,
    max_seconds: float,
    *,
    prepare: Callable[[int], Any] | None = None,
    check: Callable[[int, Any], None] | None = None,
    warmup: int = 0,
) -> Timing:
    """Time ``count`` calls of ``call(i)``, stopping early after ``max_seconds``."""
    runner = Runner(name, call, prepare=prepare, check=check).warm(warmup)
    if not runner.run(count, time.monotonic() + max_seconds) and runner.done < count:
        runner.timing.notes.append(
            f"stopped after {runner.done} of {count} calls ({max_seconds:.0f} s)"
        )
    return runner.timing


def interleave(runners: list[Runner], count: int, max_seconds: float, rounds: int = 5) -> None:
    """Give each runner ``count`` calls in ``rounds`` alternating turns, so load from other
    processes on the machine falls on every contender alike; each runner gets an equal share
    of ``max_seconds``."""
    share = max_seconds / max(1, len(runners))
    budget = {id(r): share for r in runners}
    per_round = max(1, count // rounds)
    for _ in range(rounds):
        for runner in runners:
            left = budget[id(runner)]
            if left <= 0 or runner.done >= count:
                continue
            began = time.monotonic()
            runner.run(min(per_round, count - runner.done), began + left)
            budget[id(runner)] = left - (time.monotonic() - began)
    for runner in runners:
        if runner.done < count:
            runner.timing.notes.append(
                f"stopped after {runner.done} of {count} calls ({share:.0f} s share)"
            )


# -- machine facts ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What a reader needs to compare two result files: kernel, CPUs, library versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    try:
        uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    except OSError:
        uname = " ".join(platform.uname())
    return {
        "uname": uname,
        "nproc": nproc,
        "cpu": cpu,
        "python": sys.version.split()[0],
        "python3-openid": version("python3-openid"),
        "cryptography": cryptography.__version__,
        "requests": requests.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def cpus() -> int:
    """CPUs this process may run on: the OPs and the relying party share them, which caps
    what the fetcher can reach on this machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# -- databases -------------------------------------------------------------------------------


def with_prefix(url: str, prefix: str) -> str:
    """``url`` with our SQL store's ``table_prefix`` option, so runs never share tables."""
    return f"{url}{'&' if '?' in url else '?'}table_prefix={prefix}"


def new_prefix() -> str:
    """A random table prefix, recognisable as the benchmarks' when left behind."""
    return f"bench{secrets.token_hex(3)}_"


def server_version(url: str) -> str | None:
    """The server's version string, or None when it cannot be reached."""
    import sqlalchemy as sa
    from openid_plugins_sql.target import parse_target

    engine = sa.create_engine(parse_target(url).url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            return str(conn.scalar(sa.text("SELECT version()")))
    except Exception as exc:  # any failure means: not usable here
        log.warning("%s is unreachable: %s", url, str(exc).splitlines()[0])
        return None
    finally:
        engine.dispose()


def drop_tables(url: str, prefixes: Iterable[str]) -> None:
    """Drop every table whose name starts with one of ``prefixes``."""
    import sqlalchemy as sa
    from openid_plugins_sql.target import parse_target

    prefixes = tuple(prefixes)
    engine = sa.create_engine(parse_target(url).url)
    try:
        with engine.begin() as conn:
            for name in sa.inspect(conn).get_table_names():
                if name.startswith(prefixes):
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    finally:
        engine.dispose()


def use_wal(conn: sqlite3.Connection) -> None:
    """WAL with synchronous=NORMAL: what our SQL store sets on SQLite."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")


def connect_sqlite(path: str | Path, *, wal: bool) -> sqlite3.Connection:
    """A raw SQLite connection in autocommit mode: one statement, one transaction."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    if wal:
        use_wal(conn)
    return conn


def connect_server(dialect: str, url: str) -> Any:
    """A raw DB-API connection in autocommit mode through the driver our SQL store uses for
    ``dialect``: psycopg 3 for PostgreSQL, PyMySQL for MariaDB/MySQL."""
    from openid_plugins_sql.target import parse_target

    u = parse_target(url).url
    if dialect == "postgresql":
        import psycopg

        conninfo = u.set(drivername="postgresql").render_as_string(False)
        return psycopg.connect(conninfo, autocommit=True)
    import pymysql

    return pymysql.connect(
        host=u.host,
        port=u.port or 3306,
        user=u.username,
        password=u.password or "",
        database=u.database,
        autocommit=True,
    )


def psycopg2_dsn(url: str) -> str:
    """``url`` as a libpq DSN for psycopg2, the only driver python3-openid's stores take."""
    from openid_plugins_sql.target import parse_target

    u = parse_target(url).url
    parts = [f"host={u.host}", f"port={u.port or 5432}", f"dbname={u.database}"]
    if u.username:
        parts.append(f"user={u.username}")
    if u.password:
        parts.append(f"password={u.password}")
    return " ".join(parts)


# -- assertions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedAssociation:
    """One association secret that both libraries' stores hold under the same handle, so
    both verify the very same signed assertions."""

    server_url: str
    handle: str
    secret: bytes
    issued: int
    lifetime: int = 86400
    assoc_type: str = "HMAC-SHA256"

    @classmethod
    def new(cls, server_url: str) -> SharedAssociation:
        return cls(
            server_url=server_url,
            handle=f"{{bench}}{{{secrets.token_hex(8)}}}",
            secret=secrets.token_bytes(32),
            issued=int(time.time()),
        )

    def ours(self) -> Association:
        return Association(
            self.handle, self.secret, float(self.issued), float(self.lifetime), self.assoc_type
        )

    def theirs(self) -> TheirAssociation:
        from openid.association import Association as TheirAssociation

        return TheirAssociation(
            self.handle, self.secret, self.issued, self.lifetime, self.assoc_type
        )


SIGNED = "op_endpoint,claimed_id,identity,return_to,response_nonce,assoc_handle"


def signed_assertions(
    count: int, shared: SharedAssociation, claimed_id: str, return_to: str = RETURN_TO
) -> list[dict[str, str]]:
    """``count`` positive OpenID 2.0 assertions signed with the shared association."""
    return sign_assertions(count, shared.ours(), shared.server_url, claimed_id, return_to)


def sign_assertions(
    count: int,
    association: Association,
    op_endpoint: str,
    claimed_id: str,
    return_to: str = RETURN_TO,
) -> list[dict[str, str]]:
    """``count`` positive OpenID 2.0 assertions (10.1), each with its own response nonce,
    signed with ``association`` as an OP would (section 6), as the query a browser would
    bring."""
    keys = SIGNED.split(",")
    now = time.time()
    queries = []
    for i in range(count):
        fields = {
            "ns": OPENID2_NS,
            "mode": "id_res",
            "op_endpoint": op_endpoint,
            "claimed_id": claimed_id,
            "identity": claimed_id,
            "return_to": return_to,
            "response_nonce": make_nonce(now, f"b{i}-{secrets.token_hex(4)}"),
            "assoc_handle": association.handle,
            "signed": SIGNED,
        }
        fields["sig"] = sign(association, fields, keys)
        queries.append({f"openid.{key}": value for key, value in fields.items()})
    return queries


#: How an OP's positive assertion reaches the site (OpenID 2.0 section 5.2): an indirect
#: message by redirect (a GET to return_to with the message appended to its query), or by a
#: self-submitting form (a POST to return_to whose body carries the message).
DELIVERIES = ("GET", "POST")


def as_delivered(
    queries: Iterable[dict[str, str]], return_to: str, method: str
) -> list[tuple[dict[str, str], str]]:
    """(request arguments, current URL) as a web framework hands them to a site's view.

    GET: the URL the browser arrived at is return_to with the ``openid.*`` query appended
    (as an OP builds it, 4.1.2), and the arguments are that whole query parsed, return_to's
    own arguments included. POST: the URL is the bare return_to (the form's action) and the
    arguments are the form's body. Built up front: parsing the request is the framework's
    work, not the library's; what the library does with the URL is what is measured.
    """
    own = dict(parse_qsl(urlsplit(return_to).query, keep_blank_values=True))
    joiner = "&" if "?" in return_to else "?"
    delivered = []
    for query in queries:
        if method == "GET":
            delivered.append(({**own, **query}, return_to + joiner + urlencode(query)))
        elif method == "POST":
            delivered.append((dict(query), return_to))
        else:
            raise ValueError(f"unknown delivery {method!r}")
    return delivered
