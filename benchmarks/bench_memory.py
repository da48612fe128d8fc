"""Peak memory of `viewfinder batch` for 100 and for 10,000 images, against the simulator.

Run: python benchmarks/bench_memory.py [--small 100] [--middle 1000] [--large 10000]
         [--concurrency 16]

Each run is its own child process, `python -m viewfinder batch LIST --out OUT --no-cache
--concurrency 16 --base-url SIMULATOR -f caption,tags`, over a LIST file naming N distinct
64x64 PNGs written to a temporary directory (the CLI's id is the path, so the files are
distinct too). Its peak RSS is its own `ru_maxrss`, from `os.wait4` on its pid, taken by a
small launcher process (`LAUNCHER`) that starts it: on Linux a child inherits the
high-water RSS of the process it was forked from (kept through exec, also with
posix_spawn), so a child started straight from this process, which holds the simulator
and its recorded requests, would report this process's RSS whenever that is larger.
Measured side by side in one run:

- the floor: `python -m viewfinder batch --help` (interpreter and imports, no analysis);
- fresh batches of `--small`, `--middle` and `--large` images: flat memory means the
  ratio large / small is close to 1, and the growth per extra image (middle to large
  beside small to middle) tells a one-off warm-up from a per-image cost;
- a re-run of the large batch over its own output, where every image is skipped: the
  resume set (the ids whose latest line is "ok") is the one thing that grows with N, so
  its cost per id is also measured directly with tracemalloc around `read_done_ids`.

The simulator (viewfinder.testing.simulator) is a scripted server on 127.0.0.1 in this process,
NOT a model: latency 0, it answers every request with the same canned JSON, and its
token counts are estimates, not real usage. With no latency, the batch is bound by the
client's own CPU time per image, so the wall time of the large run is mostly that. Each
child is killed if it outlives `--timeout` seconds; the temporary directory is removed at
the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from viewfinder.analyzers.compact import compact_answer
from viewfinder.cli.batch import read_done_ids
from viewfinder.testing.simulator import Simulator

FEATURES = "caption,tags"
ANSWER: dict[str, Any] = {
    "caption": {"text": "a small square of colour", "confidence": 0.5},
    "tags": [{"name": "colour", "confidence": 0.5}],
}
ANSWER = compact_answer(ANSWER)  # written in the verbose form, sent as the default


LAUNCHER = """
import json, os, subprocess, sys, threading
report, timeout, command = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
child = subprocess.Popen(command)
watchdog = threading.Timer(timeout, child.kill)
watchdog.start()
_, status, usage = os.wait4(child.pid, 0)
watchdog.cancel()
with open(report, "w") as stream:
    json.dump({"returncode": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss,
               "cpu_seconds": usage.ru_utime + usage.ru_stime}, stream)
"""
"""Starts one child and reports its own peak RSS and CPU time (see the module docstring)."""


@dataclass(frozen=True)
class Child:
    """One finished child process: exit code, peak RSS, wall and CPU time, requests served."""

    returncode: int
    peak_mb: float
    seconds: float
    cpu_seconds: float
    requests: int


def write_images(directory: Path, count: int) -> list[Path]:
    """`count` 64x64 PNGs whose bytes all differ."""
    paths = []
    for index in range(count):
        path = directory / f"img-{index:05d}.png"
        Image.new("RGB", (64, 64), (index % 256, index // 256 % 256, 97)).save(path, "PNG")
        paths.append(path)
    return paths


def _write_list(path: Path, images: list[Path]) -> Path:
    path.write_text("".join(f"{image}\n" for image in images), encoding="utf-8")
    return path


def environment(cache_dir: Path) -> dict[str, str]:
    """This environment without model endpoints or keys, so only the simulator is reachable."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "AZURE_OPENAI_", "VIEWFINDER_"))
    }
    env["VIEWFINDER_CACHE_DIR"] = str(cache_dir)  # --no-cache anyway; never the user's
    return env


def run_child(
    arguments: list[str], env: dict[str, str], sim: Simulator, scratch: Path, timeout: float
) -> Child:
    """Run `python -m viewfinder ARGUMENTS` to the end, through the launcher.

    Its stderr goes to `scratch / "stderr.log"`; the launcher's report to `report.json`.
    """
    sim.reset()
    report = scratch / "report.json"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-c", LAUNCHER, str(report), str(timeout)]
    command += [sys.executable, "-m", "viewfinder", *arguments]
    start = time.perf_counter()
    with (scratch / "stderr.log").open("wb") as stderr:
        subprocess.run(
            command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, timeout=timeout + 30
        )
    seconds = time.perf_counter() - start
    measured = json.loads(report.read_text())
    return Child(
        returncode=measured["returncode"],
        peak_mb=measured["maxrss_kb"] / 1024,  # kilobytes on Linux
        seconds=seconds,
        cpu_seconds=measured["cpu_seconds"],
        requests=sim.stats.total,
    )


