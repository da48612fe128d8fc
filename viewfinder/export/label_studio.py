"""A batch output as Label Studio pre-annotations: viewfinder as the pre-labeller of a
human review (of a migration from Azure, say).

`to_label_studio` gives the tasks JSON Label Studio imports: one task per analysed image,
`{"data": {"image": URL, "viewfinder_id": ID}, "predictions": [{"model_version",
"score", "result": [...]}]}`. Boxed findings (`objects`, `people`, `brands`, `faces`)
are `rectanglelabels` regions; text findings (`read` lines, `dense_captions`) are a
`rectangle` region and a `textarea` region of the same id holding the text, as Label
Studio's OCR template links them. Coordinates are percent of the image (0-100) with
`original_width` / `original_height`; each region has the finding's `score`, and the
prediction's `score` is their mean (1.0 with none), which Label Studio can sort tasks by
so reviewers see the least certain first.

`label_studio_config` gives the labelling configuration (XML) whose tag names the regions
use: `image` (the `<Image>`), `label` (`<RectangleLabels>`, one `<Label>` per class),
`bbox` (`<Rectangle>`) and `transcription` (`<TextArea perRegion>`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, Final
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import quoteattr

from viewfinder.export.results import (
    DETECTION_FEATURES,
    AnalysedImage,
    ResultsLike,
    read_results,
)
from viewfinder.schemas.regions import Region, RegionFeature, regions

__all__ = ["label_studio_config", "to_label_studio"]

_TEXT_FEATURES: Final[frozenset[RegionFeature]] = frozenset({"read", "dense_captions"})
"""Features whose findings are text: a rectangle and a textarea, not a class label."""


def _image_url(image: AnalysedImage, image_root: str | None) -> str:
    """Where the task's image is: `image_root` joined with the source's file name, else
    the source itself (a URL, or a path Label Studio can serve)."""
    if image_root is None:
        return image.source
    source = image.source
    path = urlsplit(source).path if "://" in source else source.replace("\\", "/")
    return f"{image_root.rstrip('/')}/{quote(PurePosixPath(path).name)}"


def _value(region: Region, width: int, height: int) -> dict[str, Any]:
    box = region.box
    return {
        "x": round(100 * box.x / width, 4),
        "y": round(100 * box.y / height, 4),
        "width": round(100 * box.width / width, 4),
        "height": round(100 * box.height / height, 4),
        "rotation": 0,
    }


def _regions(image: AnalysedImage, features: Sequence[RegionFeature]) -> list[dict[str, Any]]:
    size = image.result.metadata
    out: list[dict[str, Any]] = []
    for feature in features:
        for region in regions(image.result, feature):
            rid = f"vf{len(out)}"
            common = {
                "id": rid,
                "to_name": "image",
                "original_width": size.width,
                "original_height": size.height,
                "image_rotation": 0,
                "score": round(region.confidence, 4),
            }
            value = _value(region, size.width, size.height)
            if feature in _TEXT_FEATURES:
                out.append(common | {"from_name": "bbox", "type": "rectangle", "value": value})
                text = value | {"text": [region.label]}
                out.append(
                    common | {"from_name": "transcription", "type": "textarea"} | {"value": text}
                )
            else:
                labels = value | {"rectanglelabels": [region.label]}
                out.append(
                    common | {"from_name": "label", "type": "rectanglelabels", "value": labels}
                )
    return out


def to_label_studio(
    results: ResultsLike,
    *,
    features: Sequence[RegionFeature] = DETECTION_FEATURES,
    image_root: str | None = None,
    model_version: str | None = None,
) -> list[dict[str, Any]]:
    """Label Studio tasks with viewfinder's findings as predictions (module docstring).

    Args:
        results: A batch output's path, `read_results`'s answer, or `BatchItem`s.
        features: Whose findings become regions (`objects` and `people` by default; add
            `read` for OCR lines to review as text).
        image_root: Where Label Studio finds the images: a URL prefix or a local-files
            root such as `/data/local-files/?d=photos`, joined with each source's file
            name. None: each task points at its source as the batch wrote it.
        model_version: The predictions' `model_version`; None: each result's own
            (`<model>+<prompt hash>`).
    """
    tasks: list[dict[str, Any]] = []
    for image in read_results(results).images:
        found = _regions(image, features)
        scores = [region["score"] for region in found if region["from_name"] != "bbox"]
        prediction = {
            "model_version": model_version or image.result.model_version,
            "score": round(sum(scores) / len(scores), 4) if scores else 1.0,
            "result": found,
        }
        data = {"image": _image_url(image, image_root), "viewfinder_id": image.id}
        tasks.append({"data": data, "predictions": [prediction]})
    return tasks


def label_studio_config(
    results: ResultsLike,
    *,
    features: Sequence[RegionFeature] = DETECTION_FEATURES,
) -> str:
    """The labelling configuration (XML) for `to_label_studio`'s tasks: one `<Label>` per
    class name found, and the OCR tags when a text feature is exported."""
    names: dict[str, None] = {}
    for image in read_results(results).images:
        for feature in features:
            if feature not in _TEXT_FEATURES:
                names.update(dict.fromkeys(r.label for r in regions(image.result, feature)))
    lines = ["<View>", '  <Image name="image" value="$image"/>']
    lines.append('  <RectangleLabels name="label" toName="image">')
    lines += [f"    <Label value={quoteattr(name)}/>" for name in names]
    lines.append("  </RectangleLabels>")
    if _TEXT_FEATURES.intersection(features):
        lines.append('  <Rectangle name="bbox" toName="image"/>')
        lines.append(
            '  <TextArea name="transcription" toName="image" editable="true" '
            'perRegion="true" displayMode="region-list"/>'
        )
    lines.append("</View>")
    return "\n".join(lines) + "\n"
