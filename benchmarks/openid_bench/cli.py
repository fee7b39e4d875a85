"""openid-plugins side by side with python3-openid, in one process, against the same OP
(python3-openid's own, served on 127.0.0.1 by child processes).

    .venv/bin/python benchmarks/run.py [--quick] [--out PATH] [--only complete,begin,...]

Sections (``--only`` takes any of these names; each is a module of ``openid_bench.sections``):

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
import json
import logging
import os
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import openid_plugins

from .context import Context, say
from .fixtures import RESULTS, ROOT, log, machine
from .report import markdown, standing_notes, targets
from .sections import SECTIONS, section


def parser() -> argparse.ArgumentParser:
    """The command line of ``run.py``, kept apart so a test can check it without running."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small counts: about a minute")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--op-processes", type=int, default=4, help="extra OPs for the fetcher")
    p.add_argument("--concurrency", type=int, default=16, help="our fetcher's threads")
    p.add_argument(
        "--rtt-ms",
        type=float,
        default=50.0,
        help="simulated network round trip of each associate in the fetcher's RTT variant",
    )
    p.add_argument(
        "--no-databases", action="store_true", help="skip PostgreSQL and MariaDB entirely"
    )
    return p


def chosen_sections(p: argparse.ArgumentParser, only: str) -> list[str]:
    """The sections ``--only`` names, or a usage error naming the valid ones."""
    sections = [s.strip() for s in only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return sections


def source_state() -> dict[str, Any]:
    """The commit measured, and whether the code it imports had uncommitted changes: several
    people work in one tree, so a run can pick up someone's unfinished edit."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "openid_plugins", "plugins", "benchmarks", "tests")
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "uncommitted_changes": [line[3:] for line in changed.splitlines()],
        "imported_from": str(Path(openid_plugins.__file__).resolve().parent.parent),
    }


def run_sections(ctx: Context, sections: list[str]) -> None:
    """Run the chosen sections in ``SECTIONS`` order into ``ctx.results``; a section that
    fails is noted and the others still run."""
    say(f"OP at {ctx.op.base}; servers: {ctx.servers}")
    for name in SECTIONS:
        if name in sections:
            began = time.monotonic()
            try:
                ctx.results[name] = section(name)(ctx)
            except Exception as exc:  # reported; the other sections still run
                log.exception("section %s failed", name)
                ctx.note(f"section {name} failed: {type(exc).__name__}: {exc}")
            say(f"  ({name}: {time.monotonic() - began:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    sections = chosen_sections(p, args.only)
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    started = time.monotonic()
    load_start = os.getloadavg()
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="openid-bench-") as tmp:
        ctx = Context(args, Path(tmp))
        try:
            run_sections(ctx, sections)
        finally:
            ctx.close()
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
        "notes": ctx.notes + standing_notes(ctx.sizes),
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