def _resume_set_bytes(out: Path) -> tuple[int, int]:
    """Bytes allocated by `read_done_ids(out)` at its peak, and how many ids it holds."""
    tracemalloc.start()
    done, _ = read_done_ids(out)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, len(done)


def _lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for _ in stream)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--middle", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=600.0, help="per child, seconds")
    args = parser.parse_args()
    if not 1 <= args.small < args.middle < args.large:
        parser.error("need 1 <= --small < --middle < --large")

    command = ["python", "benchmarks/bench_memory.py"]
    for name, value in vars(args).items():
        command += [f"--{name}", str(value)]
    print(f"command: {shlex.join(command)}")

    with (
        tempfile.TemporaryDirectory(prefix="vf-bench-memory-") as tmp,
        Simulator(default=lambda body: ANSWER) as sim,
    ):
        root = Path(tmp)
        images_dir = root / "images"
        images_dir.mkdir()
        started = time.perf_counter()
        images = write_images(images_dir, args.large)
        print(
            f"{args.large} distinct 64x64 PNGs written in {time.perf_counter() - started:.1f} s;"
            f" simulator (scripted, not a model) on {sim.base_url}, latency 0"
        )
        env = environment(root / "cache")

        def batch(count: int, out: Path) -> list[str]:
            listing = _write_list(root / f"list-{count}.txt", images[:count])
            return [
                "batch",
                str(listing),
                "--out",
                str(out),
                "--no-cache",
                "--concurrency",
                str(args.concurrency),
                "--base-url",
                sim.base_url,
                "-f",
                FEATURES,
            ]

        sizes = (args.small, args.middle, args.large)
        outs = [root / f"out-{count}.jsonl" for count in sizes]
        # label, arguments, output file, requests expected, lines the output then holds
        runs: list[tuple[str, list[str], Path | None, int, int]] = [
            ("floor: viewfinder batch --help", ["batch", "--help"], None, 0, 0),
            *(
                (f"{n:,} images", batch(n, out), out, n, n)
                for n, out in zip(sizes, outs, strict=True)
            ),
            (
                f"{args.large:,} images re-run, all skipped",
                batch(args.large, outs[-1]),
                outs[-1],
                0,
                args.large,
            ),
        ]
        print(f"child: python -m viewfinder {shlex.join(runs[3][1])}")
        print(f"\n  {'run':<36}{'peak RSS':>10}{'wall':>9}{'CPU':>9}{'requests':>10}  exit")
        results: list[Child] = []
        for label, arguments, out, requests, lines in runs:
            child = run_child(arguments, env, sim, root, args.timeout)
            results.append(child)
            print(
                f"  {label:<36}{child.peak_mb:>7.1f} MB{child.seconds:>7.1f} s"
                f"{child.cpu_seconds:>7.1f} s{child.requests:>10,}  {child.returncode}"
            )
            if out is not None and _lines(out) != lines:
                print(f"    ! {out.name} holds {_lines(out)} lines, not {lines}")
            if child.returncode != 0 or child.requests != requests:
                print("    ! " + (root / "stderr.log").read_text(errors="replace").strip())

        floor, small, middle, large, rerun = results
        print(
            f"\n  peak RSS {args.large:,} / {args.small:,} images: "
            f"{large.peak_mb / small.peak_mb:.2f}x ({large.peak_mb - small.peak_mb:+.1f} MB);"
            f" above the floor: {small.peak_mb - floor.peak_mb:.1f} MB for {args.small:,},"
            f" {large.peak_mb - floor.peak_mb:.1f} MB for {args.large:,}"
        )
        print(
            f"  growth per extra image: {_per_image(small, middle, args.small, args.middle)}"
            f" from {args.small:,} to {args.middle:,} images,"
            f" {_per_image(middle, large, args.middle, args.large)}"
            f" from {args.middle:,} to {args.large:,}"
        )
        print(
            f"  time per image, {args.large:,} run:"
            f" {large.seconds / args.large * 1000:.1f} ms wall,"
            f" {large.cpu_seconds / args.large * 1000:.1f} ms CPU"
            f" ({args.large / large.seconds:.0f} images/s; the client is CPU-bound)"
        )
        peak_bytes, ids = _resume_set_bytes(outs[-1])
        id_length = sum(len(str(image)) for image in images) / len(images)
        print(
            f"  resume set: {peak_bytes / max(ids, 1):,.0f} bytes per ok id"
            f" (tracemalloc peak of read_done_ids, {ids:,} ids of ~{id_length:.0f} characters);"
            f" the re-run holding {ids:,} ids peaks {rerun.peak_mb - floor.peak_mb:+.1f} MB"
            f" above the floor"
        )


def _per_image(before: Child, after: Child, n_before: int, n_after: int) -> str:
    """Peak-RSS growth between two runs, in bytes per extra image."""
    growth = (after.peak_mb - before.peak_mb) * 2**20 / (n_after - n_before)
    return f"{growth:+,.0f} bytes"


if __name__ == "__main__":
    main()
