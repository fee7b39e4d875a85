"""Helpers for ``benchmarks/run.py``: python3-openid's OP in child processes, timing loops,
machine facts, database URLs, and assertions signed up front.

The OP runs in its own process (not a thread of the benchmark) so its CPU work - its share
of Diffie-Hellman, its HTML and signing - never competes with the measured relying party for
the GIL. Run this file directly to serve one OP: it prints its base URL and serves until its
standard input closes.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openid_plugins.testing.python3_openid_op import Python3OP

log = logging.getLogger("openid_plugins.benchmarks")

RETURN_TO = "https://rp.example/finish"
REALM = "https://rp.example/"
PG_URL = os.environ.get(
    "OPENID_PLUGINS_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("OPENID_PLUGINS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


# -- the OP ----------------------------------------------------------------------------------


class BenchOP(Python3OP):
    """python3-openid's OP with two more routes, kept here so the test harness stays as is:

    ``/for/<opNAME>/<user>``: an HTML identity page whose OP endpoint is ``/<opNAME>``, so
    every call can discover a never-seen OP; ``/counts``: the request counts as JSON, so the
    parent process can prove what went over the wire (``/counts`` requests themselves are
    left out).

    Nagle's algorithm is off (``TCP_NODELAY``, as in the test harness, nginx and most
    production servers): the handler writes headers and body separately, and on a kept-alive
    connection the body would otherwise wait for the client's delayed ACK, about 40 ms per
    request. ``nagle=True`` turns it back on, to show what such a server costs a pooled client.

    ``rtt`` (seconds) delays every answer to an ``associate`` request, as a remote OP's
    network round trip would: the handler thread sleeps, which costs no CPU, so the OP's
    own work is unchanged and only the waiting a relying party can or cannot overlap grows.
    """

    def __init__(self, *, nagle: bool = False, rtt: float = 0.0) -> None:
        self.nagle = nagle
        self.rtt = rtt
        super().__init__()

    def _handler(self) -> type:
        handler = super()._handler()
        return type("BenchHandler", (handler,), {"disable_nagle_algorithm": not self.nagle})

    def handle_openid(self, name: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.rtt and query.get("openid.mode") == "associate":
            time.sleep(self.rtt)
        return super().handle_openid(name, query)

    def page(self, path: str) -> tuple[int, dict[str, str], bytes] | None:
        # The harness has already counted this request as a "page".
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "for" and parts[1].startswith("op"):
            link = f'<link rel="openid2.provider" href="{self.endpoint(parts[1])}">'
            body = f"<html><head>{link}</head><body>{parts[2]}</body></html>"
            return 200, {"Content-Type": "text/html; charset=utf-8"}, body.encode()
        if parts == ["counts"]:
            with self.lock:
                self.counts["counts"] += 1
                counts = dict(self.counts)
            counts["page"] -= counts.pop("counts")
            counts = {mode: n for mode, n in counts.items() if n}
            return 200, {"Content-Type": "application/json"}, json.dumps(counts).encode()
        return super().page(path)


class OPProcess:
    """One ``BenchOP`` in a child process on an ephemeral 127.0.0.1 port; ``rtt_ms`` delays
    its answers to ``associate`` requests (see ``BenchOP``)."""

    def __init__(self, *, nagle: bool = False, rtt_ms: float = 0.0) -> None:
        args = [sys.executable, str(Path(__file__).resolve()), "--rtt-ms", str(rtt_ms)]
        self.proc = subprocess.Popen(
            args + (["--nagle"] if nagle else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the OP process did not start (it printed {line!r})")
        self.base = line

    def endpoint(self, name: str = "op") -> str:
        return f"{self.base}/{name}"

    def identity(self, user: str = "alice") -> str:
        return f"{self.base}/id/{user}"

    def fresh_identity(self, op_name: str, user: str = "alice") -> str:
        """An identity page whose OP endpoint is ``/<op_name>``."""
        return f"{self.base}/for/{op_name}/{user}"

    def counts(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"{self.base}/counts", timeout=10) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the OP process has used so far; None off Linux."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # proc(5): utime and stime are fields 14 and 15, in clock ticks.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> OPProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="serve one BenchOP until stdin closes")
    parser.add_argument("--nagle", action="store_true", help="leave Nagle's algorithm on")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="delay associate answers")
    args = parser.parse_args()
    op = BenchOP(nagle=args.nagle, rtt=args.rtt_ms / 1000).start()
    sys.stdout.write(op.base + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    op.stop()


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
    import cryptography
    import requests

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
    import sqlite3
    from importlib.metadata import version

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


# -- databases -------------------------------------------------------------------------------


def with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}table_prefix={prefix}"


def new_prefix() -> str:
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


def psycopg2_dsn(url: str) -> str:
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
    """One association secret that both libraries' stores hold under the same handle."""

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

    def ours(self):  # noqa: ANN201 - openid_plugins.contracts.Association
        from openid_plugins.contracts import Association

        return Association(
            self.handle, self.secret, float(self.issued), float(self.lifetime), self.assoc_type
        )

    def theirs(self):  # noqa: ANN201 - openid.association.Association
        from openid.association import Association

        return Association(self.handle, self.secret, self.issued, self.lifetime, self.assoc_type)


SIGNED = "op_endpoint,claimed_id,identity,return_to,response_nonce,assoc_handle"


def signed_assertions(
    count: int, shared: SharedAssociation, claimed_id: str, return_to: str = RETURN_TO
) -> list[dict[str, str]]:
    """``count`` positive OpenID 2.0 assertions (10.1), each with its own response nonce,
    signed with the shared association (section 6), as the query a browser would bring."""
    from openid_plugins.protocol.association import sign
    from openid_plugins.protocol.message import OPENID2_NS
    from openid_plugins.protocol.nonce import make_nonce

    association = shared.ours()
    keys = SIGNED.split(",")
    now = time.time()
    queries = []
    for i in range(count):
        fields = {
            "ns": OPENID2_NS,
            "mode": "id_res",
            "op_endpoint": shared.server_url,
            "claimed_id": claimed_id,
            "identity": claimed_id,
            "return_to": return_to,
            "response_nonce": make_nonce(now, f"b{i}-{secrets.token_hex(4)}"),
            "assoc_handle": shared.handle,
            "signed": SIGNED,
        }
        fields["sig"] = sign(association, fields, keys)
        queries.append({f"openid.{key}": value for key, value in fields.items()})
    return queries


def run_in_thread(target: Callable[[], Any], timeout: float) -> Any:
    """Run ``target`` in a thread and wait at most ``timeout`` seconds for it."""
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"gave up after {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("result")


if __name__ == "__main__":
    _serve()
