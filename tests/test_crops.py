"""Smart-crop geometry."""

from __future__ import annotations

import pytest

from viewfinder import BoundingBox, InvalidOptionError
from viewfinder.finish.crops import smart_crops, validate_aspect_ratios


@pytest.mark.parametrize("ratio", [0.74, 1.81, 0.0, 5])
def test_ratios_outside_azure_range_are_refused(ratio: float) -> None:
    with pytest.raises(InvalidOptionError, match=r"0\.75 to 1\.8"):
        validate_aspect_ratios([1.0, ratio])


def test_range_edges_are_accepted() -> None:
    assert validate_aspect_ratios([0.75, 1.8]) == (0.75, 1.8)
    assert validate_aspect_ratios(None) == ()


@pytest.mark.parametrize("size", [(864, 576), (576, 864), (1000, 1000), (4000, 60)])
@pytest.mark.parametrize("roi", [(0, 0, 10, 10), (400, 200, 100, 300), (850, 500, 14, 70)])
def test_each_requested_ratio_gives_one_crop_inside_the_image(
    size: tuple[int, int], roi: tuple[int, int, int, int]
) -> None:
    width, height = size
    x, y, w, h = roi
    region = BoundingBox(x=min(x, width - 1), y=min(y, height - 1), width=w, height=h)
    ratios = (0.9, 1.33, 1.8, 0.75)
    crops = smart_crops(region, width, height, ratios)
    assert [c.aspect_ratio for c in crops] == list(ratios)
    for crop, ratio in zip(crops, ratios, strict=True):
        box = crop.box
        assert box.x >= 0 and box.y >= 0
        assert box.x + box.width <= width and box.y + box.height <= height
        # within rounding: one pixel either way on the shorter side
        assert abs(box.width - box.height * ratio) <= max(ratio, 1) + 0.5
        # the largest such crop: it touches both edges on one axis
        assert box.width == width or box.height == height


def test_crop_is_centred_on_the_region_when_there_is_room() -> None:
    (crop,) = smart_crops(BoundingBox(x=400, y=0, width=64, height=576), 864, 576, [1.0])
    assert crop.box == BoundingBox(x=144, y=0, width=576, height=576)


def test_no_ratio_gives_one_crop_with_the_region_ratio_clamped() -> None:
    (tall,) = smart_crops(BoundingBox(x=100, y=100, width=20, height=200), 864, 576)
    assert tall.aspect_ratio == 0.5
    assert tall.box.height == 200 and tall.box.width == 100
    (wide,) = smart_crops(BoundingBox(x=10, y=10, width=800, height=20), 864, 576)
    assert wide.aspect_ratio == 2.0
    (square,) = smart_crops(BoundingBox(x=10, y=10, width=300, height=300), 864, 576)
    assert square.aspect_ratio == 1.0 and square.box == BoundingBox(
        x=10, y=10, width=300, height=300
    )
