"""Building and installing throwaway plugin distributions for tests, the way a user would:
a pyproject with an ``openid_plugins`` entry point, installed by pip into its own folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def install_distribution(root: Path, pyproject: str, modules: dict[str, str]) -> Path:
    """Install a distribution made of ``pyproject`` and ``modules`` (file name -> source)
    with pip into ``root/site``; return that folder, to put on ``sys.path``/``PYTHONPATH``."""
    src = root / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text(textwrap.dedent(pyproject))
    for name, source in modules.items():
        (src / name).write_text(textwrap.dedent(source))
    target = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return target
