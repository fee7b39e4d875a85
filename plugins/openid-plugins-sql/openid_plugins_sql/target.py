"""From an openid-plugins store or queue URL to what SQLAlchemy needs: a driver URL and the
table prefix (given in the URL or in ``StoreOptions.extra``)."""

from __future__ import annotations

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
        """Identity of the engine (one per database per process)."""
        return self.url.render_as_string(hide_password=False)


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
            f"{url!r} is not a database URL; use e.g. sqlite:///var/lib/app/openid.db or "
            "postgresql://user@host/db"
        ) from exc
    drivername = _DRIVERS.get(parsed.drivername.lower())
    if drivername is None:
        raise ConfigurationError(
            f"openid-plugins-sql does not support the driver in {parsed.drivername}:// URLs; "
            "use sqlite://, postgresql:// (psycopg 3) or mysql:// / mariadb:// (PyMySQL)"
        )
    parsed = parsed.set(drivername=drivername)

    from_url = parsed.query.get(PREFIX_OPTION)
    if isinstance(from_url, tuple):
        raise ConfigurationError(f"{PREFIX_OPTION} is given more than once in the store URL")
    parsed = parsed.difference_update_query([PREFIX_OPTION])
    from_extra = extra.get(PREFIX_OPTION)
    if from_url is not None and from_extra is not None and from_url != from_extra:
        raise ConfigurationError(
            f"the store URL says {PREFIX_OPTION}={from_url!r} but the store options say "
            f"{from_extra!r}; set it in one place"
        )
    prefix = from_url if from_url is not None else from_extra
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

    create_schema = extra.get(CREATE_SCHEMA_OPTION, True)
    if isinstance(create_schema, str):
        create_schema = create_schema.strip().lower() not in ("0", "false", "no", "off")
    return Target(url=parsed, prefix=prefix, create_schema=bool(create_schema) and create)


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
    if not create and not path.is_file():
        raise ConfigurationError(
            f"{original!r}: there is no SQLite database at {path}; check the path (this command"
            " creates none; `openid-plugins db upgrade URL` does)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return url.set(database=str(path))
