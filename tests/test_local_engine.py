"""The engine switch: `engine="model" | "local" | "auto"`, `fallback="local"`, `--engine`.

Model-side answers come from `viewfinder.testing.simulator` on 127.0.0.1, a scripted server
(NOT a model). Tests that run the local detectors skip without the `local` extra.
"""

from __future__ import annotations

import io
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from endpoint_env import clear_endpoint_env
from PIL import Image, ImageDraw
from typer.testing import CliRunner

import viewfinder as vf
import viewfinder.analyzers.base as base_module
from viewfinder.cli import app
from viewfinder.local.engine import MODEL_ONLY_FEATURES
from viewfinder.testing.simulator import Reply, Simulator

PEOPLE = Path(__file__).parent / "assets" / "people"
MODEL_ONLY = {feature.value for feature in MODEL_ONLY_FEATURES if feature in vf.ALL_FEATURES}
ONE_PERSON: dict[str, Any] = {"people": [{"box": [0, 0, 500, 1000], "conf": 90}]}
NO_RETRY = vf.RetryPolicy(max_attempts=1)


@pytest.fixture(autouse=True)
def _nothing_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh machine: no endpoint in the environment."""
    clear_endpoint_env(monkeypatch)


@pytest.fixture
def local_extra() -> None:
    pytest.importorskip("cv2")
    pytest.importorskip("numpy")


@pytest.fixture
def no_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OCR engine is not installed (whatever this checkout has)."""
    monkeypatch.setitem(sys.modules, "viewfinder.local.read", None)


@pytest.fixture
def square(tmp_path: Path) -> Path:
    """A bright square off-centre on a dark 300x200 background: nobody in it."""
    path = tmp_path / "square.png"
    picture = Image.new("RGB", (300, 200), (20, 20, 20))
    ImageDraw.Draw(picture).rectangle([200, 40, 250, 90], fill="white")
    picture.save(path)
    return path


@pytest.fixture
def model_analyzer(sim: Simulator, tmp_path: Path) -> Iterator[Any]:
    made: list[vf.ImageAnalyzer] = []

    def make(**options: Any) -> vf.ImageAnalyzer:
        settings: dict[str, Any] = {"base_url": sim.base_url, "cache": False, "retry": NO_RETRY}
        analyzer = vf.ImageAnalyzer(**(settings | options))
        made.append(analyzer)
        return analyzer

    yield make
    for analyzer in made:
        analyzer.close()


# --- choosing the engine ------------------------------------------------------------------


def test_model_is_the_default_and_fails_loudly_without_an_endpoint() -> None:
    with pytest.raises(vf.ConfigurationError, match="OPENAI_API_KEY"):
        vf.ImageAnalyzer()
    with pytest.raises(vf.ConfigurationError, match="OPENAI_API_KEY"):
        vf.ImageAnalyzer(engine="model")


def test_local_never_resolves_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_: object) -> None:
        raise AssertionError("resolve_provider called")

    monkeypatch.setattr(base_module, "resolve_provider", refuse)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused")

    analyzer = vf.ImageAnalyzer(engine="local", cache=True)

    assert analyzer.engine_name == "local" and not analyzer.has_endpoint
    assert analyzer.model_version.startswith("local+")
    with pytest.raises(vf.ConfigurationError, match="local engine"):
        _ = analyzer.provider
    with pytest.raises(vf.ConfigurationError, match="analyze_many"):
        analyzer.analyze_many([b"x"])
    analyzer.close()


def test_auto_with_a_half_configuration_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "a-key-without-its-endpoint")

    with pytest.raises(vf.ConfigurationError):
        vf.ImageAnalyzer(engine="auto")


def test_unknown_engine_or_fallback_is_refused() -> None:
    with pytest.raises(vf.InvalidOptionError, match="engine"):
        vf.ImageAnalyzer(engine="gpu")  # type: ignore[arg-type]
    with pytest.raises(vf.InvalidOptionError, match="fallback"):
        vf.ImageAnalyzer(engine="local", fallback="model")  # type: ignore[arg-type]


