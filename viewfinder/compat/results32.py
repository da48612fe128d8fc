"""Stored Computer Vision 3.2 analyze results read into viewfinder's result model.

What `compat/rest.py`'s `from_azure_json` is for Image Analysis 4.0, `from_cv32_json` is
for 3.2: a body a 3.2 customer stored from `POST /vision/v3.2/analyze` (or `describe`,
`tag`, `detect`, whose keys are a subset) becomes an `ImageAnalysisResult` holding the
3.2 fields, so `viewfinder compare` can use it as the reference. The body is first
validated by `viewfinder.compat.rest32.ImageAnalysis` (reference §4: unknown keys are
refused, naming them), then mapped:

| 3.2 key (§4) | `ImageAnalysisResult` field |
|---|---|
| `categories[]` `name`, `score`, `detail.landmarks` | `categories` (`score` -> `confidence`) |
| `categories[].detail.landmarks` (any category) | `landmarks` too, best first |
| `tags[]` `name`, `confidence`, `hint` | `tags` (`Tag` with `hint`) |
| `description` `captions[]`, `tags[]` | `description` (captions in the stored order) |
| `objects[]` `rectangle`, `object`, `confidence`, `parent` | `objects` (`parent` chain) |
| `brands[]` `name`, `confidence`, `rectangle` | `brands` (confidence 1.0 when absent) |
| `faces[]` `faceRectangle` | `faces`, confidence 1.0 (3.2 gives none; `age`, `gender` dropped) |
| `adult` | `adult` (`AdultContent`) |
| `color` | `color` (`ColorInfo`) |
| `imageType` | `image_type` (`ImageType`) |
| `metadata` `width`, `height` | `metadata` (required: boxes are in its pixels) |
| `modelVersion` | `model_version` (`""` when absent) |

Dropped: `detail.celebrities` (Limited Access; viewfinder refuses it), `requestId`,
`metadata.format`. A key absent from the body stays `None`, as for a feature not
requested. Needs no Azure package: this is plain JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeVar

from viewfinder.compat import rest32
from viewfinder.compat.rest import RESULT_KEYS
from viewfinder.schemas.color import ColorInfo, ImageType
from viewfinder.schemas.cv32 import (
    AdultContent,
    Category,
    Description,
    DetectedBrand,
    DetectedFace,
    Landmark,
)
from viewfinder.schemas.features import Caption, DetectedObject, ObjectParent, Tag
from viewfinder.schemas.geometry import BoundingBox
from viewfinder.schemas.result import ImageAnalysisResult, ImageMetadata

__all__ = ["CV32_FEATURE_KEYS", "STORED_CONFIDENCE", "from_cv32_json", "is_cv32_json"]

CV32_FEATURE_KEYS: Final = (
    "categories",
    "adult",
    "color",
    "imageType",
    "tags",
    "description",
    "faces",
    "objects",
    "brands",
)
"""The feature keys of a 3.2 analyze body (§4 `ImageAnalysis`)."""

STORED_CONFIDENCE: Final = 1.0
"""The confidence of a stored 3.2 face, which has none (§4 `FaceDescription`), and of a
brand stored without one (the docs' examples omit it, §5.6). A reference's confidences
are not scored."""

_T = TypeVar("_T")


def is_cv32_json(data: Mapping[str, Any]) -> bool:
    """Whether `data` is a Computer Vision 3.2 analyze (describe, tag, detect) body.

    It is when it holds none of Image Analysis 4.0's `*Result` keys, at least one 3.2
    feature key (`CV32_FEATURE_KEYS`), and validates as `rest32.ImageAnalysis` (no key
    the 3.2 reference does not list). A body with neither version's features is left
    to the 4.0 reader, which has always read it.

    Args:
        data: A stored JSON object.

    Returns:
        True for a 3.2 body; never raises.
    """
    if any(key in data for key in RESULT_KEYS.values()):
        return False
    if not any(key in data for key in CV32_FEATURE_KEYS):
        return False
    try:
        rest32.ImageAnalysis.model_validate(data)
    except ValueError:  # pydantic's ValidationError is one
        return False
    return True


def _need(value: _T | None, what: str) -> _T:
    if value is None:
        raise ValueError(f"a stored 3.2 result lacks {what}")
    return value


def _rect(rect: rest32.BoundingRect | None, what: str) -> BoundingBox:
    r = _need(rect, f"{what}.rectangle")
    return BoundingBox(
        x=_need(r.x, f"{what}.rectangle.x"),
        y=_need(r.y, f"{what}.rectangle.y"),
        width=_need(r.w, f"{what}.rectangle.w"),
        height=_need(r.h, f"{what}.rectangle.h"),
    )


def _face_box(rect: rest32.FaceRectangle | None) -> BoundingBox:
    r = _need(rect, "faces[].faceRectangle")
    return BoundingBox(
        x=_need(r.left, "faceRectangle.left"),
        y=_need(r.top, "faceRectangle.top"),
        width=_need(r.width, "faceRectangle.width"),
        height=_need(r.height, "faceRectangle.height"),
    )


def _landmarks(models: list[rest32.LandmarksModel]) -> tuple[Landmark, ...]:
    return tuple(
        Landmark(
            name=_need(m.name, "landmarks[].name"),
            confidence=_need(m.confidence, "landmarks[].confidence"),
        )
        for m in models
    )


def _category(category: rest32.Category) -> Category:
    detail = category.detail
    landmarks = None if detail is None or detail.landmarks is None else detail.landmarks
    return Category(
        name=_need(category.name, "categories[].name"),
        confidence=_need(category.score, "categories[].score"),
        landmarks=None if landmarks is None else _landmarks(landmarks),
    )


def _all_landmarks(categories: list[Category] | None) -> list[Landmark] | None:
    if categories is None or all(c.landmarks is None for c in categories):
        return None
    found = [landmark for c in categories for landmark in c.landmarks or ()]
    return sorted(found, key=lambda landmark: -landmark.confidence)


def _parent(hierarchy: rest32.ObjectHierarchy | None) -> ObjectParent | None:
    if hierarchy is None:
        return None
    return ObjectParent(
        name=_need(hierarchy.object_property, "objects[].parent.object"),
        confidence=_need(hierarchy.confidence, "objects[].parent.confidence"),
        parent=_parent(hierarchy.parent),
    )


def _object(item: rest32.DetectedObject) -> DetectedObject:
    return DetectedObject(
        name=_need(item.object_property, "objects[].object"),
        confidence=_need(item.confidence, "objects[].confidence"),
        box=_rect(item.rectangle, "objects[]"),
        parent=_parent(item.parent),
    )


def _description(details: rest32.ImageDescriptionDetails) -> Description:
    return Description(
        captions=tuple(
            Caption(
                text=_need(c.text, "description.captions[].text"),
                confidence=_need(c.confidence, "description.captions[].confidence"),
            )
            for c in details.captions or ()
        ),
        tags=tuple(details.tags or ()),
    )


def _color(color: rest32.ColorInfo) -> ColorInfo:
    return ColorInfo.model_validate(
        {
            "dominant_color_foreground": color.dominant_color_foreground,
            "dominant_color_background": color.dominant_color_background,
            "dominant_colors": tuple(color.dominant_colors or ()),
            "accent_color": color.accent_color,
            "is_bw_img": color.is_bw_img,
        }
    )


def _adult(adult: rest32.AdultInfo) -> AdultContent:
    return AdultContent(
        is_adult_content=adult.is_adult_content,
        is_racy_content=adult.is_racy_content,
        is_gory_content=adult.is_gory_content,
        adult_score=adult.adult_score,
        racy_score=adult.racy_score,
        gore_score=adult.gore_score,
    )


def from_cv32_json(data: Mapping[str, Any]) -> ImageAnalysisResult:
    """Read a stored 3.2 analyze (describe, tag, detect) body; see the module's table.

    Args:
        data: The body as the service answered it.

    Returns:
        The result, with `usage` empty (Azure reports none) and every key absent from
        `data` left `None`.

    Raises:
        ValueError: `data` is not a 3.2 body (pydantic's `ValidationError`, naming the
            key), lacks `metadata`, or lacks a field viewfinder's result needs.
    """
    body = rest32.ImageAnalysis.model_validate(data)
    metadata = _need(body.metadata, "metadata")
    categories = None if body.categories is None else [_category(c) for c in body.categories]
    return ImageAnalysisResult(
        model_version=body.model_version or "",
        metadata=ImageMetadata(
            width=_need(metadata.width, "metadata.width"),
            height=_need(metadata.height, "metadata.height"),
        ),
        tags=None
        if body.tags is None
        else [
            Tag(
                name=_need(t.name, "tags[].name"),
                confidence=_need(t.confidence, "tags[].confidence"),
                hint=t.hint,
            )
            for t in body.tags
        ],
        objects=None if body.objects is None else [_object(o) for o in body.objects],
        categories=categories,
        landmarks=_all_landmarks(categories),
        description=None if body.description is None else _description(body.description),
        brands=None
        if body.brands is None
        else [
            DetectedBrand(
                name=_need(b.name, "brands[].name"),
                confidence=STORED_CONFIDENCE if b.confidence is None else b.confidence,
                box=_rect(b.rectangle, "brands[]"),
            )
            for b in body.brands
        ],
        adult=None if body.adult is None else _adult(body.adult),
        faces=None
        if body.faces is None
        else [
            DetectedFace(box=_face_box(f.face_rectangle), confidence=STORED_CONFIDENCE)
            for f in body.faces
        ],
        color=None if body.color is None else _color(body.color),
        image_type=None
        if body.image_type is None
        else ImageType.model_validate(
            {
                "clip_art_type": body.image_type.clip_art_type,
                "line_drawing_type": body.image_type.line_drawing_type,
            }
        ),
    )
