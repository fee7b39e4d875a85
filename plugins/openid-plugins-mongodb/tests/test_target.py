"""URLs and options: what reaches pymongo, what stays ours, and the errors for bad ones."""

from __future__ import annotations

import pytest
from openid_plugins_mongodb import MongoQueue, MongoStore
from openid_plugins_mongodb.target import DEFAULT_CLIENT_OPTIONS, parse_target

from openid_plugins import RelyingParty
from openid_plugins.backends import open_store, scheme_of
from openid_plugins.contracts import StoreOptions
from openid_plugins.errors import ConfigurationError, UnknownSchemeError
from openid_plugins.manager import make_plugin_manager


def test_database_prefix_and_options_from_the_url() -> None:
    target = parse_target(
        "mongodb://u:secret@h1:27017,h2:27017/openid?replicaSet=rs0&collection_prefix=site_"
        "&tls=true"
    )
    assert target.database == "openid"
    assert target.prefix == "site_"
    assert target.uri == "mongodb://u:secret@h1:27017,h2:27017/openid?replicaSet=rs0&tls=true"
    assert "secret" not in target.display and "u:***@h1" in target.display
    assert target.create_indexes is True


def test_defaults_and_timeouts_the_url_overrides() -> None:
    target = parse_target("mongodb://h/db")
    assert target.prefix == "openid_"
    assert target.client_options() == DEFAULT_CLIENT_OPTIONS
    mine = parse_target("mongodb://h/db?serverselectiontimeoutms=9000;socketTimeoutMS=0")
    assert set(mine.client_options()) == {"connectTimeoutMS"}


def test_prefix_and_create_indexes_from_store_options() -> None:
    target = parse_target("mongodb://h/db", {"collection_prefix": "x_", "create_indexes": "no"})
    assert (target.prefix, target.create_indexes) == ("x_", False)
    same = parse_target("mongodb://h/db?collection_prefix=x_", {"collection_prefix": "x_"})
    assert same.prefix == "x_"


@pytest.mark.parametrize(
    ("url", "extra", "message"),
    [
        ("mongodb://h", {}, "names no database"),
        ("mongodb://h/", {}, "names no database"),
        ("mongodb://h/a.b", {}, "not a valid MongoDB database name"),
        ("mongodb:///db", {}, "not a MongoDB URL"),
        ("mongodb://h/db?collection_prefix=a-b", {}, "invalid"),
        ("mongodb://h/db?collection_prefix=$x", {}, "invalid"),
        ("mongodb://h/db?collection_prefix=a&collection_prefix=a", {}, "more than once"),
        ("mongodb://h/db?collection_prefix=a_", {"collection_prefix": "b_"}, "one place"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, extra: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_target(url, extra)


@pytest.mark.parametrize(
    "url", ["mongodb://127.0.0.1/db?tls=true&ssl=false", "mongodb://127.0.0.1:99999/db"]
)
def test_what_pymongo_refuses_is_a_configuration_error_at_first_use(url: str) -> None:
    with MongoStore(url, StoreOptions()) as store, pytest.raises(ConfigurationError):
        store.get_association("https://op.example/")


def test_srv_urls_reach_the_plugin_whole() -> None:
    """The core matches ``mongodb`` (``+srv`` dropped) and hands over the URL unchanged; no
    DNS lookup happens before the first operation."""
    url = "mongodb+srv://cluster0.example.invalid/openid?collection_prefix=p_"
    assert scheme_of(url) == "mongodb"
    with open_store(make_plugin_manager(), url, StoreOptions()) as store:
        assert isinstance(store, MongoStore)
        assert store.target.uri == "mongodb+srv://cluster0.example.invalid/openid"
        assert store.target.prefix == "p_"


def test_opening_imports_no_driver_until_used() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from openid_plugins.manager import make_plugin_manager; "
        "from openid_plugins.backends import store_schemes; pm = make_plugin_manager(); "
        "assert 'mongodb' in store_schemes(pm); print('pymongo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_scheme_message_names_the_distribution(tmp_path) -> None:  # noqa: ANN001
    """With this distribution blocked (as if not installed), the site is told what to install."""
    pm = make_plugin_manager(block=["mongodb"])
    for url in ("mongodb://h/db", "mongodb+srv://cluster.example/db"):
        with pytest.raises(UnknownSchemeError, match="install openid-plugins-mongodb"):
            open_store(pm, url, StoreOptions())
    with pytest.raises(UnknownSchemeError, match="install openid-plugins-mongodb"):
        RelyingParty(store="mongodb://h/db", plugin_manager=pm, data_dir=str(tmp_path))


def test_queue_and_store_share_one_client_per_process(replset_server: str) -> None:
    from openid_plugins_mongodb import client

    url = f"{replset_server}/shared"
    with MongoStore(url, StoreOptions()) as store, MongoQueue(url, StoreOptions()) as queue:
        store.cache_get("ns", "k")
        queue.pending()
        entry = client._entries[store.target.client_key]
        assert entry.users == 2
        assert entry.client is not None
    assert store.target.client_key not in client._entries


def test_plugins_command_lists_the_distribution_and_its_schemes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from openid_plugins.cli import main

    assert main(["-v", "plugins"]) == 0
    out = capsys.readouterr().out
    assert "openid-plugins-mongodb" in out
    schemes = [line for line in out.splitlines() if line.startswith(("Store", "Queue"))]
    assert len(schemes) == 2 and all("mongodb" in line for line in schemes)


def test_maintenance_never_creates_indexes_whatever_the_option_says() -> None:
    """StoreOptions.create false (cleanup, associate) overrides create_indexes=true."""
    assert parse_target("mongodb://h/db?create_indexes=true", create=False).create_indexes is False
