"""Builds the pluggy ``PluginManager``: the built-in plugins (registered by import, so they
work without package metadata: a source checkout on ``PYTHONPATH``, a zipapp), third-party
plugins from entry points, plugins passed in code, and the block list.

The manager guards itself: a ``@hookimpl`` whose name matches no hook spec (a typo such as
``openid_stor_schemes``) is a ``PluginError`` naming it, and essential plugins cannot be
blocked (a block naming one is ignored, with a warning)."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from .contracts import ProviderProfile
from .errors import PluginError

log = logging.getLogger("openid_plugins.manager")

#: Entry-point group (and pluggy project name) every plugin registers under.
ENTRY_POINT_GROUP = hookspecs.PROJECT
#: Comma-separated plugin names that are not loaded (like pytest's ``-p no:NAME``).
BLOCK_ENV = "OPENID_PLUGINS_BLOCK"

#: The built-in plugins: name -> module, registered by import like datasette's
#: ``DEFAULT_PLUGINS``. Each may be blocked by name, as entry-point plugins can.
DEFAULT_PLUGINS = {
    "clock": "openid_plugins.clock",
    "memory_store": "openid_plugins.stores.memory",
    "file_store": "openid_plugins.stores.file",
    "memory_queue": "openid_plugins.queues.memory",
    "file_queue": "openid_plugins.queues.file",
    "sreg": "openid_plugins.extensions.sreg",
    "ax": "openid_plugins.extensions.ax",
    "pape": "openid_plugins.extensions.pape",
    "teams": "openid_plugins.extensions.teams",
    "profiles": "openid_plugins.profiles",
    "commands": "openid_plugins.commands",
}

#: Names that cannot be blocked (pytest's "cannot be disabled"), with what to do instead.
#: ``fetch_policy`` was the SSRF guard's plugin name; the guard is now in the core.
ESSENTIAL = {
    "clock": "every expiry and nonce check reads it; a plugin returning a clock from"
    " openid_clock replaces it instead",
    "fetch_policy": "the private-address guard is part of the core; set"
    " fetch_block_private_addresses=false to turn it off (local development only)",
}


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
    """A manager with every hook spec, the built-ins, the installed entry-point plugins and
    ``plugins``.

    Blocked names (``block`` plus ``$OPENID_PLUGINS_BLOCK``) are never imported; an
    essential name there is ignored with a warning. Raises ``PluginError`` for a plugin that
    fails to import and for a hook implementation that matches no spec.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for name in set(block) | blocked_from_env():
        if name in ESSENTIAL:
            log.warning("not blocking %r, which cannot be blocked: %s", name, ESSENTIAL[name])
            continue
        pm.set_blocked(name)
    for name, module in DEFAULT_PLUGINS.items():
        if not pm.is_blocked(name):
            register(pm, importlib.import_module(module), name)
    if load_entrypoints:
        _load_entrypoints(pm)
    for plugin in plugins:
        register(pm, plugin)
    check_pending(pm)
    return pm


def register(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> None:
    """``pm.register`` with pluggy's validation errors (a hook with arguments its spec does
    not have) turned into a ``PluginError``."""
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name or plugin!r} is invalid: {exc}") from exc


def check_pending(pm: pluggy.PluginManager) -> None:
    """Refuse hook implementations that match no spec: a misspelt hook would otherwise be
    silently never called (tox and devpi call pluggy's ``check_pending`` for the same)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"{exc}; check the hook's name against openid_plugins.hookspecs (or mark a"
            " hook of your own with hookimpl(optionalhook=True))"
        ) from exc


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
        register(pm, plugin, ep.name)
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


def provider_profiles(pm: pluggy.PluginManager) -> dict[str, ProviderProfile]:
    """Every provider profile the ``openid_providers`` hook offers, by name.

    When two plugins offer one name, the first pluggy calls (the later registered) wins, so
    a plugin replaces a built-in profile by offering its name.
    """
    profiles: dict[str, ProviderProfile] = {}
    for offered in pm.hook.openid_providers():
        for profile in offered or ():
            if not isinstance(profile, ProviderProfile):
                raise PluginError(
                    f"an openid_providers hook returned {profile!r}, not a ProviderProfile"
                )
            profiles.setdefault(profile.name, profile)
    return profiles
