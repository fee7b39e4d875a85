"""MongoDB stores and queues for openid-plugins (``mongodb://`` and ``mongodb+srv://``), on
pymongo.

Open them by URL through the core (``Settings(store="mongodb://host/db")``); the classes are
exported for type checks and direct use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .queue import MongoQueue
    from .schema import ensure_indexes
    from .store import MongoStore

__all__ = ["MongoQueue", "MongoStore", "ensure_indexes"]

_LAZY = {"MongoQueue": "queue", "MongoStore": "store", "ensure_indexes": "schema"}


def __getattr__(name: str) -> Any:
    # The plugin module is imported whenever openid-plugins starts; pymongo only when a
    # MongoDB backend is used.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
