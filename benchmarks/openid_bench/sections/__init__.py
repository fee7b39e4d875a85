"""The sections of ``run.py``, one module each, named as ``--only`` names them.

Each module has ``run(ctx: Context) -> dict``: it measures, prints its lines, and returns
what the report keeps under its name. ``SECTIONS`` is also the order of a run, and the
order matters: ``raw`` expresses ``complete``'s rates as fractions of the raw ones, so it
reads the results ``complete`` left in the context.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..context import Context

SECTIONS = (
    "complete",
    "begin",
    "dh",
    "login",
    "fetcher",
    "raw",
    "profile",
    "scaling",
    "concurrency",
    "startup",
)


def section(name: str) -> Callable[[Context], dict[str, Any]]:
    """The ``run`` function of the section called ``name``."""
    return importlib.import_module(f"{__name__}.{name}").run
