"""The ``sql`` plugin (entry point group ``openid_plugins``): stores and queues for
``sqlite://``, ``postgresql://`` and ``mysql://``/``mariadb://`` URLs, and the
``openid-plugins db`` command.

Nothing here imports SQLAlchemy or a driver: a site whose store is elsewhere pays nothing
for having this distribution installed. They are imported when an SQL URL is opened or the
``db`` command runs.
"""

from __future__ import annotations

import argparse

from openid_plugins.contracts import Backend, StoreOptions
from openid_plugins.hookspecs import hookimpl

#: The URL schemes this distribution serves (``scheme+driver`` forms included).
SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")


def open_store(url: str, options: StoreOptions):  # noqa: ANN201 - an SQLStore
    from .store import SQLStore

    return SQLStore(url, options)


def open_queue(url: str, options: StoreOptions):  # noqa: ANN201 - an SQLQueue
    from .queue import SQLQueue

    return SQLQueue(url, options)


@hookimpl
def openid_backends() -> list[Backend]:
    return [
        Backend(
            kind="store",
            schemes=SCHEMES,
            open=open_store,
            description="SQLite, PostgreSQL or MariaDB/MySQL through SQLAlchemy Core",
        ),
        Backend(
            kind="queue",
            schemes=SCHEMES,
            open=open_queue,
            description="a table; SKIP LOCKED claims, LISTEN/NOTIFY on PostgreSQL",
        ),
    ]


@hookimpl
def openid_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    from . import cli

    cli.add_commands(subparsers)
