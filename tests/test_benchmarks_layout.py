"""The benchmarks package cannot rot unseen: every module imports, every ``--only`` name of
``benchmarks/run.py`` is a section module with a ``run`` function (and no section module
is left out of ``--only``), and both entry points and the OP child process start.

No benchmark runs here: the suite never times anything (see CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(autouse=True)
def bench_path(monkeypatch):
    """``openid_bench`` importable, as it is for ``run.py`` (its folder is first on the path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_every_module_imports():
    package = importlib.import_module("openid_bench")
    names = [m.name for m in pkgutil.walk_packages(package.__path__, "openid_bench.")]
    assert "openid_bench.sections.complete" in names
    for name in names:
        if name == "openid_bench.sql_stores":
            pytest.importorskip("openid_plugins_sql")
        importlib.import_module(name)


def test_only_names_are_the_section_modules():
    sections = importlib.import_module("openid_bench.sections")
    modules = {m.name for m in pkgutil.iter_modules(sections.__path__)}
    assert set(sections.SECTIONS) == modules
    for name in sections.SECTIONS:
        assert callable(sections.section(name))


def test_only_defaults_to_every_section_and_refuses_others():
    cli = importlib.import_module("openid_bench.cli")
    from openid_bench.sections import SECTIONS

    parser = cli.parser()
    assert cli.chosen_sections(parser, parser.parse_args([]).only) == list(SECTIONS)
    assert cli.chosen_sections(parser, "raw, complete") == ["raw", "complete"]
    with pytest.raises(SystemExit):
        cli.chosen_sections(parser, "complete,nosuch")


def test_every_report_part_is_a_section():
    from openid_bench.report import SECTION_MARKDOWN
    from openid_bench.sections import SECTIONS

    assert tuple(SECTION_MARKDOWN) == SECTIONS


@pytest.mark.parametrize("script", ["run.py", "bench_sql_stores.py"])
def test_entry_points_start(script):
    if script == "bench_sql_stores.py":
        pytest.importorskip("openid_plugins_sql")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_op_child_process_serves():
    from openid_bench.op import OPProcess

    with OPProcess() as op:
        assert op.base.startswith("http://127.0.0.1:")
        assert op.counts() == {}
