"""The compare report's size and writing time for many images (issue 18: under 5 MB for 1,000).

Run: python benchmarks/bench_compare_report.py [--images 1000] [--worst 100] [--out DIR]

Makes N photo-like 864x576 JPEGs (gradients, shapes, sensor-like noise) and, for each,
the Azure sample result (tests/assets/azure_sample_all_features.json) as the reference
and a perturbed copy as viewfinder's result (boxes shifted, some objects dropped, tags
changed, scripted latency and cost: no model is called), then writes the report with
`write_report` and prints the page's size, its pictures, and the time taken. Pass --out
to keep the page (to open it in a browser).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

from viewfinder.compat.rest import from_azure_json
from viewfinder.evaluate.compare import compare_results
from viewfinder.evaluate.report import ImageReport, write_report
from viewfinder.schemas.result import Usage

SAMPLE = Path(__file__).parent.parent / "tests" / "assets" / "azure_sample_all_features.json"
W, H = 864, 576


def _photo(rng: random.Random, path: Path) -> None:
    """A photo-like picture: a sky-to-ground gradient, soft shapes, fine noise."""
    top = tuple(rng.randrange(90, 220) for _ in range(3))
    bottom = tuple(rng.randrange(20, 120) for _ in range(3))
    image = Image.new("RGB", (W, H))
    pen = ImageDraw.Draw(image)
    for y in range(H):
        t = y / (H - 1)
        pen.line(
            [(0, y), (W, y)],
            fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    for _ in range(rng.randrange(4, 9)):
        x, y = rng.randrange(W), rng.randrange(H)
        r = rng.randrange(30, 160)
        pen.ellipse(
            (x - r, y - r // 2, x + r, y + r), fill=tuple(rng.randrange(256) for _ in "rgb")
        )
    image = image.filter(ImageFilter.GaussianBlur(3))
    noise = Image.effect_noise((W, H), 18).convert("RGB")
    Image.blend(image, noise, 0.08).save(path, quality=90)


def _perturbed(data: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The Azure body with boxes moved, objects dropped and a tag renamed."""
    body = json.loads(json.dumps(data))

    def shift(box: dict[str, int]) -> None:
        box["x"] = max(0, box["x"] + rng.randrange(-40, 41))
        box["y"] = max(0, box["y"] + rng.randrange(-40, 41))

    for value in body["objectsResult"]["values"]:
        shift(value["boundingBox"])
    keep = rng.randrange(len(body["objectsResult"]["values"]) + 1)
    body["objectsResult"]["values"] = body["objectsResult"]["values"][:keep]
    for value in body["denseCaptionsResult"]["values"]:
        shift(value["boundingBox"])
    if rng.random() < 0.5:
        body["tagsResult"]["values"][0]["name"] = "something else"
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--worst", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    rng = random.Random(18)
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    azure = from_azure_json(data)
    with tempfile.TemporaryDirectory() as scratch:
        images = Path(scratch) / "images"
        images.mkdir()
        start = time.perf_counter()
        reports = []
        for i in range(args.images):
            name = f"photo{i:04d}.jpg"
            _photo(rng, images / name)
            ours = from_azure_json(_perturbed(data, rng))
            reports.append(
                ImageReport(
                    image=name,
                    scores=compare_results(ours, azure),
                    latency_s=rng.uniform(1.5, 6.0),
                    cost=rng.uniform(0.0008, 0.0021),
                    usage=Usage(input_tokens=900, output_tokens=400, requests=1),
                    azure=azure,
                    viewfinder=ours,
                )
            )
        made = time.perf_counter() - start
        out = args.out or Path(scratch) / "report"
        start = time.perf_counter()
        json_path, html_path = write_report(reports, out, images, worst=args.worst)
        wrote = time.perf_counter() - start
        page = html_path.read_text(encoding="utf-8")
        pictures = page.count("data:image/jpeg;base64,")
        print(f"images compared: {args.images}, drawn in the page: {min(args.worst, args.images)}")
        print(f"report.html: {len(page.encode()) / 1e6:.2f} MB ({pictures} JPEG thumbnails)")
        print(f"report.json: {json_path.stat().st_size / 1e6:.2f} MB")
        print(f"inputs made in {made:.1f} s; report written in {wrote:.1f} s")
        if args.out is not None:
            print(f"page: {html_path}")


if __name__ == "__main__":
    main()
