"""SQL stores and queues for openid-plugins: SQLite, PostgreSQL and MariaDB/MySQL through
SQLAlchemy Core.

Open them by URL through the core (``Settings(store="postgresql://...")``); the classes are
exported for type checks and direct use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .queue import SQLQueue
    from .schema import SCHEMA_VERSION, SchemaError
    from .store import SQLStore

__all__ = ["SCHEMA_VERSION", "SQLQueue", "SQLStore", "SchemaError"]

_LAZY = {
    "SQLQueue": "queue",
    "SQLStore": "store",
    "SCHEMA_VERSION": "schema",
    "SchemaError": "schema",
}


def __getattr__(name: str) -> Any:
    # The plugin module is imported whenever openid-plugins starts; SQLAlchemy only when an
    # SQL backend is used.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
