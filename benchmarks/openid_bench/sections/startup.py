"""Section ``startup``: what a process pays before its first login, with every plugin installed.

Fresh interpreters, each measured ``STARTUP_RUNS`` times (median wall time, and the CPU
time the child used, from ``getrusage``): ``openid-plugins --help`` (the console script's
``main``), importing the core, and ``RelyingParty(store="file://...")`` timed inside the
child after the import. Each child also reports which heavy modules it loaded (a database
driver, SQLAlchemy or Django must not be among them), and one ``python -X importtime`` of
the import plus the constructor is summed by top-level module.

Bytecode is cached (in the run's temporary folder, warmed by one untimed run): a deployed
site has its ``.pyc`` files, and compiling our sources on every start would measure the
compiler, not the library.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from ..context import Context, say

STARTUP_RUNS = 7
HEAVY = (
    "sqlalchemy",
    "psycopg",
    "psycopg2",
    "pymysql",
    "MySQLdb",
    "django",
    "requests",
    "cryptography",
)

_RP_SCRIPT = """
import json, sys, time
from openid_plugins.relying_party import RelyingParty
started = time.perf_counter()
RelyingParty(store=sys.argv[1]).close()
ms = (time.perf_counter() - started) * 1000
print(json.dumps({"ms": ms, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
"""

_HELP_SCRIPT = """
import json, sys, io, contextlib
from openid_plugins.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
print(json.dumps({"heavy": sorted(m for m in HEAVY if m in sys.modules)}))
"""


def _env(ctx: Context) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(ctx.tmp / "pycache")
    return env


def _child(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, child CPU s, stdout) of one fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed: {done.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def _measure(label: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    _child(args, env)  # warm the bytecode cache
    walls, cpus, outs = [], [], []
    for _ in range(STARTUP_RUNS):
        wall, cpu, out = _child(args, env)
        walls.append(wall)
        cpus.append(cpu)
        outs.append(out)
    result: dict[str, Any] = {
        "median_ms": round(statistics.median(walls) * 1000, 1),
        "min_ms": round(min(walls) * 1000, 1),
        "cpu_median_ms": round(statistics.median(cpus) * 1000, 1),
        "runs": STARTUP_RUNS,
    }
    last = outs[-1].strip().splitlines()
    if last and last[-1].startswith("{"):
        reported = [json.loads(o.strip().splitlines()[-1]) for o in outs]
        result["heavy_modules_loaded"] = reported[-1]["heavy"]
        if "ms" in reported[-1]:
            inner = [r["ms"] for r in reported]
            result["in_process_median_ms"] = round(statistics.median(inner), 1)
            result["in_process_min_ms"] = round(min(inner), 1)
    say(
        f"  {label:<46} median {result['median_ms']:.0f} ms wall, CPU"
        f" {result['cpu_median_ms']:.0f} ms"
        + (
            f"; in process {result['in_process_median_ms']:.1f} ms"
            if "in_process_median_ms" in result
            else ""
        )
        + f"; heavy modules: {result.get('heavy_modules_loaded', '?')}"
    )
    return result


def importtime(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """``-X importtime``: total, and the top-level imports by cumulative microseconds."""
    done = subprocess.run(
        [args[0], "-X", "importtime", *args[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    top: dict[str, int] = {}
    total = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue
        if not name.startswith("  "):  # a top-level import: its figure includes its children
            top[name.strip()] = top.get(name.strip(), 0) + int(cumulative)
            total += int(cumulative)
    biggest = sorted(top.items(), key=lambda kv: kv[1], reverse=True)[:12]
    return {
        "total_ms": round(total / 1000, 1),
        "top_ms": {k: round(v / 1000, 1) for k, v in biggest},
    }


def run(ctx: Context) -> dict[str, Any]:
    say(f"start-up, fresh interpreters, median of {STARTUP_RUNS} (bytecode cached)")
    env = _env(ctx)
    store = (ctx.tmp / "startup-store").as_uri()
    heavy = f"HEAVY = {HEAVY!r}\n"
    python = sys.executable
    out: dict[str, Any] = {
        "cli_help": _measure("openid-plugins --help", [python, "-c", heavy + _HELP_SCRIPT], env),
        "import_core": _measure(
            "import openid_plugins.relying_party",
            [python, "-c", "import openid_plugins.relying_party"],
            env,
        ),
        "relying_party_file": _measure(
            "RelyingParty(store='file://...') after import",
            [python, "-c", heavy + _RP_SCRIPT, store],
            env,
        ),
        "python_alone": _measure(
            "python -c pass (the interpreter alone)", [python, "-c", "pass"], env
        ),
    }
    out["importtime_relying_party"] = importtime([python, "-c", heavy + _RP_SCRIPT, store], env)
    out["importtime_cli_help"] = importtime([python, "-c", heavy + _HELP_SCRIPT], env)
    for key in ("importtime_relying_party", "importtime_cli_help"):
        summary = out[key]
        say(
            f"  {key}: {summary['total_ms']:.0f} ms of imports; top: "
            + ", ".join(f"{k} {v:.0f}" for k, v in list(summary["top_ms"].items())[:6])
        )
    out["plugins"] = sorted(_plugins())
    return out


def _plugins() -> list[str]:
    from importlib.metadata import entry_points

    return [
        f"{ep.name} ({ep.dist.name if ep.dist else '?'})"
        for ep in entry_points(group="openid_plugins")
    ]
