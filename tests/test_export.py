"""`viewfinder export` and `viewfinder.export` (COCO, YOLO, CSV, Parquet,
pandas, Label Studio) and the notebook display, each loaded by the real tool.

The batch output here is HAND-WRITTEN (no model ran): the two results of
tests/export_samples.py, a retried image (an error line, then an ok line), an image that
only failed, and a torn last line.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from cli_apps import one_command_app
from export_samples import ROOM, STREET
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from viewfinder import export
from viewfinder.batch.records import BatchItem
from viewfinder.cli.export import register
from viewfinder.errors import InvalidOptionError, UserError
from viewfinder.schemas import ImageAnalysisResult


def _record(id_: str, index: int, result: ImageAnalysisResult | None) -> dict[str, Any]:
    if result is None:
        error = {"type": "RateLimitError", "message": "429"}
        return {"id": id_, "index": index, "source": id_, "status": "error", "error": error}
    item = BatchItem(id_, index, id_, "ab" * 32, result, usage=result.usage, cost=0.001)
    return item.to_record()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-written batch output (see the module docstring)."""
    path = tmp_path_factory.mktemp("export") / "results.jsonl"
    lines = [
        _record("photos/street.jpg", 0, STREET),
        _record("photos/room.png", 1, None),  # failed first...
        _record("photos/broken.png", 2, None),  # ...and never analysed
        _record("photos/room.png", 1, ROOM),  # ...then analysed on the resumed run
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"id": "torn'
    path.write_text(text, encoding="utf-8")
    return path


# --- reading --------------------------------------------------------------------------------


def test_the_last_line_of_an_id_wins_and_failures_are_counted(run: Path) -> None:
    read = export.read_results(run)
    assert [image.id for image in read.images] == ["photos/street.jpg", "photos/room.png"]
    assert read.failed == 1
    assert read.images[1].result == ROOM


def test_a_line_that_is_not_json_before_the_end_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('not json\n{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl:1"):
        export.read_results(bad)


# --- COCO and YOLO --------------------------------------------------------------------------


def test_coco_loads_in_pycocotools_and_scores_itself_perfectly(run: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "coco.json"
    dataset.write_text(json.dumps(export.to_coco(run)), encoding="utf-8")
    coco = COCO(str(dataset))
    assert [coco.imgs[i]["width"] for i in coco.getImgIds()] == [200, 64]
    assert {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())} == {
        "cat": 1,
        "dog": 2,
        "person": 3,
    }
    cat_boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(catIds=[1]))]
    assert cat_boxes == [[10, 20, 50, 40], [0, 0, 20, 10], [0, 0, 32, 32]]

    predictions = coco.loadRes(export.to_coco_results(run))
    assert len(predictions.getAnnIds()) == 5
    evaluation = COCOeval(coco, predictions, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP at IoU 0.5: the same boxes


def test_coco_categories_follow_the_ids_given(run: Path) -> None:
    found = export.to_coco_results(run, categories=["person", "cat"])
    assert {(f["category_id"], f["score"]) for f in found} == {
        (2, 0.8),
        (2, 0.7),
        (1, 0.75),
        (2, 0.9),
    }  # no dog: not a category given


def test_yolo_labels_are_normalised_centre_boxes(run: Path, tmp_path: Path) -> None:
    files = export.write_yolo(run, tmp_path / "labels", confidence=True)
    assert sorted(p.name for p in files.values()) == ["room.txt", "street.txt"]
    assert (tmp_path / "labels" / "classes.txt").read_text() == "cat\ndog\nperson\n"
    street = files["photos/street.jpg"].read_text().splitlines()
    assert street[0] == "0 0.175000 0.400000 0.250000 0.400000 0.8000"
    assert street[3] == "2 0.375000 0.500000 0.150000 0.800000 0.7500"
    assert files["photos/room.png"].read_text() == "0 0.250000 0.500000 0.500000 1.000000 0.9000\n"


# --- tables ---------------------------------------------------------------------------------


def test_csv_parquet_and_dataframe_hold_the_same_rows(run: Path, tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    frame = export.to_dataframe(run)
    assert list(frame.columns) == list(export.COLUMNS["detection"])
    assert len(frame) == 8  # street: 3 objects, 1 person, 1 dense caption, 2 lines; room: 1
    assert frame["feature"].value_counts().to_dict() == {
        "objects": 4,
        "read": 2,
        "people": 1,
        "dense_captions": 1,
    }
    export.write_csv(run, tmp_path / "d.csv")
    export.write_parquet(run, tmp_path / "d.parquet")
    from_csv = pd.read_csv(tmp_path / "d.csv")
    table = pq.read_table(tmp_path / "d.parquet")
    assert from_csv["label"].tolist() == frame["label"].tolist() == table["label"].to_pylist()
    assert str(table.schema.field("box_width").type) == "int64"


def test_one_row_per_image_with_counts_text_usage_and_cost(run: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    frame = export.to_dataframe(run, per="image")
    street, room = frame.to_dict("records")
    assert street["caption"] == "A cat & a dog <outside>"
    assert street["tags"] == "cat; <script>"
    assert (street["objects"], street["people"], street["read_lines"]) == (3, 1, 2)
    assert street["text"] == "NO PARKING\nexit"
    assert (street["input_tokens"], street["cost"]) == (1000, 0.001)
    assert room["people"] == 0  # asked, none found; read not asked: an empty cell
    assert frame["read_lines"].isna().tolist() == [False, True]
    assert str(frame["read_lines"].dtype) == "Int64"
    export.write_parquet(run, tmp_path / "i.parquet", per="image")
    assert pq.read_table(tmp_path / "i.parquet").column("read_lines").to_pylist() == [2, None]
    export.write_csv(run, tmp_path / "i.csv", per="image")
    with (tmp_path / "i.csv").open(newline="") as file:
        assert [row["read_lines"] for row in csv.DictReader(file)] == ["2", ""]


# --- Label Studio ---------------------------------------------------------------------------


def test_label_studio_tasks_fit_their_labelling_config(run: Path) -> None:
    """Checked against Label Studio's documented import format (the SDK, 2.1, pins pyjwt
    < 2.14, which `viewfinder[server]` cannot take: it is no test dependency)."""
    features = ("objects", "people", "read")
    tasks = export.to_label_studio(run, features=features, image_root="/data/local-files/?d=p")
    config = ET.fromstring(export.label_studio_config(run, features=features))
    tags = {tag.get("name"): tag for tag in config}
    labels = {label.get("value") for label in tags["label"]}
    assert labels == {"cat", "dog", "person"}
    assert [task["data"]["image"] for task in tasks] == [
        "/data/local-files/?d=p/street.jpg",
        "/data/local-files/?d=p/room.png",
    ]
    kinds = {"rectanglelabels": "RectangleLabels", "rectangle": "Rectangle", "textarea": "TextArea"}
    for task in tasks:
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "gpt-4.1-mini+abc123"
        for region in prediction["result"]:
            assert tags[region["from_name"]].tag == kinds[region["type"]]
            assert tags[region["from_name"]].get("toName") == region["to_name"] == "image"
            value = region["value"]
            assert value["x"] >= 0 and value["x"] + value["width"] <= 100
            assert value["y"] >= 0 and value["y"] + value["height"] <= 100
            assert set(value.get("rectanglelabels", [])) <= labels
    street = tasks[0]["predictions"][0]
    cat = street["result"][0]
    assert cat["value"] | {"score": cat["score"]} == {
        "x": 5.0,
        "y": 20.0,
        "width": 25.0,
        "height": 40.0,
        "rotation": 0,
        "rectanglelabels": ["cat"],
        "score": 0.8,
    }
    box, text = street["result"][-2:]  # the OCR line "exit": a rectangle and its text
    assert box["id"] == text["id"] and text["value"]["text"] == ["exit"]
    assert street["score"] == pytest.approx((0.8 + 0.6 + 0.7 + 0.75 + 0.8 + 1.0) / 6, abs=1e-4)


def test_label_studio_sdk_accepts_the_predictions_where_installed(run: Path) -> None:
    """Label Studio's own validator, where its SDK is installed (not in `[test]`: 2.1 pins
    pyjwt < 2.14, which `[server]` cannot take). 2.1.2's `validate_task` calls
    `validate_prediction()` without its argument, so each prediction is checked alone."""
    sdk = pytest.importorskip("label_studio_sdk.label_interface")
    features = ("objects", "people", "read", "dense_captions")
    interface = sdk.LabelInterface(export.label_studio_config(run, features=features))
    for task in export.to_label_studio(run, features=features):
        (prediction,) = task["predictions"]
        assert interface.validate_prediction(prediction, return_errors=True) == []


# --- notebooks ------------------------------------------------------------------------------


def test_a_preview_shows_the_summary_and_an_inline_thumbnail() -> None:
    image = Image.new("RGB", (200, 100), "white")
    shown = export.preview(STREET, image, max_side=50)
    page = shown._repr_html_()
    assert page.count("<img") == 1 and "src='data:image/jpeg;base64," in page
    assert "http" not in page
    assert Image.open(io.BytesIO(shown.thumbnail_jpeg())).size == (50, 25)
    with pytest.raises(InvalidOptionError):
        export.preview(STREET, image, max_side=10_000)


# --- the command ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "out", "extra"),
    [
        ("coco", "coco.json", []),
        ("coco-results", "res.json", ["--categories", "cat,dog"]),
        ("yolo", "labels", ["-f", "objects"]),
        ("csv", "rows.csv", ["--per", "image"]),
        ("parquet", "rows.parquet", []),
        ("label-studio", "tasks.json", ["-f", "objects,read", "--config", "config.xml"]),
    ],
)
def test_viewfinder_export_writes_each_format(
    run: Path, tmp_path: Path, to: str, out: str, extra: list[str]
) -> None:
    app = one_command_app(register)
    extra = [str(tmp_path / e) if e.endswith(".xml") else e for e in extra]
    args = ["export", str(run), "--to", to, "--out", str(tmp_path / out), *extra]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    assert "2 images" in outcome.output and "1 failed images left out" in outcome.output
    assert (tmp_path / out).exists()


def test_viewfinder_export_refuses_a_feature_without_boxes(run: Path, tmp_path: Path) -> None:
    app = one_command_app(register)
    args = ["export", str(run), "--to", "coco", "--out", str(tmp_path / "c.json"), "-f", "tags"]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 2
    missing = ["export", str(tmp_path / "nope.jsonl"), "--to", "csv", "--out", str(tmp_path / "x")]
    outcome = CliRunner().invoke(app, missing)
    assert outcome.exit_code == 2 and "no batch output" in outcome.output
