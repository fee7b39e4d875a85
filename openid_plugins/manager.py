"""Builds the pluggy ``PluginManager``: entry-point plugins (built-ins included), plugins
passed in code, and the block list."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from .errors import PluginError

log = logging.getLogger("openid_plugins.manager")

#: Entry-point group (and pluggy project name) every plugin registers under.
ENTRY_POINT_GROUP = hookspecs.PROJECT
#: Comma-separated plugin names that are not loaded (like pytest's ``-p no:NAME``).
BLOCK_ENV = "OPENID_PLUGINS_BLOCK"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


def blocked_from_env(environ: os._Environ[str] | dict[str, str] | None = None) -> set[str]:
    raw = (os.environ if environ is None else environ).get(BLOCK_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering which distribution each entry-point plugin came from."""

    def __init__(self) -> None:
        super().__init__(ENTRY_POINT_GROUP)
        #: plugin name -> (distribution, version), for entry-point plugins.
        self.distributions: dict[str, tuple[str, str]] = {}


def make_plugin_manager(
    plugins: Iterable[object] = (),
    *,
    block: Iterable[str] = (),
    load_entrypoints: bool = True,
) -> PluginManager:
    """A manager with every hook spec, the installed entry-point plugins and ``plugins``.

    Blocked names (``block`` plus ``$OPENID_PLUGINS_BLOCK``) are never imported.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for name in set(block) | blocked_from_env():
        pm.set_blocked(name)
    if load_entrypoints:
        _load_entrypoints(pm)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def _load_entrypoints(pm: PluginManager) -> None:
    seen: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen or pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        seen.add(ep.name)
        try:
            plugin = ep.load()
        except Exception as exc:
            dist = ep.dist.name if ep.dist else "?"
            raise PluginError(
                f"plugin {ep.name!r} (from {dist}) failed to import: {exc}; fix or uninstall it,"
                f" or block it with {BLOCK_ENV}={ep.name}"
            ) from exc
        pm.register(plugin, name=ep.name)
        if ep.dist is not None:
            pm.distributions[ep.name] = (ep.dist.name, ep.dist.version)
        log.debug("loaded plugin %s from %s", ep.name, ep.value)


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Loaded plugins with their distribution and the hooks they implement."""
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # a blocked name
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        dist, version = getattr(pm, "distributions", {}).get(name, (None, None))
        infos.append(PluginInfo(name, dist, version, hooks))
    return sorted(infos, key=lambda info: info.name)
