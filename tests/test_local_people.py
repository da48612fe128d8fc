"""The local engine's detectors on hand-labelled images: quality floors and geometry.

The floors sit a little under what benchmarks/bench_local_people.py measures on the
same images (people: precision 1.00 and recall 1.00, 6 of 6; smart crops: ROI
precision 0.67, recall 0.75, subject coverage at ratio 1.0 0.98). Those figures are
in-sample (see tests/assets/people/README.md), so the floors guard against regressions,
they do not promise quality elsewhere. Timings are in the benchmark only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("cv2")
pytest.importorskip("numpy")

from viewfinder.finish.crops import smart_crops
from viewfinder.local.engine import decode_full
from viewfinder.local.people import DEFAULT_SETTINGS, detect_people, nms
from viewfinder.local.saliency import local_smart_crops, salient_region
from viewfinder.schemas.geometry import BoundingBox

PEOPLE = Path(__file__).parent / "assets" / "people"
LABELS: dict[str, Any] = json.loads((PEOPLE / "labels.json").read_text())
Box = tuple[int, int, int, int]


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union else 0.0


def _inside(part: Box, of: Box) -> float:
    ix = max(0, min(part[0] + part[2], of[0] + of[2]) - max(part[0], of[0]))
    iy = max(0, min(part[1] + part[3], of[1] + of[3]) - max(part[1], of[1]))
    return ix * iy / (part[2] * part[3])


def _xywh(box: BoundingBox) -> Box:
    return (box.x, box.y, box.width, box.height)


def _assert_inside(box: BoundingBox, picture: Image.Image) -> None:
    assert box.width >= 1 and box.height >= 1
    assert box.x + box.width <= picture.width and box.y + box.height <= picture.height


@pytest.fixture(scope="module")
def images() -> dict[str, Image.Image]:
    return {file: decode_full(PEOPLE / file) for file in LABELS["images"]}


@pytest.fixture(scope="module")
def detections(images: dict[str, Image.Image]) -> dict[str, list[Any]]:
    return {file: detect_people(picture) for file, picture in images.items()}


def test_people_precision_and_recall_floors(detections: dict[str, list[Any]]) -> None:
    threshold = LABELS["iou_threshold"]
    tp = found = expected = 0
    for file, people in detections.items():
        truth: list[Box] = [tuple(box) for box in LABELS["images"][file]["people"]]
        used: set[int] = set()
        for person in people:  # most confident first
            scores = [(_iou(_xywh(person.box), t), i) for i, t in enumerate(truth) if i not in used]
            best = max(scores, default=(0.0, -1))
            if best[0] >= threshold:
                used.add(best[1])
        tp, found, expected = tp + len(used), found + len(people), expected + len(truth)

    assert expected == 6
    assert tp / expected >= 0.8, f"recall {tp}/{expected}"
    assert tp / found >= 0.75, f"precision {tp}/{found}"


def test_no_person_in_the_people_free_photographs(detections: dict[str, list[Any]]) -> None:
    for file in ("chelsea.png", "coffee.png", "rocket.jpg"):
        assert detections[file] == [], file


def test_people_geometry_is_valid(
    images: dict[str, Image.Image], detections: dict[str, list[Any]]
) -> None:
    for file, people in detections.items():
        confidences = [person.confidence for person in people]
        assert confidences == sorted(confidences, reverse=True), file
        for person in people:
            assert 0.0 <= person.confidence <= 1.0
            _assert_inside(person.box, images[file])


def test_boxes_are_in_pixels_of_the_image_given_whatever_its_size() -> None:
    picture = decode_full(PEOPLE / "camera_mirrored.png")  # 412x512
    big = picture.resize((824, 1024), Image.Resampling.BILINEAR)  # downscaled inside
    label = LABELS["images"]["camera_mirrored.png"]["people"][0]

    (person,) = detect_people(big)

    _assert_inside(person.box, big)
    assert _iou(_xywh(person.box), tuple(2 * v for v in label)) >= 0.5


def test_tiny_and_flat_images_find_nobody() -> None:
    assert detect_people(Image.new("RGB", (60, 50), "white")) == []
    assert detect_people(Image.new("L", (640, 480), 128)) == []


def test_nms_keeps_the_most_confident_of_overlapping_boxes() -> None:
    boxes = [((0.0, 0.0, 10.0, 10.0), 0.6), ((1.0, 1.0, 10.0, 10.0), 0.9), ((50.0, 0, 5, 5), 0.1)]

    kept = nms(boxes, DEFAULT_SETTINGS.nms_iou)

    assert kept == [((1.0, 1.0, 10.0, 10.0), 0.9), ((50.0, 0, 5, 5), 0.1)]


# --- smart crops --------------------------------------------------------------------------


def test_saliency_roi_and_crops_keep_the_labelled_subjects(
    images: dict[str, Image.Image],
) -> None:
    precision, recall, coverage = [], [], []
    for file, entry in LABELS["images"].items():
        if not entry["subject"]:
            continue
        subject: Box = tuple(entry["subject"])
        picture = images[file]
        roi = salient_region(picture)
        _assert_inside(roi, picture)
        precision.append(_inside(_xywh(roi), subject))
        recall.append(_inside(subject, _xywh(roi)))
        crop = smart_crops(roi, picture.width, picture.height, (1.0,))[0]
        coverage.append(_inside(subject, _xywh(crop.box)))

    assert len(coverage) == 5
    assert sum(precision) / 5 >= 0.55
    assert sum(recall) / 5 >= 0.6
    assert sum(coverage) / 5 >= 0.9


def test_saliency_finds_a_lone_bright_square() -> None:
    picture = Image.new("RGB", (400, 300), (30, 30, 30))
    ImageDraw.Draw(picture).rectangle([260, 60, 320, 120], fill=(250, 250, 250))

    roi = salient_region(picture)

    assert _inside((260, 60, 61, 61), _xywh(roi)) == 1.0
    assert roi.area < 0.15 * 400 * 300


def test_a_flat_image_is_all_region_of_interest() -> None:
    assert salient_region(Image.new("L", (300, 200), 77)) == BoundingBox(
        x=0, y=0, width=300, height=200
    )


@pytest.mark.parametrize("size", [(451, 300), (120, 900), (900, 60)])
def test_local_crops_have_the_model_paths_geometry(size: tuple[int, int]) -> None:
    picture = decode_full(PEOPLE / "chelsea.png").resize(size)
    ratios = (0.75, 1.0, 1.8)

    crops = local_smart_crops(picture, ratios)

    assert crops == smart_crops(salient_region(picture), *size, ratios)
    assert [crop.aspect_ratio for crop in crops] == list(ratios)
    for crop in crops:
        _assert_inside(crop.box, picture)
    (default,) = local_smart_crops(picture)  # within 0.5-2.0 where the image allows
    assert default.aspect_ratio == round(default.box.width / default.box.height, 2)
    _assert_inside(default.box, picture)
