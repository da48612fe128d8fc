"""What the README says about installing: one version, and extras that say what is wrong.

- `viewfinder.__version__` and `viewfinder --version` are the installed metadata's version
  (pyproject.toml is the one place it is written).
- A missing optional package is "not installed: pip install 'viewfinder[<extra>]'"; one
  that is installed but fails to import (no build for this Python, a missing system
  library) says that, with its own reason, instead of sending the user to install an
  extra they have.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import viewfinder as vf
from viewfinder.cli import app
from viewfinder.errors import import_failure

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_version_is_the_installed_metadata() -> None:
    assert vf.__version__ == metadata.version("viewfinder")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"viewfinder {metadata.version('viewfinder')}\n"


def test_a_missing_package_is_told_to_install_the_extra() -> None:
    missing = ModuleNotFoundError("No module named 'pyarrow'", name="pyarrow")
    assert import_failure("parquet", missing) == "not installed: pip install 'viewfinder[parquet]'"


def test_an_installed_package_that_fails_to_import_is_not_told_to_install_it() -> None:
    broken = ImportError("libGL.so.1: cannot open shared object file", name="cv2")
    assert import_failure("local", broken) == (
        f"installed but failed to import on Python {PYTHON}: "
        "libGL.so.1: cannot open shared object file"
    )


def test_the_local_engine_says_opencv_is_installed_but_broken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A `cv2` that is there but raises on import (as OpenCV does without libGL, or two
    OpenCV distributions overwriting each other) is reported as such, not as missing."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "cv2.py").write_text(
        'raise ImportError("libGL.so.1: cannot open shared object file", name="cv2")\n',
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(shadow))
    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    monkeypatch.delitem(sys.modules, "viewfinder.local.people", raising=False)
    image = tmp_path / "square.png"
    Image.new("RGB", (300, 200), (20, 20, 20)).save(image)

    result = vf.ImageAnalyzer(engine="local").analyze(image, ["people"])

    assert result.people is None and result.unserved is not None
    assert result.unserved["people"] == (
        f"needs cv2, which is installed but failed to import on Python {PYTHON}: "
        "libGL.so.1: cannot open shared object file"
    )
