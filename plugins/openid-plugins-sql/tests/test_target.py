"""URL schemes, drivers and the table prefix, and the plugin hooks that use them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from openid_plugins_sql import SQLQueue, SQLStore, plugin
from openid_plugins_sql.target import DEFAULT_TABLE_PREFIX, parse_target

from openid_plugins.config import open_queue, open_store
from openid_plugins.contracts import StoreOptions
from openid_plugins.errors import ConfigurationError
from openid_plugins.manager import make_plugin_manager


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:////tmp/x/openid.db", "sqlite+pysqlite"),
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("mysql://u@h/db", "mysql+pymysql"),
        ("mariadb://u@h/db", "mysql+pymysql"),
        ("MariaDB+PyMySQL://u@h/db", "mysql+pymysql"),
    ],
)
def test_schemes_map_to_the_supported_drivers(url: str, driver: str, tmp_path) -> None:
    url = url.replace("/tmp/x", str(tmp_path))
    assert parse_target(url).url.drivername == driver


def test_mysql_urls_get_utf8mb4_unless_a_charset_is_given() -> None:
    assert parse_target("mysql://u@h/db").url.query["charset"] == "utf8mb4"
    assert parse_target("mysql://u@h/db?charset=latin1").url.query["charset"] == "latin1"


def test_other_drivers_are_refused_with_advice() -> None:
    with pytest.raises(ConfigurationError, match="psycopg 3"):
        parse_target("postgresql+psycopg2://u@h/db")


def test_table_prefix_from_url_is_stripped_before_sqlalchemy_sees_it() -> None:
    target = parse_target("postgresql://u:secret@h/db?table_prefix=site1_&sslmode=require")
    assert target.prefix == "site1_"
    assert dict(target.url.query) == {"sslmode": "require"}
    assert "secret" not in target.display


def test_table_prefix_from_extra_and_default() -> None:
    assert parse_target("mysql://u@h/db", {"table_prefix": "a_"}).prefix == "a_"
    assert parse_target("mysql://u@h/db").prefix == DEFAULT_TABLE_PREFIX
    assert parse_target("mysql://u@h/db", {"table_prefix": ""}).prefix == ""


def test_conflicting_prefixes_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="one place"):
        parse_target("mysql://u@h/db?table_prefix=a_", {"table_prefix": "b_"})
    assert parse_target("mysql://u@h/db?table_prefix=a_", {"table_prefix": "a_"}).prefix == "a_"


@pytest.mark.parametrize("prefix", ["Upper_", "1abc", "x;drop table", "a" * 33, "bad-name"])
def test_prefixes_that_are_not_plain_identifiers_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="table_prefix"):
        parse_target("postgresql://u@h/db", {"table_prefix": prefix})


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="in-memory"):
        parse_target(url)


def test_sqlite_directory_is_created(tmp_path) -> None:
    target = parse_target(f"sqlite:///{tmp_path}/a/b/openid.db")
    assert (tmp_path / "a" / "b").is_dir()
    assert target.url.database == f"{tmp_path}/a/b/openid.db"


def test_create_schema_option_accepts_strings_from_configuration() -> None:
    assert parse_target("mysql://u@h/db", {"create_schema": "false"}).create_schema is False
    assert parse_target("mysql://u@h/db", {"create_schema": "yes"}).create_schema is True
    assert parse_target("mysql://u@h/db").create_schema is True


def test_the_plugin_announces_a_store_and_a_queue_for_every_sql_scheme() -> None:
    records = {record.kind: record for record in plugin.openid_backends()}
    assert set(records) == {"store", "queue"}
    for record in records.values():
        assert set(record.schemes) >= {"sqlite", "postgresql", "mysql", "mariadb"}
        assert record.shared


def test_importing_the_plugin_imports_no_sqlalchemy() -> None:
    """Installed is not used: a site on another store pays nothing at start-up."""
    code = (
        "import sys; from openid_plugins.manager import make_plugin_manager;"
        " make_plugin_manager(); print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('sqlalchemy', 'psycopg', 'pymysql')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_core_opens_sql_stores_and_queues_through_the_entry_point(tmp_path) -> None:
    pm = make_plugin_manager()
    url = f"sqlite:///{tmp_path}/openid.db?table_prefix=core_"
    with open_store(pm, url, StoreOptions()) as store, open_queue(pm, url, StoreOptions()) as q:
        assert isinstance(store, SQLStore)
        assert isinstance(q, SQLQueue)
        assert store.use_nonce("https://op.example/", store.clock.now(), "abc") is True
        q.put("https://op.example/")
        assert q.pending() == 1
