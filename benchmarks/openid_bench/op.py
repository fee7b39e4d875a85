"""The OP every benchmark talks to: python3-openid's own provider, in a child process.

The OP runs in its own process (not a thread of the benchmark) so its CPU work - its share
of Diffie-Hellman, its HTML and signing - never competes with the measured relying party for
the GIL. ``python -m openid_bench.op`` serves one: it prints its base URL and serves until
its standard input closes. This module imports nothing else of the package, so the child
loads only the OP.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from openid_plugins.testing.python3_openid_op import Python3OP

#: The folder holding the package: the child runs with it as its working directory, so
#: ``-m openid_bench.op`` finds the package and ``sys.path[0]`` is that folder, as it was
#: when the OP was a script beside ``run.py``.
BENCHMARKS_DIR = Path(__file__).resolve().parent.parent


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
        args = [sys.executable, "-m", "openid_bench.op", "--rtt-ms", str(rtt_ms)]
        self.proc = subprocess.Popen(
            args + (["--nagle"] if nagle else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=BENCHMARKS_DIR,
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


def main() -> None:
    """Serve one ``BenchOP`` until the parent closes our standard input (or dies)."""
    parser = argparse.ArgumentParser(description="serve one BenchOP until stdin closes")
    parser.add_argument("--nagle", action="store_true", help="leave Nagle's algorithm on")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="delay associate answers")
    args = parser.parse_args()
    op = BenchOP(nagle=args.nagle, rtt=args.rtt_ms / 1000).start()
    sys.stdout.write(op.base + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    op.stop()


if __name__ == "__main__":
    main()
