"""From an openid-plugins store or queue URL to what SQLAlchemy needs: a driver URL, the
table prefix and the timeouts (each given in the URL or in ``StoreOptions.extra``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from openid_plugins.errors import ConfigurationError

from .plugin import SCHEMES

#: The only drivers we build against: LISTEN/NOTIFY needs psycopg, and the extras install
#: exactly these two, so a site never ends up on an untested driver by accident.
_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgres+psycopg": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
}

DEFAULT_TABLE_PREFIX = "openid_"
PREFIX_OPTION = "table_prefix"
CREATE_SCHEMA_OPTION = "create_schema"
#: Seconds one database operation (a statement, a round trip) may take before it fails
#: with StoreError/QueueError: a frozen or overloaded server must fail the login in a
#: time a person waits, not hold the web worker (PostgreSQL statement_timeout plus a
#: client-side bound; MariaDB socket read/write timeouts and the lock wait timeout).
STATEMENT_TIMEOUT_OPTION = "statement_timeout"
DEFAULT_STATEMENT_TIMEOUT = 5.0
#: Seconds to establish a server connection (TCP, TLS, the server's greeting, login).
CONNECT_TIMEOUT_OPTION = "connect_timeout"
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Lower case only (PostgreSQL folds unquoted names, MySQL on Linux does not), and short
#: enough that ``<prefix>schema_version`` and the index names stay under the 63-character
#: identifier limit of PostgreSQL.
_PREFIX_RE = re.compile(r"(?:[a-z][a-z0-9_]{0,31})?\Z")


def handles(url: str) -> bool:
    """True if ``url``'s scheme (without ``+driver``) is one of ours."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    return scheme.split("+", 1)[0] in SCHEMES


@dataclass(frozen=True)
class Target:
    """A database and the set of tables in it that one store/queue uses."""

    url: URL
    prefix: str
    create_schema: bool
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @property
    def dialect(self) -> str:
        """``"sqlite"``, ``"postgresql"`` or ``"mysql"`` (MariaDB included)."""
        return self.url.get_backend_name()

    @property
    def display(self) -> str:
        """The URL for messages and logs, password masked."""
        return self.url.render_as_string(hide_password=True)

    @property
    def engine_key(self) -> str:
        """Identity of the engine (one per database and timeouts per process)."""
        url = self.url.render_as_string(hide_password=False)
        return f"{url} {self.statement_timeout} {self.connect_timeout}"


def parse_target(
    url: str, extra: Mapping[str, Any] | None = None, *, create: bool = True
) -> Target:
    """The driver URL and table prefix for ``url``; raise ``ConfigurationError`` if unusable.

    ``create`` false (``StoreOptions.create``, maintenance commands): neither a SQLite file
    nor its directory nor any table is created; a missing one is an error.
    """
    extra = extra or {}
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(
            f"{url!r} is not a database URL; use e.g. sqlite:////var/lib/app/openid.db or "
            "postgresql://user@host/db"
        ) from exc
    drivername = _DRIVERS.get(parsed.drivername.lower())
    if drivername is None:
        raise ConfigurationError(
            f"openid-plugins-sql does not support the driver in {parsed.drivername}:// URLs; "
            "use sqlite://, postgresql:// (psycopg 3) or mysql:// / mariadb:// (PyMySQL)"
        )
    parsed = parsed.set(drivername=drivername)

    parsed, prefix = _take_option(parsed, extra, PREFIX_OPTION)
    prefix = DEFAULT_TABLE_PREFIX if prefix is None else prefix
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ConfigurationError(
            f"{PREFIX_OPTION}={prefix!r} is invalid: use up to 32 lower-case letters, digits "
            "and underscores, starting with a letter (or an empty prefix)"
        )

    if parsed.get_backend_name() == "sqlite":
        parsed = _sqlite_file(url, parsed, create)
    elif parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        # Four-byte UTF-8 everywhere; the tables are declared utf8mb4 too.
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})

    parsed, statement_timeout = _take_option(parsed, extra, STATEMENT_TIMEOUT_OPTION)
    parsed, connect_timeout = _take_option(parsed, extra, CONNECT_TIMEOUT_OPTION)

    create_schema = extra.get(CREATE_SCHEMA_OPTION, True)
    if isinstance(create_schema, str):
        create_schema = create_schema.strip().lower() not in ("0", "false", "no", "off")
    return Target(
        url=parsed,
        prefix=prefix,
        create_schema=bool(create_schema) and create,
        statement_timeout=_seconds(
            STATEMENT_TIMEOUT_OPTION, statement_timeout, DEFAULT_STATEMENT_TIMEOUT
        ),
        connect_timeout=_seconds(CONNECT_TIMEOUT_OPTION, connect_timeout, DEFAULT_CONNECT_TIMEOUT),
    )


def _take_option(url: URL, extra: Mapping[str, Any], name: str) -> tuple[URL, Any]:
    """``name`` from the URL's query (removed from it: the driver must not see it) or from
    the store options; refused when both give it with different values."""
    from_url = url.query.get(name)
    if isinstance(from_url, tuple):
        raise ConfigurationError(f"{name} is given more than once in the store URL")
    url = url.difference_update_query([name])
    from_extra = extra.get(name)
    if from_url is not None and from_extra is not None and str(from_url) != str(from_extra):
        raise ConfigurationError(
            f"the store URL says {name}={from_url!r} but the store options say "
            f"{from_extra!r}; set it in one place"
        )
    return url, from_url if from_url is not None else from_extra


def _seconds(name: str, value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= 3600):
        raise ConfigurationError(f"{name}={value!r} must be a number of seconds in (0, 3600]")
    return seconds


def _sqlite_file(original: str, url: URL, create: bool) -> URL:
    """SQLite stores must be files: each pooled connection (and each process) needs to see
    the same database, which an in-memory one is not. The directory is created if missing
    and ``create`` allows it."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise ConfigurationError(
            f"{original!r} names an in-memory SQLite database, which other connections and "
            "processes cannot see; give a file path, e.g. sqlite:////var/lib/app/openid.db"
        )
    if url.query.get("uri"):
        return url
    path = Path(database).expanduser()
    if not path.is_absolute():
        # Relative to each process's working directory: web workers started in different
        # directories would keep different nonce tables and accept a replayed login.
        raise ConfigurationError(
            f"{original!r} names the relative path {database!r} (sqlite:/// is followed by"
            " the path as written); processes started in other directories would use"
            " other databases. Give an absolute path: sqlite:////var/lib/app/openid.db"
        )
    if not create and not path.is_file():
        raise ConfigurationError(
            f"{original!r}: there is no SQLite database at {path}; check the path (this command"
            " creates none; `openid-plugins db upgrade URL` does)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return url.set(database=str(path))
