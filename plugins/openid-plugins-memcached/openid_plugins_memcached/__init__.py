"""A memcached store for openid-plugins, on pymemcache.

Open it by URL through the core (``Settings(store="memcached://10.0.0.5:11211")``); the class
is exported for type checks and direct use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import MemcachedStore
    from .target import Target, parse_target

__all__ = ["MemcachedStore", "Target", "parse_target"]

_LAZY = {"MemcachedStore": "store", "Target": "target", "parse_target": "target"}


def __getattr__(name: str) -> Any:
    # The plugin module is imported whenever openid-plugins starts; pymemcache only when a
    # memcached store is used.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
