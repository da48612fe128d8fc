"""OCR quality and speed of the local `read` engine (viewfinder.local.read) on this machine.

Run: python benchmarks/bench_local_read.py [--repeat 5] [--engines 1.4.4,3.x] [--stock]
[--tesseract]

For each image in tests/assets/ocr/ with a ground truth (ground_truth.json): the
character error rate (CER: Levenshtein distance over the reference's length, on the
lines joined with newlines in reading order, runs of spaces as one), the word error
rate (WER, the same on words), lines and words found, and the median wall time and CPU
time (this process, all threads; a subprocess's for tesseract is not counted) of
`--repeat` reads after one warm-up read (the engine is loaded once, before timing).

`--engines` runs viewfinder's pipeline on each RapidOCR line, each in its own
subprocess (so the peak resident memory, `ru_maxrss`, taken before `--stock` runs, is
the engine's own with Python, Pillow and viewfinder), one after the other in one run
(on a loaded machine the wall times of the two runs are not comparable: the CPU times
are steadier): `3.x` is the engine viewfinder.local.read uses (`rapidocr` 3.x,
PP-OCRv6 models); `1.4.4` is the one it used before (`rapidocr-onnxruntime` 1.4.4,
PP-OCRv4), put in its place through the same `_Engine` interface (install it beside:
`pip install rapidocr-onnxruntime==1.4.4`, Python < 3.13). The ratios of the second
engine to the first follow the table.

`--stock` also runs each engine's RapidOCR as it comes (`RapidOCR()(image)`, default
settings, its own line order): what viewfinder's pipeline around the same models
changes. `--tesseract` also runs Debian's tesseract CLI, if it is on PATH, for
comparison (`tesseract IMG stdout --psm 6 tsv` on a 3x upscaled grey copy, the best of
the settings tried; lines from its TSV word rows). It is not a dependency of viewfinder.

The load average is printed first: on a busy machine the times are not comparable.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, cast

from PIL import Image

from viewfinder.evaluate.compare import error_rate

ASSETS = Path(__file__).resolve().parent.parent / "tests" / "assets" / "ocr"


def normalise(lines: list[str]) -> str:
    """Lines in reading order joined with newlines, runs of spaces as one."""
    return "\n".join(" ".join(line.split()) for line in lines if line.strip())


def error_rates(found: list[str], truth: list[str]) -> tuple[float, float]:
    """(CER, WER) of `found` against `truth`."""
    reference, hypothesis = normalise(truth), normalise(found)
    return error_rate(hypothesis, reference), error_rate(hypothesis.split(), reference.split())


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


class _LegacyEngine:
    """viewfinder.local.read's `_Engine` interface on rapidocr-onnxruntime 1.4.4 (PP-OCRv4).

    What `viewfinder.local.read` used before rapidocr 3.x, with the same settings, kept
    here only to measure the two side by side.
    """

    def __init__(self) -> None:
        import threading

        from rapidocr_onnxruntime import RapidOCR

        from viewfinder.local import read as local_read

        self.ocr: Any = RapidOCR(
            det_limit_type="max",
            det_box_thresh=local_read._BOX_THRESHOLD,
            det_unclip_ratio=local_read._UNCLIP_RATIO,
        )
        self.characters = list(self.ocr.text_rec.postprocess_op.character)
        self.space = len(self.characters) - 1
        self.cls_threshold = float(self.ocr.text_cls.cls_thresh)
        self.lock = threading.Lock()

    def detect(self, bgr: Any) -> Any:
        return self.ocr.text_det(bgr)[0]

    def directions(self, crops: list[Any]) -> list[tuple[str, float]]:
        return list(self.ocr.text_cls(crops)[1])

    def recognise(self, tensor: Any) -> Any:
        return self.ocr.text_rec.session(tensor)[0]


def _stock(engine: str) -> Callable[[Image.Image], list[str]]:
    """RapidOCR as it comes, default settings, on the engine's models."""
    import numpy as np

    if engine == "1.4.4":
        from rapidocr_onnxruntime import RapidOCR as Legacy

        legacy = Legacy()

        def run(bgr: Any) -> list[str]:
            found, _ = legacy(bgr)
            return [str(row[1]) for row in found or []]

    else:
        from rapidocr import RapidOCR

        current = RapidOCR(params={"Global.log_level": "warning"})

        def run(bgr: Any) -> list[str]:
            return [str(text) for text in current(bgr).txts or ()]

    def read(image: Image.Image) -> list[str]:
        return run(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))

    return read


def _local(image: Image.Image) -> list[str]:
    from viewfinder.local.read import read_text

    return [line.text for line in read_text(image).lines]


def _measure(
    label: str, read: Callable[[Image.Image], list[str]], repeat: int
) -> list[dict[str, Any]]:
    truth: dict[str, list[str]] = json.loads((ASSETS / "ground_truth.json").read_text())
    rows = []
    for name, lines in truth.items():
        image = Image.open(ASSETS / name)
        image.load()
        found = read(image)
        cer, wer = error_rates(found, lines)
        wall, cpu = _median_seconds(lambda i=image: read(i), repeat)
        rows.append(
            {
                "engine": label,
                "image": name,
                "size": f"{image.width}x{image.height}",
                "cer": cer,
                "wer": wer,
                "lines": f"{len(found)}/{len(lines)}",
                "words": f"{len(normalise(found).split())}/{len(normalise(lines).split())}",
                "wall": wall,
                "cpu": cpu,
            }
        )
    return rows