# --- the local engine's results -------------------------------------------------------


@pytest.mark.usefixtures("local_extra", "no_read")
def test_auto_with_nothing_configured_serves_locally_and_says_what_it_did_not() -> None:
    analyzer = vf.ImageAnalyzer(engine="auto")
    assert analyzer.engine_name == "local"

    result = analyzer.analyze(
        PEOPLE / "camera.png", vf.ALL_FEATURES, smart_crops_aspect_ratios=[1.0, 0.75]
    )

    assert result.model_version == analyzer.model_version
    assert result.model_version.startswith("local+")
    assert result.metadata == vf.ImageMetadata(width=512, height=512)
    assert result.unserved is not None
    assert set(result.unserved) == MODEL_ONLY | {"read"}
    assert all("needs a model endpoint" in result.unserved[f] for f in MODEL_ONLY)
    assert "pip install 'viewfinder[local]'" in result.unserved["read"]
    for name in result.unserved:
        assert getattr(result, name) is None
    assert result.people is not None and len(result.people) == 1
    assert [crop.aspect_ratio for crop in result.smart_crops or []] == [1.0, 0.75]
    assert result.usage == vf.Usage()


@pytest.mark.usefixtures("local_extra")
def test_found_nothing_is_an_empty_list_not_unserved(square: Path) -> None:
    result = vf.ImageAnalyzer(engine="local").analyze(square, ["people", "caption"])

    assert result.people == []
    assert result.unserved is not None and set(result.unserved) == {"caption"}
    assert "engine='local'" in result.unserved["caption"]


@pytest.mark.usefixtures("local_extra")
def test_local_geometry_is_in_pixels_of_the_image_as_a_viewer_shows_it(square: Path) -> None:
    stored = Image.open(square)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 300x200, shown rotated a quarter turn: 200x300
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", exif=exif)

    result = vf.ImageAnalyzer(engine="local").analyze(
        buffer.getvalue(), ["smart_crops", "people"], smart_crops_aspect_ratios=[0.75]
    )

    assert result.metadata == vf.ImageMetadata(width=200, height=300)
    (crop,) = result.smart_crops or []
    assert crop.box.x + crop.box.width <= 200 and crop.box.y + crop.box.height <= 300
    assert crop.box.width == 200 and crop.box.height == 267


def test_without_opencv_people_is_unserved_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, square: Path
) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    monkeypatch.delitem(sys.modules, "viewfinder.local.people", raising=False)

    analyzer = vf.ImageAnalyzer(engine="local")
    result = analyzer.analyze(square, ["people", "caption"])

    assert result.people is None and result.caption is None
    assert result.unserved is not None
    assert result.unserved["people"] == (
        "needs cv2, which is not installed: pip install 'viewfinder[local]'"
    )
    assert result.metadata == vf.ImageMetadata(width=300, height=200)


@pytest.mark.usefixtures("local_extra")
def test_read_comes_from_the_ocr_engine_when_it_is_installed(
    monkeypatch: pytest.MonkeyPatch, square: Path
) -> None:
    fake = types.ModuleType("viewfinder.local.read")
    seen: list[tuple[int, int]] = []

    def read_text(image: Image.Image) -> vf.ReadResult:
        seen.append(image.size)
        return vf.ReadResult(blocks=[])

    fake.read_text = read_text  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "viewfinder.local.read", fake)

    result = vf.ImageAnalyzer(engine="local").analyze(square, ["read"])

    assert result.read == vf.ReadResult(blocks=[])
    assert result.unserved == {}
    assert seen == [(300, 200)]  # full resolution, not the model's copy


@pytest.mark.usefixtures("local_extra", "no_read")
async def test_aanalyze_runs_the_local_engine(square: Path) -> None:
    result = await vf.ImageAnalyzer(engine="local").aanalyze(square, ["smart_crops", "read"])

    assert result.smart_crops is not None and result.read is None
    assert result.unserved is not None and set(result.unserved) == {"read"}


