"""A result's boxed findings as one flat list: what the bridges to other tools share.

`to_supervision`, the COCO, YOLO, table and Label Studio exports (`viewfinder.export`) all
need the same thing of an `ImageAnalysisResult`: for one feature, each finding's label,
confidence and box. `regions(result, feature)` is that, written once, so every export
names and scores a finding the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, NamedTuple, TypeAlias, get_args

from viewfinder.errors import InvalidOptionError
from viewfinder.schemas.geometry import BoundingBox, Polygon

if TYPE_CHECKING:
    import supervision as sv

    from viewfinder.schemas.result import ImageAnalysisResult

__all__ = ["REGION_FEATURES", "Region", "RegionFeature", "regions", "to_supervision"]

RegionFeature: TypeAlias = Literal["objects", "people", "dense_captions", "read", "brands", "faces"]
"""The features whose findings have boxes (`read`: its lines)."""

REGION_FEATURES: Final[tuple[RegionFeature, ...]] = get_args(RegionFeature)
"""Every `RegionFeature`, in the order exports list them."""


class Region(NamedTuple):
    """One boxed finding of one feature."""

    feature: RegionFeature
    """The feature that found it."""
    label: str
    """Its class name: the object's or brand's name, `person`, `face`, the dense caption's
    text or the read line's text."""
    confidence: float
    """The model's own estimate, 0-1; a read line's is the mean of its words' (1.0 for a
    line without words)."""
    box: BoundingBox
    """Its axis-aligned box in pixels (a read line's: its polygon's bounds)."""
    polygon: Polygon | None = None
    """A read line's quadrilateral; None for the other features."""


def regions(result: ImageAnalysisResult, feature: RegionFeature) -> list[Region]:
    """The findings of `feature` in `result`, in the result's order (empty when the
    feature was not requested or found nothing).

    Raises:
        InvalidOptionError: `feature` has no boxes (e.g. `tags`).
    """
    if feature == "objects":
        return [Region(feature, o.name, o.confidence, o.box) for o in result.objects or []]
    if feature == "people":
        return [Region(feature, "person", p.confidence, p.box) for p in result.people or []]
    if feature == "dense_captions":
        dense = result.dense_captions or []
        return [Region(feature, d.text, d.confidence, d.box) for d in dense]
    if feature == "brands":
        return [Region(feature, b.name, b.confidence, b.box) for b in result.brands or []]
    if feature == "faces":
        return [Region(feature, "face", f.confidence, f.box) for f in result.faces or []]
    if feature == "read":
        found: list[Region] = []
        for line in result.read.lines if result.read is not None else []:
            words = [word.confidence for word in line.words]
            confidence = sum(words) / len(words) if words else 1.0
            found.append(Region(feature, line.text, confidence, line.polygon.bounds, line.polygon))
        return found
    choices = ", ".join(REGION_FEATURES)
    raise InvalidOptionError(f"{feature!r} has no boxes; choose one of {choices}")


def to_supervision(result: ImageAnalysisResult, feature: RegionFeature) -> sv.Detections:
    """`regions(result, feature)` as supervision's `Detections` (see
    `ImageAnalysisResult.to_supervision`)."""
    try:
        import numpy as np
        import supervision as sv
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "to_supervision needs supervision: pip install 'viewfinder[supervision]'"
        ) from error
    found = regions(result, feature)
    class_ids: dict[str, int] = {}
    for region in found:  # ids in order of first appearance, as supervision's Azure parser
        class_ids.setdefault(region.label, len(class_ids))
    return sv.Detections(
        xyxy=np.array([r.box.xyxy for r in found], dtype=np.float32).reshape(-1, 4),
        confidence=np.array([r.confidence for r in found], dtype=np.float32),
        class_id=np.array([class_ids[r.label] for r in found], dtype=int),
        data={"class_name": np.array([r.label for r in found], dtype=str)},
    )
