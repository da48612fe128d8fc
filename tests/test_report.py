"""The comparison report: Azure input forms, scoring runs, JSON and HTML output, CLI."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from viewfinder import ImageAnalyzer
from viewfinder.cli.compare import register
from viewfinder.evaluate.report import compare_images, load_azure, write_report
from viewfinder.testing import compact_answer
from viewfinder.testing.simulator import Simulator

SAMPLE = Path(__file__).parent / "assets" / "azure_sample_all_features.json"
W, H = 864, 576


def _grid(box: dict[str, int]) -> list[int]:
    return [
        round(box["x"] * 1000 / W),
        round(box["y"] * 1000 / H),
        round((box["x"] + box["w"]) * 1000 / W),
        round((box["y"] + box["h"]) * 1000 / H),
    ]


def _poly_box(points: list[dict[str, int]]) -> dict[str, int]:
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    return {"x": min(xs), "y": min(ys), "w": max(xs) - min(xs), "h": max(ys) - min(ys)}


def _good_answer() -> dict[str, Any]:
    """A compact model answer that reproduces the Azure sample (on the 0-1000 grid)."""
    d = json.loads(SAMPLE.read_text(encoding="utf-8"))
    crop = d["smartCropsResult"]["values"][0]["boundingBox"]
    verbose = {
        "caption": dict(d["captionResult"]),
        "dense_captions": [
            {"text": v["text"], "confidence": v["confidence"], "box": _grid(v["boundingBox"])}
            for v in d["denseCaptionsResult"]["values"]
        ],
        "tags": [dict(t) for t in d["tagsResult"]["values"]],
        "objects": [
            {
                "name": v["tags"][0]["name"],
                "confidence": v["tags"][0]["confidence"],
                "box": _grid(v["boundingBox"]),
            }
            for v in d["objectsResult"]["values"]
        ],
        "people": [
            {"confidence": v["confidence"], "box": _grid(v["boundingBox"])}
            for v in d["peopleResult"]["values"]
        ],
        "smart_crops": {"box": _grid(crop)},
        "read": [
            {
                "text": line["text"],
                "box": _grid(_poly_box(line["boundingPolygon"])),
                "confidence": 0.9,
            }
            for block in d["readResult"]["blocks"]
            for line in block["lines"]
        ],
    }
    return compact_answer(verbose)


BAD_ANSWER: dict[str, Any] = {
    "caption": {"text": "a bowl of soup on a stove", "conf": 50},
    "regions": [{"text": "soup", "conf": 50, "box": [0, 0, 50, 50]}],
    "tags": [{"name": "soup", "conf": 90}],
    "objects": [{"name": "bowl", "conf": 90, "box": [0, 0, 50, 50]}],
    "people": [],
    "crop": [0, 0, 100, 100],
    "lines": [{"text": "zzzz qqqq", "box": [0, 0, 100, 50], "conf": 50}],
}
"""A wrong compact answer (its first dense caption is the whole-image caption)."""


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as server:
        yield server


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name, colour in (("good.jpg", (200, 180, 160)), ("bad.jpg", (40, 60, 80))):
        Image.new("RGB", (W, H), colour).save(folder / name)
    return folder


@pytest.fixture
def azure_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "azure"
    folder.mkdir()
    shutil.copy(SAMPLE, folder / "bad.json")  # sorted first: scripted with BAD_ANSWER
    shutil.copy(SAMPLE, folder / "good.json")
    return folder


def _analyzer(sim: Simulator) -> ImageAnalyzer:
    return ImageAnalyzer(
        base_url=sim.base_url, api_key="test-key-placeholder", model="gpt-4.1-mini", cache=False
    )


def test_directory_report_orders_worst_first(
    sim: Simulator, images_dir: Path, azure_dir: Path, tmp_path: Path
) -> None:
    sim.script(BAD_ANSWER, _good_answer())
    analyzer = _analyzer(sim)
    try:
        reports = list(compare_images(analyzer, load_azure(azure_dir), images_dir))
    finally:
        analyzer.close()
    assert [r.image for r in reports] == ["bad", "good"]
    assert all(r.error is None and r.scores is not None for r in reports)
    good = reports[1].scores
    assert good is not None and good.scores.tags is not None and good.scores.tags.f1 == 1.0
    assert set(good.features) == {
        "caption",
        "dense_captions",
        "tags",
        "objects",
        "people",
        "smart_crops",
        "read",
    }
    # Exactly the Azure sample's features were asked, in one request per image.
    assert len(sim.requests) == 2

    json_path, html_path = write_report(reports, tmp_path / "out", images_dir)
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    assert doc["summary"]["images"] == 2 and "tags" in doc["summary"]["features"]
    assert doc["failed"] == 0 and len(doc["results"]) == 2
    assert doc["results"][1]["scores"]["scores"]["tags"]["f1"] == 1.0
    assert doc["results"][0]["badness"] > doc["results"][1]["badness"]
    assert doc["results"][0]["latency_s"] > 0

    page = html_path.read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page)
    assert "<link" not in page and "<script" not in page
    assert "a person wearing a mask sitting at a table with a laptop" in page
    assert "a bowl of soup on a stove" in page
    assert page.index("<h3>bad</h3>") < page.index("<h3>good</h3>")
    assert "Azure" in page and "viewfinder" in page
    # Embedded images are downscaled to at most 640 px wide.
    first = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert first is not None
    with Image.open(io.BytesIO(base64.b64decode(first.group(1)))) as picture:
        assert picture.width <= 640


def test_jsonl_input_and_missing_image(sim: Simulator, images_dir: Path, tmp_path: Path) -> None:
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    jsonl = tmp_path / "azure.jsonl"
    jsonl.write_text(
        json.dumps({"image": str(images_dir / "good.jpg"), "result": sample})
        + "\n\n"
        + json.dumps({"image": "absent.png", **sample})
        + "\n",
        encoding="utf-8",
    )
    items = list(load_azure(jsonl))
    assert [name for name, _ in items] == [str(images_dir / "good.jpg"), "absent.png"]
    sim.script(_good_answer())
    analyzer = _analyzer(sim)
    try:
        reports = list(compare_images(analyzer, items, images_dir))
    finally:
        analyzer.close()
    assert reports[0].error is None and reports[0].scores is not None
    assert reports[1].scores is None and reports[1].error is not None
    assert "absent.png" in reports[1].error
    json_path, html_path = write_report(reports, tmp_path / "out", images_dir)
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    assert doc["failed"] == 1 and doc["summary"]["images"] == 1
    page = html_path.read_text(encoding="utf-8")
    assert page.index("absent.png") < page.index("good.jpg")  # failures first


def test_cli(
    sim: Simulator,
    images_dir: Path,
    azure_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-placeholder")
    sim.script(BAD_ANSWER, _good_answer())
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # two commands: `compare` stays a subcommand
    out = tmp_path / "out"
    args = ["compare", "--azure", str(azure_dir), "--images", str(images_dir)]
    args += ["--model", "gpt-4.1-mini", "--base-url", sim.base_url, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output and "tags" in result.output
    assert (out / "report.json").is_file() and (out / "report.html").is_file()

    (azure_dir / "missing.json").write_text(SAMPLE.read_text(encoding="utf-8"), "utf-8")
    sim.script(BAD_ANSWER, _good_answer())
    result = CliRunner().invoke(app, [*args, "--no-cache"])
    assert result.exit_code == 1, result.output

    result = CliRunner().invoke(
        app, ["compare", "--azure", str(tmp_path / "nope"), "--images", str(images_dir)]
    )
    assert result.exit_code == 2


def test_scores_a_viewfinder_batch_output_without_analysing(tmp_path: Path) -> None:
    from viewfinder.compat.rest import from_azure_json
    from viewfinder.evaluate.report import compare_images, load_viewfinder_batch

    sample = json.loads(SAMPLE.read_text())
    azure = from_azure_json(sample)
    batch = tmp_path / "results.jsonl"
    ok = {
        "id": "photos/sample.jpg",
        "status": "ok",
        "result": azure.model_dump(mode="json"),
        "cost": 0.002,
    }
    failed = {"id": "photos/other.jpg", "status": "error", "error": {"type": "X", "message": "y"}}
    batch.write_text(json.dumps(ok) + "\n" + json.dumps(failed) + "\n" + '{"id": "torn')
    stored = load_viewfinder_batch(batch)
    reports = list(
        compare_images(None, [("sample", azure), ("other", azure)], tmp_path, stored=stored)
    )
    assert reports[0].error is None and reports[0].cost == 0.002
    assert reports[0].scores is not None and reports[0].scores.scores.tags is not None
    assert reports[0].scores.scores.tags.f1 == 1.0 and reports[0].latency_s is None
    assert reports[1].error is not None and "no successful result" in reports[1].error
