"""Image Analysis 4.0 REST JSON: viewfinder results to the service's JSON, and back.

`to_azure_json` writes exactly the shape `POST /computervision/imageanalysis:analyze`
answers: `modelVersion`, `captionResult`, `denseCaptionsResult`, `metadata`,
`tagsResult`, `objectsResult`, `readResult`, `smartCropsResult`, `peopleResult`, in
that order, with `values` lists, `{x, y, w, h}` boxes and 4-point polygons, confidences
strictly between 0 and 1 (`MIN_CONFIDENCE`), and only the features that were
requested. `from_azure_json` reads stored service output (for comparisons and tests)
into the same result models.

Needs no Azure package: this is plain JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from viewfinder.schemas.features import (
    Caption,
    CropRegion,
    DenseCaption,
    DetectedObject,
    DetectedPerson,
    ReadBlock,
    ReadLine,
    ReadResult,
    ReadWord,
    Tag,
)
from viewfinder.schemas.geometry import BoundingBox, Point, Polygon
from viewfinder.schemas.result import ImageAnalysisResult, ImageMetadata

__all__ = ["MAX_CONFIDENCE", "MIN_CONFIDENCE", "RESULT_KEYS", "from_azure_json", "to_azure_json"]

RESULT_KEYS: dict[str, str] = {
    "caption": "captionResult",
    "dense_captions": "denseCaptionsResult",
    "tags": "tagsResult",
    "objects": "objectsResult",
    "read": "readResult",
    "smart_crops": "smartCropsResult",
    "people": "peopleResult",
}
"""viewfinder feature name -> the service's result key."""

JSON = dict[str, Any]

MIN_CONFIDENCE = 0.001
MAX_CONFIDENCE = 0.999
"""The service's confidences are detector probabilities, strictly between 0 and 1, and
code written for it relies on that (Microsoft's tests assert `0 < c < 1`). A model may
say 0 or 100 %: `to_azure_json` clamps to these bounds. Only the Azure surfaces do: the
native result keeps the model's own number, and the bounds are no compact-format value
(those have two decimals), so a clamped confidence shows that it was."""


def _conf(confidence: float) -> float:
    """A confidence inside the service's open interval (see `MIN_CONFIDENCE`)."""
    return min(max(confidence, MIN_CONFIDENCE), MAX_CONFIDENCE)


def _box(box: BoundingBox) -> JSON:
    return {"x": box.x, "y": box.y, "w": box.width, "h": box.height}


def _polygon(polygon: Polygon) -> list[JSON]:
    return [{"x": point.x, "y": point.y} for point in polygon.points]


def _read(read: ReadResult) -> JSON:
    return {
        "blocks": [
            {
                "lines": [
                    {
                        "text": line.text,
                        "boundingPolygon": _polygon(line.polygon),
                        "words": [
                            {
                                "text": word.text,
                                "boundingPolygon": _polygon(word.polygon),
                                "confidence": _conf(word.confidence),
                            }
                            for word in line.words
                        ],
                    }
                    for line in block.lines
                ]
            }
            for block in read.blocks
        ]
    }


