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
import secrets
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from openid.dh import DiffieHellman
from openid.server import server as openid_server

from openid_plugins.protocol.association import FFDHE2048_GROUP
from openid_plugins.testing.python3_openid_op import Python3OP

#: The folder holding the package: the child runs with it as its working directory, so
#: ``-m openid_bench.op`` finds the package and ``sys.path[0]`` is that folder, as it was
#: when the OP was a script beside ``run.py``.
BENCHMARKS_DIR = Path(__file__).resolve().parent.parent


class PrecomputedDH(DiffieHellman):
    """The OP's side of Diffie-Hellman at almost no cost, so that an OP costs its delay only.

    python3-openid's OP makes a fresh key pair for every ``associate`` and computes in pure
    Python (two full-size ``pow()``, about 45 ms for ffdhe2048): on this machine the OPs,
    not the relying party, would set the pace. Here each group's key pair is made once
    (precomputed) and the shared secret comes from OpenSSL for ffdhe2048 (a named group
    ``cryptography`` loads without a slow parameter check), else from ``pow()`` with a
    256-bit exponent. Benchmark use only: a reused short key is fine for measuring.
    """

    _keys: dict[tuple[int, int], tuple[int, int, Any]] = {}

    def __init__(self, modulus: int, generator: int) -> None:
        self.modulus, self.generator = int(modulus), int(generator)
        group = (self.modulus, self.generator)
        if group not in self._keys:
            self._keys[group] = _key_pair(*group)
        self.private, self.public, self._openssl = self._keys[group]

    def getSharedSecret(self, composite: int) -> int:  # noqa: N802 - python3-openid's name
        if self._openssl is None:
            return pow(composite, self.private, self.modulus)
        from cryptography.hazmat.primitives.asymmetric import dh

        numbers, private_key = self._openssl
        peer = dh.DHPublicNumbers(int(composite), numbers).public_key()
        return int.from_bytes(private_key.exchange(peer), "big")


def _key_pair(modulus: int, generator: int) -> tuple[int, int, Any]:
    if (modulus, generator) == (FFDHE2048_GROUP.modulus, FFDHE2048_GROUP.generator):
        from cryptography.hazmat.primitives.asymmetric import dh

        numbers = dh.DHParameterNumbers(modulus, generator)
        private_key = numbers.parameters().generate_private_key()
        public = private_key.public_key().public_numbers().y
        return private_key.private_numbers().x, public, (numbers, private_key)
    private = secrets.randbits(256) | (1 << 255)
    return private, pow(generator, private, modulus), None


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
    its answers to ``associate`` requests (see ``BenchOP``); ``precomputed_dh`` makes its
    side of Diffie-Hellman nearly free (``PrecomputedDH``), so the OP costs its delay only."""

    def __init__(
        self, *, nagle: bool = False, rtt_ms: float = 0.0, precomputed_dh: bool = False
    ) -> None:
        args = [sys.executable, "-m", "openid_bench.op", "--rtt-ms", str(rtt_ms)]
        args += ["--nagle"] if nagle else []
        self.proc = subprocess.Popen(
            args + (["--precomputed-dh"] if precomputed_dh else []),
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
    parser.add_argument(
        "--precomputed-dh", action="store_true", help="DH at almost no cost (PrecomputedDH)"
    )
    args = parser.parse_args()
    if args.precomputed_dh:
        # This process serves one OP: its server module's DH class is ours to replace.
        openid_server.DiffieHellman = PrecomputedDH
        from cryptography.utils import CryptographyDeprecationWarning

        # OpenID 2.0 (8.4.2) has no other key exchange; the library silences it the same way.
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
    op = BenchOP(nagle=args.nagle, rtt=args.rtt_ms / 1000).start()
    sys.stdout.write(op.base + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    op.stop()


if __name__ == "__main__":
    main()
