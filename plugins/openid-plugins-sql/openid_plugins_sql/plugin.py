"""The ``sql`` plugin (entry point group ``openid_plugins``): stores and queues for
``sqlite://``, ``postgresql://`` and ``mysql://``/``mariadb://`` URLs, and the
``openid-plugins db`` command."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from openid_plugins.contracts import StoreOptions
from openid_plugins.hookspecs import hookimpl

from . import cli
from .queue import SQLQueue
from .store import SQLStore
from .target import SCHEMES, handles


@hookimpl
def openid_store_schemes() -> Iterable[str]:
    return SCHEMES


@hookimpl
def openid_make_store(url: str, options: StoreOptions) -> SQLStore | None:
    return SQLStore(url, options) if handles(url) else None


@hookimpl
def openid_queue_schemes() -> Iterable[str]:
    return SCHEMES


@hookimpl
def openid_make_queue(url: str, options: StoreOptions) -> SQLQueue | None:
    return SQLQueue(url, options) if handles(url) else None


@hookimpl
def openid_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    cli.add_commands(subparsers)
