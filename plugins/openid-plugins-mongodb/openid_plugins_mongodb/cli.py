"""``openid-plugins mongodb upgrade URL``: create the collections' indexes at deploy time,
for sites whose application user may not create indexes (with ``create_indexes=false`` in
the store options) or that want the first login not to pay for it.

A command of its own rather than a second ``db`` command: ``db`` belongs to
openid-plugins-sql, argparse refuses two parsers of one name, and plugins never import each
other to share one.
"""

from __future__ import annotations

import argparse
import sys

from openid_plugins.errors import OpenIDError, StoreError

from .target import PREFIX_OPTION


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    mongodb = subparsers.add_parser(
        "mongodb", help="create the indexes of a MongoDB store and queue (openid-plugins-mongodb)"
    )
    commands = mongodb.add_subparsers(dest="mongodb_command", required=True, metavar="COMMAND")
    text = "create every missing index (idempotent: existing ones are left alone)"
    cmd = commands.add_parser("upgrade", help=text, description=text)
    cmd.add_argument("url", help="the store URL, e.g. mongodb://host:27017/openid")
    cmd.add_argument(
        "--collection-prefix",
        help="collection name prefix (default: the URL's ?collection_prefix=, else openid_)",
    )
    cmd.set_defaults(func=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    from . import client
    from .schema import ensure_indexes
    from .target import parse_target

    extra = {} if args.collection_prefix is None else {PREFIX_OPTION: args.collection_prefix}
    try:
        target = parse_target(args.url, extra)
        client.acquire(target)
        try:
            # Indexes made here, once, with the result reported (not as a side effect).
            db = client.database(target, StoreError, prepare=False)
            with client.translated(target, StoreError, "creating indexes"):
                names = ensure_indexes(db, target.prefix)
        finally:
            client.release(target)
    except OpenIDError as err:
        sys.stderr.write(f"openid-plugins mongodb upgrade: {err}\n")
        return 1
    sys.stdout.write(
        f"{target.display} prefix {target.prefix!r}: {len(names)} indexes in place\n"
        + "".join(f"  {name}\n" for name in names)
    )
    return 0