def _child(engine: str, repeat: int, stock: bool) -> dict[str, Any]:
    """Measure one engine in this process (run as a subprocess by `main`)."""
    import resource

    from viewfinder.local import read as local_read

    start = time.perf_counter()
    if engine == "1.4.4":
        local_read._engine = cast(Any, _LegacyEngine())
        version = "rapidocr-onnxruntime " + metadata.version("rapidocr-onnxruntime")
    else:
        local_read._get_engine()
        version = "rapidocr " + metadata.version("rapidocr")
    load = time.perf_counter() - start
    rows = _measure(f"viewfinder {engine}", _local, repeat)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before stock's
    if stock:
        rows += _measure(f"stock {engine}", _stock(engine), repeat)
    return {"engine": engine, "version": version, "load": load, "peak": peak_mib, "rows": rows}


def _print_rows(rows: list[dict[str, Any]]) -> None:
    titles = ("size", 8), ("CER", 7), ("WER", 7), ("lines", 7), ("words", 7), ("wall s", 7)
    header = f"{'engine':18} {'image':12} " + " ".join(f"{t:>{w}}" for t, w in titles)
    header += f" {'cpu s':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        figures = (
            f"{row['cer']:>7.3f} {row['wer']:>7.3f} {row['lines']:>7} {row['words']:>7}"
            f" {row['wall']:>7.2f} {row['cpu']:>6.2f}"
        )
        print(f"{row['engine']:18} {row['image']:12} {row['size']:>8} {figures}")


def _print_ratios(first: dict[str, Any], second: dict[str, Any]) -> None:
    """The second engine against the first, image by image and in total."""
    a_label, b_label = f"viewfinder {first['engine']}", f"viewfinder {second['engine']}"
    a_rows = {r["image"]: r for r in first["rows"] if r["engine"] == a_label}
    b_rows = {r["image"]: r for r in second["rows"] if r["engine"] == b_label}
    print(f"\n{second['engine']} against {first['engine']} (viewfinder pipeline):")
    print(f"{'image':12} {'CER':>15} {'wall s':>15} {'cpu s':>15} {'cpu ratio':>9}")

    def line(name: str, a: tuple[float, float, float], b: tuple[float, float, float]) -> None:
        print(
            f"{name:12} {a[0]:>6.3f} -> {b[0]:<6.3f} {a[1]:>5.2f} -> {b[1]:<6.2f}"
            f" {a[2]:>5.2f} -> {b[2]:<6.2f} {b[2] / a[2]:>9.2f}"
        )

    for name, a in a_rows.items():
        b = b_rows[name]
        line(name, (a["cer"], a["wall"], a["cpu"]), (b["cer"], b["wall"], b["cpu"]))
    totals = [
        (
            statistics.fmean(r["cer"] for r in rows.values()),
            sum(r["wall"] for r in rows.values()),
            sum(r["cpu"] for r in rows.values()),
        )
        for rows in (a_rows, b_rows)
    ]
    line("mean/total", totals[0], totals[1])
    print(
        f"peak memory {first['peak']:.0f} -> {second['peak']:.0f} MiB"
        f" ({second['peak'] / first['peak']:.2f}x); engine load {first['load']:.2f} ->"
        f" {second['load']:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    """Print the table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed reads per image")
    parser.add_argument(
        "--engines", default="3.x", help="comma-separated RapidOCR lines: 3.x (used), 1.4.4"
    )
    parser.add_argument("--stock", action="store_true", help="compare stock RapidOCR")
    parser.add_argument("--tesseract", action="store_true", help="compare tesseract's CLI")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.repeat, args.stock)))
        return 0

    from viewfinder.local import read as local_read

    command = " ".join(["python", "benchmarks/bench_local_read.py", *(argv or sys.argv[1:])])
    print(f"$ {command}")
    print(f"settings: {local_read.VERSION.rsplit('; ', 1)[-1]}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (1 min)")
    results = []
    for engine in args.engines.split(","):
        child = [sys.executable, __file__, "--child", engine, "--repeat", str(args.repeat)]
        output = subprocess.run(
            [*child, *(["--stock"] if args.stock else [])],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        results.append(result)
        print(
            f"engine {engine}: {result['version']}; load {result['load']:.2f} s;"
            f" peak memory {result['peak']:.0f} MiB (whole process, before --stock)"
        )
    print()
    rows = [row for result in results for row in result["rows"]]
    if args.tesseract:
        if shutil.which("tesseract"):
            rows += _measure("tesseract 5 CLI", _tesseract_lines, args.repeat)
        else:
            print("(tesseract is not on PATH: skipped)\n")
    _print_rows(rows)
    for first, second in itertools.pairwise(results):
        _print_ratios(first, second)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
