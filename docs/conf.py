"""Sphinx configuration for the openid-plugins documentation site (docs/).

Built by scripts/test with warnings as errors; the pages' examples run as doctests
(pytest --doctest-glob='*.rst' docs) and docs/examples/ are real modules with tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # autodoc reads the checkout, installed or not

import openid_plugins  # noqa: E402

project = "openid-plugins"
author = "openid-plugins maintainers"
copyright = "openid-plugins maintainers"  # noqa: A001 - Sphinx's name
release = version = openid_plugins.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}
# Type names in hook signatures that Sphinx cannot resolve without intersphinx (offline).
nitpicky = False
suppress_warnings = ["ref.python"]

html_theme = "furo"
html_title = f"openid-plugins {release}"
exclude_patterns = ["_build", "examples/__pycache__"]
