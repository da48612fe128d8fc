"""One of each (issue 11): one decoder, one redactor.

These tests read the package's source: a second copy of a rule (a decoder) is what they
catch, whatever it is called.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "viewfinder"


def modules() -> Iterator[tuple[str, ast.Module]]:
    """`(path relative to the package, parsed module)` for every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def test_no_module_imports_a_private_name_of_the_prepare_stage() -> None:
    found = [
        f"{name}: from {node.module} import {alias.name}"
        for name, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("viewfinder.prepare")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert found == []


def test_only_the_decoder_opens_image_files() -> None:
    """`draw`, the local engine and the pixel budget decode through `prepare.decode`."""
    opening = sorted(
        name
        for name, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "open"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "Image"
    )
    assert set(opening) == {"prepare/decode.py"}
