"""A batch output as a COCO detection dataset, or as COCO's results format for COCOeval.

`to_coco` gives the dataset file `pycocotools.coco.COCO` loads: `images` (width and
height from each result's metadata, `file_name` the record's source), `categories` (one
per class name, ids from 1 in order of first appearance, or the ids of the names you
give) and `annotations` (`bbox` as `[x, y, width, height]` in pixels, `area`, `iscrowd`
0, and viewfinder's `score`). `to_coco_results` gives the same findings as the list
`COCO.loadRes` takes: `{"image_id", "category_id", "bbox", "score"}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from viewfinder.export.results import DETECTION_FEATURES, ResultsLike, read_results
from viewfinder.schemas.regions import RegionFeature, regions

__all__ = ["to_coco", "to_coco_results"]


@dataclass
class _Coco:
    images: list[dict[str, Any]] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)


def _build(
    results: ResultsLike,
    features: Sequence[RegionFeature],
    categories: Sequence[str] | None,
) -> _Coco:
    coco = _Coco()
    fixed = categories is not None
    if categories is not None:
        coco.categories = {name: index for index, name in enumerate(categories, 1)}
    for image_id, image in enumerate(read_results(results).images, 1):
        size = image.result.metadata
        coco.images.append(
            {"id": image_id, "file_name": image.source, "width": size.width, "height": size.height}
        )
        for feature in features:
            for region in regions(image.result, feature):
                if region.label not in coco.categories:
                    if fixed:
                        continue  # a class the given categories do not have
                    coco.categories[region.label] = len(coco.categories) + 1
                box = region.box
                coco.annotations.append(
                    {
                        "id": len(coco.annotations) + 1,
                        "image_id": image_id,
                        "category_id": coco.categories[region.label],
                        "bbox": [box.x, box.y, box.width, box.height],
                        "area": box.area,
                        "iscrowd": 0,
                        "score": round(region.confidence, 4),
                    }
                )
    return coco


def to_coco(
    results: ResultsLike,
    *,
    features: Sequence[RegionFeature] = DETECTION_FEATURES,
    categories: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The COCO detection dataset of a batch's findings (see the module docstring).

    Args:
        results: A batch output's path, `read_results`'s answer, or `BatchItem`s.
        features: Whose findings become annotations (`objects` and `people` by default;
            `dense_captions`, `read`, `brands` and `faces` too: the class is the label
            `ImageAnalysisResult.to_supervision` gives).
        categories: Class names in the order of their COCO ids (1, 2, ...), to match an
            existing dataset's ids; findings of other names are left out. None: one
            category per name found, in order of first appearance.
    """
    coco = _build(results, features, categories)
    return {
        "info": {"description": "viewfinder predictions", "version": "1.0"},
        "images": coco.images,
        "categories": [
            {"id": index, "name": name, "supercategory": "none"}
            for name, index in coco.categories.items()
        ],
        "annotations": coco.annotations,
    }


def to_coco_results(
    results: ResultsLike,
    *,
    features: Sequence[RegionFeature] = DETECTION_FEATURES,
    categories: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The same findings as `to_coco`'s, in COCO's results format (`COCO.loadRes`).

    Image ids are `to_coco`'s (1, 2, ... in the output's order); give the ground truth's
    category names as `categories` so the ids match it.
    """
    coco = _build(results, features, categories)
    keys = ("image_id", "category_id", "bbox", "score")
    return [{key: annotation[key] for key in keys} for annotation in coco.annotations]
