"""Embeddings: images per second, local and over HTTP, and `viewfinder embed`'s peak memory.

Run: python benchmarks/bench_embed.py [--local-images 200] [--model-dir DIR]
         [--http-images 300] [--latency 0.1] [--concurrency 4] [--rpm 1200] [--window 6]
         [--small 100] [--large 10000]

Three measurements, side by side in one run:

1. **Local backend** (`viewfinder[embed-local]`, ONNX Runtime on this machine's CPU):
   `Embedder("local").embed_many(...)` over `--local-images` distinct 640x480 JPEGs held
   in memory, against the time the same images take to be decoded and preprocessed alone
   (`viewfinder.embed.local.preprocess`), so the share of the graph itself shows. The
   model is viewfinder's TINY RANDOM-WEIGHT test model (`viewfinder.testing.tiny_embed`,
   224 px input, a single MatMul: NOT a real model, and far cheaper than one), so its
   figure is the ceiling set by decoding and preprocessing. `--model-dir` adds the same
   run on real weights (a SigLIP 2 / OpenCLIP export, see `viewfinder.embed.local`).
2. **HTTP backend** (Cohere Embed v3: one image per request, the tightest case for a rate
   limit) against the simulator in a process of its own, answering after `--latency`
   seconds: (a) latency-bound, no rate limit, bound = concurrency / latency requests/s;
   (b) rpm-bound, the simulator admitting `rpm * window / 60` requests per `--window`
   seconds (the window SCALED as in bench_throughput.py, whose `WindowScaledLimiter`
   paces it), bound = that / window. Achieved = images / wall time (start-up included).
3. **Peak memory** of `python -m viewfinder embed DIR --out OUT` (Infinity flavour, 32
   images per request, latency 0) over `--small` and `--large` distinct 64x64 PNGs, each
   run a child process whose own `ru_maxrss` is taken by bench_memory.py's launcher: flat
   memory means large / small close to 1.

The simulator (viewfinder.testing.simulator) is a scripted server on 127.0.0.1, NOT a model:
its vectors are derived from a hash of the input. Nothing here measures retrieval quality.
"""

from __future__ import annotations

import argparse
import io
import shlex
import sys
import tempfile
import time
from pathlib import Path

from bench_memory import environment, run_child, write_images
from bench_throughput import ServerConfig, ServerProcess, WindowScaledLimiter
from PIL import Image

import viewfinder as vf
from viewfinder.embed import CohereBackend
from viewfinder.engine.ratelimit import RateLimiter
from viewfinder.testing.simulator import Simulator


