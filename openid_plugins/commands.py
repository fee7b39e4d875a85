"""Built-in plugin: the core's ``openid-plugins`` subcommands (``plugins``, ``associate``,
``cleanup``, ``demo``), registered on the ``openid_cli_commands`` hook like any plugin's.

Each command imports what it runs only when it runs: ``openid-plugins associate`` never
loads the development OP, and ``--help`` loads no relying party.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from . import config
from .backends import Kind, backend_for, open_queue, open_store, scheme_of
from .contracts import Queue, Store, StoreOptions
from .errors import ConfigurationError
from .hookspecs import hookimpl

if TYPE_CHECKING:
    import pluggy

    from .fetcher import FetcherStats, Progress

log = logging.getLogger("openid_plugins.commands")


def settings_from(args: argparse.Namespace) -> config.Settings:
    """The environment's settings with ``--store``/``--queue`` applied."""
    changes = {}
    if getattr(args, "store", None):
        changes["store"] = args.store
    if getattr(args, "queue", None):
        changes["queue"] = args.queue
    return config.Settings.from_env().updated(**changes)


def cmd_plugins(args: argparse.Namespace) -> int:
    from .backends import display_url, queue_schemes, store_schemes
    from .manager import plugin_infos, provider_profiles

    pm = args.pm
    out = sys.stdout
    out.write("Plugins (entry-point group 'openid_plugins'):\n")
    for info in plugin_infos(pm):
        origin = f"{info.distribution} {info.version}" if info.distribution else "built in"
        out.write(f"  {info.name:<16} {origin}\n")
        if args.verbose:
            for hook in info.hooks:
                out.write(f"      {hook}\n")
    out.write(f"Store schemes: {', '.join(store_schemes(pm))}\n")
    out.write(f"Queue schemes: {', '.join(queue_schemes(pm))}\n")
    out.write("Provider profiles (begin(provider=...)):\n")
    for name, profile in sorted(provider_profiles(pm).items()):
        out.write(f"  {name:<16} {profile.description or profile.op_identifier}\n")
    settings = settings_from(args)
    out.write(f"Configured store: {display_url(settings.store_url())}\n")
    out.write(f"Configured queue: {display_url(settings.queue_url())}\n")
    return 0


def existing_options(
    args: argparse.Namespace, kind: Kind, url: str, *, shared_with: str | None = None
) -> StoreOptions:
    """Options for a maintenance command's store or queue: existing state only
    (``StoreOptions.create=False``), so a mistyped URL is an error, not a new empty store.

    ``shared_with`` names the processes that must see the same state (the command runs in
    another one): a backend that lives inside one process (``Backend.shared`` false, e.g.
    ``memory://``) is refused, with the reason.
    """
    pm = args.pm
    record = backend_for(pm, kind, url)
    if shared_with and record is not None and not record.shared:
        raise ConfigurationError(
            f"{args.command} cannot use the {kind} {url!r}: a {scheme_of(url)}:// {kind} lives"
            f" inside one process, and {shared_with} run in others, so they would never see"
            f" what this command does. Use a {kind} every process shares (e.g. file:// or an"
            " SQL URL)"
        )
    options = config.make_options(settings_from(args), config.get_clock(pm))
    return dataclasses.replace(options, create=False)


def _progress(args: argparse.Namespace) -> Progress | None:
    """Progress on stderr's status line when it is a terminal; elsewhere the summary only."""
    if args.quiet or not sys.stderr.isatty():
        return None

    def show(done: int, total: int, stats: FetcherStats) -> None:
        args.status_line.show(
            f"  {done}/{total} endpoints: made {stats.made}, skipped {stats.skipped},"
            f" refused {stats.refused}, failed {stats.failed}"
        )

    return show


def run_associate(
    settings: config.Settings,
    pm: pluggy.PluginManager | None = None,
    *,
    watch: bool = False,
    concurrency: int = 8,
    poll: float = 5.0,
    progress: Progress | None = None,
    store: Store | None = None,
    queue: Queue | None = None,
) -> FetcherStats:
    """The ``associate`` command's work, for every front end that runs it (this CLI, Django's
    ``manage.py openid_associate``): drain the queue once, or with ``watch`` process it until
    SIGTERM or SIGINT. ``store``/``queue``, when given, are used instead of opening the
    settings' URLs (the CLI opens existing ones only)."""
    from .fetcher import BackgroundFetcher
    from .relying_party import RelyingParty

    settings = settings.updated(association="background", fetcher="none")
    with RelyingParty(store=store, queue=queue, settings=settings, plugin_manager=pm) as rp:
        fetcher = BackgroundFetcher(rp.associator, rp.queue, concurrency=concurrency)
        if not watch:
            return fetcher.run_once(progress=progress)
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            log.info("signal %d: stopping after the current pass", signum)
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        return fetcher.watch(stop, poll=poll)


def cmd_associate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    users = "the sites that queue endpoints and use the associations"
    store_url, queue_url = settings.store_url(), settings.queue_url()
    store = open_store(
        args.pm, store_url, existing_options(args, "store", store_url, shared_with=users)
    )
    try:
        queue = open_queue(
            args.pm, queue_url, existing_options(args, "queue", queue_url, shared_with=users)
        )
    except BaseException:
        store.close()
        raise
    stats = run_associate(
        settings,
        args.pm,
        watch=args.watch,
        concurrency=args.concurrency,
        poll=args.poll,
        progress=None if args.watch else _progress(args),
        store=store,
        queue=queue,
    )
    args.status_line.clear()
    if not args.quiet:
        sys.stdout.write(stats.summary() + "\n")
    return 0 if stats.ok else 1


def cmd_cleanup(args: argparse.Namespace) -> int:
    url = settings_from(args).store_url()
    with open_store(args.pm, url, existing_options(args, "store", url)) as store:
        removed = store.cleanup()
    if not args.quiet:
        sys.stdout.write(f"removed {removed} expired entries\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


@hookimpl
def openid_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plugins", help="list loaded plugins and the store/queue schemes")
    p.set_defaults(func=cmd_plugins)

    p = subparsers.add_parser("associate", help="make associations for queued OP endpoints")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="drain the queue and exit (cron)")
    mode.add_argument("--watch", action="store_true", help="run until SIGTERM/SIGINT")
    p.add_argument("--store", help="store URL (default: $OPENID_PLUGINS_STORE or the data dir)")
    p.add_argument("--queue", help="queue URL (default: $OPENID_PLUGINS_QUEUE or the data dir)")
    p.add_argument("--concurrency", type=int, default=8, help="associations made at once")
    p.add_argument("--poll", type=float, default=5.0, help="--watch: seconds between checks")
    p.set_defaults(func=cmd_associate)

    p = subparsers.add_parser(
        "cleanup", help="remove expired associations, nonces and cache entries"
    )
    p.add_argument("--store", help="store URL")
    p.set_defaults(func=cmd_cleanup)

    p = subparsers.add_parser(
        "demo",
        help="sign in end to end against a local development OP (file store, file queue)",
        description=(
            "Start a development OpenID provider and a small relying-party site on 127.0.0.1,"
            " sign in twice as a browser would, and show what happened at each step."
            " Always uses the embedded file store and file queue."
        ),
    )
    p.add_argument(
        "--data-dir",
        help="keep the store and queue in this directory (default: a new temporary one)",
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="afterwards keep the OP and the site running for a browser, until Ctrl-C",
    )
    p.add_argument(
        "--port", type=int, default=0, help="port of the demo site (default: any free port)"
    )
    p.set_defaults(func=cmd_demo)
