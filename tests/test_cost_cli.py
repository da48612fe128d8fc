"""`viewfinder cost`, on an app of the test's own (cli.py wires it in separately)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import typer
from cli_apps import one_command_app
from endpoint_env import clear_endpoint_env
from typer.testing import CliRunner

from viewfinder.cli.cost import NOTICE, expand_images, register
from viewfinder.cost.estimate import estimate_image_tokens

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(autouse=True)
def _nothing_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No endpoint at all, and a price table of the test's own."""
    clear_endpoint_env(monkeypatch)
    prices = {
        "batch_discount": 0.5,
        "models": {
            "gpt-4o": {"input": 2.5, "output": 10.0},
            "gpt-4.1-mini": {"input": 0.4, "output": 1.6},
        },
    }
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(prices))
    monkeypatch.setenv("VIEWFINDER_PRICES", str(path))


@pytest.fixture
def app() -> typer.Typer:
    return one_command_app(register)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("chelsea.png", "rocket.jpg", "page.png"):
        shutil.copy(ASSETS / name, folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_states_that_it_estimates_before_any_figure(
    app: typer.Typer, runner: CliRunner, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images)  # a short name: a long temp path is cut short in the table
    result = runner.invoke(app, ["cost", "chelsea.png", "--model", "gpt-4.1-mini"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Estimates only: no request is sent to a model.")
    assert out.index("Estimates only") < out.index("chelsea.png")
    assert "451x300" in out
    assert re.search(r"chelsea\.png\s.*\s243\s", out)  # 150 patches x 1.62
    assert "total (1 image)" in out
    assert "output tokens (estimated from example answers)" in out
    assert "per 1,000 images, best case (every prefix served from the prompt cache): $" in out
    assert "per 1,000 images, no prompt-cache hit: $" in out
    assert "with the Batch API (50% off)" in out
    assert result.stderr == ""


def test_a_directory_gives_its_images(
    app: typer.Typer, runner: CliRunner, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images.parent)  # short names: a long temp path is cut short in the table
    result = runner.invoke(app, ["cost", "images", "-m", "gpt-4.1-mini", "-f", "caption,tags"])
    assert result.exit_code == 0, result.output
    for name in ("chelsea.png", "page.png", "rocket.jpg"):
        assert name in result.stdout
    assert "notes.txt" not in result.stdout
    assert "total (3 images)" in result.stdout
    assert "features caption, tags" in result.stdout


def test_json_output(app: typer.Typer, runner: CliRunner, images: Path) -> None:
    result = runner.invoke(
        app, ["cost", str(images / "*.png"), "--model", "gpt-4o", "--detail", "low", "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["estimate"] is True
    assert document["note"] == NOTICE
    assert document["detail"] == "low"
    assert [Path(item["source"]).name for item in document["images"]] == [
        "chelsea.png",
        "page.png",
    ]
    for item in document["images"]:
        assert item["image_tokens"] == 85
        assert item["input_tokens"] == (
            item["prompt_tokens"] + item["schema_tokens"] + item["image_tokens"]
        )
        assert item["batch_cost_usd"] == pytest.approx(item["cost_usd"] / 2)
    summary = document["summary"]
    assert summary["images"] == 2
    assert summary["cost_usd"] == pytest.approx(sum(i["cost_usd"] for i in document["images"]))
    assert summary["cost_per_1000_images_usd"] == pytest.approx(summary["cost_usd"] / 2 * 1000)
    assert summary["batch_cost_per_1000_images_usd"] == pytest.approx(
        summary["cost_per_1000_images_usd"] / 2
    )
    assert document["errors"] == []


def test_max_side_shrinks_the_copy(app: typer.Typer, runner: CliRunner, images: Path) -> None:
    result = runner.invoke(
        app,
        ["cost", str(images / "rocket.jpg"), "-m", "gpt-4.1-mini", "--max-side", "320", "--json"],
    )
    assert result.exit_code == 0, result.output
    item = json.loads(result.stdout)["images"][0]
    assert (item["model_width"], item["model_height"]) == (320, 214)
    assert item["image_tokens"] == estimate_image_tokens(320, 214, model="gpt-4.1-mini")


def test_bad_images_are_reported_and_the_others_estimated(
    app: typer.Typer, runner: CliRunner, images: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "cost",
            str(images / "missing.png"),
            str(images / "chelsea.png"),
            str(tmp_path / "*.gif"),
            "-m",
            "gpt-4.1-mini",
        ],
    )
    assert result.exit_code == 1
    assert "missing.png: ImageFetchError" in result.stderr
    assert "no file matches this pattern" in result.stderr
    assert "total (1 image)" in result.stdout


def test_unknown_model_is_shown_as_unknown(
    app: typer.Typer, runner: CliRunner, images: Path
) -> None:
    result = runner.invoke(app, ["cost", str(images / "page.png"), "--model", "llava:13b"])
    assert result.exit_code == 0, result.output
    assert "unknown" in result.stdout
    assert "no image-token rule for model 'llava:13b'" in result.stdout


def test_unknown_feature_is_a_usage_error(
    app: typer.Typer, runner: CliRunner, images: Path
) -> None:
    result = runner.invoke(app, ["cost", str(images), "-f", "colour"])
    assert result.exit_code == 2


def test_default_model_needs_no_configuration(
    app: typer.Typer, runner: CliRunner, images: Path
) -> None:
    result = runner.invoke(app, ["cost", str(images / "page.png"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"][0]["model"] == "gpt-4.1-mini"


def test_expand_images(images: Path) -> None:
    sources, problems = expand_images(
        [str(images), str(images / "chelsea.png"), str(images / "*.jpg"), "https://x.test/a.png"]
    )
    assert [Path(s).name for s in sources[:3]] == ["chelsea.png", "page.png", "rocket.jpg"]
    assert sources[3] == "https://x.test/a.png"
    assert len(sources) == 4  # duplicates dropped
    assert problems == []
    empty = images / "empty"
    empty.mkdir()
    assert expand_images([str(empty)]) == ([], [f"{empty}: no image files in this directory"])


def test_box_convention_sizes_the_copy_and_a_bad_name_is_refused(
    app: typer.Typer, runner: CliRunner, images: Path
) -> None:
    rocket = str(images / "rocket.jpg")
    result = runner.invoke(
        app, ["cost", rocket, "-m", "gpt-4.1-mini", "--box-convention", "qwen2.5-vl", "--json"]
    )
    assert result.exit_code == 0, result.output
    item = json.loads(result.stdout)["images"][0]
    assert item["model_width"] % 28 == 0 and item["model_height"] % 28 == 0
    refused = runner.invoke(app, ["cost", rocket, "--box-convention", "nope"])
    assert refused.exit_code == 2
    assert "qwen2.5-vl" in refused.output
