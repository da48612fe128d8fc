"""Hand-written Azure-format results for two real photos: parse, draw, and compare.

The JSON under `tests/assets/azure/` was written by hand (see its README), so every
score below is known by construction rather than measured against Azure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from viewfinder.compat.rest import from_azure_json
from viewfinder.draw import draw
from viewfinder.evaluate.compare import compare_results, iou
from viewfinder.schemas.result import ImageAnalysisResult

ASSETS = Path(__file__).parent / "assets"

CASES = {
    "chelsea": ASSETS / "chelsea.png",
    "astronaut": ASSETS / "people" / "astronaut.png",
}


def _load(name: str) -> ImageAnalysisResult:
    data = json.loads((ASSETS / "azure" / f"{name}.json").read_text(encoding="utf-8"))
    return from_azure_json(data)


def _main_object_index(result: ImageAnalysisResult) -> int:
    assert result.objects
    return max(range(len(result.objects)), key=lambda i: result.objects[i].box.area)


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[ImageAnalysisResult, Path]:
    return _load(request.param), CASES[request.param]


def test_metadata_matches_image(case: tuple[ImageAnalysisResult, Path]) -> None:
    result, image_path = case
    with Image.open(image_path) as image:
        assert (result.metadata.width, result.metadata.height) == image.size


def test_every_feature_parsed(case: tuple[ImageAnalysisResult, Path]) -> None:
    result, _ = case
    assert result.model_version == "2023-10-01"
    assert result.caption is not None
    assert result.dense_captions
    assert result.tags
    assert result.objects
    assert result.smart_crops
    assert result.people is not None
    assert result.read is not None
    first = result.dense_captions[0].box
    assert (first.x, first.y, first.width, first.height) == (
        0,
        0,
        result.metadata.width,
        result.metadata.height,
    )


def test_boxes_inside_image(case: tuple[ImageAnalysisResult, Path]) -> None:
    result, _ = case
    boxes = [d.box for d in result.dense_captions or []]
    boxes += [o.box for o in result.objects or []]
    boxes += [p.box for p in result.people or []]
    boxes += [c.box for c in result.smart_crops or []]
    for box in boxes:
        _, _, x1, y1 = box.xyxy
        assert x1 <= result.metadata.width
        assert y1 <= result.metadata.height
        assert box.area > 0


def test_draw_keeps_size(case: tuple[ImageAnalysisResult, Path]) -> None:
    result, image_path = case
    annotated = draw(result, image_path)
    with Image.open(image_path) as image:
        assert annotated.size == image.size
    assert annotated.mode == "RGB"


def test_self_comparison_is_perfect(case: tuple[ImageAnalysisResult, Path]) -> None:
    result, _ = case
    scores = compare_results(result, result).scores
    assert scores.tags is not None
    assert scores.tags.f1 == 1.0
    assert scores.objects is not None
    assert scores.objects.recall == 1.0
    assert scores.objects.precision == 1.0
    assert scores.people is not None
    assert scores.people.recall == 1.0
    assert scores.smart_crops is not None
    assert scores.smart_crops.mean_iou == 1.0
    assert all(crop.iou == 1.0 for crop in scores.smart_crops.crops)


def test_main_object_shifted_by_half_width(case: tuple[ImageAnalysisResult, Path]) -> None:
    result, _ = case
    assert result.objects is not None
    index = _main_object_index(result)
    main = result.objects[index]
    assert main.box.width % 2 == 0  # so half the width is a whole pixel
    shifted_box = main.box.model_copy(update={"x": main.box.x + main.box.width // 2})
    objects = list(result.objects)
    objects[index] = main.model_copy(update={"box": shifted_box})
    shifted = result.model_copy(update={"objects": objects})

    # Overlap is half the box, union one and a half boxes: IoU 1/3, below 0.5.
    # Both are whole numbers, so the float division is the correctly rounded 1/3.
    assert iou(shifted_box, main.box) == 1 / 3

    scores = compare_results(shifted, result).scores
    assert scores.objects is not None
    assert len(result.objects) == 1
    assert scores.objects.recall == 0.0
    assert scores.objects.precision == 0.0
    assert scores.objects.matched == 0
    # The other features are untouched.
    assert scores.tags is not None and scores.tags.f1 == 1.0
    assert scores.people is not None and scores.people.recall == 1.0


def test_one_tag_removed(case: tuple[ImageAnalysisResult, Path]) -> None:
    result, _ = case
    assert result.tags is not None
    n = len(result.tags)
    dropped = result.tags[-1]
    fewer = result.model_copy(update={"tags": list(result.tags[:-1])})

    tags = compare_results(fewer, result).scores.tags
    assert tags is not None
    assert tags.recall == pytest.approx((n - 1) / n)
    assert tags.precision == 1.0
    assert tags.reference == n
    assert tags.predicted == n - 1
    assert tags.missing == (dropped.name.lower(),)
    assert tags.extra == ()
