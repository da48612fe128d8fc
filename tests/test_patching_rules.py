"""Patches in this suite fail loudly when their target moves (the rule in conftest.py).

`monkeypatch.setattr(module, "name", value)` raises when `module.name` does not exist, so
a test that patches a global that was renamed or moved fails instead of patching nothing
and passing vacuously. Three ways around that are refused here, by reading the tests'
source: `raising=False` on `setattr`/`delattr`, `create=True` on `unittest.mock.patch*`,
and assigning to (or `setattr` on) a viewfinder module directly, which is also never
undone after the test.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).parent


def _constant(node: ast.expr | None, value: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _viewfinder_modules(tree: ast.Module) -> dict[str, str]:
    """Local names bound to viewfinder modules by the file's imports: {local: module}."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "viewfinder":
                    local = alias.asname or alias.name.split(".")[0]
                    bound[local] = alias.name if alias.asname else "viewfinder"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("viewfinder"):
            for alias in node.names:
                if _is_module(f"{node.module}.{alias.name}"):
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _module_of(node: ast.expr, bound: dict[str, str]) -> str | None:
    """The viewfinder module `node` names (`images`, `viewfinder.engine.cache`), else None."""
    dotted = _dotted(node)
    if dotted is None:
        return None
    head, _, rest = dotted.partition(".")
    if head not in bound:
        return None
    name = f"{bound[head]}.{rest}" if rest else bound[head]
    return name if _is_module(name) else None


def patching_problems(source: str, filename: str = "<test>") -> Iterator[str]:
    """Every patch in `source` that could silently miss a moved target."""
    tree = ast.parse(source, filename)
    bound = _viewfinder_modules(tree)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            loose = _constant(keywords.get("raising"), False)
            if isinstance(func, ast.Attribute) and name in {"setattr", "delattr"} and loose:
                yield f"{where}: {name}(..., raising=False) patches nothing if the target moved"
            if name in {"patch", "object", "multiple"} and _constant(keywords.get("create"), True):
                yield f"{where}: patch(..., create=True) creates a target that moved"
            if isinstance(func, ast.Name) and name == "setattr" and node.args:
                module = _module_of(node.args[0], bound)
                if module is not None:
                    yield f"{where}: setattr on {module}: use monkeypatch.setattr"
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute):
                module = _module_of(target.value, bound)
                if module is not None:
                    yield f"{where}: assignment to {module}.{target.attr}: use monkeypatch.setattr"


def test_no_test_patches_a_target_that_may_have_moved() -> None:
    problems = [
        problem
        for path in sorted(TESTS.rglob("*.py"))
        for problem in patching_problems(path.read_text(encoding="utf-8"), path.name)
    ]
    assert problems == []


def test_the_check_sees_each_way_around_the_rule() -> None:
    source = """
import viewfinder.engine.cache
from unittest import mock
from viewfinder.prepare import decode as images
from viewfinder.prepare import prepare_image

def test(monkeypatch):
    monkeypatch.setattr(images, "_BAND_PIXELS", 1, raising=False)
    monkeypatch.delattr("viewfinder.prepare.decode.Image", raising=False)
    mock.patch("viewfinder.prepare.decode.gone", create=True)
    mock.patch.object(images, "gone", create=True)
    images._BAND_PIXELS = 1
    viewfinder.engine.cache.HEAL_LOCK_TIMEOUT = 0
    setattr(images, "_BAND_PIXELS", 1)
    prepare_image.cache = None  # a function, not a module: allowed
    monkeypatch.setattr(images, "_BAND_PIXELS", 1)  # the rule: allowed
    monkeypatch.delenv("HOME", raising=False)  # not a module global: allowed
"""
    flagged = sorted(int(problem.split(":")[1]) for problem in patching_problems(source))
    assert flagged == [8, 9, 10, 11, 12, 13, 14]
