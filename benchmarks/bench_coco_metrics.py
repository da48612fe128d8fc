"""COCO box AP, viewfinder's own (evaluate/coco.py) beside pycocotools' COCOeval, one run.

Run: python benchmarks/bench_coco_metrics.py [--images 1000] [--repeat 3]

Why viewfinder keeps its own scoring (ARCHITECTURE.md, "Written here, not taken from a
library"): `compare --ground-truth` is in the core, which has no numpy. This measures what
that costs: a random labelled set (`--images` images of 200x200 pixels, 0 to 5 boxes each
in three classes, one in ten a crowd; each box detected 0 to 2 times, jittered by up to 8
pixels, one detection in ten under another class name; seed 0) scored both ways, the
median wall time of `--repeat` runs each (pycocotools: loading the detections, evaluate,
accumulate and summarize; its ground truth loaded once, before timing, as
`load_coco` is), the two mAP@[.5:.95] (they must agree to 1e-12) and ours / pycocotools.
Needs pycocotools (the `test` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from viewfinder.evaluate.coco import (
    Detection,
    coco_results_json,
    load_coco,
    score_coco,
)

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "person"}]


def labelled_set(images: int) -> tuple[dict[str, Any], dict[int, list[Detection]]]:
    """A random COCO ground truth and detections of it (seed 0)."""
    rng = random.Random(0)
    data: dict[str, Any] = {"images": [], "annotations": [], "categories": CATEGORIES}
    dets: dict[int, list[Detection]] = {}
    for image_id in range(1, images + 1):
        data["images"].append(
            {"id": image_id, "file_name": f"{image_id}.png", "width": 200, "height": 200}
        )
        dets[image_id] = []
        for _ in range(rng.randint(0, 5)):
            cat = rng.choice(CATEGORIES)
            x, y = rng.uniform(0, 150), rng.uniform(0, 150)
            w, h = rng.uniform(5, 50), rng.uniform(5, 50)
            data["annotations"].append(
                {
                    "id": len(data["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": cat["id"],
                    "bbox": [x, y, w, h],
                    "iscrowd": int(rng.random() < 0.1),
                    "area": w * h,
                }
            )
            for _ in range(rng.choice((0, 1, 1, 2))):
                j = rng.uniform(-8, 8)
                name = str(cat["name"]) if rng.random() < 0.9 else "dog"
                box = (x + j, y - j, w, h + j / 2)
                dets[image_id].append(Detection(name=name, confidence=rng.random(), bbox=box))
    return data, dets


def median_seconds(run: Callable[[], float], repeat: int) -> tuple[float, float]:
    """Median wall seconds of `repeat` runs, and what the last returned."""
    times, value = [], 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        value = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    """Score one random set both ways and print the times and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data, dets = labelled_set(args.images)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "coco.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        truth = load_coco(path)
        results = coco_results_json(truth, dets)
        with contextlib.redirect_stdout(io.StringIO()):
            ground = COCO(str(path))

    def ours() -> float:
        return score_coco(truth, dets).map or 0.0

    def theirs() -> float:
        with contextlib.redirect_stdout(io.StringIO()):
            run = COCOeval(ground, ground.loadRes(results), "bbox")
            run.evaluate()
            run.accumulate()
            run.summarize()
        return float(run.stats[0])

    ours_s, ours_map = median_seconds(ours, args.repeat)
    theirs_s, theirs_map = median_seconds(theirs, args.repeat)
    if abs(ours_map - theirs_map) > 1e-12:
        raise SystemExit(f"mAP differs: viewfinder {ours_map}, pycocotools {theirs_map}")
    boxes, found = len(data["annotations"]), sum(map(len, dets.values()))
    print(f"{args.images:,} images, {boxes:,} boxes, {found:,} detections; mAP {ours_map:.4f}")
    print(f"  viewfinder.evaluate.coco  {ours_s:8.3f} s")
    print(f"  pycocotools COCOeval      {theirs_s:8.3f} s")
    print(f"  viewfinder / pycocotools  {ours_s / theirs_s:8.2f}x")


if __name__ == "__main__":
    main()
