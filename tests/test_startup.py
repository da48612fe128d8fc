"""Start-up time, kept: `import viewfinder` does not import openai, instructor, Pillow
or httpx2.

openai was two thirds of `import viewfinder` (and of `viewfinder --help`); the analyzers
and the engine, which need it, load when first used, and the command modules import them
inside the commands (`viewfinder --help` and `viewfinder <command> --help` only declare
options). Pillow and httpx2 (with asyncio) load with the first image: `draw` and
`prepare_image` import the decoder and the loader when they run, and what only names an
input (limits, image suffixes, URLs) lives in `viewfinder.prepare.inputs`. Each check
runs in a fresh interpreter, since this test session has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("openai", "instructor", "PIL", "httpx2")


def _modules_after(code: str) -> list[str]:
    """Which of `HEAVY` a fresh interpreter has imported after running `code`."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_import_viewfinder_does_not_import_the_heavy_modules() -> None:
    assert _modules_after("import viewfinder") == []


def test_the_feature_names_and_errors_do_not_import_them_either() -> None:
    code = (
        "import viewfinder as vf\n"
        "vf.ALL_FEATURES, vf.ViewfinderError, vf.ImageAnalysisResult, vf.draw, vf.PreparedImage"
    )
    assert _modules_after(code) == []


def test_the_loader_loads_with_the_first_image() -> None:
    """`ImageInput` (a union naming `PIL.Image.Image`) is the one lazy export of the loader."""
    code = (
        "import viewfinder as vf\n"
        "from viewfinder.prepare.load import ImageInput\n"
        "assert vf.ImageInput is ImageInput"
    )
    assert _modules_after(code) == ["PIL", "httpx2"]


def test_the_lazy_exports_are_the_real_objects() -> None:
    code = (
        "import viewfinder as vf\n"
        "from viewfinder.analyzers.image_analysis import ImageAnalyzer\n"
        "assert vf.ImageAnalyzer is ImageAnalyzer\n"
        "assert 'ImageAnalyzer' in dir(vf)"
    )
    assert _modules_after(code) == list(HEAVY)


COMMANDS = ("analyze", "batch", "compare", "cost", "embed", "export", "merge", "serve")
"""Every sub-command of `viewfinder`: each one's `--help` stays light."""


@pytest.mark.parametrize("command", ["", *COMMANDS], ids=lambda c: c or "viewfinder")
def test_help_does_not_import_the_heavy_modules(command: str) -> None:
    """`viewfinder [command] --help`, run the way the console script runs it."""
    argv = ["viewfinder", *command.split(), "--help"]
    code = (
        "import sys\n"
        f"sys.argv = {argv!r}\n"
        "from viewfinder.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code"
    )
    assert _modules_after(code) == []


def test_the_command_list_is_complete() -> None:
    """A new sub-command joins `COMMANDS`, so its `--help` is checked too."""
    from viewfinder.cli import app

    names = {command.name for command in app.registered_commands}
    assert names == set(COMMANDS)
