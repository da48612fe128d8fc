"""Peak memory of very large images: `prepare_image` alone, and the server under 1 and N uploads.

Run: python benchmarks/bench_image_memory.py [--side 13000] [--uploads 4]
         [--max-decode-pixels N] [--decode-wait SECONDS] [--part library|server|both]

Images, written to a temporary directory by a child process (so this process stays
small): a mostly flat `--side` x `--side` RGB PNG (rectangles and discs on a plain
ground, about 0.6 MB for 13000, like the issue's 481 KB one), the same picture as a
palette PNG and as a JPEG (quality 90), and a 12-megapixel (4032 x 3024) JPEG and PNG:
the copy is 3.9 times smaller, under the sizes where a decode is reduced early (a
JPEG decodes at 1/2 scale, a PNG at full size, then one LANCZOS resize).

library: each image in a child process of its own, `python -c LIBRARY_CHILD FILE`: it
reads the file, resets its peak RSS (`5 > /proc/self/clear_refs`), runs
`prepare_image(data)` (max side 1024) and reports its own `VmHWM` and `VmRSS` from
`/proc/self/status`. "peak extra" is the peak minus the RSS just before the call; the
ratio divides it by the image's RGB size (w x h x 3 bytes; Pillow itself keeps RGB in
4 bytes a pixel, so one decoded RGB copy is 1.33x).

server: the app of `viewfinder serve` (`create_app` under uvicorn, no auth, cache off,
one attempt per model call) in a child process on 127.0.0.1, its model endpoint the
simulator in this process (`viewfinder.testing.simulator`, scripted, NOT a model: it answers
every request with the same canned caption, latency 0). This process sends one upload
of the RGB PNG, then `--uploads` at once, and reads the server's `VmHWM` / `VmRSS` from
`/proc/<pid>/status`: its RSS before, its peak (reset before each round), and its RSS
just after the round. `--max-decode-pixels` and `--decode-wait` set the pixel budget
and its wait (0: the server's defaults); a viewfinder without a budget (before it
existed) is run as is and says so.

Linux only (`/proc`). Run it on another commit with that commit's package first on
`PYTHONPATH`; every child inherits it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2

import viewfinder
from viewfinder.analyzers.compact import compact_answer
from viewfinder.testing.simulator import Simulator

ANSWER: dict[str, Any] = {"caption": {"text": "a large flat picture", "confidence": 0.5}}
ANSWER = compact_answer(ANSWER)  # written in the verbose form, sent as the default
QUERY = "api-version=2023-10-01&features=caption"
MIB = 1024 * 1024

MAKE_IMAGES = """
import sys
from PIL import Image, ImageDraw
folder, side = sys.argv[1], int(sys.argv[2])
Image.MAX_IMAGE_PIXELS = None
palette = Image.new("P", (side, side), 0)
palette.putpalette([200, 210, 220] + [(37 * i) % 256 for i in range(3, 768)])
draw = ImageDraw.Draw(palette)
step = side // 44
for i in range(40):
    draw.rectangle((i * step, i * step, i * step + side // 6, i * step + side // 13), fill=1 + i)
    x = side - side // 12 - i * step
    draw.ellipse((x, i * step, x + side // 16, i * step + side // 16), fill=41 + i)
palette.save(f"{folder}/palette.png", compress_level=9)
rgb = palette.convert("RGB")
del palette
rgb.save(f"{folder}/rgb.png", compress_level=9)
rgb.save(f"{folder}/large.jpg", quality=90)
photo = rgb.resize((4032, 3024), Image.Resampling.BOX)
photo.save(f"{folder}/photo.jpg", quality=90)
photo.save(f"{folder}/photo.png")
"""
"""Writes rgb.png, palette.png, large.jpg, photo.jpg and photo.png into argv[1]."""

LIBRARY_CHILD = """
import json, sys, time
from PIL import Image
from viewfinder.prepare import prepare_image

def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmHWM", "VmRSS")}

path = sys.argv[1]
data = open(path, "rb").read()
Image.MAX_IMAGE_PIXELS = None
width, height = Image.open(path).size
with open("/proc/self/clear_refs", "w") as reset:
    reset.write("5")
before = status()
start = time.perf_counter()
prepared = prepare_image(data)
seconds = time.perf_counter() - start
after = status()
print(json.dumps({"width": width, "height": height, "rss_before": before["VmRSS"],
                  "peak": after["VmHWM"], "rss_after": after["VmRSS"], "seconds": seconds,
                  "model": [prepared.model_width, prepared.model_height]}))
"""
"""Prepares argv[1] once and prints its own RSS figures as JSON."""

SERVER_CHILD = """
import dataclasses, json, sys
import uvicorn
from viewfinder import ImageAnalyzer, RetryPolicy
from viewfinder.compat.server import ServerSettings, create_app
port, base_url, budget, wait = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
analyzer = ImageAnalyzer(base_url=base_url, api_key="bench-placeholder", model="gpt-4.1-mini",
                         cache=False, retry=RetryPolicy(max_attempts=1))
names = {f.name for f in dataclasses.fields(ServerSettings)}
options = {}
if "max_decode_pixels" in names and budget > 0:
    options["max_decode_pixels"] = budget
if "decode_wait_seconds" in names and wait > 0:
    options["decode_wait_seconds"] = wait
settings = ServerSettings(no_auth=True, analyzer=analyzer, **options)
import viewfinder
print(json.dumps({"budget": getattr(settings, "max_decode_pixels", None),
                  "wait": getattr(settings, "decode_wait_seconds", None),
                  "package": viewfinder.__file__}), flush=True)
uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
            access_log=False, ws="none", lifespan="on")
"""
"""Serves the app on 127.0.0.1:argv[1] against the simulator at argv[2]."""


def _make_images(folder: Path, side: int) -> None:
    subprocess.run(
        [sys.executable, "-c", MAKE_IMAGES, str(folder), str(side)], check=True, cwd=folder
    )


def _mib(value: float) -> str:
    return f"{value / MIB:,.0f} MiB"


def library(folder: Path) -> None:
    """Peak RSS of one `prepare_image` per image, each in a fresh child process."""
    print("library: prepare_image(data), max side 1024, one child process per image")
    print(f"  {'image':<34} {'RGB size':>10} {'peak extra':>11} {'ratio':>6} {'time':>7}")
    names = {
        "rgb.png": "flat RGB PNG",
        "palette.png": "flat palette PNG",
        "large.jpg": "flat JPEG",
        "photo.jpg": "12-megapixel JPEG",
        "photo.png": "12-megapixel PNG",
    }
    for file, label in names.items():
        path = folder / file
        out = subprocess.run(
            [sys.executable, "-c", LIBRARY_CHILD, str(path)],
            check=True,
            capture_output=True,
            text=True,
            cwd=folder,  # not the repository: `python -c` imports from the working directory
        ).stdout
        measured = json.loads(out.strip().splitlines()[-1])
        rgb = measured["width"] * measured["height"] * 3
        extra = measured["peak"] - measured["rss_before"]
        size = f"{measured['width']}x{measured['height']}"
        described = f"{label}, {path.stat().st_size / 1e6:.2f} MB"
        print(
            f"  {described:<34} {_mib(rgb):>10} {_mib(extra):>11} {extra / rgb:>5.2f}x "
            f"{measured['seconds']:>6.2f}s   ({size})"
        )


def _status(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as stream:
        fields = dict(line.split(":", 1) for line in stream)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmHWM", "VmRSS")}


def _reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as stream:
        stream.write("5")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _upload(endpoint: str, body: bytes, statuses: list[int]) -> None:
    response = httpx2.post(
        f"{endpoint}/computervision/imageanalysis:analyze?{QUERY}",
        content=body,
        headers={"Content-Type": "image/png"},
        timeout=300,
    )
    statuses.append(response.status_code)


def server(folder: Path, uploads: int, budget: int, wait: float) -> None:
    """The server's RSS before, at peak and after 1 and then `uploads` concurrent uploads."""
    body = (folder / "rgb.png").read_bytes()
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with Simulator(default=lambda _request: ANSWER) as sim:
        child = subprocess.Popen(
            [sys.executable, "-c", SERVER_CHILD, str(port), sim.base_url, str(budget), str(wait)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=folder,
        )
        try:
            assert child.stdout is not None
            started = json.loads(child.stdout.readline())
            configured = started["budget"]
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx2.get(f"{endpoint}/health", timeout=1).status_code == 200:
                        break
                except httpx2.HTTPError:
                    pass
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.1)
            what = "none (this viewfinder has no pixel budget)"
            if configured is not None:
                what = (
                    f"{configured:,} pixels ({configured / 1e6:,.0f} megapixels), "
                    f"wait {started['wait']:g} s"
                )
            print(f"server: pid {child.pid}, pixel budget {what}")
            print(f"  viewfinder from {Path(started['package']).parent}")
            print(f"  RSS at rest: {_mib(_status(child.pid)['VmRSS'])}")
            for count in (1, uploads):
                before = _status(child.pid)["VmRSS"]
                _reset_peak(child.pid)
                statuses: list[int] = []
                threads = [
                    threading.Thread(target=_upload, args=(endpoint, body, statuses))
                    for _ in range(count)
                ]
                start = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                seconds = time.perf_counter() - start
                after = _status(child.pid)
                label = f"{count} upload{'s' if count > 1 else ''} at once"
                print(
                    f"  {label:<18} peak RSS {_mib(after['VmHWM']):>9} "
                    f"(+{_mib(after['VmHWM'] - before)} over the RSS before), "
                    f"RSS after {_mib(after['VmRSS']):>9}; {seconds:5.1f} s; "
                    f"statuses {sorted(statuses)}"
                )
        finally:
            child.terminate()
            child.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=13000)
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--max-decode-pixels", type=int, default=0, help="0: the default")
    parser.add_argument("--decode-wait", type=float, default=0, help="0: the default")
    parser.add_argument("--part", choices=["library", "server", "both"], default="both")
    args = parser.parse_args()
    if not os.path.exists("/proc/self/clear_refs"):
        raise SystemExit("needs Linux: /proc/<pid>/status and clear_refs")
    command = " ".join(
        [
            "python benchmarks/bench_image_memory.py",
            f"--side {args.side} --uploads {args.uploads}",
            f"--max-decode-pixels {args.max_decode_pixels} --decode-wait {args.decode_wait:g}",
            f"--part {args.part}",
        ]
    )
    print(f"command: {command}")
    print(f"viewfinder from {Path(viewfinder.__file__).parent}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _make_images(folder, args.side)
        if args.part in ("library", "both"):
            library(folder)
        if args.part in ("server", "both"):
            server(folder, args.uploads, args.max_decode_pixels, args.decode_wait)


if __name__ == "__main__":
    main()
