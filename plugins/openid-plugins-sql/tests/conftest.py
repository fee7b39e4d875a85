"""Fixtures: a fresh table prefix per test on real SQLite, PostgreSQL and MariaDB.

Server URLs come from OPENID_PLUGINS_TEST_POSTGRESQL_URL / OPENID_PLUGINS_TEST_MYSQL_URL. An
unreachable server skips its tests, except under CI=true, where it fails them.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from openid_plugins_sql import SQLQueue, SQLStore
from openid_plugins_sql.target import parse_target

from openid_plugins.contracts import StoreOptions
from openid_plugins.testing.clock import FakeClock

PG_URL = os.environ.get(
    "OPENID_PLUGINS_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("OPENID_PLUGINS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
pytest_plugins = ["openid_plugins.testing.contract"]

IN_CI = os.environ.get("CI", "").lower() == "true"
SERVER_URLS = {"postgresql": PG_URL, "mysql": MYSQL_URL}
DIALECTS = ["sqlite", "postgresql", "mysql"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "restart: stops and starts the local PostgreSQL server (deselect with -m 'not restart')",
    )


@functools.cache
def _unreachable(url: str) -> str | None:
    """Why the server at ``url`` cannot be used, or None."""
    engine = sa.create_engine(parse_target(url).url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure means: not usable for tests
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        engine.dispose()
    return None


def server_url(dialect: str) -> str:
    """The base URL of a test server; skip (or fail under CI=true) when it is down."""
    url = SERVER_URLS[dialect]
    reason = _unreachable(url)
    if reason:
        message = f"{dialect} test server {url} is unreachable ({reason})"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires every server", pytrace=False)
        pytest.skip(message)
    return url


def base_url(dialect: str, tmp_path) -> str:  # noqa: ANN001
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'openid.db'}"
    return server_url(dialect)


def with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}table_prefix={prefix}"


def new_prefix() -> str:
    return f"t{secrets.token_hex(4)}_"


_admin_engines: dict[str, sa.Engine] = {}


@contextmanager
def admin_connection(url: str) -> Iterator[sa.Connection]:
    """A connection for the tests' own inspection and clean-up: one engine per server for
    the session; SQLite files (one per test) get a throwaway engine."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(parse_target(url).url)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            engine.dispose()
        return
    if url not in _admin_engines:
        _admin_engines[url] = sa.create_engine(parse_target(url).url, pool_pre_ping=True)
    with _admin_engines[url].begin() as conn:
        yield conn


def table_names(url: str, prefix: str) -> list[str]:
    with admin_connection(url) as conn:
        return sorted(n for n in sa.inspect(conn).get_table_names() if n.startswith(prefix))


def drop_tables(url: str, prefix: str) -> None:
    """Drop every table with ``prefix`` (also ones a test made by hand), in one statement.

    A SQLite database is a file in the test's own tmp_path: nothing to drop there.
    """
    if url.startswith("sqlite"):
        return
    with admin_connection(url) as conn:
        names = [n for n in sa.inspect(conn).get_table_names() if n.startswith(prefix)]
        if names:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {', '.join(names)}"))


@pytest.fixture(scope="session", autouse=True)
def _dispose_admin_engines() -> Iterator[None]:
    yield
    for engine in _admin_engines.values():
        engine.dispose()


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def prefix() -> str:
    return new_prefix()


@pytest.fixture
def url(dialect: str, prefix: str, tmp_path) -> Iterator[str]:  # noqa: ANN001
    """A URL (table prefix included) for a store and queue with no tables yet."""
    base = base_url(dialect, tmp_path)
    yield with_prefix(base, prefix)
    drop_tables(base, prefix)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def options(clock: FakeClock) -> StoreOptions:
    return StoreOptions(clock=clock, nonce_skew=300.0)


@pytest.fixture
def store(url: str, options: StoreOptions) -> Iterator[SQLStore]:
    with SQLStore(url, options) as s:
        yield s


@pytest.fixture
def queue(url: str, options: StoreOptions) -> Iterator[SQLQueue]:
    with SQLQueue(url, options) as q:
        yield q
