"""The package's shape, pinned: `ARCHITECTURE.md` is the map, and these tests keep it true.

- the package root holds four modules and folders;
- `ARCHITECTURE.md` names every folder of the package, and no folder that is gone;
- each folder imports only what `ARCHITECTURE.md` says it may (`ALLOWED`, below, is the
  same table: change both together);
- `viewfinder.__all__` both ways: every exported name exists, and every public name of
  the public modules is exported or listed here as deliberately not exported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import viewfinder as vf
from viewfinder import analyzers, errors, schemas

PACKAGE = Path(vf.__file__).parent
REPOSITORY = PACKAGE.parent
ROOT_MODULES = {"__init__.py", "__main__.py", "errors.py", "draw.py"}

ALLOWED: dict[str, set[str]] = {
    # the root's own modules, then each folder: what it may import from the package
    "__init__": {
        "analyzers",
        "build",
        "draw",
        "embed",
        "engine",
        "errors",
        "prepare",
        "schemas",
    },
    "__main__": {"cli"},
    "errors": {"schemas"},
    "draw": {"errors", "prepare", "schemas"},
    "schemas": {"errors", "compat"},  # compat: only lazily, for `to_azure_json()`
    "prepare": {"errors"},
    "build": {"errors", "schemas"},
    "finish": {"errors", "schemas"},
    "engine": {"errors", "schemas", "prepare", "cost"},
    "embed": {"errors", "schemas", "prepare", "engine", "cost"},
    "cost": {"errors", "schemas", "prepare", "engine", "finish", "analyzers"},
    "local": {"errors", "schemas", "prepare", "finish", "analyzers"},
    "analyzers": {
        "errors",
        "schemas",
        "prepare",
        "build",
        "engine",
        "finish",
        "local",
        "batch",
        "cost",
    },
    "batch": {"errors", "schemas", "prepare", "build", "engine", "finish", "cost", "analyzers"},
    "compat": {"errors", "schemas", "prepare", "build", "engine", "analyzers"},
    "azure": {"errors", "schemas", "build", "compat", "analyzers"},
    "evaluate": {"errors", "schemas", "prepare", "compat", "cost", "analyzers", "batch", "draw"},
    # batch: its record is what exports read; draw: a result beside its drawn image
    "export": {"errors", "schemas", "batch", "draw"},
    "testing": {"errors", "schemas", "prepare", "engine", "analyzers"},
    "cli": {
        "errors",
        "schemas",
        "prepare",
        "build",
        "engine",
        "finish",
        "analyzers",
        "batch",
        "cost",
        "compat",
        "embed",
        "evaluate",
        "export",
        "draw",
        "__init__",
    },
}
"""Importer (a root module or a folder) -> the parts of the package it may import."""

NOT_EXPORTED = {
    "BaseAnalyzer": "the shared base of Analyzer and ImageAnalyzer; users subclass those",
    "KEPT_RESPONSE_HEADERS": "a detail of ProviderError.headers, documented there",
    "import_failure": "the wording of viewfinder's own optional-dependency errors",
}
"""Public names of the public modules that `viewfinder` deliberately does not export."""


def _part(module: str) -> str:
    """`viewfinder.engine.cache` -> `engine`; `viewfinder.errors` -> `errors`;
    `viewfinder` (its `__init__`) -> `__init__`."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def _module_of(path: Path) -> str:
    relative = path.relative_to(REPOSITORY).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The nodes inside `if TYPE_CHECKING:` blocks: type-only imports are no dependency."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skipped.update(ast.walk(inner))
    return skipped


def _imports(path: Path) -> set[str]:
    """The `viewfinder...` modules (or `viewfinder.<name>` attributes) `path` imports at
    run time (anywhere but under `if TYPE_CHECKING:`)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("viewfinder."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "viewfinder":
                found.update(f"viewfinder.{a.name}" for a in node.names)
            elif node.module.startswith("viewfinder."):
                found.add(node.module)
    return found


def test_the_root_holds_four_modules_and_folders() -> None:
    assert {p.name for p in PACKAGE.glob("*.py")} == ROOT_MODULES


def _folders() -> set[str]:
    return {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}


def test_architecture_md_names_every_folder_and_only_those() -> None:
    text = (REPOSITORY / "ARCHITECTURE.md").read_text(encoding="utf-8")
    tree = text.split("```", 2)[1]  # the first code block is the tree
    named = set(re.findall(r"^  ([a-z_]+)/", tree, re.MULTILINE))
    assert named == _folders()
    for module in ROOT_MODULES:
        assert module in tree, module


def test_every_folder_has_an_import_rule() -> None:
    packages = {f for f in _folders() if (PACKAGE / f / "__init__.py").exists()}
    assert packages <= set(ALLOWED), packages - set(ALLOWED)


@pytest.mark.parametrize(
    "path",
    sorted(PACKAGE.rglob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_each_part_imports_only_what_architecture_md_allows(path: Path) -> None:
    importer = _part(_module_of(path))
    if importer == "__version__":
        return
    allowed = ALLOWED[importer] | {importer}
    used = {_part(name) for name in _imports(path)} - {"__version__"}
    assert used <= allowed, f"{importer} may not import {sorted(used - allowed)}"


def test_every_exported_name_exists() -> None:
    missing = [name for name in vf.__all__ if not hasattr(vf, name)]
    assert missing == []


@pytest.mark.parametrize("module", [errors, schemas, analyzers], ids=lambda m: m.__name__)
def test_every_public_name_of_the_public_modules_is_exported(module: object) -> None:
    public = set(getattr(module, "__all__", ()))
    assert public, "the public modules declare __all__"
    left_out = public - set(vf.__all__) - set(NOT_EXPORTED)
    assert left_out == set(), "export these from viewfinder, or list them in NOT_EXPORTED"
    for name in public:
        assert getattr(module, name) is not None, name


def test_what_viewfinder_defines_itself_is_exported() -> None:
    own = {
        name
        for name, value in vars(vf).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", None) == "viewfinder"
    }
    assert own <= set(vf.__all__), own - set(vf.__all__)
