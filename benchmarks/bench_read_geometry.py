"""`read`'s line polygons: model-drawn boxes vs the text detector's, and the tokens of both.

Run: python benchmarks/bench_read_geometry.py [--model gpt-4.1-mini] [--seed 17]

A SCRIPTED model (`viewfinder.testing.fakes.FakeOpenAI`, not a model) answers the
ground-truth text, so this measures the geometry and the mapping to pixels, not a
model's reading; nothing is sent to any model.

Ground truth: the OCR test images drawn by code (tests/assets/ocr: `receipt.png`,
`columns.png`, `skewed.png`; checked to be pixel for pixel what their drawing scripts
draw). Each line's polygon is the text's bounding box as Pillow drew it
(`ImageDraw.textbbox`), for `skewed.png` carried through the same 4-degree rotation and
perspective warp as the image. `page.png` (a scan) has no known geometry and is left out.

Modes, both through `ImageAnalyzer` (compact answer format, default 0-1000 grid):

- `model` (`read_geometry="model"`): the scripted model draws each line as a box on the
  0-1000 grid, as a model would: the ground-truth polygon's bounds on the grid, each
  coordinate moved by Gaussian noise of `sigma` grid units (0: a perfect model, only the
  grid's rounding and the axis-aligned box lost; 10 and 25: an assumed error, NOT a
  measured one: a real model's error depends on the model and is what
  `viewfinder compare --ground-truth` measures on your own labelled images);
- `detector` (`read_geometry="detector"`): the real local text detector's regions, each
  as tight as the recogniser makes it (`viewfinder.local.locate_text_lines`); the
  scripted model answers, in the ground truth's reading order, the text of the ground
  truth line each region overlaps most (IoU >= 0.3), and leaves other regions out.
  Beside it, not a mode: the IoU the detector's own padded regions
  (`detect_text_regions(words=False)`, what the first version of the mode used) get.

Per image: the mean polygon IoU of the ground-truth lines (a line found with its text:
the IoU of its polygon; not found: 0), then the input tokens (text by `o200k_base` plus
the image by the model's image rule) and output tokens (the scripted answer's JSON) of
one call in each mode.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import io
import math
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image, ImageChops, ImageDraw

import viewfinder as vf
from viewfinder.cost.estimate import estimate_image_tokens
from viewfinder.cost.tokens import count_tokens, prefix_tokens
from viewfinder.local import detect_text_regions, locate_text_lines
from viewfinder.testing import compact_answer
from viewfinder.testing.fakes import FakeOpenAI
from viewfinder.testing.simulator.replies import answer_text

ROOT = Path(__file__).resolve().parent.parent
OCR = ROOT / "tests" / "assets" / "ocr"
SIGMAS = (0.0, 10.0, 25.0)
Quad = list[tuple[float, float]]


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def _recording() -> Iterator[list[tuple[str, Quad]]]:
    """Record every `ImageDraw.text` call's text and its bounding box as a quad."""
    drawn: list[tuple[str, Quad]] = []
    original = ImageDraw.ImageDraw.text

    def text(self: ImageDraw.ImageDraw, xy: Any, text: Any, *args: Any, **kwargs: Any) -> None:
        x0, y0, x1, y1 = self.textbbox(
            xy, text, font=kwargs.get("font"), anchor=kwargs.get("anchor")
        )
        drawn.append((" ".join(str(text).split()), [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]))
        original(self, xy, text, *args, **kwargs)

    ImageDraw.ImageDraw.text = text  # type: ignore[method-assign]
    try:
        yield drawn
    finally:
        ImageDraw.ImageDraw.text = original  # type: ignore[method-assign]


def _same(image: Image.Image, name: str) -> None:
    with Image.open(OCR / name) as stored:
        if ImageChops.difference(image.convert("RGB"), stored.convert("RGB")).getbbox():
            sys.exit(f"{name} is not what its script draws: redraw it first")


