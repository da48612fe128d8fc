"""Boxes of two results paired one-to-one by IoU: pure, shared by drawing and scoring.

`viewfinder.draw.draw_comparison` colours boxes by these pairs and
`viewfinder.evaluate.compare` scores them with the same rules, so a box drawn as missed
is one the comparison counts as missed. It lives in `schemas` because that is the part
both may import (`tests/test_architecture.py`: `draw` may not import `evaluate`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from viewfinder.schemas.geometry import BoundingBox

__all__ = ["Match", "iou", "match_boxes"]

Match = tuple[int, int, float]
"""One pair: (index among the predicted boxes, index among the reference boxes, IoU)."""


def iou(a: BoundingBox, b: BoundingBox) -> float:
    """Intersection over union of two boxes.

    Args:
        a: One box.
        b: The other box.

    Returns:
        Area of the intersection over area of the union, 0-1; 1.0 for two equal empty
        boxes and 0.0 when the union is otherwise empty.
    """
    ax0, ay0, ax1, ay1 = a.xyxy
    bx0, by0, bx1, by1 = b.xyxy
    inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
    union = a.area + b.area - inter
    if union == 0:
        return 1.0 if a == b else 0.0
    return inter / union


def match_boxes(
    predicted: Sequence[BoundingBox],
    reference: Sequence[BoundingBox],
    threshold: float = 0.5,
    *,
    confidences: Sequence[float] | None = None,
    predicted_labels: Sequence[Hashable] | None = None,
    reference_labels: Sequence[Hashable] | None = None,
) -> list[Match]:
    """Pair predicted with reference boxes, one-to-one, greedily, within equal labels.

    With `confidences` (objects, people, dense captions, brands, faces): predictions in
    descending confidence (ties keep their order) each take the unmatched reference of
    highest IoU (the first of equal ones), as COCO-style detection scoring does. Without
    (read lines): every pair in descending IoU, ties by index.

    Args:
        predicted: The prediction's boxes.
        reference: The reference's boxes.
        threshold: The smallest IoU that pairs two boxes.
        confidences: One per predicted box; ranks the predictions.
        predicted_labels: One per predicted box; only equal labels pair (default: all equal).
        reference_labels: One per reference box.

    Returns:
        The pairs, in the order they were made (by rank when ranked).
    """
    p_labels = list(predicted_labels) if predicted_labels is not None else [None] * len(predicted)
    r_labels = list(reference_labels) if reference_labels is not None else [None] * len(reference)
    if confidences is None:
        return _by_iou(predicted, reference, threshold, p_labels, r_labels)
    order = sorted(range(len(predicted)), key=lambda i: -confidences[i])
    taken: set[int] = set()
    pairs: list[Match] = []
    for i in order:
        best, best_iou = -1, threshold
        for j, ref in enumerate(reference):
            if j in taken or r_labels[j] != p_labels[i]:
                continue
            overlap = iou(predicted[i], ref)
            if overlap >= best_iou and (best < 0 or overlap > best_iou):
                best, best_iou = j, overlap
        if best >= 0:
            taken.add(best)
            pairs.append((i, best, best_iou))
    return pairs


def _by_iou(
    predicted: Sequence[BoundingBox],
    reference: Sequence[BoundingBox],
    threshold: float,
    p_labels: Sequence[Hashable],
    r_labels: Sequence[Hashable],
) -> list[Match]:
    """Greedy by IoU over all same-label pairs (for items without confidences)."""
    candidates = sorted(
        (
            (iou(p, r), i, j)
            for i, p in enumerate(predicted)
            for j, r in enumerate(reference)
            if p_labels[i] == r_labels[j]
        ),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    used_p: set[int] = set()
    used_r: set[int] = set()
    pairs: list[Match] = []
    for overlap, i, j in candidates:
        if overlap < threshold:
            break
        if i in used_p or j in used_r:
            continue
        used_p.add(i)
        used_r.add(j)
        pairs.append((i, j, overlap))
    return pairs
