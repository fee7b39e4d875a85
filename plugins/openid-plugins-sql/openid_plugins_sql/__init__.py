"""SQL stores and queues for openid-plugins: SQLite, PostgreSQL and MariaDB/MySQL through
SQLAlchemy Core.

Open them by URL through the core (``Settings(store="postgresql://...")``); the classes are
exported for type checks and direct use."""

from .queue import SQLQueue
from .schema import SCHEMA_VERSION, SchemaError
from .store import SQLStore

__all__ = ["SCHEMA_VERSION", "SQLQueue", "SQLStore", "SchemaError"]
