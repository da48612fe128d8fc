"""Import rules, read from the source: no `_private` name crosses a module boundary.

A name that starts with one underscore is private to where it is defined: a `_name` in a
module is the module's own, and a `_module` in a package is that package's own (its
modules and subpackages may import it). The rule holds for dependencies too, so their
internals are reached only from the one module that owns each workaround (`ALLOWED`);
ruff's TID251 and SLF001 (pyproject.toml) name the same modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("viewfinder", "benchmarks", "examples")

ALLOWED: dict[tuple[str, str], str] = {
    ("viewfinder.engine._openai", "openai._base_client.AsyncHttpxClientWrapper"): (
        "the only way to tell openai's own pool from a caller's http_client"
    ),
    ("viewfinder.prepare._httpx2", "httpx2._utils.get_environment_proxies"): (
        "httpx2 reads proxy variables publicly only for a client's own transport"
    ),
}
"""(importing module, imported name) -> why no public API will do."""

PENDING: dict[tuple[str, str], str] = {}
"""Violations another part of issue 11 removes; delete each entry when it is gone."""


def _module_name(path: Path) -> tuple[str, str]:
    """The dotted name of the module at `path` and of the package it is in."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        name = ".".join(parts)
        return name, name
    name = ".".join(parts)
    return name, name.rpartition(".")[0]


def _imports(tree: ast.AST, package: str) -> Iterator[tuple[int, str]]:
    """Every imported dotted name (`from a.b import c` gives `a.b.c`), relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{source}.{alias.name}"


def private_owner(name: str) -> str | None:
    """Where the first `_private` part of `name` belongs (`a.b._c.d` -> `a.b`), if any."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def violations() -> list[tuple[str, int, str]]:
    """(module, line, imported name) of every import of a `_private` name from outside."""
    found = []
    for top in CHECKED:
        for path in sorted((ROOT / top).rglob("*.py")):
            module, package = _module_name(path)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, name in _imports(tree, package):
                owner = private_owner(name)
                if owner is None or module == owner or module.startswith(f"{owner}."):
                    continue
                found.append((module, line, name))
    return found


def test_no_private_import_crosses_a_module_boundary() -> None:
    bad = [
        f"{module}:{line} imports {name}"
        for module, line, name in violations()
        if (module, name) not in ALLOWED and (module, name) not in PENDING
    ]
    assert bad == [], "give these names a public home:\n" + "\n".join(bad)


def test_only_the_adapter_imports_instructor() -> None:
    importers = {
        module
        for top in CHECKED
        for path in sorted((ROOT / top).rglob("*.py"))
        for module, package in [_module_name(path)]
        for _, name in _imports(ast.parse(path.read_text(encoding="utf-8")), package)
        if name == "instructor" or name.startswith("instructor.")
    }
    assert importers == {"viewfinder.engine._instructor"}


@pytest.mark.parametrize(
    ("module", "name", "allowed"),
    [
        ("viewfinder.batch.provider_api", "viewfinder.engine.engine._Tally", False),
        ("viewfinder.batch.provider_api", "viewfinder.engine._instructor.request_body", False),
        ("viewfinder.engine.engine", "viewfinder.engine._instructor.request_body", True),
        ("viewfinder.engine", "viewfinder.engine._instructor", True),
        ("viewfinder.azure.aio", "viewfinder.azure._client.AsyncClient", True),
        ("viewfinder.batch.online", "openai._base_client.AsyncHttpxClientWrapper", False),
        ("viewfinder.engine.engine", "viewfinder.engine.engine._helper", True),
        ("viewfinder.cli", "viewfinder.__version__", True),
    ],
)
def test_the_rule(module: str, name: str, allowed: bool) -> None:
    owner = private_owner(name)
    ok = owner is None or module == owner or module.startswith(f"{owner}.")
    assert ok is allowed


def test_relative_imports_are_resolved() -> None:
    tree = ast.parse("from ._client import X\nfrom .. import errors\n")
    assert [name for _, name in _imports(tree, "viewfinder.azure")] == [
        "viewfinder.azure._client.X",
        "viewfinder.errors",
    ]


def test_allowed_and_pending_entries_are_real_imports() -> None:
    """An entry the code no longer needs is deleted, so the lists stay true."""
    seen = {(module, name) for module, _, name in violations()}
    stale = sorted(key for key in ALLOWED if key not in seen)
    assert stale == []