def _skewed_quads(script: ModuleType, flat_lines: list[tuple[str, Quad]]) -> list[tuple[str, Quad]]:
    """The flat drawing's boxes carried through `draw_skewed`'s rotation and warp."""
    flat = script._flat()  # the drawing script's own step
    w, h = flat.size
    rotated = flat.rotate(4, expand=True)
    big_w, big_h = rotated.size
    angle = math.radians(4)

    def rotate(point: tuple[float, float]) -> tuple[float, float]:  # counter-clockwise
        x, y = point[0] - w / 2, point[1] - h / 2
        return (
            x * math.cos(angle) + y * math.sin(angle) + big_w / 2,
            -x * math.sin(angle) + y * math.cos(angle) + big_h / 2,
        )

    inset = big_w * 0.06
    corners = [(0.0, 0.0), (big_w, 0.0), (big_w, big_h), (0.0, big_h)]
    warped = [(inset, 0.0), (big_w - inset, 0.0), (big_w, big_h), (0.0, big_h)]
    a, b, c, d, e, f, g, k = script._perspective_coefficients(warped, corners)

    def warp(point: tuple[float, float]) -> tuple[float, float]:  # flat -> warped
        x, y = point
        scale = g * x + k * y + 1
        return (a * x + b * y + c) / scale, (d * x + e * y + f) / scale

    return [(text, [warp(rotate(p)) for p in quad]) for text, quad in flat_lines]


def ground_truth() -> dict[str, list[tuple[str, Quad]]]:
    """Each drawn test image's lines: text and polygon, in the ground truth's order."""
    receipt = _module(ROOT / "examples" / "receipt" / "make_image.py")
    drawings = _module(OCR / "make_images.py")
    with _recording() as drawn:
        _same(receipt.draw_receipt(), "receipt.png")
    truth = {"receipt.png": list(drawn)}
    with _recording() as drawn:
        _same(drawings.draw_columns(), "columns.png")
    truth["columns.png"] = list(drawn)
    with _recording() as drawn:
        _same(drawings.draw_skewed(), "skewed.png")
    truth["skewed.png"] = _skewed_quads(drawings, list(drawn)[: len(drawings.LINES)])
    return truth


# --- polygon IoU (convex quads) -------------------------------------------------------------


def _area(points: Sequence[tuple[float, float]]) -> float:
    return 0.5 * sum(
        x0 * y1 - x1 * y0
        for (x0, y0), (x1, y1) in zip(points, [*points[1:], points[0]], strict=True)
    )


