"""`viewfinder.schemas.matching`: the pairing `draw_comparison` draws is the one compare scores."""

from __future__ import annotations

import random

import pytest

import viewfinder as vf
from viewfinder.evaluate.compare import compare_results
from viewfinder.evaluate.compare import iou as compare_iou
from viewfinder.schemas.features import DetectedObject, ReadBlock, ReadLine, ReadResult
from viewfinder.schemas.matching import iou, match_boxes


def _box(x: int, y: int, width: int, height: int) -> vf.BoundingBox:
    return vf.BoundingBox(x=x, y=y, width=width, height=height)


def test_ranked_matching_takes_confident_predictions_first_within_labels() -> None:
    reference = [_box(0, 0, 10, 10), _box(100, 0, 10, 10)]
    predicted = [_box(1, 0, 10, 10), _box(0, 0, 10, 10), _box(100, 0, 10, 10)]
    pairs = match_boxes(
        predicted,
        reference,
        confidences=[0.9, 0.5, 0.8],
        predicted_labels=["cat", "cat", "cat"],
        reference_labels=["cat", "dog"],
    )
    # the most confident cat takes the reference cat; the dog's box pairs with no cat
    assert [(i, j) for i, j, _ in pairs] == [(0, 0)]
    assert pairs[0][2] == pytest.approx(iou(predicted[0], reference[0]))


def test_unranked_matching_pairs_the_highest_iou_first() -> None:
    reference = [_box(0, 0, 10, 10)]
    predicted = [_box(3, 0, 10, 10), _box(1, 0, 10, 10)]
    assert [(i, j) for i, j, _ in match_boxes(predicted, reference)] == [(1, 0)]
    assert match_boxes(predicted, reference, threshold=0.95) == []


def _random_boxes(rng: random.Random, count: int) -> list[vf.BoundingBox]:
    return [
        _box(rng.randrange(0, 60), rng.randrange(0, 60), rng.randrange(5, 40), rng.randrange(5, 40))
        for _ in range(count)
    ]


@pytest.mark.parametrize("seed", range(20))
def test_the_pairs_are_the_ones_compare_scores(seed: int) -> None:
    rng = random.Random(seed)
    names = ["cat", "dog"]

    def objects(count: int) -> list[DetectedObject]:
        return [
            DetectedObject(name=rng.choice(names), confidence=rng.random(), box=box)
            for box in _random_boxes(rng, count)
        ]

    def read(count: int) -> ReadResult:
        lines = [
            ReadLine(text=f"line {n}", polygon=box.to_polygon(), words=[])
            for n, box in enumerate(_random_boxes(rng, count))
        ]
        return ReadResult(blocks=[ReadBlock(lines=lines)])

    metadata = vf.ImageMetadata(width=100, height=100)
    ours = vf.ImageAnalysisResult(
        model_version="t", metadata=metadata, objects=objects(6), read=read(5)
    )
    theirs = vf.ImageAnalysisResult(
        model_version="t", metadata=metadata, objects=objects(6), read=read(5)
    )
    scores = compare_results(ours, theirs, iou_threshold=0.3).scores
    assert ours.objects is not None and theirs.objects is not None
    object_pairs = match_boxes(
        [o.box for o in ours.objects],
        [o.box for o in theirs.objects],
        0.3,
        confidences=[o.confidence for o in ours.objects],
        predicted_labels=[o.name for o in ours.objects],
        reference_labels=[o.name for o in theirs.objects],
    )
    assert scores.objects is not None and scores.objects.matched == len(object_pairs)
    if object_pairs:
        mean = sum(p[2] for p in object_pairs) / len(object_pairs)
        assert scores.objects.mean_iou == pytest.approx(mean)
    assert ours.read is not None and theirs.read is not None
    line_pairs = match_boxes(
        [line.polygon.bounds for line in ours.read.lines],
        [line.polygon.bounds for line in theirs.read.lines],
        0.3,
    )
    assert scores.read is not None
    assert scores.read.line_precision == pytest.approx(len(line_pairs) / 5)
    for a, b in zip(ours.objects, theirs.objects, strict=True):
        assert iou(a.box, b.box) == compare_iou(a.box, b.box)