def to_azure_json(result: ImageAnalysisResult, *, model_version: str | None = None) -> JSON:
    """The service's JSON for `result`: requested features only, in the service's order.

    Args:
        result: viewfinder's result.
        model_version: What `modelVersion` says; `None`: the result's own
            `<model>+<hash>` (a model or prompt change shows in it). Code that checks
            for the service's `2023-10-01` gets it by passing that.
    """
    out: JSON = {"modelVersion": model_version or result.model_version}
    if result.caption is not None:
        out["captionResult"] = {
            "text": result.caption.text,
            "confidence": _conf(result.caption.confidence),
        }
    if result.dense_captions is not None:
        out["denseCaptionsResult"] = {
            "values": [
                {"text": d.text, "confidence": _conf(d.confidence), "boundingBox": _box(d.box)}
                for d in result.dense_captions
            ]
        }
    out["metadata"] = {"width": result.metadata.width, "height": result.metadata.height}
    if result.tags is not None:
        out["tagsResult"] = {
            "values": [{"name": t.name, "confidence": _conf(t.confidence)} for t in result.tags]
        }
    if result.objects is not None:
        out["objectsResult"] = {
            "values": [
                {
                    "boundingBox": _box(o.box),
                    "tags": [{"name": o.name, "confidence": _conf(o.confidence)}],
                }
                for o in result.objects
            ]
        }
    if result.read is not None:
        out["readResult"] = _read(result.read)
    if result.smart_crops is not None:
        out["smartCropsResult"] = {
            "values": [
                {"aspectRatio": c.aspect_ratio, "boundingBox": _box(c.box)}
                for c in result.smart_crops
            ]
        }
    if result.people is not None:
        out["peopleResult"] = {
            "values": [
                {"boundingBox": _box(p.box), "confidence": _conf(p.confidence)}
                for p in result.people
            ]
        }
    return out


# --- reading the service's JSON -------------------------------------------------------------


def _parse_box(data: Mapping[str, Any]) -> BoundingBox:
    return BoundingBox(x=data["x"], y=data["y"], width=data["w"], height=data["h"])


def _parse_polygon(points: list[Mapping[str, Any]]) -> Polygon:
    return Polygon(points=[Point(x=p["x"], y=p["y"]) for p in points])


def _parse_read(data: Mapping[str, Any]) -> ReadResult:
    return ReadResult(
        blocks=[
            ReadBlock(
                lines=[
                    ReadLine(
                        text=line["text"],
                        polygon=_parse_polygon(line["boundingPolygon"]),
                        words=[
                            ReadWord(
                                text=word["text"],
                                polygon=_parse_polygon(word["boundingPolygon"]),
                                confidence=word["confidence"],
                            )
                            for word in line.get("words", [])
                        ],
                    )
                    for line in block.get("lines", [])
                ]
            )
            for block in data.get("blocks", [])
        ]
    )


def _values(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]] | None:
    section = data.get(key)
    return None if section is None else list(section.get("values", []))


def from_azure_json(data: Mapping[str, Any]) -> ImageAnalysisResult:
    """Read the service's JSON (as stored from Azure, or as `to_azure_json` wrote it).

    Features absent from `data` are `None`; `usage` is empty (Azure reports none).
    Objects keep their first tag, which is the only one the service gives.
    """
    caption = data.get("captionResult")
    dense = _values(data, "denseCaptionsResult")
    tags = _values(data, "tagsResult")
    objects = _values(data, "objectsResult")
    crops = _values(data, "smartCropsResult")
    people = _values(data, "peopleResult")
    read = data.get("readResult")
    metadata = data["metadata"]
    return ImageAnalysisResult(
        model_version=str(data.get("modelVersion", "")),
        metadata=ImageMetadata(width=metadata["width"], height=metadata["height"]),
        caption=None
        if caption is None
        else Caption(text=caption["text"], confidence=caption["confidence"]),
        dense_captions=None
        if dense is None
        else [
            DenseCaption(
                text=d["text"], confidence=d["confidence"], box=_parse_box(d["boundingBox"])
            )
            for d in dense
        ],
        tags=None
        if tags is None
        else [Tag(name=t["name"], confidence=t["confidence"]) for t in tags],
        objects=None
        if objects is None
        else [
            DetectedObject(
                name=o["tags"][0]["name"],
                confidence=o["tags"][0]["confidence"],
                box=_parse_box(o["boundingBox"]),
            )
            for o in objects
        ],
        people=None
        if people is None
        else [
            DetectedPerson(box=_parse_box(p["boundingBox"]), confidence=p["confidence"])
            for p in people
        ],
        smart_crops=None
        if crops is None
        else [
            CropRegion(aspect_ratio=c["aspectRatio"], box=_parse_box(c["boundingBox"]))
            for c in crops
        ],
        read=None if read is None else _parse_read(read),
    )
