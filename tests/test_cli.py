"""Tests for the `viewfinder` command line, against the scripted simulator on loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from endpoint_env import clear_endpoint_env
from PIL import Image
from typer.testing import CliRunner

from viewfinder import __version__
from viewfinder.cli import app
from viewfinder.cli.analyze import _draw_targets
from viewfinder.testing.simulator import Simulator

CAPTION_AND_OBJECTS: dict[str, Any] = {
    "caption": {"text": "a red square", "conf": 90},
    "objects": [{"name": "square", "conf": 80, "box": [0, 0, 500, 1000]}],
}


@pytest.fixture(autouse=True)
def _no_endpoint_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test passes on the command line configures the endpoint."""
    clear_endpoint_env(monkeypatch)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "square.png"
    Image.new("RGB", (200, 100), "red").save(path)
    return path


def analyze_args(sim: Simulator, *args: str) -> list[str]:
    return ["analyze", *args, "--base-url", sim.base_url, "--no-cache"]


def test_human_output_shows_caption_and_pixel_box(
    runner: CliRunner, sim: Simulator, image: Path
) -> None:
    sim.script(CAPTION_AND_OBJECTS)

    result = runner.invoke(app, analyze_args(sim, str(image), "-f", "caption,objects"))

    assert result.exit_code == 0, result.output
    assert str(image) in result.stdout
    assert "200x100" in result.stdout
    assert "a red square" in result.stdout
    assert re.search(r"square\s.*0\.80\s.*0, 0, 100, 100", result.stdout)
    assert "1 request" in result.stdout
    assert result.stderr == ""
    assert len(sim.requests) == 1


def test_json_lines_with_pixel_boxes_and_nothing_else(
    runner: CliRunner, sim: Simulator, image: Path, tmp_path: Path
) -> None:
    second = tmp_path / "second.png"
    Image.new("RGB", (200, 100), "blue").save(second)
    sim.script(CAPTION_AND_OBJECTS, CAPTION_AND_OBJECTS)

    result = runner.invoke(
        app,
        analyze_args(sim, str(image), str(second), "--json", "-f", "caption", "-f", "objects"),
    )

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [r["image"] for r in records] == [str(image), str(second)]
    for record in records:
        analysis = record["result"]
        assert analysis["metadata"] == {"width": 200, "height": 100}
        assert analysis["caption"]["text"] == "a red square"
        assert analysis["objects"][0]["box"] == {"x": 0, "y": 0, "width": 100, "height": 100}
        assert analysis["tags"] is None
        assert analysis["usage"]["requests"] == 1
    assert len(sim.requests) == 2


def test_azure_feature_spelling_is_accepted(runner: CliRunner, sim: Simulator, image: Path) -> None:
    sim.script(
        # compact: the first dense caption is the whole-image caption, no other regions
        {"caption": {"text": "a red square", "conf": 90}, "regions": []}
    )

    result = runner.invoke(
        app, analyze_args(sim, str(image), "--json", "-f", "denseCaptions,caption")
    )

    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["result"]["dense_captions"][0]["box"] == {
        "x": 0,
        "y": 0,
        "width": 200,
        "height": 100,
    }


def test_failed_image_is_reported_and_the_run_goes_on(
    runner: CliRunner, sim: Simulator, image: Path, tmp_path: Path
) -> None:
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is text, not a PNG")
    sim.script(CAPTION_AND_OBJECTS)

    result = runner.invoke(
        app, analyze_args(sim, str(image), str(not_an_image), "--json", "-f", "caption,objects")
    )

    assert result.exit_code == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["image"] == str(image)
    assert first["result"]["caption"]["text"] == "a red square"
    assert second["image"] == str(not_an_image)
    assert "result" not in second
    assert second["error"]["type"] == "ImageFormatError"
    assert str(not_an_image) in second["error"]["message"]
    assert len(sim.requests) == 1  # the bad file never reached the endpoint
    assert "Traceback" not in result.output


def test_failed_image_in_human_mode_goes_to_stderr(
    runner: CliRunner, sim: Simulator, tmp_path: Path
) -> None:
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is text, not a PNG")

    result = runner.invoke(app, analyze_args(sim, str(not_an_image)))

    assert result.exit_code == 1
    assert "ImageFormatError" in result.stderr
    assert "ImageFormatError" not in result.stdout
    assert "Traceback" not in result.output
    assert sim.requests == []


def test_url_is_redacted(runner: CliRunner, sim: Simulator) -> None:
    # Port 9 (discard) on loopback: nothing listens, so the fetch fails at once.
    url = "http://user:secret@127.0.0.1:9/photo.png?sig=SAS-TOKEN"

    result = runner.invoke(app, analyze_args(sim, url, "--json"))

    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["image"] == "http://127.0.0.1:9/photo.png"
    assert record["error"]["type"] == "ImageFetchError"
    assert "secret" not in result.output
    assert "SAS-TOKEN" not in result.output


