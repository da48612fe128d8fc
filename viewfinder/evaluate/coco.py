"""Score viewfinder's boxes against COCO-format ground truth, as COCO's own evaluation does.

```
truth = load_coco("labels/instances.json")
detections = {image.id: detections_of(result, truth.categories) for image, result in ...}
scores = score_coco(truth, detections)      # scores.map50, scores.classes[0].ap, ...
```

The ground truth is a COCO detection file: `images[{id, file_name, width, height}]`,
`annotations[{image_id, category_id, bbox: [x, y, w, h] in pixels, iscrowd?}]`,
`categories[{id, name}]`. Other keys (`area`, `segmentation`, `info`, `licenses`) are
ignored. viewfinder's side is a result's `objects` (by name) and, when the dataset has a
category named `person`, its `people`.

The matching and average precision follow pycocotools' `COCOeval` for boxes, area range
"all" and at most 100 detections per image and class (tests check the numbers against
pycocotools): per image and class, detections in descending confidence each take the
unmatched ground-truth box of highest IoU at or above the threshold; a crowd box
(`iscrowd: 1`) may absorb any number of detections, which then count neither way, and is
not counted as a box to find (its IoU is the intersection over the detection's area);
AP is the mean of the interpolated precision at the 101 recall points 0, 0.01, ..., 1.
`ap` is the mean over the ten IoU thresholds 0.5, 0.55, ..., 0.95, and the `map*` values
are means over the classes that have at least one box to find.

Precision, recall and F1 are at IoU 0.5 on the same matches: per class, overall (summed
over classes) and per image. A detection whose name is no category of the dataset (after
`label_map`) is a false positive in the overall and per-image precision, and is listed in
`CocoScores.unknown_names`; it belongs to no class, so no AP counts it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from viewfinder.errors import AzureInputError
from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "IOU_THRESHOLDS",
    "PERSON",
    "ClassScores",
    "CocoBox",
    "CocoGroundTruth",
    "CocoImage",
    "CocoImageScores",
    "CocoScores",
    "Detection",
    "box_iou",
    "coco_results_json",
    "detections_of",
    "label_canon",
    "load_coco",
    "score_coco",
]

IOU_THRESHOLDS: Final = (*(i * ((0.95 - 0.5) / 9) + 0.5 for i in range(9)), 0.95)
"""COCO's ten IoU thresholds, 0.5 to 0.95, computed as `numpy.linspace` does (pycocotools'
values to the last bit)."""

RECALL_POINTS: Final = (*(i * (1.0 / 100) for i in range(100)), 1.0)
"""COCO's 101 recall points at which precision is interpolated (as `numpy.linspace`)."""

_AT_75: Final = 5
"""Index of IoU 0.75 in `IOU_THRESHOLDS`."""

MAX_DETECTIONS: Final = 100
"""Detections kept per image and class, most confident first (COCO's `maxDets`)."""

PERSON: Final = "person"
"""The category name that `people` boxes score against."""

Box = tuple[float, float, float, float]
"""`[x, y, width, height]` in pixels of the image."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class CocoImage(_Frozen):
    """One entry of the dataset's `images`."""

    id: int
    """The dataset's image id."""
    file_name: str
    """The image's file name, relative to the images directory."""
    width: int
    """Width in pixels."""
    height: int
    """Height in pixels."""


class CocoBox(_Frozen):
    """One ground-truth box."""

    category: str
    """The category's name, lower-cased and stripped."""
    bbox: Box
    """`[x, y, width, height]` in pixels."""
    crowd: bool = False
    """`iscrowd: 1`: a region of many instances, neither to find nor to penalise."""


class CocoGroundTruth(_Frozen):
    """A COCO detection file, read."""

    images: tuple[CocoImage, ...]
    """The images, in the file's order."""
    categories: tuple[str, ...]
    """Category names (lower-cased, stripped), in the file's order."""
    category_ids: tuple[int, ...]
    """The dataset's id of each category, in the same order."""
    boxes: Mapping[int, tuple[CocoBox, ...]]
    """Ground-truth boxes by image id (every image has an entry, maybe empty)."""


