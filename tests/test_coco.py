"""COCO ground truth: hand-computed cases, and the numbers checked against pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from cli_app import sub_commands

from viewfinder.errors import AzureInputError
from viewfinder.evaluate.coco import (
    IOU_THRESHOLDS,
    CocoGroundTruth,
    Detection,
    box_iou,
    coco_results_json,
    detections_of,
    load_coco,
    score_coco,
)
from viewfinder.schemas.features import DetectedObject, DetectedPerson
from viewfinder.schemas.geometry import BoundingBox
from viewfinder.schemas.result import ImageAnalysisResult, ImageMetadata

CATEGORIES = [{"id": 1, "name": "Cat"}, {"id": 2, "name": "dog"}, {"id": 7, "name": "person"}]
IMAGES = ["perfect", "shifted", "duplicates", "missed", "wrong_class", "crowd"]


def _dataset() -> dict[str, Any]:
    """One image per case; boxes `[x, y, w, h]` in pixels of 100x100 images."""
    boxes = [
        (1, 1, [10, 10, 40, 40], 0),  # perfect: found exactly
        (2, 2, [0, 0, 40, 40], 0),  # shifted: detected 20 px off, IoU 1/7
        (3, 1, [0, 0, 50, 50], 0),  # duplicates: found twice
        (4, 2, [10, 10, 20, 20], 0),  # missed: the dog found ...
        (4, 1, [50, 50, 30, 30], 0),  # ... the cat not
        (5, 1, [0, 0, 30, 30], 0),  # wrong class: detected as a dog
        (6, 7, [0, 0, 60, 60], 1),  # crowd: a crowd of people, and ...
        (6, 7, [70, 70, 20, 20], 0),  # ... one person apart
    ]
    return {
        "images": [
            {"id": k, "file_name": f"{name}.png", "width": 100, "height": 100}
            for k, name in enumerate(IMAGES, 1)
        ],
        "annotations": [
            {"id": n, "image_id": i, "category_id": c, "bbox": b, "iscrowd": crowd, "area": 1.0}
            for n, (i, c, b, crowd) in enumerate(boxes, 1)
        ],
        "categories": CATEGORIES,
    }


def _detections() -> dict[int, list[Detection]]:
    def d(name: str, conf: float, *bbox: float) -> Detection:
        return Detection(name=name, confidence=conf, bbox=(bbox[0], bbox[1], bbox[2], bbox[3]))

    return {
        1: [d("cat", 0.9, 10, 10, 40, 40)],
        2: [d("dog", 0.5, 20, 20, 40, 40)],
        3: [d("cat", 0.8, 0, 0, 50, 50), d("cat", 0.7, 0, 0, 50, 50)],
        4: [d("dog", 0.6, 10, 10, 20, 20)],
        5: [d("dog", 0.95, 0, 0, 30, 30)],
        # two in the crowd (ignored), the one apart found, and a name no category has
        6: [
            d("person", 0.9, 0, 0, 30, 30),
            d("person", 0.8, 30, 30, 30, 30),
            d("person", 0.4, 70, 70, 20, 20),
            d("unicorn", 0.3, 0, 0, 10, 10),
        ],
    }


@pytest.fixture
def truth(tmp_path: Path) -> CocoGroundTruth:
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(_dataset()), encoding="utf-8")
    return load_coco(path)


def test_box_iou_is_pycocotools_formula() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((20, 20, 40, 40), (0, 0, 40, 40)) == pytest.approx(400 / 2800)
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    # a crowd region: intersection over the detection's area alone
    assert box_iou((0, 0, 10, 10), (0, 0, 100, 100), crowd=True) == 1.0


def test_hand_computed_cases(truth: CocoGroundTruth) -> None:
    scores = score_coco(truth, _detections())
    cat, dog, person = scores.classes
    assert truth.categories == ("cat", "dog", "person")
    # cat: 4 boxes; 0.9 TP, 0.8 TP, 0.7 FP (duplicate): recall 0.5 with precision 1,
    # so the 51 recall points 0.00-0.50 score 1 and the other 50 score 0.
    assert (cat.reference, cat.predicted, cat.matched) == (4, 3, 2)
    assert (cat.precision, cat.recall) == (pytest.approx(2 / 3), 0.5)
    assert cat.ap50 == pytest.approx(51 / 101)
    assert cat.ap75 == pytest.approx(51 / 101) and cat.ap == pytest.approx(51 / 101)
    # dog: 2 boxes; 0.95 FP (wrong class), 0.6 TP, 0.5 FP (shifted): interpolated
    # precision 0.5 up to recall 0.5.
    assert (dog.reference, dog.predicted, dog.matched) == (2, 3, 1)
    assert dog.ap50 == pytest.approx(51 * 0.5 / 101)
    # person: the crowd is not a box to find and absorbs the two detections on it
    assert (person.reference, person.predicted, person.matched) == (1, 1, 1)
    assert person.ap50 == pytest.approx(1.0) and person.precision == 1.0
    assert scores.map50 == pytest.approx((51 / 101 + 25.5 / 101 + 1) / 3)
    assert scores.unknown_names == ("unicorn",)
    # overall at 0.5: 4 of 7 boxes, 4 of 8 counted detections (the unicorn counts)
    assert (scores.reference, scores.predicted, scores.matched) == (7, 8, 4)
    assert scores.precision == 0.5 and scores.recall == pytest.approx(4 / 7)
    by_image = {s.image: s for s in scores.per_image}
    assert by_image["perfect.png"].f1 == 1.0 and by_image["perfect.png"].mean_iou == 1.0
    assert by_image["shifted.png"].matched == 0 and by_image["shifted.png"].mean_iou is None
    assert by_image["duplicates.png"].precision == 0.5
    assert by_image["missed.png"].recall == 0.5 and by_image["missed.png"].precision == 1.0
    assert by_image["wrong_class.png"].f1 == 0.0


def test_a_box_between_thresholds_counts_at_0_5_not_at_0_75(truth: CocoGroundTruth) -> None:
    # 40x40 against 40x32 inside it: IoU 0.8 scores at every threshold to 0.8, not above.
    one = {1: [Detection(name="cat", confidence=0.9, bbox=(10, 10, 40, 32))]}
    cat = score_coco(truth, one).classes[0]
    assert cat.reference == 1  # only the scored image's boxes count
    assert cat.ap50 == pytest.approx(1.0) and cat.ap75 == pytest.approx(1.0)
    assert cat.ap == pytest.approx(7 / 10)  # 0.5 ... 0.8 of the ten thresholds
    one = {1: [Detection(name="cat", confidence=0.9, bbox=(10, 10, 40, 24))]}  # IoU 0.6
    cat = score_coco(truth, one).classes[0]
    assert cat.ap50 == pytest.approx(1.0) and cat.ap75 == 0.0 and cat.ap == pytest.approx(3 / 10)


def test_detections_of_a_result_use_the_label_map_and_people() -> None:
    result = ImageAnalysisResult(
        model_version="scripted",
        metadata=ImageMetadata(width=100, height=100),
        objects=[
            DetectedObject(
                name=" Kitty ", confidence=0.9, box=BoundingBox(x=1, y=2, width=3, height=4)
            ),
            DetectedObject(
                name="Person", confidence=0.8, box=BoundingBox(x=0, y=0, width=9, height=9)
            ),
        ],
        people=[DetectedPerson(confidence=0.7, box=BoundingBox(x=5, y=5, width=10, height=20))],
    )
    found = detections_of(result, ("cat", "person"), {"KITTY": "Cat"})
    assert [(d.name, d.confidence, d.bbox) for d in found] == [
        ("cat", 0.9, (1.0, 2.0, 3.0, 4.0)),
        ("person", 0.7, (5.0, 5.0, 10.0, 20.0)),  # people, not the person object
    ]
    # no person category: people are not scored, the person object keeps its name
    assert [d.name for d in detections_of(result, ("cat",))] == ["kitty", "person"]


def test_bad_files_are_input_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    with pytest.raises(AzureInputError, match=r"(?i)no such file"):
        load_coco(path)
    path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(AzureInputError, match="not COCO"):
        load_coco(path)
    data = _dataset()
    data["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(AzureInputError, match="unknown id"):
        load_coco(path)


def _pycocotools_stats(
    truth_path: Path, truth: CocoGroundTruth, dets: dict[int, list[Detection]]
) -> tuple[list[float], list[float]]:
    """COCOeval's stats[0:3] (AP, AP50, AP75) and its per-class AP50."""
    coco = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco.COCO(str(truth_path))
        dt = gt.loadRes(coco_results_json(truth, dets))
        run = cocoeval.COCOeval(gt, dt, "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    # precision[T, R, K, A, M]: threshold 0.5, all recall points, every class, area all,
    # 100 detections
    per_class = []
    for k in range(len(truth.categories)):
        p = run.eval["precision"][0, :, k, 0, -1]
        per_class.append(float(p.mean()) if (p > -1).all() else -1.0)
    return [float(v) for v in run.stats[:3]], per_class


def test_the_numbers_are_pycocotools(truth: CocoGroundTruth, tmp_path: Path) -> None:
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(_dataset()), encoding="utf-8")
    dets = _detections()
    dets[6] = dets[6][:3]  # pycocotools cannot hold a name outside the dataset
    stats, per_class = _pycocotools_stats(path, truth, dets)
    ours = score_coco(truth, dets)
    assert [ours.map, ours.map50, ours.map75] == pytest.approx(stats, abs=1e-12)
    assert [c.ap50 for c in ours.classes] == pytest.approx(per_class, abs=1e-12)


