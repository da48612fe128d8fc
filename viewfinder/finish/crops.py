"""Smart-crop geometry: from the model's region of interest to crops of given ratios.

Pure arithmetic in pixels of the original image; shared by every engine.
"""

from __future__ import annotations

from collections.abc import Sequence

from viewfinder.errors import InvalidOptionError
from viewfinder.schemas.features import CropRegion
from viewfinder.schemas.geometry import BoundingBox

__all__ = [
    "MAX_REQUESTED_RATIO",
    "MIN_REQUESTED_RATIO",
    "smart_crops",
    "validate_aspect_ratios",
]

MIN_REQUESTED_RATIO = 0.75
MAX_REQUESTED_RATIO = 1.8
_MIN_DEFAULT_RATIO = 0.5
_MAX_DEFAULT_RATIO = 2.0


def validate_aspect_ratios(ratios: Sequence[float] | None) -> tuple[float, ...]:
    """Check requested ratios (width / height) against Azure's range, 0.75-1.8 inclusive.

    Raises:
        InvalidOptionError: A ratio is outside the range or not a number.
    """
    if not ratios:
        return ()
    checked = []
    for ratio in ratios:
        value = float(ratio)
        if not MIN_REQUESTED_RATIO <= value <= MAX_REQUESTED_RATIO:
            raise InvalidOptionError(
                f"smart-crop aspect ratio {ratio!r} is not in the allowed range "
                f"[{MIN_REQUESTED_RATIO} to {MAX_REQUESTED_RATIO}] (width / height)"
            )
        checked.append(value)
    return tuple(checked)


def _place(center: float, length: int, limit: int) -> int:
    """Start of a segment of `length` centred on `center`, kept inside [0, limit]."""
    start = round(center - length / 2)
    return min(max(start, 0), limit - length)


def _largest_crop(roi: BoundingBox, ratio: float, width: int, height: int) -> BoundingBox:
    crop_w = min(width, round(height * ratio))
    crop_h = min(height, round(crop_w / ratio))
    crop_w = max(min(crop_w, width), 1)
    crop_h = max(crop_h, 1)
    cx, cy = roi.x + roi.width / 2, roi.y + roi.height / 2
    return BoundingBox(
        x=_place(cx, crop_w, width), y=_place(cy, crop_h, height), width=crop_w, height=crop_h
    )


def _roi_crop(roi: BoundingBox, width: int, height: int) -> tuple[float, BoundingBox]:
    """The region grown just enough to reach a ratio within 0.5-2.0, inside the image."""
    roi_w, roi_h = max(roi.width, 1), max(roi.height, 1)
    ratio = min(max(roi_w / roi_h, _MIN_DEFAULT_RATIO), _MAX_DEFAULT_RATIO)
    if roi_w / roi_h < ratio:
        roi_w = min(width, round(roi_h * ratio))
    else:
        roi_h = min(height, round(roi_w / ratio))
    cx, cy = roi.x + roi.width / 2, roi.y + roi.height / 2
    box = BoundingBox(
        x=_place(cx, roi_w, width), y=_place(cy, roi_h, height), width=roi_w, height=roi_h
    )
    return round(box.width / box.height, 2), box


def smart_crops(
    roi: BoundingBox, width: int, height: int, ratios: Sequence[float] = ()
) -> list[CropRegion]:
    """Crops around a region of interest, as Azure's `smartCrops` returns them.

    Args:
        roi: The region of interest, in pixels.
        width: Width of the original image.
        height: Height of the original image.
        ratios: Requested ratios (validated, 0.75-1.8). Each gives the largest crop of
            that ratio (within rounding) centred on the region and inside the image, in
            request order. None requested gives one crop: the region grown to the
            nearest ratio within 0.5-2.0.
    """
    if not ratios:
        ratio, box = _roi_crop(roi, width, height)
        return [CropRegion(aspect_ratio=ratio, box=box)]
    return [
        CropRegion(aspect_ratio=ratio, box=_largest_crop(roi, ratio, width, height))
        for ratio in ratios
    ]
