"""The layering CONTRIBUTING describes, checked on the import graph of the source.

Module-level imports only (``import`` inside a function is a deliberate lazy import, and
``if TYPE_CHECKING:`` blocks are annotations): no cycles in the library, no ``protocol/``
module reaching up to the settings or the plugin engine, and no built-in plugin importing
another plugin.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from openid_plugins.manager import DEFAULT_PLUGINS

PACKAGE = Path(__file__).resolve().parent.parent / "openid_plugins"
#: The built-in plugins (and the opt-in SREG<->AX mapping plugin).
PLUGIN_MODULES = set(DEFAULT_PLUGINS.values()) | {"openid_plugins.extensions.mapping"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports when it is imported."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found.add(module)
                for alias in node.names:  # ``from . import x`` may name a submodule
                    found.add(f"{module}.{alias.name}")
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in _top_level_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


GRAPH = _graph()


def test_the_library_has_no_import_cycle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


@pytest.mark.parametrize(
    "module", sorted(m for m in GRAPH if m.startswith("openid_plugins.protocol"))
)
def test_protocol_modules_know_neither_settings_nor_the_plugin_engine(module):
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    imported = _top_level_imports(path)
    for forbidden in ("pluggy", "openid_plugins.config", "openid_plugins.manager"):
        assert forbidden not in imported, f"{module} imports {forbidden}"


@pytest.mark.parametrize("plugin", sorted(PLUGIN_MODULES))
def test_no_plugin_imports_another_plugin(plugin):
    """Plugins talk through hooks and the core's neutral modules (fileutil, backends,
    extensions.base, extensions.axschema), so each can be blocked or replaced alone."""
    imported = sorted(GRAPH[plugin] & (PLUGIN_MODULES - {plugin}))
    assert imported == [], f"{plugin} imports the plugins {imported}"


def test_the_relying_party_only_wires():
    """Section 11 lives in protocol/verify.py; relying_party.py stays orchestration."""
    lines = (PACKAGE / "relying_party.py").read_text().count("\n")
    assert lines < 420, f"relying_party.py has {lines} lines: move rules to their module"
    source = (PACKAGE / "relying_party.py").read_text()
    for rule in ("check_signature", "use_nonce", "check_return_to", "parse_nonce"):
        assert not re.search(rf"\b{rule}\b", source), f"relying_party.py applies {rule} itself"