def _clockwise(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return list(points) if _area(points) >= 0 else list(reversed(points))


def _clip(subject: list[tuple[float, float]], clip: list[tuple[float, float]]) -> list[Any]:
    """Sutherland-Hodgman: `subject` clipped by the convex `clip` (same orientation)."""
    out = subject
    for (ax, ay), (bx, by) in zip(clip, [*clip[1:], clip[0]], strict=True):
        if not out:
            break

        def side(
            p: tuple[float, float], ax: float = ax, ay: float = ay, bx: float = bx, by: float = by
        ) -> float:
            return (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)

        source, out = out, []
        for p, q in zip(source, [*source[1:], source[0]], strict=True):
            sp, sq = side(p), side(q)
            if sp >= 0:
                out.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def iou(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """Intersection over union of two convex quadrilaterals."""
    pa, pb = _clockwise(a), _clockwise(b)
    inter = _clip(pa, pb)
    shared = abs(_area(inter)) if len(inter) >= 3 else 0.0
    union = abs(_area(pa)) + abs(_area(pb)) - shared
    return shared / union if union > 0 else 0.0


def _points(polygon: vf.Polygon) -> Quad:
    return [(float(p.x), float(p.y)) for p in polygon.points]


# --- the two modes ----------------------------------------------------------------------


def _model_answer(
    truth: list[tuple[str, Quad]], size: tuple[int, int], sigma: float, rng: random.Random
) -> dict[str, Any]:
    """The scripted model's compact answer: ground-truth boxes on the grid, jittered."""
    width, height = size
    lines = []
    for text, quad in truth:
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        box = [min(xs) / width, min(ys) / height, max(xs) / width, max(ys) / height]
        grid = [min(max(round(v * 1000 + rng.gauss(0, sigma)), 0), 1000) for v in box]
        grid[2], grid[3] = max(grid[2], grid[0] + 1), max(grid[3], grid[1] + 1)
        lines.append({"text": text, "box": grid, "confidence": 0.9})
    return compact_answer({"read": lines})


def _detector_answer(truth: list[tuple[str, Quad]], path: Path) -> dict[str, Any]:
    """The scripted answer to the regions: each region's best ground-truth line's text."""
    with Image.open(path) as image:
        regions = [_points(r.polygon) for r in locate_text_lines(image)]
    named: dict[int, int] = {}  # ground-truth line -> region number
    for number, region in enumerate(regions, start=1):
        scores = [iou(region, quad) for _, quad in truth]
        best = max(range(len(truth)), key=scores.__getitem__)
        if scores[best] >= 0.3 and best not in named:
            named[best] = number
    return {"lines": [{"region": named[i], "text": truth[i][0]} for i in sorted(named)]}


def _score(result: vf.ImageAnalysisResult, truth: list[tuple[str, Quad]]) -> float:
    found = result.read.lines if result.read is not None else []
    total = 0.0
    for text, quad in truth:
        scores = [iou(_points(line.polygon), quad) for line in found if line.text == text]
        total += max(scores, default=0.0)
    return total / len(truth)


def _padded(path: Path, truth: list[tuple[str, Quad]]) -> float:
    """Not a mode: the IoU the detector's padded regions (`words=False`) would get (each
    ground-truth line's best overlap; no model call, a polygon passes unchanged)."""
    with Image.open(path) as image:
        regions = [_points(r.polygon) for r in detect_text_regions(image, words=False)]
    best = [max((iou(r, quad) for r in regions), default=0.0) for _, quad in truth]
    return sum(best) / len(truth)


def _run(
    path: Path, answer: dict[str, Any], model: str, **options: Any
) -> tuple[int, int, vf.ImageAnalysisResult]:
    """One call with a scripted `answer`: the result, its input and output tokens."""
    fake = FakeOpenAI(answer)
    with vf.ImageAnalyzer(**fake.clients(), model=model, cache=False, **options) as analyzer:
        result = analyzer.analyze(path, ["read"])
    (body,) = fake.requests
    with Image.open(_image_bytes(body)) as image:
        images = estimate_image_tokens(image.width, image.height, model=model) or 0
    text = answer_text(answer) or ""
    return prefix_tokens(body, model=model) + images, count_tokens(text), result


def _image_bytes(body: dict[str, Any]) -> io.BytesIO:
    """The image a request body carries (its data URL)."""
    url = body["messages"][1]["content"][1]["image_url"]["url"]
    return io.BytesIO(base64.b64decode(url.split(",", 1)[1]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt-4.1-mini")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    truth = ground_truth()
    header = (
        ["image", "lines"]
        + [f"IoU model s={s:g}" for s in SIGMAS]
        + ["IoU detector", "IoU padded regions", "in model", "in detector"]
        + ["out model", "out detector"]
    )
    rows: list[list[str]] = []
    sums = [0.0] * (len(SIGMAS) + 2)
    count = 0
    for name, lines in truth.items():
        path = OCR / name
        with Image.open(path) as image:
            size = image.size
        rng = random.Random(f"{args.seed}:{name}")
        scores: list[float] = []
        tokens: tuple[int, int] = (0, 0)
        for sigma in SIGMAS:
            tin, tout, result = _run(path, _model_answer(lines, size, sigma, rng), args.model)
            scores.append(_score(result, lines))
            tokens = (tin, tout)
        din, dout, result = _run(
            path, _detector_answer(lines, path), args.model, read_geometry="detector"
        )
        scores.append(_score(result, lines))
        scores.append(_padded(path, lines))
        sums = [a + b * len(lines) for a, b in zip(sums, scores, strict=True)]
        count += len(lines)
        rows.append(
            [name, str(len(lines))]
            + [f"{s:.3f}" for s in scores]
            + [str(tokens[0]), str(din), str(tokens[1]), str(dout)]
        )
    rows.append(["all (per line)", str(count)] + [f"{s / count:.3f}" for s in sums] + [""] * 4)
    _print_table(header, rows)
    print(
        "\nScripted answers (FakeOpenAI, not a model): the geometry and the mapping are "
        "measured, not a model's reading. Tokens: one call with read only; input = prompt "
        f"text and schema (o200k_base) + the image by {args.model}'s rule; output = the "
        "scripted answer's JSON (model mode: its last sigma's answer)."
    )


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    cells: Callable[[list[str]], str] = lambda row: "| " + " | ".join(row) + " |"  # noqa: E731
    print(cells(header))
    print(cells(["---"] * len(header)))
    for row in rows:
        print(cells(row))


if __name__ == "__main__":
    main()
