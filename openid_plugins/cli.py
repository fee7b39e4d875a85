"""The ``openid-plugins`` command (also ``python -m openid_plugins``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from . import config
from .demo import add_demo_command
from .errors import OpenIDError
from .fetcher import BackgroundFetcher, FetcherStats
from .manager import make_plugin_manager, plugin_infos
from .relying_party import RelyingParty

log = logging.getLogger("openid_plugins.cli")


def _settings(args: argparse.Namespace) -> config.Settings:
    settings = config.Settings.from_env()
    changes = {}
    if getattr(args, "store", None):
        changes["store"] = args.store
    if getattr(args, "queue", None):
        changes["queue"] = args.queue
    return settings.updated(**changes)


def cmd_plugins(args: argparse.Namespace) -> int:
    pm = args.pm
    out = sys.stdout
    out.write("Plugins (entry-point group 'openid_plugins'):\n")
    for info in plugin_infos(pm):
        origin = (
            f"{info.distribution} {info.version}" if info.distribution else "registered in code"
        )
        out.write(f"  {info.name:<16} {origin}\n")
        if args.verbose:
            for hook in info.hooks:
                out.write(f"      {hook}\n")
    out.write(f"Store schemes: {', '.join(config.store_schemes(pm))}\n")
    out.write(f"Queue schemes: {', '.join(config.queue_schemes(pm))}\n")
    settings = _settings(args)
    out.write(f"Configured store: {settings.store_url()}\n")
    out.write(f"Configured queue: {settings.queue_url()}\n")
    return 0


def _progress_printer():
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, stats: FetcherStats) -> None:
        sys.stderr.write(
            f"\r  {done}/{total} endpoints: made {stats.made}, skipped {stats.skipped},"
            f" failed {stats.failed}"
        )
        sys.stderr.flush()

    return show


def cmd_associate(args: argparse.Namespace) -> int:
    settings = _settings(args).updated(association="background", fetcher="none")
    with RelyingParty(settings=settings, plugin_manager=args.pm) as rp:
        fetcher = BackgroundFetcher(rp.associator, rp.queue, concurrency=args.concurrency)
        if args.watch:
            stop = threading.Event()

            def request_stop(signum: int, frame: object) -> None:
                log.info("signal %d: stopping after the current pass", signum)
                stop.set()

            signal.signal(signal.SIGTERM, request_stop)
            signal.signal(signal.SIGINT, request_stop)
            stats = fetcher.watch(stop, poll=args.poll)
        else:
            stats = fetcher.run_once(progress=_progress_printer())
            if sys.stderr.isatty():
                sys.stderr.write("\n")
    sys.stdout.write(stats.summary() + "\n")
    return 0 if stats.ok else 1


def cmd_cleanup(args: argparse.Namespace) -> int:
    with RelyingParty(settings=_settings(args), plugin_manager=args.pm) as rp:
        removed = rp.store.cleanup()
    sys.stdout.write(f"removed {removed} expired entries\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    # One plugin manager per run: commands find it as ``args.pm``.
    pm = make_plugin_manager()
    parser = argparse.ArgumentParser(
        prog="openid-plugins", description="OpenID relying party tools"
    )
    parser.set_defaults(pm=pm)
    parser.add_argument("-v", "--verbose", action="store_true", help="more output and logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list loaded plugins and the store/queue schemes")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("associate", help="make associations for queued OP endpoints")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="drain the queue and exit (cron)")
    mode.add_argument("--watch", action="store_true", help="run until SIGTERM/SIGINT")
    p.add_argument("--store", help="store URL (default: $OPENID_PLUGINS_STORE or the data dir)")
    p.add_argument("--queue", help="queue URL (default: $OPENID_PLUGINS_QUEUE or the data dir)")
    p.add_argument("--concurrency", type=int, default=8, help="associations made at once")
    p.add_argument("--poll", type=float, default=5.0, help="--watch: seconds between checks")
    p.set_defaults(func=cmd_associate)

    p = sub.add_parser("cleanup", help="remove expired associations, nonces and cache entries")
    p.add_argument("--store", help="store URL")
    p.set_defaults(func=cmd_cleanup)

    add_demo_command(sub)

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