class Detection(_Frozen):
    """One box of viewfinder's answer, named in the dataset's vocabulary."""

    name: str
    """The class name after lower-casing and the label map."""
    confidence: float
    """The model's confidence: the rank order of matching and of AP."""
    bbox: Box
    """`[x, y, width, height]` in pixels."""


class ClassScores(_Frozen):
    """One category over all images."""

    name: str
    """The category's name."""
    reference: int
    """Ground-truth boxes to find (crowd boxes not counted)."""
    predicted: int
    """Detections of this class (at most 100 per image; those on crowd boxes not counted)."""
    matched: int
    """Detections matched at IoU 0.5."""
    precision: float
    """`matched / predicted` (1.0 when both are 0, 0.0 when only one is)."""
    recall: float
    """`matched / reference` (same convention)."""
    f1: float
    """Harmonic mean of precision and recall."""
    ap50: float | None
    """AP at IoU 0.5 (COCO's 101-point interpolation); `None` without boxes to find."""
    ap75: float | None
    """AP at IoU 0.75."""
    ap: float | None
    """AP averaged over IoU 0.5:0.05:0.95 (COCO's headline AP)."""


class CocoImageScores(_Frozen):
    """One image, at IoU 0.5, all classes together."""

    image: str
    """The image's `file_name`."""
    reference: int
    """Ground-truth boxes to find."""
    predicted: int
    """Detections (names outside the dataset included)."""
    matched: int
    """Detections matched at IoU 0.5 to a box of their class."""
    precision: float
    """`matched / predicted`."""
    recall: float
    """`matched / reference`."""
    f1: float
    """Harmonic mean of precision and recall."""
    mean_iou: float | None
    """Mean IoU of the matched pairs; `None` without any."""


class CocoScores(_Frozen):
    """The whole set: per class, overall, and per image."""

    images: int
    """Images scored."""
    classes: tuple[ClassScores, ...]
    """One entry per dataset category, in the dataset's order."""
    reference: int
    """Ground-truth boxes to find, all classes."""
    predicted: int
    """Detections, all classes and names outside the dataset."""
    matched: int
    """Detections matched at IoU 0.5."""
    precision: float
    """Overall `matched / predicted` at IoU 0.5."""
    recall: float
    """Overall `matched / reference` at IoU 0.5."""
    f1: float
    """Harmonic mean of the overall precision and recall."""
    mean_iou: float | None
    """Mean IoU of all pairs matched at 0.5."""
    map50: float | None
    """Mean over classes of AP at IoU 0.5; `None` when no class has a box to find."""
    map75: float | None
    """Mean over classes of AP at IoU 0.75."""
    map: float | None
    """Mean over classes of AP over IoU 0.5:0.95 (COCO's headline mAP)."""
    unknown_names: tuple[str, ...]
    """Detection names that are no category of the dataset, sorted."""
    per_image: tuple[CocoImageScores, ...]
    """Per image, in the dataset's order."""


# --- reading ------------------------------------------------------------------------------


def _fail(path: Path, message: str) -> AzureInputError:
    return AzureInputError(f"{path}: not COCO detection ground truth ({message})")