def test_random_sets_match_pycocotools(tmp_path: Path) -> None:
    """Jittered boxes, duplicates, misses and tied confidences, several seeds."""
    for seed in range(5):
        rng = random.Random(seed)
        data: dict[str, Any] = {"images": [], "annotations": [], "categories": CATEGORIES}
        dets: dict[int, list[Detection]] = {}
        for image_id in range(1, 7):
            data["images"].append(
                {"id": image_id, "file_name": f"{image_id}.png", "width": 200, "height": 200}
            )
            dets[image_id] = []
            for _ in range(rng.randint(0, 5)):
                cat = rng.choice(CATEGORIES)
                x, y = rng.uniform(0, 150), rng.uniform(0, 150)
                w, h = rng.uniform(5, 50), rng.uniform(5, 50)
                crowd = int(rng.random() < 0.1)
                data["annotations"].append(
                    {
                        "id": len(data["annotations"]) + 1,
                        "image_id": image_id,
                        "category_id": cat["id"],
                        "bbox": [x, y, w, h],
                        "iscrowd": crowd,
                        "area": w * h,
                    }
                )
                for _ in range(rng.choice((0, 1, 1, 2))):
                    j = rng.uniform(-8, 8)
                    name = str(cat["name"]).lower() if rng.random() < 0.9 else "dog"
                    conf = rng.choice((0.5, 0.7, rng.random()))  # ties across images
                    dets[image_id].append(
                        Detection(name=name, confidence=conf, bbox=(x + j, y - j, w, h + j / 2))
                    )
        path = tmp_path / f"coco{seed}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        truth = load_coco(path)
        stats, per_class = _pycocotools_stats(path, truth, dets)
        ours = score_coco(truth, dets)
        assert [-1.0 if v is None else v for v in (ours.map, ours.map50, ours.map75)] == (
            pytest.approx(stats, abs=1e-12)
        ), seed
        assert [-1.0 if c.ap50 is None else c.ap50 for c in ours.classes] == pytest.approx(
            per_class, abs=1e-12
        ), seed


