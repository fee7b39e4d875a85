"""Throughput of the memcached store (openid-plugins-memcached) next to the raw pymemcache
rates measured in the same run, so the store's overhead over memcached itself is visible.

    .venv/bin/python benchmarks/bench_memcached.py [--ops 20000] [--rounds 100]
        [--complete-ops 4000] [--servers HOST:PORT,...] [--out PATH]

Without ``--servers`` it starts two memcached servers of its own on free loopback ports
(Debian's ``memcached``; ``bash scripts/start-memcached`` installs it) and stops them at the
end. Writes benchmarks/results/memcached.json. It imports the core, pymemcache, requests,
python3-openid (for the OP that signs the assertions) and the turn-taking measurement every
store benchmark shares (``openid_bench.rounds``).

Measurements, single client, for one server (PooledClient) and for two (HashClient). They
take turns: each gets ``ops / rounds`` calls per round, in alternating order, so load from
other processes on the machine falls on all of them alike. Reported: ops/s over all calls,
the median of per-round rates, and ratios as medians of per-round ratios.

- raw_add: pymemcache's ``add`` of a fresh 64-hex-character key, awaiting the reply: the
  fastest a "use once" can be (two servers: through a plain ``HashClient``, plus
  raw_add_one_server_pooled, a ``PooledClient`` on one of them, as the floor);
- nonce_use: ``use_nonce`` with fresh nonces (target: within 1.5x of raw_add);
- raw_get_add: pymemcache's ``get`` then ``add``: the two round trips ``complete()`` needs
  from memcached for a response signed with a known association;
- complete_store_part: the store calls of that path, ``get_association(url, handle)`` then
  ``use_nonce``;
- complete: ``RelyingParty.complete()`` of distinct positive assertions signed by
  python3-openid's OP (fetched before timing) with a warm association: the whole verify
  path, HMAC and message parsing included (one server only);
- complete_memory_store: the same answers on a ``memory://`` store (the association copied
  over), so the memcached store's share of ``complete()`` shows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from openid_bench.rounds import Contender, slowdown, take_turns
from openid_plugins_memcached import MemcachedStore
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient

from openid_plugins.contracts import Association, StoreOptions
from openid_plugins.relying_party import RelyingParty
from openid_plugins.testing.python3_openid_op import Python3OP

RESULTS = Path(__file__).parent / "results" / "memcached.json"
OP_URL = "https://op.example/server"
RETURN_TO = "https://rp.example/finish"
REALM = "https://rp.example/"


# -- servers ---------------------------------------------------------------------------------


@contextmanager
def own_servers(count: int) -> Iterator[list[str]]:
    """``count`` memcached processes on free loopback ports, killed on exit."""
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    if not Path(binary).exists():
        sys.exit("memcached is not installed: run bash scripts/start-memcached")
    processes, addresses = [], []
    try:
        for _ in range(count):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            # -M: eviction off, as the plugin's README recommends for nonces.
            command = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256", "-M"]
            if os.geteuid() == 0:
                command[1:1] = ["-u", "memcache"]
            processes.append(subprocess.Popen(command))
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit(f"memcached did not start on port {port}")
                    time.sleep(0.02)
            addresses.append(f"127.0.0.1:{port}")
        yield addresses
    finally:
        for process in processes:
            process.kill()
            process.wait(10)


def raw_client(addresses: list[str]) -> PooledClient | HashClient:
    """pymemcache as a site would use it directly: pooled, replies awaited."""
    servers = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in addresses]
    common = {"connect_timeout": 1.0, "timeout": 1.0, "no_delay": True, "default_noreply": False}
    if len(servers) == 1:
        return PooledClient(servers[0], **common)
    return HashClient(servers, use_pooling=True, **common)


# -- measuring -------------------------------------------------------------------------------


# -- the runs --------------------------------------------------------------------------------


def bench_store(addresses: list[str], ops: int, rounds: int) -> dict[str, Any]:
    prefix = f"bench{secrets.token_hex(4)}"
    url = f"memcached://{','.join(addresses)}?prefix={prefix}"
    store = MemcachedStore(url, StoreOptions())
    raw = raw_client(addresses)
    run = secrets.token_hex(4)
    # A minute ahead (inside the skew window): the restart guard refuses nonces stamped
    # before the store first saw these fresh servers.
    now = time.time() + 60

    def key(kind: str, i: int) -> bytes:
        return f"{prefix}:raw{kind}:{hashlib.sha256(f'{run}{i}'.encode()).hexdigest()}".encode()

    association = Association("bench-handle", b"s" * 32, now, 3600.0, "HMAC-SHA256")
    store.store_association(OP_URL, association)
    raw.set(key("a", -1), association.to_json().encode(), expire=3600)

    contenders = [
        Contender("raw_add", lambda i: raw.add(key("n", i), b"1", expire=600, noreply=False)),
        Contender("nonce_use", lambda i: store.use_nonce(OP_URL, now, f"{run}-{i}")),
        Contender(
            "raw_get_add",
            lambda i: (raw.get(key("a", -1)), raw.add(key("m", i), b"1", expire=600)),
        ),
        Contender(
            "complete_store_part",
            lambda i: (
                store.get_association(OP_URL, "bench-handle"),
                store.use_nonce(OP_URL, now, f"{run}-c{i}"),
            ),
        ),
    ]
    single = raw_client(addresses[:1]) if len(addresses) > 1 else None
    if single is not None:
        # HashClient's own routing (murmur3 in pure Python) is slower than the round trip;
        # the fastest raw add is one pooled client on one server.
        contenders.append(
            Contender(
                "raw_add_one_server_pooled",
                lambda i: single.add(key("p", i), b"1", expire=600, noreply=False),
            )
        )
    take_turns(contenders, ops, rounds)
    by_name = {c.name: c for c in contenders}
    report: dict[str, Any] = {c.name: c.report() for c in contenders}
    report["nonce_use_vs_raw_add"] = slowdown(by_name["nonce_use"], by_name["raw_add"])
    if single is not None:
        report["nonce_use_vs_raw_add_one_server_pooled"] = slowdown(
            by_name["nonce_use"], by_name["raw_add_one_server_pooled"]
        )
        single.close()
    report["complete_store_part_vs_raw_get_add"] = slowdown(
        by_name["complete_store_part"], by_name["raw_get_add"]
    )
    store.close()
    raw.close()
    return report


def bench_complete(addresses: list[str], ops: int, rounds: int) -> dict[str, Any]:
    """``complete()`` of OP-signed assertions on the memcached store, beside raw_add."""
    op = Python3OP().start()
    rp = RelyingParty(
        store=f"memcached://{addresses[0]}?prefix=bench{secrets.token_hex(4)}",
        queue="memory://",
        association="inline",
        fetch_block_private_addresses=False,
    )
    http = requests.Session()
    try:
        session: dict[str, Any] = {}
        auth = rp.begin(op.identity(), RETURN_TO, REALM, session=session)
        # begin() made the store write its restart marker; the OP stamps whole seconds, and
        # answers stamped in the marker's second are refused (the server is new).
        time.sleep(1.01 - time.time() % 1)
        total = ops + 50 + rounds
        answers = []
        for _ in range(total):  # each answer carries its own response nonce
            location = http.get(auth.redirect_url, allow_redirects=False).headers["Location"]
            answers.append((dict(parse_qsl(urlsplit(location).query)), location))
        raw = raw_client(addresses[:1])
        run = secrets.token_hex(4)
        # The same answers verified on the in-process memory store: the store's share.
        in_memory = RelyingParty(
            store="memory://",
            queue="memory://",
            association="inline",
            fetch_block_private_addresses=False,
        )
        in_memory.store.store_association(op.endpoint(), rp.store.get_association(op.endpoint()))

        def completer(party: RelyingParty) -> Callable[[int], None]:
            def complete(i: int) -> None:
                query, location = answers[i]
                result = party.complete(query, location, session=dict(session))
                if result.verified_by != "association":
                    raise AssertionError(f"unexpected result {result!r}")

            return complete

        def raw_add(i: int) -> None:
            key = hashlib.sha256(f"{run}{i}".encode()).hexdigest()
            raw.add(f"rawc:{key}".encode(), b"1", expire=600, noreply=False)

        contenders = [
            Contender("raw_add", raw_add),
            Contender("complete", completer(rp)),
            Contender("complete_memory_store", completer(in_memory)),
        ]
        take_turns(contenders, ops, rounds)
        raw.close()
        in_memory.close()
        return {
            **{c.name: c.report() for c in contenders},
            "complete_vs_raw_add": slowdown(contenders[1], contenders[0]),
            "complete_vs_complete_memory_store": slowdown(contenders[1], contenders[2]),
        }
    finally:
        http.close()
        rp.close()
        op.stop()


def machine() -> dict[str, Any]:
    version = subprocess.run(
        [shutil.which("memcached") or "/usr/bin/memcached", "-V"], capture_output=True, text=True
    ).stdout.strip()
    import pymemcache

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "pymemcache": pymemcache.__version__,
        "memcached": version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--complete-ops", type=int, default=4000, help="complete() calls (answers from the OP)"
    )
    parser.add_argument("--servers", help="HOST:PORT[,HOST:PORT]: use running servers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    @contextmanager
    def given() -> Iterator[list[str]]:
        yield args.servers.split(",")

    with given() if args.servers else own_servers(2) as addresses:
        report: dict[str, Any] = {
            **machine(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "one_server": bench_store(addresses[:1], args.ops, args.rounds),
        }
        if len(addresses) > 1:
            report["two_servers"] = bench_store(addresses[:2], args.ops, args.rounds)
        report["complete_one_server"] = bench_complete(addresses, args.complete_ops, args.rounds)
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
