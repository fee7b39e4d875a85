"""Start-up cost: having a plugin installed costs nothing until its scheme or command is
used. Importing the core, building the plugin manager, a ``RelyingParty`` on the file
store and the CLI's parser (``openid-plugins --help``) must not import a database driver,
SQLAlchemy or Django, whichever plugins are installed (``scripts/test`` installs them all).

Each check runs in a fresh interpreter: this process has imported everything already.
Timings are benchmarks' business (``benchmarks/README.md``); this only checks imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

#: Modules a site whose store is a file must never pay for.
HEAVY = ("sqlalchemy", "psycopg", "psycopg2", "pymysql", "MySQLdb", "django")

SCRIPTS = {
    "plugin-manager": "from openid_plugins.manager import make_plugin_manager\n"
    "make_plugin_manager()\n",
    "relying-party-file-store": "from openid_plugins.relying_party import RelyingParty\n"
    "RelyingParty(store=sys.argv[1]).close()\n",
    "cli-help": "from openid_plugins.cli import build_parser\n"
    "build_parser().format_help()\n",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_nothing_heavy_is_imported(name, tmp_path):
    script = (
        "import json, sys\n"
        + SCRIPTS[name]
        + f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, (tmp_path / "store").as_uri()],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_sql_plugin_is_installed_for_this_check():
    """Under CI every plugin is installed, so the test above proves something; elsewhere
    its absence is said, not failed."""
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="openid_plugins")}
    if "sql" not in names:
        if os.environ.get("CI") == "true":
            pytest.fail("openid-plugins-sql is not installed: scripts/test installs it")
        pytest.skip("openid-plugins-sql is not installed here")
