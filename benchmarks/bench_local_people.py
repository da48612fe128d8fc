"""Quality and speed of the local engine's people and smart crops, on labelled images.

Run: python benchmarks/bench_local_people.py [--repeat 3]

Needs the `local` extra (OpenCV 4, NumPy). Images and hand-made labels are in
tests/assets/people (see its README: eight images, six people, all portraits or upper
bodies; three images are composites of the others). The detector settings were chosen
while looking at these same images, so the figures are in-sample and optimistic; they
are a smoke test of quality, not an estimate of it on your photographs.

People: a detection is a true positive when its IoU with a still unmatched labelled
person is at least 0.5 (detections matched most confident first). Precision = TP /
detections, recall = TP / labelled people, over all images.

Smart crops: on the five photographs, the labelled main subject against the saliency
region of interest (ROI precision = share of the ROI on the subject, ROI recall = share
of the subject in the ROI) and against the crops made from it (subject coverage = share
of the subject inside the crop), beside a baseline that centres every crop.

Times are the median of `--repeat` runs per image, averaged over the images, on the
decoded image (decoding excluded), with whatever else this machine is running: the
load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
from PIL import Image

from viewfinder.finish.crops import smart_crops
from viewfinder.local.engine import decode_full
from viewfinder.local.people import DEFAULT_SETTINGS, PeopleSettings, detect_people
from viewfinder.local.saliency import salient_region
from viewfinder.schemas.geometry import BoundingBox

ASSETS = Path(__file__).resolve().parent.parent / "tests" / "assets" / "people"
RATIOS: tuple[tuple[float, ...], ...] = ((), (1.0,), (0.75,), (1.8,))
T = TypeVar("T")
Box = tuple[int, int, int, int]


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union else 0.0


def _inside(part: Box, of: Box) -> float:
    """Share of `part`'s area inside `of`."""
    ix = max(0, min(part[0] + part[2], of[0] + of[2]) - max(part[0], of[0]))
    iy = max(0, min(part[1] + part[3], of[1] + of[3]) - max(part[1], of[1]))
    return ix * iy / (part[2] * part[3])


def _xywh(box: BoundingBox) -> Box:
    return (box.x, box.y, box.width, box.height)


def _timed(run: Callable[[], T], repeat: int) -> tuple[T, float]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    assert result is not None
    return result, statistics.median(times)


def match(detected: Sequence[Box], truth: Sequence[Box], threshold: float) -> int:
    """True positives: detections (most confident first) matched to unmatched labels."""
    used: set[int] = set()
    for box in detected:
        scores = [(_iou(box, t), i) for i, t in enumerate(truth) if i not in used]
        best = max(scores, default=(0.0, -1))
        if best[0] >= threshold:
            used.add(best[1])
    return len(used)


def people_row(
    name: str,
    settings: PeopleSettings,
    images: dict[str, Image.Image],
    labels: dict[str, Any],
    repeat: int,
    verbose: bool = False,
) -> None:
    threshold = labels["iou_threshold"]
    tp = found = expected = 0
    seconds = []
    for file, picture in images.items():
        truth = [tuple(box) for box in labels["images"][file]["people"]]
        people, took = _timed(partial(detect_people, picture, settings), repeat)
        boxes = [_xywh(person.box) for person in people]
        hits = match(boxes, truth, threshold)
        tp, found, expected = tp + hits, found + len(boxes), expected + len(truth)
        seconds.append(took)
        if verbose:
            shown = ", ".join(
                f"{_xywh(p.box)} {p.confidence:.2f} IoU "
                f"{max((_iou(_xywh(p.box), t) for t in truth), default=0.0):.2f}"
                for p in people
            )
            print(f"    {file:<20} {len(truth)} labelled, {hits} found  {shown}")
    precision = tp / found if found else float("nan")
    recall = tp / expected if expected else float("nan")
    print(
        f"  {name:<34} precision {precision:4.2f} ({tp}/{found})  "
        f"recall {recall:4.2f} ({tp}/{expected})  {1000 * statistics.mean(seconds):6.0f} ms/image"
    )


def crops_rows(images: dict[str, Image.Image], labels: dict[str, Any], repeat: int) -> None:
    subjects = {
        file: tuple(entry["subject"])
        for file, entry in labels["images"].items()
        if entry.get("subject")
    }
    seconds, roi_precision, roi_recall = [], [], []
    coverage: dict[str, dict[tuple[float, ...], list[float]]] = {"saliency": {}, "centre": {}}
    for file, subject in subjects.items():
        picture = images[file]
        roi, took = _timed(partial(salient_region, picture), repeat)
        seconds.append(took)
        box = _xywh(roi)
        roi_precision.append(_inside(box, subject))
        roi_recall.append(_inside(subject, box))
        whole = BoundingBox(x=0, y=0, width=picture.width, height=picture.height)
        for method, region in (("saliency", roi), ("centre", whole)):
            for ratios in RATIOS:
                crop = smart_crops(region, picture.width, picture.height, ratios)[0]
                share = _inside(subject, _xywh(crop.box))
                coverage[method].setdefault(ratios, []).append(share)
        print(f"    {file:<20} subject {subject}  ROI {box}")
    print(
        f"  ROI vs subject over {len(subjects)} photographs: precision "
        f"{statistics.mean(roi_precision):.2f}  recall {statistics.mean(roi_recall):.2f}  "
        f"{1000 * statistics.mean(seconds):.1f} ms/image"
    )
    for ratios in RATIOS:
        label = "default ratio" if not ratios else f"ratio {ratios[0]}"
        baseline = "whole image" if not ratios else "centred"
        print(
            f"  subject coverage of the crop, {label:<13}: saliency "
            f"{statistics.mean(coverage['saliency'][ratios]):.2f}  {baseline} "
            f"{statistics.mean(coverage['centre'][ratios]):.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    labels = json.loads((ASSETS / "labels.json").read_text())
    images = {file: decode_full(ASSETS / file) for file in labels["images"]}

    print(
        f"python {platform.python_version()}, opencv {cv2.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, {cv2.getNumThreads()} OpenCV threads, load average "
        + " ".join(f"{load:.2f}" for load in os.getloadavg())
    )
    people = sum(len(entry["people"]) for entry in labels["images"].values())
    print(f"\npeople: {len(images)} images, {people} labelled people, IoU >= 0.5")
    people_row("default (HOG + faces)", DEFAULT_SETTINGS, images, labels, args.repeat, True)
    people_row("faces only", replace(DEFAULT_SETTINGS, hog=None), images, labels, args.repeat)
    hog = DEFAULT_SETTINGS.hog
    assert hog is not None
    for min_score in (0.0, 0.5, hog.min_score, 1.0):
        settings = PeopleSettings(hog=replace(hog, min_score=min_score), faces=None)
        people_row(f"HOG only, min_score {min_score}", settings, images, labels, args.repeat)

    print("\nsmart crops (spectral residual saliency):")
    crops_rows(images, labels, args.repeat)
    print(f"\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}")


if __name__ == "__main__":
    main()
