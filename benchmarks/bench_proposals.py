"""Detector proposals vs model-drawn boxes, scored as `viewfinder compare --ground-truth` does.

Run: python benchmarks/bench_proposals.py   (needs the `local` extra: OpenCV)

The images and boxes are tests/assets/people (coco.json: six people and the subjects of
three photographs, labelled by hand). The scoring is the command's own function
(`viewfinder.evaluate.ground_truth.run_ground_truth`, as `compare --ground-truth` runs it).
The "model" is FakeOpenAI answering scripted JSON: it never looks at the image. A scripted
model measures viewfinder's mapping (proposals listed in the model's convention, verdicts
back onto the detector's boxes) and the detector's geometry, NOT a model's vision or its
judgement: the verifier below is an oracle (it knows the labels), so the proposals rows
are an upper bound of what verification can keep.

Scenarios (features objects and people, the compact format, the default 0-1000 grid):

* model-drawn, jitter 3%: no proposals; the model writes every labelled box with each
  edge off by up to 3% of the image side (seed 0), as bench_coco_boxes.py's row.
* local-people, all kept: `proposals="local-people"` (viewfinder's OpenCV people
  detector); the model keeps every proposal as a person and draws the non-person
  subjects as in the first row: the detector alone decides the people.
* local-people, oracle verdicts: keeps a proposal only where it overlaps a labelled
  person at IoU >= 0.5, and draws the labelled people no kept proposal covers (and the
  other subjects) as in the first row.

The local detector's settings were chosen on these images (tests/assets/people/README.md):
its numbers here are in-sample and optimistic.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import viewfinder as vf
from viewfinder.evaluate.coco import load_coco
from viewfinder.evaluate.ground_truth import run_ground_truth
from viewfinder.testing.fakes import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
TRUTH = ROOT / "tests" / "assets" / "people" / "coco.json"
Grid = list[float]
_LINE = re.compile(r"^(\d+)\. .* \[([-\d., ]+)\]", re.MULTILINE)


def _grid(b: list[float], w: int, h: int) -> Grid:
    x0, y0, bw, bh = b
    return [x0 * 1000 / w, y0 * 1000 / h, (x0 + bw) * 1000 / w, (y0 + bh) * 1000 / h]


def _jitter(box: Grid, rng: random.Random) -> list[int]:
    return [round(min(1000.0, max(0.0, v + rng.uniform(-30, 30)))) for v in box]


def _iou(a: Grid, b: Grid) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _proposed(body: dict[str, Any]) -> list[tuple[int, Grid]]:
    """The numbered proposals the request listed (after the image), in grid units."""
    parts = body["messages"][-1]["content"]
    text = parts[-1].get("text", "") if parts[-1]["type"] == "text" else ""
    return [(int(n), [float(v) for v in box.split(",")]) for n, box in _LINE.findall(text)]


Verdicts = Callable[[list[tuple[int, Grid]], list[Grid]], list[int]]


def _keep_all(proposed: list[tuple[int, Grid]], _: list[Grid]) -> list[int]:
    return [n for n, _ in proposed]


def _oracle(proposed: list[tuple[int, Grid]], people: list[Grid]) -> list[int]:
    return [n for n, box in proposed if any(_iou(box, p) >= 0.5 for p in people)]


def _scripted(truth: dict[str, Any], verdicts: Verdicts | None) -> Callable[..., Any]:
    """FakeOpenAI's `default`: the answer for the dataset's next image (asked in order)."""
    rng = random.Random(0)
    names = {c["id"]: c["name"] for c in truth["categories"]}
    images = iter(truth["images"])

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        image = next(images)
        w, h = image["width"], image["height"]
        labelled = [a for a in truth["annotations"] if a["image_id"] == image["id"]]
        people = [_grid(a["bbox"], w, h) for a in labelled if names[a["category_id"]] == "person"]
        out: dict[str, Any] = {"objects": [], "people": []}
        for a in labelled:
            name = names[a["category_id"]]
            if name != "person":
                box = _jitter(_grid(a["bbox"], w, h), rng)
                out["objects"].append({"name": name.title(), "conf": 90, "box": box})
        if verdicts is None:
            out["people"] = [{"conf": 90, "box": _jitter(p, rng)} for p in people]
            return out
        proposed = _proposed(body)
        kept = set(verdicts(proposed, people))
        out["proposals"] = [
            {"n": n, "keep": n in kept, "name": "person", "conf": 90} for n, _ in proposed
        ]
        covered = [box for n, box in proposed if n in kept]
        out["people"] = [
            {"conf": 90, "box": _jitter(p, rng)}
            for p in people
            if not any(_iou(p, c) >= 0.5 for c in covered)
        ]
        return out

    return answer


SCENARIOS: dict[str, tuple[Verdicts | None, str | None]] = {
    "model-drawn, jitter 3%": (None, None),
    "local-people, all kept": (_keep_all, "local-people"),
    "local-people, oracle verdicts": (_oracle, "local-people"),
}


def main() -> None:
    raw = json.loads(TRUTH.read_text(encoding="utf-8"))
    truth = load_coco(TRUTH)
    print("| scenario | person P | person R | person AP50 | person AP75 | person AP "
          "| all mAP | mean IoU of matches |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for label, (verdicts, proposals) in SCENARIOS.items():
        fake = FakeOpenAI(default=_scripted(raw, verdicts))
        with vf.ImageAnalyzer(**fake.clients(), cache=False, proposals=proposals) as analyzer:
            run = run_ground_truth(truth, TRUTH.parent, analyzer=analyzer)
        assert run.failed == 0, [o.error for o in run.outcomes if o.error]
        s = run.scores
        person = next(c for c in s.classes if c.name == "person")
        ious = [i.mean_iou for i in s.per_image if i.mean_iou is not None]
        mean = sum(ious) / len(ious) if ious else float("nan")
        print(
            f"| {label} | {person.precision:.3f} | {person.recall:.3f} | {person.ap50:.3f} "
            f"| {person.ap75:.3f} | {person.ap:.3f} | {s.map:.3f} | {mean:.3f} |"
        )


if __name__ == "__main__":
    main()