def test_iou_thresholds_are_cocos() -> None:
    assert IOU_THRESHOLDS[0] == 0.5 and IOU_THRESHOLDS[5] == 0.75 and len(IOU_THRESHOLDS) == 10


# --- the command, end to end (scripted answers: the simulator, not a model) -------------------

W, H = 200, 100


def _labelled_set(folder: Path) -> Path:
    """Two plain images and their COCO labels, side by side in `folder`."""
    from PIL import Image

    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (W, H), (120, 130, 140)).save(folder / name)
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": W, "height": H},
            {"id": 2, "file_name": "b.png", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 10, 60, 40]},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [100, 0, 50, 100]},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 100, 50]},
        ],
        "categories": CATEGORIES,
    }
    path = folder / "coco.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _grid(x: float, y: float, w: float, h: float) -> list[int]:
    """Pixels of a 200x100 image on the compact answer's 0-1000 grid."""
    return [
        round(x * 1000 / W),
        round(y * 1000 / H),
        round((x + w) * 1000 / W),
        round((y + h) * 1000 / H),
    ]


SCRIPTED = (
    {  # a.png: the cat (as "Kitty") and the person where they are
        "objects": [{"name": "Kitty", "conf": 90, "box": _grid(20, 10, 60, 40)}],
        "people": [{"conf": 80, "box": _grid(100, 0, 50, 100)}],
    },
    {  # b.png: the dog half a box to the right (IoU 1/3): a miss and a false positive
        "objects": [{"name": "dog", "conf": 70, "box": _grid(50, 0, 100, 50)}],
        "people": [],
    },
)


def _app() -> Any:
    from viewfinder.cli.compare import register

    return sub_commands(register)


def _check_report(out: Path) -> dict[str, Any]:
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    scores = document["scores"]
    by_name = {c["name"]: c for c in scores["classes"]}
    assert by_name["cat"]["ap50"] == pytest.approx(1.0)  # "Kitty" through the label map
    assert by_name["person"]["ap50"] == pytest.approx(1.0)
    assert by_name["dog"]["ap50"] == 0.0 and by_name["dog"]["predicted"] == 1
    assert (scores["reference"], scores["predicted"], scores["matched"]) == (3, 3, 2)
    assert scores["map50"] == pytest.approx(2 / 3)
    assert "| **all** | 3 | 3 | 2 |" in (out / "report.md").read_text(encoding="utf-8")
    return document


