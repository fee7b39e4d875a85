"""Throughput of the MongoDB store (openid-plugins-mongodb) next to raw pymongo in the same
run, so the store's overhead over the database and driver is visible.

    .venv/bin/python benchmarks/bench_mongodb.py [--url mongodb://host/db] [--ops 3000]
        [--rounds 5] [--out PATH]

Without ``--url`` it starts a SecantusDB server (``secantusd-py``, from the plugin's test
extra) on a free loopback port, in memory, and stops it at the end. The turn-taking
measurement is the one every store benchmark shares (``openid_bench.rounds``).

Contenders take turns, ``ops / rounds`` calls each per round in alternating order, so load
from other processes falls on all alike; ratios are medians of per-round ratios.

- raw_insert: ``insert_one`` of a small document with a fresh key, pymongo's defaults;
- raw_insert_nonce_shape: the same into a collection shaped like the store's nonces
  (32-byte binary ``_id``, TTL index, majority write concern), without the store's Python;
- nonce_use: ``MongoStore.use_nonce`` with fresh nonces (target: within 1.5x of raw_insert);
- raw_complete_commands: raw pymongo issuing the commands one ``complete()`` sends to the
  store (counted with pymongo's command monitoring: reads by ``_id`` and the nonce insert);
- complete: ``RelyingParty.complete()`` of distinct signed positive assertions (OpenID 2.0
  section 10.1) with an association in the store: signature check, discovery verification
  from the store's cache, the nonce; no network besides MongoDB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pymongo
from bson import Binary
from openid_bench.fixtures import sign_assertions
from openid_bench.rounds import Contender, slowdown, take_turns
from pymongo import monitoring

from openid_plugins import RelyingParty
from openid_plugins.testing.provider import DevelopmentProvider

RESULTS = Path(__file__).parent / "results" / "mongodb.json"
RETURN_TO = "https://rp.example/finish"
REALM = "https://rp.example/"
OP = "https://op.example/openid/server"


class CommandCounter(monitoring.CommandListener):
    """Counts the commands every client of this process sends, by name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


COMMANDS = CommandCounter()
monitoring.register(COMMANDS)


@contextmanager
def secantus_server() -> Iterator[str]:
    """A SecantusDB server on a free loopback port (one-node replica set), stopped by pid."""
    executable = Path(sys.executable).with_name("secantusd-py")
    found = str(executable) if executable.exists() else shutil.which("secantusd-py")
    if found is None:
        sys.exit("secantusd-py not found: pip install -e 'plugins/openid-plugins-mongodb[test]'")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [found, "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"]
    proc = subprocess.Popen([*args, "--log-level", "WARNING"])
    url = f"mongodb://127.0.0.1:{port}"
    try:
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=30000)
        client.admin.command("ping")
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def bench(base: str, ops: int, rounds: int) -> dict[str, Any]:
    database = f"bench{secrets.token_hex(3)}"
    url = f"{base}/{database}"
    raw_client = pymongo.MongoClient(url)
    raw_db = raw_client[database]
    provider = DevelopmentProvider().start()
    rp = RelyingParty(
        store=url,
        queue="memory://",
        association="inline",
        max_login_delay=0,  # the prepared assertions outlive the default 300 s
        data_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / database),
        fetch_block_private_addresses=False,  # the development OP is on 127.0.0.1
    )
    try:
        # A real begin() (discovery and an association with the development OP, both kept
        # in the store); the assertions are then signed with that association here.
        session: dict[str, Any] = {}
        claimed = provider.identity_url("alice")
        auth = rp.begin(claimed, RETURN_TO, REALM, session=session)
        assert auth.association is not None
        return_to = next(iter(session.values()))["return_to"]
        signed: list[dict[str, str]] = []

        def sign_ahead(count: int) -> None:
            """Assertions for the next round, signed now (untimed; their nonces fresh)."""
            signed[:] = sign_assertions(
                count, auth.association, provider.endpoint, claimed, return_to
            )
            signed.reverse()

        def complete(i: int) -> None:
            result = rp.complete(signed.pop(), return_to, session=dict(session))
            assert result.verified_by == "association"

        # The commands one complete() sends to the store, for its raw counterpart.
        sign_ahead(5)
        for i in range(3):
            complete(i)
        COMMANDS.counts.clear()
        complete(3)
        per_complete = dict(COMMANDS.counts)
        reads = sum(n for name, n in per_complete.items() if name != "insert")
        now = time.time()
        store = rp.store
        raw = raw_db.get_collection("raw")
        shaped = raw_db.get_collection(
            "raw_nonces", write_concern=pymongo.WriteConcern(w="majority", wtimeout=5000)
        )
        shaped.create_index("expire_at", expireAfterSeconds=3600)
        probe = raw_db["raw_probe"]
        probe.insert_one({"_id": Binary(b"p" * 32), "value": "x" * 200, "expires": now + 86400})

        def raw_shaped_insert(i: int, tag: bytes = b"s") -> None:
            shaped.insert_one(
                {
                    "_id": Binary(secrets.token_bytes(31) + tag),
                    "server_url": OP,
                    "timestamp": now,
                    "salt": f"r{i}",
                    "expires": now + 300,
                    "expire_at": datetime.now(timezone.utc) + timedelta(seconds=300),
                }
            )

        def raw_complete_commands(i: int) -> None:
            for _ in range(reads):
                probe.find_one({"_id": Binary(b"p" * 32), "expires": {"$gt": now}})
            raw_shaped_insert(i, b"c")

        def nonce_use(i: int) -> None:
            assert store.use_nonce(OP, time.time(), f"n{i}") is True

        contenders = [
            Contender("raw_insert", lambda i: raw.insert_one({"_id": i, "v": 1.0})),
            Contender("raw_insert_nonce_shape", raw_shaped_insert),
            Contender("nonce_use", nonce_use),
            Contender("raw_complete_commands", raw_complete_commands),
            Contender("complete", complete, prepare=sign_ahead),
        ]
        for contender in contenders:  # connections, indexes, code paths
            contender.call(10_000_000 + contender.done)
        take_turns(contenders, ops, rounds, warmup=0)
        by_name = {c.name: c for c in contenders}
        hello = raw_client.admin.command("hello")
        return {
            "server": {
                "version": raw_client.server_info().get("version"),
                "replica_set": hello.get("setName"),
            },
            "store_commands_per_complete": per_complete,
            "results": {c.name: c.report() for c in contenders},
            "slowdown": {
                "nonce_use_vs_raw_insert": slowdown(by_name["nonce_use"], by_name["raw_insert"]),
                "nonce_use_vs_raw_insert_nonce_shape": slowdown(
                    by_name["nonce_use"], by_name["raw_insert_nonce_shape"]
                ),
                "complete_vs_raw_complete_commands": slowdown(
                    by_name["complete"], by_name["raw_complete_commands"]
                ),
            },
        }
    finally:
        rp.close()
        provider.stop()
        raw_client.drop_database(database)
        raw_client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a MongoDB server (default: start SecantusDB)")
    parser.add_argument("--ops", type=int, default=3000, help="calls per contender")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = datetime.now(timezone.utc)
    if args.url:
        report = bench(args.url.rstrip("/"), args.ops, args.rounds)
    else:
        with secantus_server() as url:
            report = bench(url, args.ops, args.rounds)
    report = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "pymongo": pymongo.version,
        },
        **report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
