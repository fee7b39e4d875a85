"""From an openid-plugins store or queue URL to what pymongo needs: the connection string
(minus this plugin's own options), the database named by the URL's path, and the
collection-name prefix (in the URL or in ``StoreOptions.extra``).

No pymongo here: the URL is taken apart with the standard library, so a bad option is a
``ConfigurationError`` at open time and a ``mongodb+srv://`` URL costs no DNS lookup until
the first operation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from openid_plugins.errors import ConfigurationError

DEFAULT_PREFIX = "openid_"
PREFIX_OPTION = "collection_prefix"
CREATE_INDEXES_OPTION = "create_indexes"
_OWN_OPTIONS = (PREFIX_OPTION, CREATE_INDEXES_OPTION)

#: pymongo's defaults wait 30 s for a server and forever for a reply; a login must fail
#: fast instead. Each applies unless the URL sets the option itself (names as in the
#: connection-string spec; pymongo compares them case-insensitively).
DEFAULT_CLIENT_OPTIONS = {
    "serverSelectionTimeoutMS": 3000,
    "connectTimeoutMS": 3000,
    "socketTimeoutMS": 10000,
}
#: Letters, digits and underscores only: safe in every collection name and index namespace.
_PREFIX_RE = re.compile(r"(?:[A-Za-z][A-Za-z0-9_]{0,31})?\Z")
#: What MongoDB forbids in database names (and the driver would reject later, less clearly).
_BAD_DB_CHARS = set('/\\. "$*<>:|?\0')


@dataclass(frozen=True)
class Target:
    """A database and the collections in it that one store or queue uses."""

    #: The connection string for pymongo (this plugin's options removed).
    uri: str
    database: str
    prefix: str
    create_indexes: bool
    #: The URL for messages and logs, password masked.
    display: str

    @property
    def client_key(self) -> str:
        """Identity of the client: one per connection string per process."""
        return self.uri

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``MongoClient``: the time-outs the URL does not set."""
        given = {name.lower() for name in _query_names(urlsplit(self.uri).query)}
        return {k: v for k, v in DEFAULT_CLIENT_OPTIONS.items() if k.lower() not in given}


def _query_names(query: str) -> list[str]:
    return [part.split("=", 1)[0] for part in re.split("[&;]", query) if part]


def parse_target(
    url: str, extra: Mapping[str, Any] | None = None, *, create: bool = True
) -> Target:
    """The connection string, database and prefix for ``url``; ``ConfigurationError`` if
    unusable.

    ``create`` false (``StoreOptions.create``: ``cleanup``, ``associate``) overrides
    ``create_indexes``: no index and no collection is created, missing ones are an error.
    """
    extra = extra or {}
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("mongodb", "mongodb+srv") or not parts.netloc:
        raise ConfigurationError(
            f"{_mask(url)!r} is not a MongoDB URL; use e.g. mongodb://host:27017/openid or "
            "mongodb+srv://cluster.example.com/openid"
        )
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ConfigurationError(
            f"{_mask(url)!r} names no database: put it in the path, e.g. mongodb://host/openid"
        )
    if _BAD_DB_CHARS.intersection(database) or len(database.encode()) > 63:
        raise ConfigurationError(f"{database!r} is not a valid MongoDB database name")

    kept, own = [], {}
    for part in re.split("[&;]", parts.query):
        if not part:
            continue
        name, _, value = part.partition("=")
        if name in _OWN_OPTIONS:
            if name in own:
                raise ConfigurationError(f"{name} is given more than once in the URL")
            own[name] = unquote(value)
        else:
            kept.append(part)
    uri = urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), ""))

    prefix = _one_place(PREFIX_OPTION, own, extra, DEFAULT_PREFIX)
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ConfigurationError(
            f"{PREFIX_OPTION}={prefix!r} is invalid: use up to 32 letters, digits and "
            "underscores, starting with a letter (or an empty prefix)"
        )
    create_indexes = _one_place(CREATE_INDEXES_OPTION, own, extra, True)
    if isinstance(create_indexes, str):
        create_indexes = create_indexes.strip().lower() not in ("0", "false", "no", "off")
    return Target(
        uri=uri,
        database=database,
        prefix=prefix,
        create_indexes=bool(create_indexes) and create,
        display=_mask(uri),
    )


def _one_place(name: str, own: Mapping[str, str], extra: Mapping[str, Any], default: Any) -> Any:
    """An option from the URL or from the store options, refusing two different values."""
    in_url, in_extra = own.get(name), extra.get(name)
    if in_url is not None and in_extra is not None and str(in_url) != str(in_extra):
        raise ConfigurationError(
            f"the URL says {name}={in_url!r} but the store options say {in_extra!r}; set it "
            "in one place"
        )
    value = in_url if in_url is not None else in_extra
    return default if value is None else value


def _mask(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))
