"""``openid-plugins db upgrade URL`` and ``openid-plugins db version URL``: for sites that
create and migrate schemas themselves (with ``create_schema = false`` in the store options)
rather than letting the first request do it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from openid_plugins.errors import OpenIDError, StoreError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .target import Target

# SQLAlchemy, the schema and the engines are imported when a db command runs, not when
# the parser is built: every ``openid-plugins`` call builds it, ``--help`` included.


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser(
        "db", help="create, upgrade or inspect the tables of an SQL store (openid-plugins-sql)"
    )
    commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    for name, func, text in (
        ("upgrade", _upgrade, "create the tables, or migrate them to this version's schema"),
        ("version", _version, "show the schema version recorded in the database"),
    ):
        cmd = commands.add_parser(name, help=text, description=text)
        cmd.add_argument("url", help="the store URL, e.g. postgresql://user@host/db")
        cmd.add_argument(
            "--table-prefix",
            help="table name prefix (default: the URL's ?table_prefix=, else openid_)",
        )
        cmd.set_defaults(func=func)


def _target(args: argparse.Namespace) -> Target:
    from .target import PREFIX_OPTION, parse_target

    extra = {} if args.table_prefix is None else {PREFIX_OPTION: args.table_prefix}
    return parse_target(args.url, extra)


def _upgrade(args: argparse.Namespace) -> int:
    from openid_plugins.contracts import SystemClock

    from .schema import tables, upgrade

    def work(target: Target, engine: sa.Engine) -> str:
        before, after = upgrade(engine, tables(target.prefix), SystemClock().now(), target.display)
        if before == after:
            return f"schema version {after}, already current"
        return f"schema version {after} (was {'none' if before is None else before})"

    return _with_engine(args, work)


def _version(args: argparse.Namespace) -> int:
    from .schema import SCHEMA_VERSION, check_version, read_version, tables

    def work(target: Target, engine: sa.Engine) -> str:
        with engine.connect() as conn, conn.begin():
            found = read_version(conn, tables(target.prefix))
        check_version(found, target.display, target.prefix)
        if found is None:
            return "no schema; run: openid-plugins db upgrade URL"
        state = "current" if found == SCHEMA_VERSION else f"needs upgrade to {SCHEMA_VERSION}"
        return f"schema version {found} ({state})"

    return _with_engine(args, work)


def _with_engine(args: argparse.Namespace, work: Callable[[Target, sa.Engine], str]) -> int:
    """Run ``work`` and report on stdout; failures go to stderr with exit status 1."""
    from sqlalchemy import exc

    from . import engine as engines

    try:
        target = _target(args)
        engine = engines.acquire(target)
        try:
            message = work(target, engine)
        except exc.SQLAlchemyError as err:
            raise StoreError(
                f"{target.display}: {getattr(err, 'orig', None) or err}; check the URL and "
                "that the database is reachable"
            ) from err
        finally:
            engines.release(target)
    except OpenIDError as err:
        sys.stderr.write(f"openid-plugins db {args.db_command}: {err}\n")
        return 1
    sys.stdout.write(f"{target.display} prefix {target.prefix!r}: {message}\n")
    return 0
