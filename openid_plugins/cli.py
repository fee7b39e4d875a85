"""The ``openid-plugins`` command (also ``python -m openid_plugins``).

Every subcommand comes from a plugin's ``openid_cli_commands`` hook; the core's own are in
the built-in ``commands`` plugin. This module only builds the parser and runs the choice.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .errors import OpenIDError
from .manager import make_plugin_manager


def build_parser() -> argparse.ArgumentParser:
    # One plugin manager per run: commands find it as ``args.pm``.
    pm = make_plugin_manager()
    parser = argparse.ArgumentParser(
        prog="openid-plugins", description="OpenID relying party tools"
    )
    parser.set_defaults(pm=pm)
    parser.add_argument("-v", "--verbose", action="store_true", help="more output and logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    pm.hook.openid_cli_commands(subparsers=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except OpenIDError as exc:
        sys.stderr.write(f"openid-plugins: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `openid-plugins plugins | head`
        sys.stderr.close()
        return 0
