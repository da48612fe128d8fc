"""OCR quality and speed of the local `read` engine (viewfinder.local.read) on this machine.

Run: python benchmarks/bench_local_read.py [--repeat 5] [--stock] [--tesseract]

For each image in tests/assets/ocr/ with a ground truth (ground_truth.json): the
character error rate (CER: Levenshtein distance over the reference's length, on the
lines joined with newlines in reading order, runs of spaces as one), the word error
rate (WER, the same on words), lines found, and the median wall time and CPU time
(this process, all threads; a subprocess's for tesseract is not counted) of
`--repeat` reads after one warm-up read (the engine is loaded once, before timing).

`--stock` also runs RapidOCR as it comes (`RapidOCR()(image)`, default settings, its
own line order): what viewfinder's pipeline around the same models changes.
`--tesseract` also runs Debian's tesseract CLI, if it is on PATH, for comparison
(`tesseract IMG stdout --psm 6 tsv` on a 3x upscaled grey copy, the best of the
settings tried; lines from its TSV word rows). It is not a dependency of viewfinder.

The load average is printed first: on a busy machine the times are not comparable.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ASSETS = Path(__file__).resolve().parent.parent / "tests" / "assets" / "ocr"


def levenshtein(a: list[str] | str, b: list[str] | str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two sequences."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, item in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            substitute = previous[j - 1] + (item != other)
            current.append(min(previous[j] + 1, current[j - 1] + 1, substitute))
        previous = current
    return previous[-1]


def normalise(lines: list[str]) -> str:
    """Lines in reading order joined with newlines, runs of spaces as one."""
    return "\n".join(" ".join(line.split()) for line in lines if line.strip())


def error_rates(found: list[str], truth: list[str]) -> tuple[float, float]:
    """(CER, WER) of `found` against `truth`."""
    reference, hypothesis = normalise(truth), normalise(found)
    cer = levenshtein(hypothesis, reference) / len(reference)
    wer = levenshtein(hypothesis.split(), reference.split()) / len(reference.split())
    return cer, wer


def _median_seconds(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds (this process, all threads) of `repeat` runs."""
    run()  # warm-up
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _tesseract_lines(image: Image.Image) -> list[str]:
    grey = image.convert("L")
    grey = grey.resize((grey.width * 3, grey.height * 3), Image.Resampling.LANCZOS)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.png"
        grey.save(path)
        output = subprocess.run(
            ["tesseract", str(path), "stdout", "--psm", "6", "tsv"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    lines: dict[tuple[str, str, str], list[str]] = {}
    for row in csv.DictReader(io.StringIO(output), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row["level"] == "5" and row["text"].strip():
            key = (row["block_num"], row["par_num"], row["line_num"])
            lines.setdefault(key, []).append(row["text"])
    return [" ".join(words) for words in lines.values()]


def _stock_rapidocr() -> Callable[[Image.Image], list[str]]:
    import numpy as np
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    def read(image: Image.Image) -> list[str]:
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        found, _ = engine(bgr)
        return [str(row[1]) for row in found or []]

    return read


def _local(image: Image.Image) -> list[str]:
    from viewfinder.local.read import read_text

    return [line.text for line in read_text(image).lines]


def main(argv: list[str] | None = None) -> int:
    """Print the table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed reads per image")
    parser.add_argument("--stock", action="store_true", help="compare stock RapidOCR")
    parser.add_argument("--tesseract", action="store_true", help="compare tesseract's CLI")
    args = parser.parse_args(argv)

    from viewfinder.local import read as local_read

    truth: dict[str, list[str]] = json.loads((ASSETS / "ground_truth.json").read_text())
    images = {name: Image.open(ASSETS / name) for name in truth}
    for image in images.values():
        image.load()

    command = " ".join(["python", "benchmarks/bench_local_read.py", *(argv or sys.argv[1:])])
    print(f"$ {command}")
    print(f"engine: {local_read.VERSION}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (1 min)")
    start = time.perf_counter()
    local_read._get_engine()
    print(f"engine load: {time.perf_counter() - start:.2f} s (once per process)")
    print()

    engines: list[tuple[str, Callable[[Image.Image], list[str]]]] = [("viewfinder local", _local)]
    if args.stock:
        engines.append(("stock RapidOCR", _stock_rapidocr()))
    if args.tesseract:
        if shutil.which("tesseract"):
            engines.append(("tesseract 5 CLI", _tesseract_lines))
        else:
            print("(tesseract is not on PATH: skipped)\n")

    titles = ("size", 8), ("CER", 7), ("WER", 7), ("lines", 7), ("wall s", 7), ("cpu s", 6)
    header = f"{'engine':18} {'image':13} " + " ".join(f"{t:>{w}}" for t, w in titles)
    print(header)
    print("-" * len(header))
    for label, engine in engines:
        for name, image in images.items():
            found = engine(image)
            cer, wer = error_rates(found, truth[name])
            wall, cpu = _median_seconds(lambda e=engine, i=image: e(i), args.repeat)
            size = f"{image.width}x{image.height}"
            lines = f"{len(found)}/{len(truth[name])}"
            figures = f"{cer:>7.3f} {wer:>7.3f} {lines:>7} {wall:>7.2f} {cpu:>6.2f}"
            print(f"{label:18} {name:13} {size:>8} {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
