"""The core's Store and Queue contract kit on all three dialects.

SQLite and PostgreSQL get their table prefix in the URL, MariaDB in ``StoreOptions.extra``:
the kit's racing processes open the store from URL and extra, so both paths are covered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from conftest import base_url, drop_tables, new_prefix, with_prefix

from openid_plugins.testing.contract import QueueContract, StoreContract


class SQLBackend:
    dialect: ClassVar[str]
    prefix_in_url: ClassVar[bool] = True

    @pytest.fixture
    def sql_db(self, tmp_path) -> Iterator[tuple[str, str]]:  # noqa: ANN001
        base, prefix = base_url(self.dialect, tmp_path), new_prefix()
        yield base, prefix
        drop_tables(base, prefix)

    @pytest.fixture
    def backend_url(self, sql_db: tuple[str, str]) -> str:
        base, prefix = sql_db
        return with_prefix(base, prefix) if self.prefix_in_url else base

    @pytest.fixture
    def backend_extra(self, sql_db: tuple[str, str]) -> dict[str, Any]:
        return {} if self.prefix_in_url else {"table_prefix": sql_db[1]}


class SQLStoreContract(SQLBackend, StoreContract):
    @pytest.fixture
    def store_url(self, backend_url: str) -> str:
        return backend_url

    @pytest.fixture
    def store_extra(self, backend_extra: dict[str, Any]) -> dict[str, Any]:
        return backend_extra


class SQLQueueContract(SQLBackend, QueueContract):
    @pytest.fixture
    def queue_url(self, backend_url: str) -> str:
        return backend_url

    @pytest.fixture
    def queue_extra(self, backend_extra: dict[str, Any]) -> dict[str, Any]:
        return backend_extra


class TestSQLiteStore(SQLStoreContract):
    dialect = "sqlite"


class TestSQLiteQueue(SQLQueueContract):
    dialect = "sqlite"


class TestPostgreSQLStore(SQLStoreContract):
    dialect = "postgresql"


class TestPostgreSQLQueue(SQLQueueContract):
    dialect = "postgresql"


class TestMariaDBStore(SQLStoreContract):
    dialect = "mysql"
    prefix_in_url = False


class TestMariaDBQueue(SQLQueueContract):
    dialect = "mysql"
    prefix_in_url = False
