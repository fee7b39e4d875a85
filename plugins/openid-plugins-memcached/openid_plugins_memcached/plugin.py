"""The ``memcached`` plugin (entry point group ``openid_plugins``): a store for
``memcached://host:port[,host:port...]`` URLs.

Nothing here imports pymemcache: a site whose store is elsewhere pays nothing for having this
distribution installed. It is imported when a ``memcached://`` URL is opened.

memcached provides no queue: it cannot hand an item to exactly one claimer and get it back
when the claimer dies. A ``memcached://`` queue URL therefore gets the core's unknown-scheme
error, which says that the scheme provides a store but no queue and lists the queue schemes
that are installed.
"""

from __future__ import annotations

from openid_plugins.contracts import Backend, StoreOptions
from openid_plugins.hookspecs import hookimpl

#: The URL schemes this distribution serves.
SCHEMES = ("memcached",)


def open_store(url: str, options: StoreOptions):  # noqa: ANN201 - a MemcachedStore
    from .store import MemcachedStore

    return MemcachedStore(url, options)


@hookimpl
def openid_backends() -> list[Backend]:
    return [
        Backend(
            kind="store",
            schemes=SCHEMES,
            open=open_store,
            description="memcached through pymemcache (several servers: consistent hashing)",
        ),
    ]
