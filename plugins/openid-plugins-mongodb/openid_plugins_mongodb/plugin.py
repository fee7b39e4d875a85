"""The ``mongodb`` plugin (entry point group ``openid_plugins``): a store and a queue for
``mongodb://`` and ``mongodb+srv://`` URLs, and the ``openid-plugins mongodb`` command.

Nothing here imports pymongo: a site whose store is elsewhere pays nothing for having this
distribution installed. pymongo is imported when a MongoDB URL is opened or the command runs.
The core matches schemes without their ``+suffix``, so ``mongodb+srv://`` URLs reach these
``open`` callables under the ``mongodb`` scheme, unchanged (the ``+srv`` is pymongo's to read).
"""

from __future__ import annotations

import argparse

from openid_plugins.contracts import Backend, StoreOptions
from openid_plugins.hookspecs import hookimpl

SCHEMES = ("mongodb",)


def open_store(url: str, options: StoreOptions):  # noqa: ANN201 - a MongoStore
    from .store import MongoStore

    return MongoStore(url, options)


def open_queue(url: str, options: StoreOptions):  # noqa: ANN201 - a MongoQueue
    from .queue import MongoQueue

    return MongoQueue(url, options)


@hookimpl
def openid_backends() -> list[Backend]:
    return [
        Backend(
            kind="store",
            schemes=SCHEMES,
            open=open_store,
            description="MongoDB (mongodb:// and mongodb+srv://) through pymongo; TTL indexes",
        ),
        Backend(
            kind="queue",
            schemes=SCHEMES,
            open=open_queue,
            description="a MongoDB collection; leased claims, change streams on replica sets",
        ),
    ]


@hookimpl
def openid_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    from . import cli

    cli.add_commands(subparsers)
