"""`viewfinder cost --from results.jsonl`: a run's real spend beside the estimate.

The results file here is HAND-WRITTEN (not produced by a run): it mixes today's record, a
retried image (an error line, then an ok line), an older Batch API record shape, a URL, and
a torn last line, with usage chosen so every dollar can be checked by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from cli_apps import one_command_app
from endpoint_env import clear_endpoint_env
from typer.testing import CliRunner

from viewfinder.cli.cost import FROM_NOTICE, read_run, register

ASSETS = Path(__file__).parent / "assets"
# USD per 1M tokens: input 0.4, cached input 0.1, output 1.6; Batch API half. No other
# model has a price (genai-prices off).
PRICES = {
    "batch_discount": 0.5,
    "genai_prices": False,
    "models": {"gpt-4.1-mini": {"input": 0.4, "cached_input": 0.1, "output": 1.6}},
}
HAND_WRITTEN = [
    {  # chelsea.png, first try: a 429 that still billed a prompt
        "id": "chelsea.png",
        "index": 0,
        "source": "chelsea.png",
        "sha256": None,
        "status": "error",
        "error": {"type": "RateLimitError", "message": "429"},
        "usage": {"input_tokens": 2000, "requests": 1},
        "cost": 0.0008,
        "batch_priced": False,
        "custom_id": None,
        "id_version": 2,
    },
    {  # chelsea.png, resumed: 2,048 of 2,500 input tokens from the prompt cache
        "id": "chelsea.png",
        "index": 0,
        "source": "chelsea.png",
        "sha256": None,
        "status": "ok",
        "result": {
            "model_version": "gpt-4.1-mini+abc",
            "metadata": {"width": 451, "height": 300},
            "caption": {"text": "a cat", "confidence": 0.9},
            "tags": [],
        },
        "usage": {
            "input_tokens": 2500,
            "cached_input_tokens": 2048,
            "output_tokens": 100,
            "requests": 1,
        },
        "cost": 0.0005,
        "batch_priced": False,
        "custom_id": None,
        "id_version": 2,
    },
    {  # an older Batch API record: no id, no status
        "image": "rocket.jpg",
        "custom_id": "rocket.jpg#333333333333",
        "result": {
            "model_version": "gpt-4.1-mini+abc",
            "metadata": {"width": 64, "height": 48},
            "caption": {"text": "a rocket", "confidence": 0.9},
        },
        "sha256": None,
        "usage": {"input_tokens": 1500, "output_tokens": 50, "requests": 1},
        "cost": 0.0002,
        "batch_priced": True,
    },
    {  # a URL: not fetched to estimate
        "id": "https://example.com/a.png",
        "source": "https://example.com/a.png",
        "status": "ok",
        "result": {
            "model_version": "gpt-4.1-mini+abc",
            "metadata": {"width": 64, "height": 48},
            "caption": {"text": "x", "confidence": 0.9},
        },
        "usage": {"input_tokens": 1000, "output_tokens": 10, "requests": 1},
        "cost": 0.0004,
    },
]
CHELSEA = (2000 * 0.4 + 452 * 0.4 + 2048 * 0.1 + 100 * 1.6) / 1e6
ROCKET = (1500 * 0.4 + 50 * 1.6) / 1e6 * 0.5
URL_IMAGE = (1000 * 0.4 + 10 * 1.6) / 1e6


@pytest.fixture(autouse=True)
def _prices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clear_endpoint_env(monkeypatch)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(PRICES))
    monkeypatch.setenv("VIEWFINDER_PRICES", str(path))


@pytest.fixture
def app() -> typer.Typer:
    return one_command_app(register)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """The hand-written run, its images beside it (sources are relative to the run)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("chelsea.png", "rocket.jpg"):
        shutil.copy(ASSETS / name, run / name)
    path = run / "results.jsonl"
    text = "".join(json.dumps(line) + "\n" for line in HAND_WRITTEN)
    path.write_text(text + "not json\n" + '{"id": "torn')
    return path


def test_every_record_shape_is_read_and_torn_lines_are_not(results: Path) -> None:
    lines, skipped, torn = read_run(results)
    assert [(line.id, line.ok) for line in lines] == [
        ("chelsea.png", False),
        ("chelsea.png", True),
        ("rocket.jpg", True),
        ("https://example.com/a.png", True),
    ]
    assert (skipped, torn) == (1, True)
    assert lines[1].usage.cached_input_tokens == 2048
    assert lines[2].batch_priced and lines[1].model == "gpt-4.1-mini"
    assert [f.value for f in lines[1].features] == ["caption", "tags"]