def _jpegs(count: int) -> list[bytes]:
    """`count` distinct 640x480 JPEGs with some structure (gradients), in memory."""
    images = []
    for index in range(count):
        image = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
        image.paste((index % 256, index // 256 % 256, 128), (0, 0, 32, 32))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def _local(images: list[bytes], model_dir: Path, label: str) -> None:
    from viewfinder.embed.local import LocalBackend, preprocess
    from viewfinder.prepare.decode import decode_rgb

    backend = LocalBackend(model_dir)
    start = time.perf_counter()
    for data in images:
        preprocess(decode_rgb(data, "bench"), backend.config)
    prep = time.perf_counter() - start
    with vf.Embedder(backend) as embedder:
        embedder.embed_images(images[:2])  # load the sessions before timing
        start = time.perf_counter()
        with embedder.embed_many(images, concurrency=1) as run:
            ok = sum(item.ok for item in run)
        seconds = time.perf_counter() - start
    rate = len(images) / seconds
    print(f"  {label}: {ok}/{len(images)} images in {seconds:.1f} s = {rate:.1f} images/s")
    print(
        f"    decode + preprocess alone: {len(images) / prep:.1f} images/s "
        f"({prep / seconds:.0%} of the embedding run's time)"
    )


def _http(args: argparse.Namespace) -> None:
    images = _jpegs(args.http_images)
    per_window = round(args.rpm * args.window / 60)
    scenarios = [
        ("(a) latency-bound", None, args.concurrency / args.latency),
        (
            f"(b) rpm-bound ({per_window} per {args.window:g} s = {args.rpm} per minute)",
            per_window,
            min(args.concurrency / args.latency, per_window / args.window),
        ),
    ]
    with ServerProcess() as server:
        for name, rpm_limit, bound in scenarios:
            config = ServerConfig(
                latency=args.latency,
                max_concurrency=None,
                rpm_limit=rpm_limit,
                window=args.window,
                inject_every=None,
                retry_after_ms=0,
            )
            base_url = server.start(config)
            endpoint = base_url.removesuffix("/v1")
            limiter: RateLimiter = (
                WindowScaledLimiter(args.window, args.rpm) if rpm_limit else RateLimiter()
            )
            backend = CohereBackend(model="embed-english-v3.0", api_key="k", base_url=endpoint)
            try:
                with vf.Embedder(backend, rate_limiter=limiter) as embedder:
                    start = time.perf_counter()
                    with embedder.embed_many(
                        images, concurrency=args.concurrency, rate_limiter=limiter
                    ) as run:
                        ok = sum(item.ok for item in run)
                    seconds = time.perf_counter() - start
                counts = server.counts()
            finally:
                server.stop()
            achieved = len(images) / seconds
            print(f"{name}: bound {bound:.1f} images/s (one image per request)")
            print(
                f"      {achieved:5.1f} images/s vs bound {bound:5.1f} = fraction "
                f"{achieved / bound:.2f}   ({ok}/{len(images)} ok in {seconds:.1f} s, "
                f"{counts.stats.total} requests, {counts.stats.rejected_429} answered 429)"
            )


def _memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch_dir, Simulator() as sim:
        scratch = Path(scratch_dir)
        env = environment(scratch / "cache")
        runs = []
        for count in (args.small, args.large):
            folder = scratch / f"images-{count}"
            folder.mkdir()
            write_images(folder, count)
            out = scratch / f"out-{count}.jsonl"
            arguments = ["embed", str(folder), "--out", str(out), "--backend", "infinity"]
            arguments += ["--model", "sim-embed", "--base-url", sim.base_url]
            arguments += ["--concurrency", "4"]
            child = run_child(arguments, env, sim, scratch, timeout=600)
            lines = out.read_text().count("\n") if out.exists() else 0
            print(
                f"  {count:>6,} images: peak RSS {child.peak_mb:6.1f} MB, {child.seconds:5.1f} s, "
                f"{child.requests} requests, {lines:,} lines, exit {child.returncode}"
            )
            runs.append(child)
        small, large = runs
        ratio = large.peak_mb / small.peak_mb
        print(f"  ratio {args.large:,} / {args.small:,} images: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--local-images", type=int, default=200)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--http-images", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rpm", type=int, default=1200)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    args = parser.parse_args()
    print("$ python benchmarks/bench_embed.py " + shlex.join(sys.argv[1:]))

    print(f"1. local backend, {args.local_images} distinct 640x480 JPEGs, CPU")
    from viewfinder.testing.tiny_embed import write_tiny_model

    images = _jpegs(args.local_images)
    with tempfile.TemporaryDirectory() as tiny:
        model = write_tiny_model(tiny, image_size=224, dimensions=64)
        _local(images, model, "tiny random-weight model (224 px, NOT a real model)")
    if args.model_dir is not None:
        _local(images, args.model_dir, f"weights in {args.model_dir}")
    else:
        print("  real weights: none here (pass --model-dir to measure a SigLIP 2/OpenCLIP export)")

    print(
        f"2. HTTP backend (Cohere Embed v3 wire format) against the simulator, latency "
        f"{args.latency:g} s, concurrency {args.concurrency}, {args.http_images} images"
    )
    _http(args)

    print(f"3. peak memory of viewfinder embed, {args.small:,} vs {args.large:,} images")
    _memory(args)


if __name__ == "__main__":
    main()
