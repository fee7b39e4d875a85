"""Every hook is documented and tested (datasette's ``test_plugin_hooks_are_documented`` and
``test_plugin_hooks_have_tests``), and the hooks without a home elsewhere are tested here.

A test exercises a hook when its name starts with ``test_hook_`` and contains the hook's name;
the documentation is CONTRIBUTING.md's hook reference.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from openid_plugins import hookimpl, hookspecs
from openid_plugins.backends import open_queue, open_store, queue_schemes, store_schemes
from openid_plugins.cli import main
from openid_plugins.contracts import Backend, StoreOptions
from openid_plugins.errors import PluginError
from openid_plugins.extensions.base import ExtensionArgs
from openid_plugins.extensions.sreg import SREG_1_1_NS, SReg
from openid_plugins.manager import make_plugin_manager
from openid_plugins.queues.memory import MemoryQueue
from openid_plugins.relying_party import RelyingParty
from openid_plugins.stores.memory import MemoryStore
from openid_plugins.testing.provider import DevelopmentProvider

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(
    name
    for name in dir(hookspecs)
    if name.startswith("openid_") and callable(getattr(hookspecs, name))
)


def _test_names() -> list[str]:
    names = []
    for folder in [ROOT / "tests", *(ROOT / "plugins").glob("*/tests")]:
        for path in folder.rglob("test_*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef) and node.name.startswith("test_hook_"):
                    names.append(node.name)
    return names


def test_there_are_hooks():
    assert "openid_backends" in HOOKS and len(HOOKS) >= 10


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    text = (ROOT / "CONTRIBUTING.md").read_text()
    reference = text.split("## Hook reference", 1)[-1].split("\n## ", 1)[0]
    assert re.search(rf"`{hook}`", reference), (
        f"{hook} is missing from CONTRIBUTING's hook reference"
    )
    assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    names = [name for name in _test_names() if hook in name]
    assert names, f"no test named test_hook_...{hook}... exercises {hook}"


# -- hooks tested here ------------------------------------------------------------------------


def test_hook_openid_backends_resolves_by_scheme_and_a_later_plugin_wins():
    opened = []

    class KV:
        @hookimpl
        def openid_backends(self):
            def open_kv(url, options):
                opened.append(url)
                return MemoryStore(options)

            return [
                Backend(kind="store", schemes=("kv",), open=open_kv),
                Backend(kind="queue", schemes=("kv",), open=lambda u, o: MemoryQueue(o)),
            ]

    class Replacement:
        @hookimpl(tryfirst=True)
        def openid_backends(self):
            return [Backend(kind="store", schemes=("memory",), open=lambda u, o: _Marked(o))]

    pm = make_plugin_manager([KV(), Replacement()], load_entrypoints=False)
    assert "kv" in store_schemes(pm) and "kv" in queue_schemes(pm)
    with open_store(pm, "KV+driver://host/x", StoreOptions()) as store:
        assert isinstance(store, MemoryStore)
    assert opened == ["KV+driver://host/x"]
    with open_queue(pm, "kv://q", StoreOptions()) as queue:
        assert isinstance(queue, MemoryQueue)
    assert isinstance(open_store(pm, "memory://", StoreOptions()), _Marked)


class _Marked(MemoryStore):
    pass


def test_hook_openid_backends_refuses_a_record_that_is_not_a_backend():
    class Wrong:
        @hookimpl
        def openid_backends(self):
            return [("store", "x")]

    pm = make_plugin_manager([Wrong()], load_entrypoints=False)
    with pytest.raises(PluginError, match="not an openid_plugins.contracts.Backend"):
        store_schemes(pm)
    with pytest.raises(PluginError, match="kind"):
        Backend(kind="cache", schemes=("x",), open=MemoryStore)  # type: ignore[arg-type]


class _OldStyle:
    """A plugin written against the hooks before openid_backends."""

    @hookimpl
    def openid_store_schemes(self):
        return ["old"]

    @hookimpl
    def openid_make_store(self, url, options):
        return MemoryStore(options) if url.startswith("old:") else None

    @hookimpl
    def openid_queue_schemes(self):
        return ["old"]

    @hookimpl
    def openid_make_queue(self, url, options):
        return MemoryQueue(options) if url.startswith("old:") else None


def _old_style_manager():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pm = make_plugin_manager([_OldStyle()], load_entrypoints=False)
    deprecated = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    return pm, deprecated


def test_hook_openid_store_schemes_and_openid_make_store_deprecated_but_honoured():
    pm, deprecated = _old_style_manager()
    assert any("openid_make_store" in text for text in deprecated)
    assert any("openid_store_schemes" in text for text in deprecated)
    assert "old" in store_schemes(pm)
    assert isinstance(open_store(pm, "old://x", StoreOptions()), MemoryStore)


def test_hook_openid_queue_schemes_and_openid_make_queue_deprecated_but_honoured():
    pm, deprecated = _old_style_manager()
    assert any("openid_make_queue" in text for text in deprecated)
    assert any("openid_queue_schemes" in text for text in deprecated)
    assert "old" in queue_schemes(pm)
    assert isinstance(open_queue(pm, "old://x", StoreOptions()), MemoryQueue)


def test_hook_openid_extension_request_args_and_openid_extension_response(browser):
    """A site-wide extension: its arguments reach the OP under an alias the core picked, and
    its response hook sees only signed arguments of its namespace."""
    namespace = "http://example.com/ext/1.0"
    seen = []

    class SiteWide:
        @hookimpl
        def openid_extension_request_args(self, request):
            return ExtensionArgs(namespace=namespace, args={"want": "colour"}, alias="sreg")

        @hookimpl
        def openid_extension_response(self, response):
            seen.append(response.signed_args(namespace))
            return {"site": "seen"}

    with (
        DevelopmentProvider() as provider,
        RelyingParty(
            store="memory://",
            queue="memory://",
            plugins=[SiteWide()],
            association="stateless",
            **provider.rp_settings,
        ) as rp,
    ):
        session: dict = {}
        auth = rp.begin(
            provider.identity_url("alice"),
            "http://rp.example/finish",
            session=session,
            extensions=[SReg(optional=["email"])],
        )
        args = auth.message.fields
        aliases = {value: key[3:] for key, value in args.items() if key.startswith("ns.")}
        # Both asked for "sreg"; the core gave each namespace its own alias.
        assert aliases[namespace] != aliases[SREG_1_1_NS]
        assert args[f"{aliases[namespace]}.want"] == "colour"
        back = browser.visit_op(auth)
        result = rp.complete(_query(back), back, session=session)
    assert result.extensions["site"] == "seen"
    assert result.sreg["email"] == "alice@example.com"
    assert seen == [{}]  # the development OP echoes nothing of an unknown extension


def _query(url: str) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_hook_openid_cli_commands_adds_a_subcommand(monkeypatch):
    calls = []

    class Command:
        @hookimpl
        def openid_cli_commands(self, subparsers: argparse._SubParsersAction) -> None:
            parser = subparsers.add_parser("hello", help="say hello")
            parser.add_argument("name")
            parser.set_defaults(func=lambda args: calls.append(args.name) or 3)

    import openid_plugins.cli as cli

    monkeypatch.setattr(
        cli, "make_plugin_manager", lambda: make_plugin_manager([Command()], load_entrypoints=False)
    )
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["hello", "world"]) == 3
    assert calls == ["world"]


def test_a_misspelt_hook_is_an_error_naming_it():
    class Typo:
        @hookimpl
        def openid_stor_schemes(self):
            return ["x"]

    with pytest.raises(PluginError, match="openid_stor_schemes"):
        make_plugin_manager([Typo()], load_entrypoints=False)
    with pytest.raises(PluginError, match="openid_stor_schemes"):
        RelyingParty(store="memory://", plugins=[Typo()])


def test_a_hook_with_arguments_its_spec_lacks_is_an_error():
    class Wrong:
        @hookimpl
        def openid_clock(self, timezone):
            return None

    with pytest.raises(PluginError, match="timezone"):
        make_plugin_manager([Wrong()], load_entrypoints=False)


def test_an_optional_hook_of_a_plugins_own_is_allowed():
    class Own:
        @hookimpl(optionalhook=True)
        def openid_future_hook(self):
            return None

    make_plugin_manager([Own()], load_entrypoints=False)
