"""Store and queue URLs resolved through the ``openid_backends`` hook, and the small URL
helpers every backend plugin needs (so plugins share them here, never by importing each
other)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import pluggy

from .contracts import Backend, Queue, Store, StoreOptions
from .errors import ConfigurationError, PluginError, UnknownSchemeError

log = logging.getLogger("openid_plugins.backends")

Kind = Literal["store", "queue"]

#: First-party distributions that serve schemes the core does not, for the message a site
#: gets when it names one of them without the distribution installed.
KNOWN_SCHEMES = {
    "sqlite": "openid-plugins-sql",
    "postgresql": "openid-plugins-sql",
    "postgres": "openid-plugins-sql",
    "mysql": "openid-plugins-sql",
    "mariadb": "openid-plugins-sql",
    "django": "openid-plugins-django",
    "memcached": "openid-plugins-memcached",
    "mongodb": "openid-plugins-mongodb",  # mongodb+srv:// too: scheme_of drops "+srv"
}


def scheme_of(url: str) -> str:
    """The scheme that selects a backend: lower-case, without a ``+driver`` suffix."""
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise ConfigurationError(f"{url!r} is not a URL; use e.g. file:///var/lib/app/openid")
    return scheme.split("+", 1)[0]


def file_url_path(url: str) -> Path:
    """The local path of a ``file://`` URL (``file:///abs`` or ``file://~/rel``)."""
    parts = urlsplit(url)
    path = (
        unquote(parts.netloc + parts.path)
        if parts.netloc not in ("", "localhost")
        else unquote(parts.path)
    )
    if not path:
        raise ConfigurationError(f"{url!r} names no directory")
    return Path(path).expanduser()


def display_url(url: str) -> str:
    """``url`` for people and logs: a password in its user information becomes ``***``
    (``postgresql://app:***@db/openid``); everything else is kept, so the URL still says
    which database it names."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in map(rest.find, "/?#") if i != -1), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{head}://{userinfo.split(':', 1)[0]}:***@{hostport}{rest[end:]}"


def memory_name(url: str) -> str:
    """The instance name of a ``memory://`` URL ('' for a fresh, unnamed instance)."""
    parts = urlsplit(url)
    return unquote(parts.netloc + parts.path)


def backends(pm: pluggy.PluginManager, kind: Kind) -> dict[str, Backend]:
    """Scheme -> the backend that serves it, in pluggy's call order (first one wins)."""
    found: dict[str, Backend] = {}
    for records in pm.hook.openid_backends():
        for record in records or ():
            if not isinstance(record, Backend):
                raise PluginError(
                    f"an openid_backends hook returned {type(record).__name__}, not an"
                    " openid_plugins.contracts.Backend"
                )
            if record.kind != kind:
                continue
            for scheme in record.schemes:
                if scheme in found:
                    log.debug("%s:// %s served by an earlier plugin", scheme, kind)
                    continue
                found[scheme] = record
    return found


def schemes(pm: pluggy.PluginManager, kind: Kind) -> list[str]:
    """Every scheme an installed plugin serves for ``kind`` (deprecated hooks included)."""
    found = set(backends(pm, kind))
    for result in getattr(pm.hook, f"openid_{kind}_schemes")():
        found.update(s.lower() for s in result or ())
    return sorted(found)


def store_schemes(pm: pluggy.PluginManager) -> list[str]:
    return schemes(pm, "store")


def queue_schemes(pm: pluggy.PluginManager) -> list[str]:
    return schemes(pm, "queue")


def backend_for(pm: pluggy.PluginManager, kind: Kind, url: str) -> Backend | None:
    """The backend record serving ``url``, or None (unknown, or only a deprecated hook)."""
    return backends(pm, kind).get(scheme_of(url))


def open_backend(pm: pluggy.PluginManager, kind: Kind, url: str, options: StoreOptions) -> object:
    """A store or queue for ``url``, from the plugin serving its scheme."""
    scheme = scheme_of(url)
    record = backends(pm, kind).get(scheme)
    if record is not None:
        made: object = record.open(url, options)
    else:
        made = getattr(pm.hook, f"openid_make_{kind}")(url=url, options=options)
    if made is None:
        raise UnknownSchemeError(_unknown_scheme_message(pm, kind, scheme, url))
    expected = Store if kind == "store" else Queue
    if not isinstance(made, expected):
        raise PluginError(
            f"the plugin for {scheme}:// returned {type(made)!r}, not a {expected.__name__}"
        )
    return made


def _unknown_scheme_message(pm: pluggy.PluginManager, kind: Kind, scheme: str, url: str) -> str:
    installed = schemes(pm, kind)
    other: Kind = "queue" if kind == "store" else "store"
    if scheme in schemes(pm, other):
        advice = f"; {scheme}:// provides a {other} but no {kind}"
    elif scheme in KNOWN_SCHEMES:
        advice = f"; install {KNOWN_SCHEMES[scheme]} to use it"
    else:
        advice = ""
    return (
        f"no installed plugin makes a {kind} for {scheme}:// URLs ({display_url(url)!r}){advice}. "
        f"Installed {kind} schemes: {', '.join(installed) or 'none'}"
    )


def open_store(pm: pluggy.PluginManager, url: str, options: StoreOptions) -> Store:
    store = open_backend(pm, "store", url, options)
    assert isinstance(store, Store)
    return store


def open_queue(pm: pluggy.PluginManager, url: str, options: StoreOptions) -> Queue:
    queue = open_backend(pm, "queue", url, options)
    assert isinstance(queue, Queue)
    return queue