def load_coco(path: str | Path) -> CocoGroundTruth:
    """Read a COCO detection file.

    Args:
        path: The JSON file.

    Returns:
        The images, categories and boxes; category names lower-cased and stripped.

    Raises:
        AzureInputError: The file is missing, not JSON, or lacks COCO's fields (a box
            whose image or category id is not declared, two categories with one name).
    """
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AzureInputError(f"{source}: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(source, "expected a JSON object")
    try:
        names: dict[int, str] = {}
        for category in data["categories"]:
            name = str(category["name"]).strip().lower()
            if name in names.values():
                raise _fail(source, f"two categories are named {name!r}")
            names[int(category["id"])] = name
        images = tuple(
            CocoImage(
                id=int(i["id"]),
                file_name=str(i["file_name"]),
                width=int(i["width"]),
                height=int(i["height"]),
            )
            for i in data["images"]
        )
        boxes: dict[int, list[CocoBox]] = {image.id: [] for image in images}
        for annotation in data["annotations"]:
            image_id, category_id = int(annotation["image_id"]), int(annotation["category_id"])
            if image_id not in boxes or category_id not in names:
                raise _fail(source, f"annotation {annotation.get('id')!r} names an unknown id")
            x, y, w, h = (float(v) for v in annotation["bbox"])
            boxes[image_id].append(
                CocoBox(
                    category=names[category_id],
                    bbox=(x, y, w, h),
                    crowd=bool(annotation.get("iscrowd", 0)),
                )
            )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, AzureInputError):
            raise
        raise _fail(source, repr(exc)) from None
    return CocoGroundTruth(
        images=images,
        categories=tuple(names.values()),
        category_ids=tuple(names),
        boxes={k: tuple(v) for k, v in boxes.items()},
    )


# --- viewfinder's side ----------------------------------------------------------------------


