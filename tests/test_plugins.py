"""The plugin engine: built-ins are registered by import, a third-party distribution
installed with pip is picked up (schemes and hooks), and blocking by name works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from distributions import install_distribution

from openid_plugins import hookimpl
from openid_plugins.config import Settings, open_store, store_schemes
from openid_plugins.contracts import StoreOptions
from openid_plugins.errors import (
    ConfigurationError,
    OpenIDError,
    PluginError,
    UnknownSchemeError,
)
from openid_plugins.manager import make_plugin_manager, plugin_infos
from openid_plugins.relying_party import RelyingParty

BUILTINS = {
    "clock",
    "memory_store",
    "file_store",
    "memory_queue",
    "file_queue",
    "commands",
    "sreg",
    "ax",
    "pape",
    "teams",
    "profiles",
}

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "openid-plugins-throwaway"
version = "0.0.1"

[project.entry-points.openid_plugins]
throwaway = "throwaway_store"
"""

PLUGIN_MODULE = """
from openid_plugins import hookimpl
from openid_plugins.contracts import Backend
from openid_plugins.stores.memory import MemoryStore

CALLS = []

def open_store(url, options):
    CALLS.append(url)
    return MemoryStore(options)

@hookimpl
def openid_backends():
    return [Backend(kind="store", schemes=("throwaway",), open=open_store)]
"""

PROBE = """
import json, sys
from openid_plugins.manager import make_plugin_manager, plugin_infos
from openid_plugins.config import open_store, store_schemes
from openid_plugins.contracts import StoreOptions
pm = make_plugin_manager()
out = {"plugins": [i.name for i in plugin_infos(pm)], "schemes": store_schemes(pm)}
try:
    store = open_store(pm, "throwaway://x", StoreOptions())
    out["store"] = type(store).__name__
    import throwaway_store
    out["calls"] = throwaway_store.CALLS
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_builtins_are_registered_by_import():
    pm = make_plugin_manager(load_entrypoints=False)
    infos = {info.name: info for info in plugin_infos(pm)}
    assert set(infos) == BUILTINS
    assert infos["file_store"].distribution is None
    assert "openid_backends" in infos["file_store"].hooks
    assert {"memory", "file"} <= set(store_schemes(pm))


def test_hook_openid_clock_from_a_plugin_registered_in_code_overrides_the_system_clock():
    class FixedClock:
        def now(self) -> float:
            return 1234.0

    class ClockPlugin:
        @hookimpl
        def openid_clock(self):
            return FixedClock()

    pm = make_plugin_manager([ClockPlugin()])
    assert pm.hook.openid_clock().now() == 1234.0


def test_blocking_a_builtin_removes_its_scheme():
    pm = make_plugin_manager(block=["file_store"])
    assert "file" not in store_schemes(pm)
    with pytest.raises(UnknownSchemeError, match="Installed store schemes: .*memory") as info:
        open_store(pm, "file:///tmp/x", StoreOptions())
    listed = str(info.value).split("Installed store schemes: ")[1].split(", ")
    assert "memory" in listed and "file" not in listed


def test_unknown_scheme_names_the_distribution_to_install():
    pm = make_plugin_manager(block=["sql", "memcached", "mongodb"])
    with pytest.raises(UnknownSchemeError) as info:
        open_store(pm, "postgresql://db/openid", StoreOptions())
    message = str(info.value)
    assert "openid-plugins-sql" in message and "file" in message and "memory" in message


def test_broken_plugin_is_a_plugin_error(tmp_path, monkeypatch):
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[openid_plugins]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="broken.*OPENID_PLUGINS_BLOCK=broken"):
        make_plugin_manager()
    monkeypatch.setenv("OPENID_PLUGINS_BLOCK", "broken")
    assert "broken" not in {i.name for i in plugin_infos(make_plugin_manager())}


def test_settings_from_env_and_mapping():
    settings = Settings.from_env(
        {
            "OPENID_PLUGINS_STORE": "memory://",
            "OPENID_PLUGINS_NONCE_SKEW": "60",
            "OPENID_PLUGINS_FETCH_BLOCK_PRIVATE_ADDRESSES": "true",
            "OPENID_PLUGINS_ASSOCIATION": "inline",
        }
    )
    assert settings.store_url() == "memory://"
    assert settings.nonce_skew == 60.0
    assert settings.fetch.block_private_addresses is True
    assert settings.association == "inline"
    with pytest.raises(ConfigurationError, match="unknown setting 'colour'"):
        Settings.from_mapping({"colour": "blue"})
    with pytest.raises(ConfigurationError, match="not a valid float"):
        Settings.from_mapping({"nonce_skew": "soon"})
    with pytest.raises(ConfigurationError, match="association="):
        Settings(association="sometimes")


def test_default_store_and_queue_live_in_the_user_data_dir(tmp_path, monkeypatch):
    settings = Settings(data_dir=str(tmp_path))
    assert settings.store_url() == (tmp_path / "store").as_uri()
    assert settings.queue_url() == (tmp_path / "queue").as_uri()


@pytest.fixture(scope="module")
def throwaway_dist(tmp_path_factory) -> Path:
    """A third-party plugin distribution built and installed by pip into its own target."""
    return install_distribution(
        tmp_path_factory.mktemp("plugin"), PLUGIN_PYPROJECT, {"throwaway_store.py": PLUGIN_MODULE}
    )


def _probe(site: Path, **env: str) -> dict:
    environ = dict(os.environ, PYTHONPATH=str(site), **env)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE)],
        env=environ,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def test_hook_openid_backends_from_an_installed_third_party_distribution(throwaway_dist):
    result = _probe(throwaway_dist)
    assert "throwaway" in result["plugins"]
    assert "throwaway" in result["schemes"]
    assert result["store"] == "MemoryStore"
    assert result["calls"] == ["throwaway://x"]


def test_installed_third_party_plugin_can_be_blocked(throwaway_dist):
    result = _probe(throwaway_dist, OPENID_PLUGINS_BLOCK="throwaway")
    assert "throwaway" not in result["plugins"]
    assert "throwaway" not in result["schemes"]
    assert result["error"].startswith("UnknownSchemeError")


def test_cli_lists_builtins():
    out = subprocess.run(
        [sys.executable, "-m", "openid_plugins", "-v", "plugins"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in BUILTINS:
        assert name in out
    assert "Store schemes:" in out and "file" in out


NO_METADATA_PROBE = """
import importlib.metadata, json, sys
from openid_plugins.manager import make_plugin_manager, plugin_infos
from openid_plugins.relying_party import RelyingParty
try:
    importlib.metadata.distribution("openid-plugins")
    found = True
