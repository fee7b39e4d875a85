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
from .statusline import StatusLine, StatusLineHandler

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _add_output_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v/-q/--log-level on ``parser``. On subcommands the defaults are SUPPRESS, so an
    option given before the subcommand is not reset by the subcommand's own default."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    taken = parser._option_string_actions  # a plugin's own -v wins on its command
    if "-v" not in taken and "--verbose" not in taken:
        parser.add_argument(
            "-v", "--verbose", action="store_true", default=default(False),
            help="more output, and log at INFO",
        )
    if "-q" not in taken and "--quiet" not in taken:
        parser.add_argument(
            "-q", "--quiet", action="store_true", default=default(False),
            help="no progress or summaries; log errors only",
        )
    if "--log-level" not in taken:
        parser.add_argument(
            "--log-level", choices=LOG_LEVELS, type=str.lower, default=default(None),
            help="log at this level (overrides -v/-q)",
        )


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every (nested) subcommand parser below ``parser``: `db upgrade` takes -v too."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                found += [sub, *_subparsers(sub)]
    return found


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    # One plugin manager per run: commands find it as ``args.pm``.
    pm = make_plugin_manager()
    parser = argparse.ArgumentParser(
        prog="openid-plugins", description="OpenID relying party tools"
    )
    parser.set_defaults(pm=pm)
    parser.add_argument("--version", action="version", version=f"openid-plugins {__version__}")
    _add_output_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    pm.hook.openid_cli_commands(subparsers=sub)
    for subparser in _subparsers(parser):
        _add_output_options(subparser, top=False)
    return parser


def log_level(args: argparse.Namespace) -> int:
    """--log-level, else INFO for -v, ERROR for -q, WARNING otherwise."""
    if args.log_level:
        return int(getattr(logging, args.log_level.upper()))
    if args.verbose:
        return logging.INFO
    return logging.ERROR if args.quiet else logging.WARNING


def main(argv: Sequence[str] | None = None) -> int:
    root = logging.getLogger()
    handler: logging.Handler | None = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.verbose and args.quiet:
            parser.error("-v/--verbose and -q/--quiet contradict each other; choose one")
        # Log records go to stderr above the status line (associate's progress), never into it.
        args.status_line = StatusLine(sys.stderr)
        handler = StatusLineHandler(args.status_line)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(log_level(args))
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
    finally:
        if handler is not None:  # main() may run again in this process (tests)
            root.removeHandler(handler)
