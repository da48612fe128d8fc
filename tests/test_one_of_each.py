"""One of each (issue 11): one decoder, one redactor, one URL test, one suffix list.

These tests read the package's source: a second copy of a rule (a decoder, a URL test,
a suffix list) is what they catch, whatever it is called.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def _string_constants(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def test_one_image_suffix_list() -> None:
    holders = sorted(
        name for name, tree in modules() if {".jpg", ".tiff"} <= set(_string_constants(tree))
    )
    assert holders == ["prepare/inputs.py"]


def test_one_is_it_a_url_test() -> None:
    holders = sorted(
        name
        for name, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Tuple)
        and {"http://", "https://"} <= {getattr(e, "value", None) for e in node.elts}
    )
    assert holders == []  # `viewfinder.prepare.inputs.is_url` reads the scheme instead


def test_image_suffixes_name_exactly_the_accepted_formats() -> None:
    from PIL import Image

    from viewfinder.prepare.decode import DEFAULT_LIMITS, IMAGE_SUFFIXES

    registered = Image.registered_extensions()
    assert {registered[suffix] for suffix in IMAGE_SUFFIXES} == DEFAULT_LIMITS.formats


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("http://example.com/a.png", True),
        ("HTTPS://example.com/a.png", True),
        ("https:example.com", True),  # a URL without a host: refused when fetched
        ("ftp://example.com/a.png", False),
        ("c:\\photos\\a.png", False),  # a Windows drive, not a scheme
        ("photos/http://a.png", False),
        ("a.png", False),
    ],
)
def test_is_url(source: str, expected: bool) -> None:
    from viewfinder.prepare.load import is_url

    assert is_url(source) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.JPG", True), ("dir/b.tiff", True), (Path("c.webp"), True), ("d.txt", False), ("e", False)],
)
def test_has_image_suffix(name: str | Path, expected: bool) -> None:
    from viewfinder.prepare.decode import has_image_suffix

    assert has_image_suffix(name) is expected