def label_canon(label_map: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """The name viewfinder's label takes in the dataset: lower-cased, stripped, mapped.

    Args:
        label_map: Model name -> dataset name (`{"sofa": "couch"}`), case-insensitive.

    Returns:
        A function from a model's name to a dataset's name.
    """
    table = {k.strip().lower(): v.strip().lower() for k, v in (label_map or {}).items()}

    def canon(name: str) -> str:
        key = name.strip().lower()
        return table.get(key, key)

    return canon


def detections_of(
    result: ImageAnalysisResult,
    categories: Sequence[str],
    label_map: Mapping[str, str] | None = None,
) -> list[Detection]:
    """viewfinder's boxes in the dataset's vocabulary.

    `objects` give their (mapped) names. When the dataset has a `person` category and the
    result holds `people`, the people are the `person` detections and objects that map to
    `person` are dropped, so one person is not two detections; without `people`, person
    objects score as any other object.

    Args:
        result: A viewfinder result (any mode: model, local, hybrid).
        categories: The dataset's category names (lower-cased).
        label_map: Model name -> dataset name.

    Returns:
        The detections, objects first.
    """
    canon = label_canon(label_map)
    use_people = PERSON in categories and result.people is not None
    found = [
        Detection(name=canon(o.name), confidence=o.confidence, bbox=_xywh(o.box.xyxy))
        for o in result.objects or ()
        if not (use_people and canon(o.name) == PERSON)
    ]
    if use_people:
        found += [
            Detection(name=PERSON, confidence=p.confidence, bbox=_xywh(p.box.xyxy))
            for p in result.people or ()
        ]
    return found


def _xywh(xyxy: tuple[int, int, int, int]) -> Box:
    x0, y0, x1, y1 = xyxy
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


# --- matching, as COCOeval.evaluateImg ----------------------------------------------------


def box_iou(detection: Box, truth: Box, *, crowd: bool = False) -> float:
    """IoU of two `[x, y, w, h]` boxes, as pycocotools computes it.

    Args:
        detection: The detected box.
        truth: The ground-truth box.
        crowd: `truth` is a crowd region: the intersection is divided by the
            detection's area alone.

    Returns:
        0-1; 0.0 when the denominator is 0.
    """
    dx, dy, dw, dh = detection
    tx, ty, tw, th = truth
    iw = min(dx + dw, tx + tw) - max(dx, tx)
    ih = min(dy + dh, ty + th) - max(dy, ty)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = dw * dh if crowd else dw * dh + tw * th - inter
    return inter / union if union > 0 else 0.0


class _Matched(_Frozen):
    """One image and class at one threshold: per detection (in rank order) its IoU with the
    matched box (`None` when unmatched) and whether it is ignored (matched to a crowd)."""

    confidences: tuple[float, ...]
    matched: tuple[float | None, ...]
    ignored: tuple[bool, ...]


def _match(
    detections: Sequence[Detection], truths: Sequence[CocoBox], threshold: float
) -> _Matched:
    # Ground truth to find first, crowds last, as COCOeval sorts it (stable).
    truths = sorted(truths, key=lambda t: t.crowd)
    taken = [False] * len(truths)
    matched: list[float | None] = []
    ignored: list[bool] = []
    for det in detections:
        best, best_iou = -1, min(threshold, 1 - 1e-10)
        for g, truth in enumerate(truths):
            if taken[g] and not truth.crowd:
                continue
            if best > -1 and not truths[best].crowd and truth.crowd:
                break  # a real match found; crowds come only after the real boxes
            overlap = box_iou(det.bbox, truth.bbox, crowd=truth.crowd)
            if overlap < best_iou:
                continue
            best, best_iou = g, overlap
        if best == -1:
            matched.append(None)
            ignored.append(False)
            continue
        taken[best] = True
        matched.append(best_iou)
        ignored.append(truths[best].crowd)
    return _Matched(
        confidences=tuple(d.confidence for d in detections),
        matched=tuple(matched),
        ignored=tuple(ignored),
    )


def _ranked(detections: Sequence[Detection]) -> list[Detection]:
    """Most confident first (ties keep their order), at most `MAX_DETECTIONS`."""
    return sorted(detections, key=lambda d: -d.confidence)[:MAX_DETECTIONS]


# --- accumulating, as COCOeval.accumulate -------------------------------------------------


def _average_precision(runs: Sequence[_Matched], n_truth: int) -> float:
    """COCO's 101-point interpolated AP of one class at one threshold."""
    flat = [
        (conf, m is not None, ign)
        for run in runs
        for conf, m, ign in zip(run.confidences, run.matched, run.ignored, strict=True)
    ]
    flat.sort(key=lambda item: -item[0])  # stable, as numpy's mergesort
    tp = fp = 0
    recalls: list[float] = []
    precisions: list[float] = []
    for _, hit, ign in flat:
        if ign:
            continue
        tp += hit
        fp += not hit
        recalls.append(tp / n_truth)
        precisions.append(tp / (tp + fp + sys.float_info.epsilon))
    for i in range(len(precisions) - 1, 0, -1):
        precisions[i - 1] = max(precisions[i - 1], precisions[i])
    total = 0.0
    k = 0
    for point in RECALL_POINTS:  # searchsorted(recalls, point, side="left")
        while k < len(recalls) and recalls[k] < point:
            k += 1
        if k == len(recalls):
            break
        total += precisions[k]
    return total / len(RECALL_POINTS)


def _ratio(numerator: int, denominator: int, *, both_empty: bool) -> float:
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def _prf(matched: int, predicted: int, reference: int) -> tuple[float, float, float]:
    both_empty = predicted == 0 and reference == 0
    precision = _ratio(matched, predicted, both_empty=both_empty)
    recall = _ratio(matched, reference, both_empty=both_empty)
    total = precision + recall
    return precision, recall, 0.0 if total == 0 else 2 * precision * recall / total


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def score_coco(truth: CocoGroundTruth, detections: Mapping[int, Sequence[Detection]]) -> CocoScores:
    """Score detections against the ground truth.

    Args:
        truth: The dataset (`load_coco`).
        detections: viewfinder's detections by image id (`detections_of`). Only these
            images are scored: an image left out (say, its analysis failed) counts
            neither its boxes nor its detections.

    Returns:
        Per class, overall and per image scores (see the module docstring).
    """
    known = set(truth.categories)
    images = [image for image in truth.images if image.id in detections]
    ids = sorted(image.id for image in images)  # COCOeval's image order for ties
    # runs[class][threshold] = one _Matched per image
    runs: dict[str, list[list[_Matched]]] = {
        name: [[] for _ in IOU_THRESHOLDS] for name in truth.categories
    }
    n_truth = dict.fromkeys(truth.categories, 0)
    per_image: dict[int, tuple[int, int, int, list[float]]] = {}
    unknown: set[str] = set()
    for image_id in ids:
        dets = detections[image_id]
        boxes = truth.boxes.get(image_id, ())
        unknown.update(d.name for d in dets if d.name not in known)
        n_ref = n_pred = n_hit = 0
        ious: list[float] = []
        for name in truth.categories:
            ranked = _ranked([d for d in dets if d.name == name])
            truths = [b for b in boxes if b.category == name]
            n_truth[name] += sum(not b.crowd for b in truths)
            n_ref += sum(not b.crowd for b in truths)
            for t, threshold in enumerate(IOU_THRESHOLDS):
                run = _match(ranked, truths, threshold)
                runs[name][t].append(run)
                if t == 0:
                    kept = [m for m, ign in zip(run.matched, run.ignored, strict=True) if not ign]
                    n_pred += len(kept)
                    hits = [m for m in kept if m is not None]
                    n_hit += len(hits)
                    ious += hits
        n_pred += sum(d.name not in known for d in dets)
        per_image[image_id] = (n_ref, n_pred, n_hit, ious)

    classes = []
    for name in truth.categories:
        at_50 = runs[name][0]
        kept = [
            m for run in at_50 for m, ign in zip(run.matched, run.ignored, strict=True) if not ign
        ]
        matched = sum(m is not None for m in kept)
        precision, recall, f1 = _prf(matched, len(kept), n_truth[name])
        aps = (
            [_average_precision(per_threshold, n_truth[name]) for per_threshold in runs[name]]
            if n_truth[name]
            else None
        )
        classes.append(
            ClassScores(
                name=name,
                reference=n_truth[name],
                predicted=len(kept),
                matched=matched,
                precision=precision,
                recall=recall,
                f1=f1,
                ap50=None if aps is None else aps[0],
                ap75=None if aps is None else aps[_AT_75],
                ap=None if aps is None else sum(aps) / len(aps),
            )
        )

    reference = sum(v[0] for v in per_image.values())
    predicted = sum(v[1] for v in per_image.values())
    matched = sum(v[2] for v in per_image.values())
    precision, recall, f1 = _prf(matched, predicted, reference)
    scored = [c for c in classes if c.ap is not None]
    return CocoScores(
        images=len(images),
        classes=tuple(classes),
        reference=reference,
        predicted=predicted,
        matched=matched,
        precision=precision,
        recall=recall,
        f1=f1,
        mean_iou=_mean([i for v in per_image.values() for i in v[3]]),
        map50=_mean([c.ap50 for c in scored if c.ap50 is not None]),
        map75=_mean([c.ap75 for c in scored if c.ap75 is not None]),
        map=_mean([c.ap for c in scored if c.ap is not None]),
        unknown_names=tuple(sorted(unknown)),
        per_image=tuple(_image_scores(image.file_name, *per_image[image.id]) for image in images),
    )


def _image_scores(
    name: str, reference: int, predicted: int, matched: int, ious: Sequence[float]
) -> CocoImageScores:
    precision, recall, f1 = _prf(matched, predicted, reference)
    return CocoImageScores(
        image=name,
        reference=reference,
        predicted=predicted,
        matched=matched,
        precision=precision,
        recall=recall,
        f1=f1,
        mean_iou=_mean(ious),
    )


def coco_results_json(
    truth: CocoGroundTruth, detections: Mapping[int, Sequence[Detection]]
) -> list[dict[str, Any]]:
    """The detections as a COCO results file (`[{image_id, category_id, bbox, score}]`).

    Category ids are the dataset's; names outside the dataset are left out (pycocotools
    cannot hold them). For checking the numbers with pycocotools.

    Args:
        truth: The dataset.
        detections: Detections by image id.

    Returns:
        The results file's entries.
    """
    ids = dict(zip(truth.categories, truth.category_ids, strict=True))
    return [
        {
            "image_id": image_id,
            "category_id": ids[d.name],
            "bbox": list(d.bbox),
            "score": d.confidence,
        }
        for image_id, dets in detections.items()
        for d in dets
        if d.name in ids
    ]
