"""`viewfinder compare --ground-truth` on a scripted set: what a box convention costs.

Run: python benchmarks/bench_coco_boxes.py

The images and boxes are tests/assets/people (coco.json: six people and the subjects of
three photographs, labelled by hand). The "model" is the simulator, a scripted server
that never looks at the image: for each scenario it answers every labelled box, moved or
written as the scenario says, and each scenario is scored by the command itself
(`viewfinder compare --ground-truth ... --base-url <simulator>`, in a subprocess, cache
off). A scripted model measures viewfinder's mapping from an answer to pixels and the
scoring, NOT a model's vision: a real model's boxes are what `compare --ground-truth`
is for, on your own labelled images.

Scenarios (viewfinder reads boxes as `[x_min, y_min, x_max, y_max]` on a 0-1000 grid):

* exact: the labelled boxes, written on that grid: only the grid's rounding is lost.
* jitter 3%: each edge moved by a uniform error of up to 3% of the image side (seed 0).
* shifted 15%: each box moved right and down by 15% of its own width and height
  (IoU 0.57: found at 0.5, missed at 0.75).
* y-first: Gemini's `box_2d` order `[y_min, x_min, y_max, x_max]`, read as x-first.
* pixels: absolute pixels of the copy sent (as Qwen2.5-VL answers), read as 0-1000.

The total cost printed is the simulator's made-up token counts priced as gpt-4.1-mini:
not a real cost.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from viewfinder.testing.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
TRUTH = ROOT / "tests" / "assets" / "people" / "coco.json"
Box = tuple[float, float, float, float]
Scenario = Callable[[Box, int, int, random.Random], list[float]]


def _grid(x0: float, y0: float, x1: float, y1: float, w: int, h: int) -> list[float]:
    return [x0 * 1000 / w, y0 * 1000 / h, x1 * 1000 / w, y1 * 1000 / h]


def _exact(b: Box, w: int, h: int, _: random.Random) -> list[float]:
    return _grid(b[0], b[1], b[0] + b[2], b[1] + b[3], w, h)


def _jitter(b: Box, w: int, h: int, rng: random.Random) -> list[float]:
    def e(side: int) -> float:
        return rng.uniform(-0.03, 0.03) * side

    return _grid(b[0] + e(w), b[1] + e(h), b[0] + b[2] + e(w), b[1] + b[3] + e(h), w, h)


def _shifted(b: Box, w: int, h: int, _: random.Random) -> list[float]:
    dx, dy = 0.15 * b[2], 0.15 * b[3]
    return _grid(b[0] + dx, b[1] + dy, b[0] + b[2] + dx, b[1] + b[3] + dy, w, h)


def _y_first(b: Box, w: int, h: int, rng: random.Random) -> list[float]:
    x0, y0, x1, y1 = _exact(b, w, h, rng)
    return [y0, x0, y1, x1]


def _pixels(b: Box, w: int, h: int, _: random.Random) -> list[float]:
    # Every image here is at most 768 px on its long side, the copy objects and people
    # are sent at, so the copy's pixels are the original's.
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


SCENARIOS: dict[str, Scenario] = {
    "exact": _exact,
    "jitter 3%": _jitter,
    "shifted 15%": _shifted,
    "y-first": _y_first,
    "pixels": _pixels,
}


def _answers(truth: dict[str, Any], scenario: Scenario) -> list[dict[str, Any]]:
    """One compact answer per image, in the dataset's order (the order the command asks)."""
    rng = random.Random(0)
    names = {c["id"]: c["name"] for c in truth["categories"]}
    answers = []
    for image in truth["images"]:
        w, h = image["width"], image["height"]
        answer: dict[str, Any] = {"objects": [], "people": []}
        for a in truth["annotations"]:
            if a["image_id"] != image["id"]:
                continue
            box = [round(min(1000.0, max(0.0, v))) for v in scenario(tuple(a["bbox"]), w, h, rng)]
            name = names[a["category_id"]]
            if name == "person":
                answer["people"].append({"conf": 90, "box": box})
            else:
                answer["objects"].append({"name": name.title(), "conf": 90, "box": box})
        answers.append(answer)
    return answers


def main() -> None:
    truth = json.loads(TRUTH.read_text(encoding="utf-8"))
    env = {**os.environ, "OPENAI_API_KEY": "placeholder-no-model", "COLUMNS": "100"}
    with Simulator() as sim, tempfile.TemporaryDirectory() as tmp:
        for label, scenario in SCENARIOS.items():
            sim.script(*_answers(truth, scenario))
            command = [
                "viewfinder", "compare", "--ground-truth", str(TRUTH.relative_to(ROOT)),
                "--model", "gpt-4.1-mini", "--base-url", "http://127.0.0.1:PORT/v1",
                "--no-cache", "--out", f"report/{label.split()[0]}",
            ]  # fmt: skip
            shown = shlex.join(command)
            command[command.index("--base-url") + 1] = sim.base_url
            command[-1] = f"{tmp}/{label.split()[0]}"
            command[0:1] = [sys.executable, "-m", "viewfinder"]
            done = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
            )
            table = [line for line in done.stdout.splitlines() if not line.startswith("report:")]
            print(f"# {label}\n$ {shown}\n" + "\n".join(table) + "\n")
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
