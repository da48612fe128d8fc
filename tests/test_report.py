"""The comparison report: Azure input forms, scoring runs, JSON and HTML output, CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_app import sub_commands
from PIL import Image
from report_page import assert_self_contained, parse_page
from typer.testing import CliRunner

from viewfinder import ImageAnalyzer
from viewfinder.cli.compare import register
from viewfinder.compat.rest import from_azure_json
from viewfinder.evaluate.report import (
    COMPARISON_LABEL,
    THUMBNAIL_SIDE,
    ImageReport,
    compare_images,
    load_azure,
    write_report,
)
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


@pytest.fixture(autouse=True)
def no_charts_drawn(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Charts are drawn (matplotlib, about a second a page) only by the tests about them."""
    if "charts" not in request.node.name:
        monkeypatch.setattr("viewfinder.evaluate.report.render_svgs", lambda data: {})


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
        # one at a time: the scripted answers are taken in request order
        reports = list(compare_images(analyzer, load_azure(azure_dir), images_dir, concurrency=1))
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
    assert_self_contained(page)
    assert "a person wearing a mask sitting at a table with a laptop" in page
    assert "a bowl of soup on a stove" in page
    assert page.index("<h3>bad</h3>") < page.index("<h3>good</h3>")
    parsed = parse_page(page)
    assert parsed.sections == ["bad", "good"] and parsed.labels == [COMPARISON_LABEL] * 2
    assert "worst 2 of 2 shown" in page
    for picture in parsed.pictures:  # JPEG thumbnails, each side within THUMBNAIL_SIDE
        assert max(picture.size) <= THUMBNAIL_SIDE and picture.format == "JPEG"


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
    app = sub_commands(register)
    out = tmp_path / "out"
    args = ["compare", "--azure", str(azure_dir), "--images", str(images_dir)]
    args += ["--model", "gpt-4.1-mini", "--base-url", sim.base_url, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--no-cache", "--concurrency", "1"])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output and "tags" in result.output
    assert (out / "report.json").is_file() and (out / "report.html").is_file()
    # Each analysis was recorded as a batch record, with its latency.
    records = [json.loads(line) for line in (out / "analyses.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["bad", "good"]
    assert all(r["status"] == "ok" and r["latency_s"] >= 0 for r in records)

    # A re-run with one more image analyses nothing again: the recorded analyses are
    # reused (no request, nothing paid), the missing image fails, exit 1.
    (azure_dir / "missing.json").write_text(SAMPLE.read_text(encoding="utf-8"), "utf-8")
    sent = len(sim.requests)
    result = CliRunner().invoke(app, [*args, "--no-cache", "--worst", "1"])
    assert result.exit_code == 1, result.output
    assert len(sim.requests) == sent and "2 analyses recorded" in result.output
    page = parse_page((out / "report.html").read_text(encoding="utf-8"))
    assert page.sections == ["missing"] and "worst 1 of 3 shown" in page.shown
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [r["image"] for r in doc["results"]] == ["bad", "good", "missing"]
    assert doc["results"][0]["badness"] > doc["results"][1]["badness"]

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


# --- the run: resumable, paced, followed --------------------------------------------------


def test_a_killed_run_resumes_paying_only_for_what_was_not_recorded(
    sim: Simulator,
    images_dir: Path,
    azure_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run killed after one analysis (its JSONL holds one record and a torn line) is
    resumed by the same command: one request, for the image not recorded; the torn line is
    cut off. The run goes through `analyze_many` with the command's concurrency and rpm."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-placeholder")
    out = tmp_path / "out"
    out.mkdir()
    record = {
        "id": "good",
        "index": 0,
        "source": str(images_dir / "good.jpg"),
        "sha256": None,
        "status": "ok",
        "result": from_azure_json(json.loads(SAMPLE.read_text(encoding="utf-8"))).model_dump(
            mode="json"
        ),
        "usage": {},
        "cost": 0.001,
        "latency_s": 1.5,
    }
    (out / "analyses.jsonl").write_text(json.dumps(record) + '\n{"id": "bad", "sta')
    asked: list[dict[str, Any]] = []
    many = ImageAnalyzer.analyze_many

    def spy(self: ImageAnalyzer, *args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs)
        return many(self, *args, **kwargs)

    monkeypatch.setattr(ImageAnalyzer, "analyze_many", spy)
    sim.script(BAD_ANSWER)
    app = sub_commands(register)
    args = ["compare", "--azure", str(azure_dir), "--images", str(images_dir), "--out", str(out)]
    args += ["--model", "gpt-4.1-mini", "--base-url", sim.base_url, "--no-cache"]
    result = CliRunner().invoke(app, [*args, "--concurrency", "3", "--rpm", "600"])

    assert result.exit_code == 0, result.output
    assert len(sim.requests) == 1 and sim.pending == 0
    assert [(k["concurrency"], k["rpm"]) for k in asked] == [(3, 600)]
    lines = (out / "analyses.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["good", "bad"]  # torn line gone
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    good = next(r for r in doc["results"] if r["image"] == "good")
    assert good["cost"] == 0.001 and good["latency_s"] == 1.5  # as recorded


def test_progress_is_the_shared_display_fed_once_per_report() -> None:
    """compare's progress is batch's and embed's display: off a terminal, a plain line per
    report with `--progress-every 0`, counting failures and dollars from the reports."""
    from io import StringIO

    from rich.console import Console

    from viewfinder.cli.compare import _CompareProgress
    from viewfinder.evaluate.report import ImageReport

    now = [100.0]
    stream = StringIO()
    progress = _CompareProgress(
        Console(file=stream, width=200), 4, interval=0, quiet=False, clock=lambda: now[0]
    )
    with progress.display:
        for report in (
            ImageReport(image="a", cost=0.01),
            ImageReport(image="b", error="ImageError: bad"),
            ImageReport(image="c"),
            ImageReport(image="d", cost=0.02),
        ):
            now[0] += 15.0
            progress.advance(report)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("compare: 0 of 4 (0%) · 0 failed")
    assert lines[2] == (
        "compare: 2 of 4 (50%) · 1 failed · 0 cached · 4 images/min · ETA 0m30s · $0.0100"
    )
    assert lines[-1].startswith("compare: 4 of 4 (100%) · 1 failed")
    assert lines[-1].endswith("$0.0300")
    quiet = StringIO()
    hushed = _CompareProgress(Console(file=quiet), 1, interval=0, quiet=True)
    with hushed.display:
        hushed.advance(ImageReport(image="a"))
    assert quiet.getvalue() == ""


# --- the page: bounded, charted, escaped --------------------------------------------------


def _noise_reports(folder: Path, count: int) -> list[Any]:
    """`count` images of pure noise (JPEG's worst case) with the sample as both results."""
    import random

    from viewfinder.evaluate.compare import compare_results
    from viewfinder.evaluate.report import ImageReport

    rng = random.Random(18)
    azure = from_azure_json(json.loads(SAMPLE.read_text(encoding="utf-8")))
    reports = []
    for i in range(count):
        name = f"noise{i:02d}.bmp"  # uncompressed: quick to write
        Image.frombytes("RGB", (W, H), rng.randbytes(W * H * 3)).save(folder / name)
        reports.append(
            ImageReport(
                image=name,
                scores=compare_results(azure, azure),
                latency_s=1.0 + i,
                cost=0.001 * (i + 1),
                azure=azure,
                viewfinder=azure,
            )
        )
    return reports


def test_the_page_is_bounded_per_image_and_shows_the_worst_n(tmp_path: Path) -> None:
    """Noise pictures (the largest JPEGs there are) still fit THUMBNAIL_BYTES; only the
    worst N images are drawn; so DEFAULT_WORST images fit 5 MB whatever was compared."""
    from viewfinder.evaluate.report import DEFAULT_WORST, THUMBNAIL_BYTES

    reports = _noise_reports(tmp_path, 6)
    _, html_path = write_report(reports, tmp_path / "out", tmp_path, worst=4)
    page = html_path.read_text(encoding="utf-8")
    parsed = parse_page(page)
    assert len(parsed.sections) == 4 and parsed.shown.strip() == (
        "worst 4 of 6 shown, all in report.json"
    )
    assert len(parsed.pictures) == 4  # one comparison picture per image
    assert all(size <= THUMBNAIL_BYTES for size in parsed.picture_bytes)
    assert all(max(p.size) <= THUMBNAIL_SIDE for p in parsed.pictures)
    head, *sections = page.split('<section class="image"')
    section_bound = THUMBNAIL_BYTES * 4 // 3 + 400 + 4_000  # one picture, the text
    assert all(len(s.encode()) <= section_bound for s in sections)
    assert len(head.encode()) + DEFAULT_WORST * section_bound < 5_000_000
    doc = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert len(doc["results"]) == 6 and doc["shown_in_html"] == 4


def test_charts_are_inline_svg_with_their_data_in_the_json(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from viewfinder.evaluate.charts import render_svgs

    reports = _noise_reports(tmp_path, 2)
    json_path, html_path = write_report(reports, tmp_path / "out", tmp_path, worst=0)
    page = html_path.read_text(encoding="utf-8")
    assert_self_contained(page)
    parsed = parse_page(page)
    assert parsed.charts == [
        "chart-feature_scores",
        "chart-score_spread",
        "chart-iou",
        "chart-cost_latency",
    ]
    assert parsed.svgs == 4 and not parsed.sections
    charts = json.loads(json_path.read_text(encoding="utf-8"))["charts"]
    assert charts["feature_scores"]["tags F1"] == 1.0
    assert charts["latency_s"]["counts"] == [0] * 5 + [1] + [0] * 3 + [1]  # 1 s and 2 s
    assert charts["iou"]["counts"]["objects"][-1] == 2  # both images match exactly
    assert render_svgs(charts)["iou"] in page  # drawn again: the same bytes


def test_without_matplotlib_the_page_says_how_to_get_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import viewfinder.evaluate.charts as charts
    import viewfinder.evaluate.report as report

    monkeypatch.setattr(charts, "has_charts", lambda: False)
    monkeypatch.setattr(report, "has_charts", lambda: False)
    json_path, html_path = write_report(_noise_reports(tmp_path, 1), tmp_path / "o", tmp_path)
    page = html_path.read_text(encoding="utf-8")
    assert "<svg" not in page and "pip install &#39;viewfinder[report]&#39;" in page
    assert '<table class="summary">' in page
    assert json.loads(json_path.read_text(encoding="utf-8"))["charts"]["feature_scores"]


def test_names_and_texts_are_escaped(tmp_path: Path) -> None:
    from viewfinder.evaluate.report import ImageReport

    name = '<img src="https://example.com/x.png" onerror="alert(1)">'
    reports = [ImageReport(image=name, error="ImageError: <b>bad</b>")]
    _, html_path = write_report(reports, tmp_path / "out", tmp_path)
    page = html_path.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert parse_page(page).sections == [name]
    assert "&lt;b&gt;bad&lt;/b&gt;" in page


def test_a_result_for_another_image_size_is_not_drawn(tmp_path: Path) -> None:
    """The page says why instead of drawing boxes in the wrong places."""
    (report,) = _noise_reports(tmp_path, 1)
    Image.new("RGB", (100, 80)).save(tmp_path / report.image)  # not the sample's 864x576
    _, html_path = write_report([report], tmp_path / "out", tmp_path)
    page = html_path.read_text(encoding="utf-8")
    assert page.count("cannot draw: InvalidOptionError: the result is for a 864x576 image") == 1
    assert not parse_page(page).pictures


def test_both_results_make_one_comparison_picture_missed_boxes_in_their_colour(
    tmp_path: Path,
) -> None:
    """Where both results exist the page draws one picture (`vf.draw_comparison`): an
    object only Azure found shows in the missed colour."""
    from viewfinder.draw import OUTCOME_COLOURS
    from viewfinder.evaluate.report import overlays

    azure = from_azure_json(json.loads(SAMPLE.read_text(encoding="utf-8")))
    assert azure.objects
    Image.new("RGB", (W, H), "white").save(tmp_path / "white.png")

    def missed_pixels(ours: Any) -> tuple[int, Any]:
        report = ImageReport(image="white.png", azure=azure, viewfinder=ours)
        (panel,) = overlays(report, tmp_path / "white.png")
        assert panel.label == COMPARISON_LABEL and panel.error is None
        assert panel.thumbnail is not None and max(panel.thumbnail.size) <= THUMBNAIL_SIDE
        counts = {rgb: n for n, rgb in panel.thumbnail.getcolors(1 << 20) or []}
        return counts.get(OUTCOME_COLOURS["missed"], 0), panel

    agreed, _ = missed_pixels(azure)  # the legend's swatch only
    missed, panel = missed_pixels(azure.model_copy(update={"objects": azure.objects[1:]}))
    assert missed > agreed + 50  # the missed object's dashed box and label
    assert any("Azure caption" in line for line in panel.lines)