def test_json_prices_cached_input_apart_and_sets_the_estimate_beside(
    app: typer.Typer, runner: CliRunner, results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(results.parent.parent)  # sources resolve beside the results file
    result = runner.invoke(app, ["cost", "--from", str(results), "--json"])
    assert result.exit_code == 1, result.output  # the URL could not be estimated
    document = json.loads(result.stdout)
    assert document["note"] == FROM_NOTICE
    run = document["run"]
    assert (run["lines"], run["images"], run["ok"], run["failed"]) == (4, 3, 3, 0)
    assert (run["input_tokens"], run["cached_input_tokens"]) == (7000, 2048)
    assert run["uncached_input_tokens"] == 4952
    assert run["cost_usd"] == pytest.approx(CHELSEA + ROCKET + URL_IMAGE)
    no_cache = CHELSEA + 2048 * (0.4 - 0.1) / 1e6 + ROCKET + URL_IMAGE
    assert run["cost_without_prompt_cache_usd"] == pytest.approx(no_cache)
    assert run["recorded_cost_usd"] == pytest.approx(0.0019)
    assert run["models"] == ["gpt-4.1-mini"]

    comparison = document["comparison"]
    assert comparison["compared"] == 2
    assert comparison["actual"]["cost_usd"] == pytest.approx(CHELSEA + ROCKET)
    images = {image["id"]: image for image in document["images"]}
    chelsea, rocket = images["chelsea.png"], images["rocket.jpg"]
    assert chelsea["estimate"]["features"] == ["caption", "tags"]  # the run's own request
    assert rocket["estimate"]["features"] == ["caption"]
    assert chelsea["predicted_cost_usd"] == chelsea["estimate"]["cost_usd"]
    assert rocket["predicted_cost_usd"] == pytest.approx(rocket["estimate"]["batch_cost_usd"])
    assert comparison["predicted_cost_usd"] == pytest.approx(
        chelsea["predicted_cost_usd"] + rocket["predicted_cost_usd"]
    )
    assert comparison["ratio"] == pytest.approx(
        (CHELSEA + ROCKET) / comparison["predicted_cost_usd"]
    )
    # The best case beside it: the cached prefix, at the price each image was billed at.
    assert chelsea["predicted_best_cost_usd"] == chelsea["estimate"]["cached_cost_usd"]
    assert rocket["predicted_best_cost_usd"] == pytest.approx(
        rocket["estimate"]["batch_cached_cost_usd"]
    )
    assert comparison["predicted_best_cost_usd"] == pytest.approx(
        chelsea["predicted_best_cost_usd"] + rocket["predicted_best_cost_usd"]
    )
    assert comparison["predicted_best_cost_usd"] <= comparison["predicted_cost_usd"]
    url = images["https://example.com/a.png"]
    assert url["estimate"] is None and url["not_estimated"].startswith("a URL: not fetched")


def test_text_output_says_what_is_real_and_what_is_estimated(
    app: typer.Typer, runner: CliRunner, results: Path
) -> None:
    result = runner.invoke(app, ["cost", "--from", str(results)])
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert out.startswith("Real usage from the run's records")
    assert "4 records, 3 images (3 ok, 0 failed)" in out
    assert "7,000 input tokens (2,048 cached, 4,952 uncached)" in out
    assert "estimate for the same 2 images" in out
    assert "x the estimate)" in out
    assert "the last line is torn" in out
    assert "not compared: https://example.com/a.png: a URL" in out


def test_missing_images_are_named_and_model_overrides(
    app: typer.Typer, runner: CliRunner, results: Path
) -> None:
    (results.parent / "rocket.jpg").unlink()
    result = runner.invoke(app, ["cost", "--from", str(results), "--json", "--model", "gpt-4o"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    images = {image["id"]: image for image in document["images"]}
    assert images["rocket.jpg"]["not_estimated"] == "not a readable file"
    assert document["run"]["models"] == ["gpt-4o"]
    assert document["run"]["cost_usd"] is None  # gpt-4o has no price in this table


def test_images_and_from_are_exclusive(app: typer.Typer, runner: CliRunner, results: Path) -> None:
    assert runner.invoke(app, ["cost", "x.png", "--from", str(results)]).exit_code == 2
    assert runner.invoke(app, ["cost"]).exit_code == 2
    assert runner.invoke(app, ["cost", "--from", str(results.parent / "no.jsonl")]).exit_code == 2