def test_cli_analyses_the_images_and_scores_them(
    sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    monkeypatch.setenv("OPENAI_API_KEY", "test-key-placeholder")
    truth = _labelled_set(tmp_path / "set")
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"KITTY": "cat"}), encoding="utf-8")
    sim.script(*SCRIPTED)
    out = tmp_path / "out"
    args = ["compare", "--ground-truth", str(truth), "--label-map", str(label_map)]
    args += ["--model", "gpt-4.1-mini", "--base-url", sim.base_url, "--out", str(out)]
    args += ["--no-cache", "--concurrency", "1"]  # one at a time: the script's order
    result = CliRunner().invoke(_app(), args)  # images: the JSON's folder
    assert result.exit_code == 0, result.output
    assert "AP50" in result.output and "report.md" in result.output
    document = _check_report(out)
    assert document["failed"] == 0 and document["mean_latency_s"] is not None
    # each image asked for objects and people (the dataset has a person category)
    assert len(sim.requests) == 2
    # on the batch core: each analysis recorded as it came, so a re-run pays nothing
    recorded = (out / "analyses.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["id"] for line in recorded) == ["a.png", "b.png"]
    again = CliRunner().invoke(_app(), args)
    assert again.exit_code == 0, again.output
    assert len(sim.requests) == 2  # nothing sent: the recorded analyses were reused
    assert _check_report(out)["failed"] == 0


def test_cli_scores_a_batch_output_with_no_model_call(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    truth = _labelled_set(tmp_path / "set")
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"kitty": "Cat"}), encoding="utf-8")
    boxes = {  # the same answers as above, as a batch run's results in pixels
        "a.png": {
            "objects": [_object("Kitty", 0.9, 20, 10, 60, 40)],
            "people": [{"confidence": 0.8, "box": _box(100, 0, 50, 100)}],
        },
        "b.png": {"objects": [_object("dog", 0.7, 50, 0, 100, 50)], "people": []},
    }
    batch = tmp_path / "out.jsonl"
    lines = [
        {
            "id": f"photos/{name}",
            "status": "ok",
            "cost": 0.001,
            "result": {"model_version": "scripted", "metadata": {"width": W, "height": H}, **r},
        }
        for name, r in boxes.items()
    ]
    batch.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out"
    args = ["compare", "--ground-truth", str(truth), "--results", str(batch)]
    result = CliRunner().invoke(_app(), [*args, "--label-map", str(label_map), "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = _check_report(out)
    assert document["total_cost"] == pytest.approx(0.002) and document["mean_latency_s"] is None
    assert document["model_versions"] == ["scripted"]

    # an image the batch has no result for: reported, left out of the scores, exit 1
    batch.write_text(json.dumps(lines[0]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(_app(), [*args, "--out", str(out)])
    assert result.exit_code == 1
    assert "b.png" in result.output and "no successful result" in result.output
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert document["failed"] == 1 and document["scores"]["images"] == 1


def _box(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"x": x, "y": y, "width": w, "height": h}


def _object(name: str, conf: float, x: int, y: int, w: int, h: int) -> dict[str, Any]:
    return {"name": name, "confidence": conf, "box": _box(x, y, w, h)}


def test_cli_usage_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    truth = _labelled_set(tmp_path / "set")
    runner = CliRunner()
    for args in (
        ["compare", "--images", str(tmp_path)],  # no reference
        ["compare", "--ground-truth", str(truth), "--azure", str(tmp_path)],  # two
        ["compare", "--ground-truth", str(truth), "--synonyms", str(truth)],
        ["compare", "--azure", str(tmp_path), "--label-map", str(truth), "--images", "."],
        ["compare", "--azure", str(tmp_path)],  # no --images
        ["compare", "--ground-truth", str(tmp_path / "nope.json"), "--results", str(truth)],
    ):
        result = runner.invoke(_app(), args)
        assert result.exit_code == 2, (args, result.output)


def test_the_people_set_in_coco_format_has_the_hand_labels() -> None:
    """tests/assets/people/coco.json (the scripted benchmark's truth) keeps labels.json's boxes."""
    folder = Path(__file__).parent / "assets" / "people"
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))["images"]
    truth = load_coco(folder / "coco.json")
    for image in truth.images:
        people = [list(b.bbox) for b in truth.boxes[image.id] if b.category == "person"]
        assert people == labels[image.file_name]["people"], image.file_name
        others = [list(b.bbox) for b in truth.boxes[image.id] if b.category != "person"]
        assert others in ([], [labels[image.file_name]["subject"]]), image.file_name
    assert {i.file_name for i in truth.images} == set(labels)