# --- auto with an endpoint, and the fallback ----------------------------------------------


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_auto_with_an_endpoint_uses_the_model(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, square: Path, where: str
) -> None:
    options: dict[str, Any] = {"engine": "auto", "cache": False, "retry": NO_RETRY}
    if where == "argument":
        options["base_url"] = sim.base_url
    else:
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    sim.script(ONE_PERSON)

    with vf.ImageAnalyzer(**options) as analyzer:
        result = analyzer.analyze(square, ["people"])

    assert analyzer.engine_name == "model"
    assert result.unserved is None
    assert result.people == [
        vf.DetectedPerson(box=vf.BoundingBox(x=0, y=0, width=150, height=200), confidence=0.9)
    ]
    assert result.model_version.startswith("gpt-4.1-mini+")
    assert len(sim.requests) == 1


def test_a_server_error_raises_without_fallback(
    sim: Simulator, model_analyzer: Any, square: Path
) -> None:
    sim.script(Reply(status=500))

    with pytest.raises(vf.ServerError):
        model_analyzer().analyze(square, ["caption", "smart_crops"])


@pytest.mark.usefixtures("local_extra")
def test_fallback_local_answers_a_server_error_from_the_local_engine(
    sim: Simulator, model_analyzer: Any, square: Path
) -> None:
    sim.script(Reply(status=500))

    result = model_analyzer(fallback="local").analyze(square, ["caption", "smart_crops"])

    assert result.model_version.startswith("local+")
    assert result.caption is None and result.smart_crops is not None
    assert result.unserved is not None and set(result.unserved) == {"caption"}
    assert result.unserved["caption"].startswith("fell back to the local engine")
    assert "ServerError, status 500" in result.unserved["caption"]
    assert result.usage.requests == 1
    assert len(sim.requests) == 1


@pytest.mark.usefixtures("local_extra")
async def test_async_fallback_after_rate_limits(sim: Simulator, square: Path) -> None:
    sim.script(Reply(status=429, headers={"retry-after-ms": "1"}))

    async with vf.ImageAnalyzer(
        base_url=sim.base_url, cache=False, retry=NO_RETRY, fallback="local"
    ) as analyzer:
        result = await analyzer.aanalyze(square, ["tags", "smart_crops"])

    assert result.unserved is not None
    assert "RateLimitError, status 429" in result.unserved["tags"]


def test_fallback_does_not_hide_a_rejected_key(
    sim: Simulator, model_analyzer: Any, square: Path
) -> None:
    sim.script(Reply(status=401))

    with pytest.raises(vf.AuthenticationError):
        model_analyzer(fallback="local").analyze(square, ["caption"])


# --- the command line --------------------------------------------------------------------


@pytest.mark.usefixtures("local_extra", "no_read")
def test_cli_auto_on_a_fresh_machine_prints_a_local_result(square: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})

    human = runner.invoke(app, ["analyze", str(square), "--no-cache", "-f", "caption,people"])
    as_json = runner.invoke(
        app, ["analyze", str(square), "--no-cache", "--json", "-f", "caption,tags,smart_crops"]
    )

    assert human.exit_code == 0, human.output
    assert "local+" in human.stdout and "people: none" in human.stdout
    assert "not served: caption: needs a model endpoint" in human.stdout
    assert "no model endpoint is configured" in human.stderr
    assert "not served: caption: needs a model endpoint" in human.stderr
    assert as_json.exit_code == 0, as_json.output
    record = json.loads(as_json.stdout)["result"]
    assert set(record["unserved"]) == {"caption", "tags"}
    assert record["caption"] is None and record["smart_crops"]
    assert "not served: caption, tags: needs a model endpoint" in as_json.stderr

    # Nothing that was asked for could be served: exit 3, not a silent success.
    nothing = runner.invoke(app, ["analyze", str(square), "--no-cache", "-f", "caption"])
    assert nothing.exit_code == 3, nothing.output
    assert "not served: caption: needs a model endpoint" in nothing.stderr


def test_cli_engine_model_on_a_fresh_machine_exits_2(square: Path) -> None:
    result = CliRunner().invoke(app, ["analyze", str(square), "--engine", "model"])

    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.stderr and result.stdout == ""
