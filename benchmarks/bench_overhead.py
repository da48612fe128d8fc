"""Client overhead per image, beside the raw openai client, against the local simulator.

Run: python benchmarks/bench_overhead.py [--repeat 7]

Everything is measured side by side in one run on this machine; the figures that matter
are the ratios. The simulator (viewfinder.testing.simulator) is a scripted server on 127.0.0.1
that answers at once: it is not a model, so the time it takes is not a model's latency.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import openai
from PIL import Image

import viewfinder as vf
from viewfinder.analyzers.compact import compact_answer
from viewfinder.analyzers.features import ALL_FEATURES
from viewfinder.prepare import prepare_image
from viewfinder.testing.simulator import Simulator

ANSWER = {
    "caption": {"text": "a field of noise", "confidence": 0.5},
    "dense_captions": [{"text": "noise", "confidence": 0.5, "box": [0, 0, 1000, 1000]}],
    "tags": [{"name": "noise", "confidence": 0.5}],
    "objects": [{"name": "blob", "confidence": 0.5, "box": [100, 100, 400, 400]}],
    "people": [],
    "smart_crops": {"box": [200, 200, 800, 800]},
    "read": [{"text": "no text", "box": [0, 0, 200, 50], "confidence": 0.5}],
}
ANSWER = compact_answer(ANSWER)  # written in the verbose form, sent as the default


def _median_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _photo_12mp() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((4000, 3000), 48).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    photo = _photo_12mp()

    with Simulator(default=lambda body: ANSWER) as sim, tempfile.TemporaryDirectory() as tmp:
        analyzer = vf.ImageAnalyzer(base_url=sim.base_url, cache=False)
        cached = vf.ImageAnalyzer(base_url=sim.base_url, cache=Path(tmp) / "cache")
        prepared = analyzer.prepare(photo)
        request = analyzer.build(prepared, ALL_FEATURES)
        raw = openai.OpenAI(api_key="bench", base_url=sim.base_url, max_retries=0)
        # the raw client sends the body viewfinder sends, already built: HTTP and JSON only
        analyzer.analyze(photo)  # warm up both clients' connections
        body = sim.requests[-1]

        prepare_s = _median_seconds(lambda: prepare_image(photo), args.repeat)
        full_s = _median_seconds(lambda: analyzer.analyze(photo), args.repeat)
        raw_s = _median_seconds(lambda: raw.chat.completions.create(**body), args.repeat)
        cached.analyze(photo)
        hit_s = _median_seconds(lambda: cached.analyze(photo), args.repeat)
        build_s = _median_seconds(lambda: analyzer.build(prepared, ALL_FEATURES), args.repeat)
        del request
        raw.close()
        analyzer.close()
        cached.close()

    print(
        f"12-megapixel JPEG ({len(photo) / 1e6:.1f} MB), all seven features, "
        f"median of {args.repeat}"
    )
    print(f"  raw openai client, same request body:        {raw_s * 1000:8.1f} ms")
    print(
        f"  viewfinder analyze (cache off):              {full_s * 1000:8.1f} ms"
        f"   = {full_s / raw_s:5.1f} x the raw client"
    )
    print(
        f"    of which decode+orient+resize+encode:      {prepare_s * 1000:8.1f} ms"
        f"   = {prepare_s / full_s:5.0%} of it"
    )
    print(f"    of which building the request:             {build_s * 1000:8.1f} ms")
    print(
        f"    the rest (validate, finish, HTTP):         "
        f"{(full_s - prepare_s - build_s) * 1000:8.1f} ms"
    )
    print(
        f"  viewfinder analyze, cache hit:               {hit_s * 1000:8.1f} ms"
        f"   = {hit_s / raw_s:5.1f} x the raw client"
    )


if __name__ == "__main__":
    main()
