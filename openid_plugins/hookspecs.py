"""Every hook of the plugin engine, one documented function each.

A plugin is any module or object with functions marked ``@hookimpl`` whose names match
these. Built-in plugins (the memory and file backends, the system clock, SREG/AX/PAPE, the
``openid-plugins`` commands) are ordinary plugins on these hooks, registered by import
(``manager.DEFAULT_PLUGINS``); third-party ones arrive through the ``openid_plugins``
entry-point group. Read the built-ins as examples. A ``@hookimpl`` whose name matches no
spec here is an error when the plugin is loaded, not a silently ignored typo.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .config import FetchSettings
    from .contracts import Backend, Clock, ProviderProfile, Queue, Store, StoreOptions
    from .extensions.base import ExtensionArgs, ExtensionRequest, ExtensionResponse
    from .protocol.endpoint import Endpoint

PROJECT = "openid_plugins"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- stores and queues --------------------------------------------------------------------


@hookspec
def openid_backends() -> Iterable[Backend]:
    """The stores and queues this plugin provides, one ``Backend`` record each.

    ``Backend(kind="store", schemes=("kv",), open=open_kv_store)``: the core resolves a URL
    by its scheme and calls ``open(url, options)``; the result must pass
    ``openid_plugins.testing.contract.StoreContract`` (``QueueContract`` for queues). Opening
    must be cheap enough to do once per process; connect on first use if need be. When two
    plugins serve one scheme, the one pluggy calls first wins (registered later, or
    ``tryfirst``), so a plugin can replace a built-in backend.
    """


_OLD_BACKEND_HOOK = (
    "{} is deprecated and will be removed in openid-plugins 0.3: return"
    " openid_plugins.contracts.Backend records from the openid_backends hook instead"
)


@hookspec(warn_on_impl=DeprecationWarning(_OLD_BACKEND_HOOK.format("openid_store_schemes")))
def openid_store_schemes() -> Iterable[str]:
    """Deprecated (use ``openid_backends``): URL schemes whose stores this plugin makes."""


@hookspec(
    firstresult=True,
    warn_on_impl=DeprecationWarning(_OLD_BACKEND_HOOK.format("openid_make_store")),
)
def openid_make_store(url: str, options: StoreOptions) -> Store | None:
    """Deprecated (use ``openid_backends``): a ``Store`` for ``url``, or None when the
    scheme is not this plugin's. Still consulted after the ``openid_backends`` records."""


@hookspec(warn_on_impl=DeprecationWarning(_OLD_BACKEND_HOOK.format("openid_queue_schemes")))
def openid_queue_schemes() -> Iterable[str]:
    """Deprecated (use ``openid_backends``): URL schemes whose queues this plugin makes."""


@hookspec(
    firstresult=True,
    warn_on_impl=DeprecationWarning(_OLD_BACKEND_HOOK.format("openid_make_queue")),
)
def openid_make_queue(url: str, options: StoreOptions) -> Queue | None:
    """Deprecated (use ``openid_backends``): a ``Queue`` for ``url``, or None when the
    scheme is not this plugin's. Still consulted after the ``openid_backends`` records."""


# -- time ----------------------------------------------------------------------------------


@hookspec(firstresult=True)
def openid_clock() -> Clock | None:
    """The clock for expiry, nonce and skew checks. The built-in system clock is ``trylast``;
    a plugin returning a clock overrides it (tests, a trusted time service)."""


# -- attribute extensions ------------------------------------------------------------------


@hookspec
def openid_extension_request_args(
    request: ExtensionRequest,
) -> ExtensionArgs | Iterable[ExtensionArgs] | None:
    """Arguments to add to an outgoing authentication request.

    ``request.extensions`` holds the objects the site passed to ``begin(extensions=...)``;
    contribute for the ones this plugin understands (or unconditionally, for a site-wide
    extension). Namespace aliases are assigned by the core, so extensions never collide.
    """


@hookspec
def openid_extension_response(response: ExtensionResponse) -> Mapping[str, Any] | None:
    """Parse this plugin's part of a verified positive assertion.

    ``response.signed_args(namespace)`` gives only the *signed* arguments of a namespace;
    unsigned ones are never visible (the unsigned-attribute attack). Return a mapping
    ``{name: value}`` merged into ``result.extensions`` (e.g. ``{"sreg": {...}}``). Raise a
    ``PolicyError`` to reject the assertion (e.g. PAPE max_auth_age exceeded).
    """


# -- provider profiles ---------------------------------------------------------------------


@hookspec
def openid_providers() -> Iterable[ProviderProfile]:
    """The OpenID providers this plugin offers by name, one ``ProviderProfile`` each.

    ``rp.begin(provider=profile.name, ...)`` starts directed identity at
    ``profile.op_identifier``, pins ``profile.op_endpoints`` and checks claimed identifiers
    against ``profile.claimed_id_pattern``. The core asks once per ``RelyingParty``. When
    two plugins offer one name, the one pluggy calls first wins (registered later, or
    ``tryfirst``), so a plugin can replace a built-in profile (a test pointing ``steam`` at
    a local OP, a site with a private mirror).
    """


# -- discovery and HTTP --------------------------------------------------------------------


@hookspec
def openid_check_fetch_url(url: str, addresses: list[str], settings: FetchSettings) -> None:
    """Inspect every URL before it is fetched (redirect targets included); raise
    ``FetchRefusedError`` to refuse it. ``addresses`` are the IPs the host resolves to."""


@hookspec(firstresult=True)
def openid_resolve_xri(xri: str, settings: FetchSettings) -> list[Endpoint] | None:
    """Resolve an XRI (``=name``, ``@org``) to OpenID endpoints; None when not handled.

    No resolver is built in (the public proxy is gone); without one, XRIs are refused.
    """


# -- background associations ---------------------------------------------------------------


@hookspec
def openid_association_event(event: str, server_url: str, details: Mapping[str, Any]) -> None:
    """Observe the association lifecycle: ``"queued"``, ``"made"``, ``"failed"``,
    ``"refused"``, ``"skipped"``; ``details`` carries timings and reasons (metrics, logs)."""


# -- command line --------------------------------------------------------------------------


@hookspec
def openid_cli_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``openid-plugins`` subcommands (e.g. ``db upgrade`` from the SQL plugin).

    Add a parser with ``subparsers.add_parser(...)`` and ``set_defaults(func=callable)``;
    the callable receives the parsed ``argparse.Namespace`` and returns an exit status.
    """