except importlib.metadata.PackageNotFoundError:
    found = False
pm = make_plugin_manager()
with RelyingParty(store="memory://", queue="memory://", plugin_manager=pm) as rp:
    schemes = sorted(__import__("openid_plugins.backends").backends.store_schemes(pm))
print(json.dumps({"metadata": found, "plugins": [i.name for i in plugin_infos(pm)],
                  "schemes": schemes}))
"""


def test_builtins_load_without_package_metadata(tmp_path):
    """A source checkout on PYTHONPATH (or a zipapp): no dist-info for openid-plugins, and no
    entry points, yet every built-in plugin is there."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("openid_plugins", "openid-plugins", "__editable__", "_openid")):
            continue
        if name.endswith(".pth"):
            continue
        (deps / entry.name).symlink_to(entry)
    source = tmp_path / "src"
    shutil.copytree(
        Path(__file__).resolve().parent.parent / "openid_plugins",
        source / "openid_plugins",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(NO_METADATA_PROBE)],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{source}{os.pathsep}{deps}", "PATH": os.environ["PATH"]},
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout)
    assert result["metadata"] is False
    assert set(result["plugins"]) == BUILTINS
    assert {"file", "memory"} <= set(result["schemes"])


def test_blocking_the_old_guard_plugin_leaves_the_guard_on(server, monkeypatch, caplog):
    """OPENID_PLUGINS_BLOCK=fetch_policy used to switch the SSRF guard off silently."""
    monkeypatch.setenv("OPENID_PLUGINS_BLOCK", "fetch_policy,clock")
    url = server.route("/", 200, {"Content-Type": "text/html"}, b"<html></html>")
    with RelyingParty(store="memory://", fetch_block_private_addresses=True) as rp:
        with pytest.raises(OpenIDError) as info:
            rp.begin(url, "http://rp.example/finish", session={})
        assert rp.clock.now() > 0  # the clock could not be blocked either
    assert "loopback" in str(info.value)
    assert server.requests == []
    assert "cannot be blocked" in caplog.text



def test_cli_lists_provider_profiles():
    out = subprocess.run(
        [sys.executable, "-m", "openid_plugins", "plugins"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "Provider profiles" in out and "steam" in out and "ubuntu_one" in out