def test_unknown_feature_is_a_usage_error(runner: CliRunner, sim: Simulator, image: Path) -> None:
    result = runner.invoke(app, analyze_args(sim, str(image), "-f", "caption,colour"))

    assert result.exit_code == 2
    assert "colour" in result.stderr
    assert result.stdout == ""
    assert sim.requests == []


def test_aspect_ratio_out_of_range_is_a_usage_error(
    runner: CliRunner, sim: Simulator, image: Path
) -> None:
    args = analyze_args(sim, str(image), "--smart-crops-aspect-ratios", "0.9,3")

    result = runner.invoke(app, args)

    assert result.exit_code == 2
    assert sim.requests == []


def test_nothing_configured_exits_2_and_says_what_to_set(runner: CliRunner, image: Path) -> None:
    # --engine model: the default (auto) would answer locally; tests/test_local_engine.py
    result = runner.invoke(app, ["analyze", str(image), "--no-cache", "--engine", "model"])

    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_api_key_is_never_printed(
    runner: CliRunner, sim: Simulator, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-key")
    sim.script(CAPTION_AND_OBJECTS)

    result = runner.invoke(app, analyze_args(sim, str(image), "-f", "caption,objects"))

    assert result.exit_code == 0, result.output
    assert "sk-very-secret-key" not in result.output
    assert sim.headers_seen[0]["authorization"] == "Bearer sk-very-secret-key"


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])

    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_draw_saves_the_annotated_image(
    runner: CliRunner, sim: Simulator, image: Path, tmp_path: Path
) -> None:
    sim.script(CAPTION_AND_OBJECTS)
    drawing = tmp_path / "drawn.png"
    result = runner.invoke(
        app, [*analyze_args(sim, str(image), "-f", "caption,objects"), "--draw", str(drawing)]
    )
    assert result.exit_code == 0, result.output
    with Image.open(drawing) as drawn, Image.open(image) as original:
        assert drawn.size == original.size
        assert drawn.convert("RGB").tobytes() != original.convert("RGB").tobytes()
    assert len(sim.requests) == 1


def test_draw_into_a_folder_names_each_drawing_after_its_image(
    runner: CliRunner, sim: Simulator, image: Path, tmp_path: Path
) -> None:
    second = tmp_path / "second.png"
    Image.new("RGB", (200, 100), "red").save(second)
    sim.script(CAPTION_AND_OBJECTS, CAPTION_AND_OBJECTS)
    folder = tmp_path / "drawn"  # not there yet: the trailing slash makes it a folder
    options = ["--draw-features", "objects", "--draw-min-confidence", "0.5", "--draw-no-labels"]
    args = analyze_args(sim, str(image), str(second), "-f", "caption,objects")
    result = runner.invoke(app, [*args, "--draw", f"{folder}/", *options])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["second.png", "square.png"]
    with Image.open(folder / "square.png") as drawn:
        assert drawn.getpixel((0, 50)) != (255, 0, 0)  # the object's left edge
        assert drawn.getpixel((2, 2)) == (255, 0, 0)  # no label above it
        assert drawn.getpixel((150, 95)) == (255, 0, 0)  # no caption banner

    sim.script(CAPTION_AND_OBJECTS, CAPTION_AND_OBJECTS)
    result = runner.invoke(app, [*args, "--draw", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out-square.png").is_file() and (tmp_path / "out-second.png").is_file()


def test_draw_targets_are_named_after_the_inputs(tmp_path: Path) -> None:
    images = ["a/cat.jpg", "b/cat.png", "https://example.com/img/My%20Dog.jpg?sig=x", "https://h/"]
    folder = [p.name for p in _draw_targets(f"{tmp_path}/", images)]
    assert folder == ["cat.png", "cat-2.png", "My_Dog.png", "image-4.png"]
    assert _draw_targets(str(tmp_path), images)[0] == tmp_path / "cat.png"  # an existing folder
    assert _draw_targets("out.png", ["a/cat.jpg"]) == [Path("out.png")]
    assert [p.name for p in _draw_targets("out.png", images[:2])] == [
        "out-cat.png",
        "out-cat-2.png",
    ]


def test_draw_features_it_cannot_draw_are_refused(runner: CliRunner, image: Path) -> None:
    result = runner.invoke(
        app, ["analyze", str(image), "--draw", "x.png", "--draw-features", "tags"]
    )
    assert result.exit_code == 2
    assert "tags" in result.output
