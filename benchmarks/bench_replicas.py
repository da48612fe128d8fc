"""Replicas of `viewfinder serve` against one rate-limited model server, with and without Redis.

Run: python benchmarks/bench_replicas.py [--replicas 2] [--images 150] [--cache-images 20]
         [--concurrency 8] [--latency 0.2] [--rpm 600] [--window 6]

(about 60-70 s; needs Debian's `redis-server` on PATH and the `server` and `redis`
extras.) It starts a `redis-server` on a free loopback port (no persistence), ONE
simulator in a process of its own with a rate limit, and for each scenario `--replicas`
`python -m viewfinder serve --no-auth` subprocesses on free loopback ports, pointed at the
simulator (`--base-url`, a placeholder `OPENAI_API_KEY`), side by side in one run:

  (a) replicas WITHOUT --redis: each its own rate limiter, and its own disk cache
      (`VIEWFINDER_CACHE_DIR`, a directory per replica);
  (b) replicas WITH --redis URL: the state replicas share through Redis (the answer
      cache, the Read store and the rate limit, as far as the installed viewfinder
      shares them).

Each scenario gets a fresh simulator (and an emptied Redis), then:

1. **Cache across replicas** (also the warm-up): `--cache-images` PNGs sent to replica 1,
   then the same ones to replica 2; hit rate = 1 - (model requests the simulator saw for
   the second pass) / cache-images. Every limiter has now seen the model's rate headers
   (in (b), replica 2's only through Redis: its pass sent nothing to the model). The
   client then rests one rate window, so the simulator's window is empty again.
2. **Throughput** (steady pacing, not the start-up burst sent before any limit was known):
   a client sends `--images` distinct 64x64 noise PNGs as Azure Image Analysis
   4.0 REST requests (`POST /computervision/imageanalysis:analyze`, features
   caption,tags: one model request each), `--concurrency` at a time, round-robin over the
   replicas. A replica that answers 429 or 503 is waited for (`Retry-After`, or
   `retry-after-ms` when given) and the image is sent again, as Azure's SDK does, so no
   image is lost. Bound = min(concurrency / latency, rpm_limit / window) requests per
   second; fraction = images / wall time / bound (the target is >= 0.9; a sliding window
   also lets a first burst of rpm_limit requests through, which the bound leaves out, so
   a short run can pass 1). Reported: the 429s the SIMULATOR answered during this pass
   (the replicas together overran the model's limit), the 429s and 503s the replicas
   answered the client (resent), images lost (must be 0).

Why the warm-up: with the window scaled to seconds, the few requests sent before the first
answer states the limit are a large share of one window and draw a 429, and the AIMD cut
that follows recovers on the limiter's real-time constants (10 s per step), which the
scaling does not shrink: a measure of the scaling, not of the replicas. Over a real 60 s
window the same start-up burst is a few percent of the budget.

The rate window is SCALED so a run takes seconds: the simulator admits
`rpm_limit = round(rpm * window / 60)` requests per `--window` seconds. A `serve`
subprocess learns its pace from `x-ratelimit-limit-requests` and cannot be handed the
window-scaled limiter bench_throughput.py uses, so the simulator runs with
`limits_per_minute=True`: it STATES the limit per minute (rpm_limit x 60 / window, as real
services state theirs) while it COUNTS it per window. That is the scripted server's
choice, not a real provider's behaviour.

The simulator (viewfinder.testing.simulator) is a scripted server on 127.0.0.1, NOT a
model: it answers every request with the same canned JSON after `--latency` seconds.
Every run is bounded in requests (resends per image are capped) and in time (a run past
its deadline is stopped and says so), and the benchmark stops its processes by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import redis
from bench_throughput import FEATURES, ServerConfig, ServerProcess
from PIL import Image

from viewfinder.testing.simulator import SimulatorStats

ANALYZE = "/computervision/imageanalysis:analyze?api-version=2023-10-01&features=" + ",".join(
    FEATURES
)
MODEL = "gpt-4.1-mini"
MAX_REPLICAS = 3
MAX_SENDS = 50
"""Most times one image is sent (the first time and its resends) before it counts as lost."""
DEADLINE_FACTOR = 1.5
"""A throughput run is stopped after this many times the time the bound allows (plus 10 s)."""
STARTUP_TIMEOUT = 90.0
"""Seconds for a replica (or Redis) to answer its probe."""


# --- the processes ------------------------------------------------------------------------


def _free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wait_until(check: object, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `check()` until true; fail with the process's log if it dies or times out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not check():  # type: ignore[operator]
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start:\n{tail}")
        time.sleep(0.05)  # polling for readiness


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A `redis-server` on a free loopback port, no persistence; yields its URL."""
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server is not on PATH (Debian: apt-get install redis-server)")
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    log = directory / "redis.log"
    command = [
        executable,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--logfile", str(log),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as client:

            def answers() -> bool:
                try:
                    return bool(client.ping())
                except redis.ConnectionError:
                    return False

            _wait_until(answers, "redis-server", process, log)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM our own child, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _environment(cache_dir: Path) -> dict[str, str]:
    """This environment without model endpoints, keys or viewfinder settings, so a replica
    reaches only the simulator, and keeps its disk state in `cache_dir`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "AZURE_", "COHERE_", "VIEWFINDER_"))
    }
    env |= {"OPENAI_API_KEY": "sim-placeholder", "VIEWFINDER_CACHE_DIR": str(cache_dir)}
    return env


@contextlib.contextmanager
def replicas(
    count: int, model_url: str, redis_url: str | None, scratch: Path
) -> Iterator[list[str]]:
    """`count` `viewfinder serve` subprocesses, ready; yields their endpoints."""
    started: list[subprocess.Popen[bytes]] = []
    endpoints: list[str] = []
    try:
        for index in range(count):
            port = _free_port()
            directory = scratch / f"replica-{index + 1}"
            directory.mkdir()
            command = [
                sys.executable, "-m", "viewfinder", "serve",
                "--no-auth", "--host", "127.0.0.1", "--port", str(port),
                "--base-url", model_url, "--model", MODEL,
            ]  # fmt: skip
            if redis_url is not None:
                command += ["--redis", redis_url]
            with (directory / "serve.log").open("wb") as log:
                started.append(
                    subprocess.Popen(
                        command,
                        env=_environment(directory / "cache"),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            endpoints.append(f"http://127.0.0.1:{port}")
        for index, (process, endpoint) in enumerate(zip(started, endpoints, strict=True)):

            def ready(endpoint: str = endpoint) -> bool:
                try:
                    return httpx2.get(endpoint + "/readyz", timeout=5).status_code == 200
                except httpx2.TransportError:
                    return False

            log_path = scratch / f"replica-{index + 1}" / "serve.log"
            _wait_until(ready, f"replica {index + 1}", process, log_path)
        yield endpoints
    finally:
        for process in started:
            _stop(process)


# --- the client -----------------------------------------------------------------------------


def _png(index: int) -> bytes:
    """A 64x64 PNG of noise seeded by `index`: no two alike, also after the model copy is
    re-encoded (flat colours a shade apart can encode to the same copy, one cache entry)."""
    noise = random.Random(index).randbytes(64 * 64 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (64, 64), noise).save(buffer, "PNG")
    return buffer.getvalue()


def _retry_after(response: httpx2.Response) -> float:
    """Seconds to wait before resending, as Azure's SDK reads them (ms headers first)."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        with contextlib.suppress(ValueError, TypeError):
            return float(response.headers.get(name)) / 1000
    with contextlib.suppress(ValueError, TypeError):
        return float(response.headers.get("retry-after"))
    return 1.0


@dataclass
class Sent:
    """What the client saw over one pass."""

    images: int = 0
    ok: int = 0
    lost: int = 0
    answered_429: int = 0
    answered_503: int = 0
    other: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    stopped: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, status: int) -> None:
        with self._lock:
            if status == 429:
                self.answered_429 += 1
            elif status == 503:
                self.answered_503 += 1
            elif status != 200:
                self.other[status] = self.other.get(status, 0) + 1


def send_all(images: list[bytes], endpoints: list[str], concurrency: int, deadline: float) -> Sent:
    """Send every image (image i to replica i mod len(endpoints)), `concurrency` at a time;
    resend after `Retry-After` on a 429 or 503; stop resending past `deadline` seconds."""
    sent = Sent(images=len(images))
    start = time.perf_counter()
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx2.Client(timeout=60, limits=limits) as client:

        def one(index: int) -> bool:
            url = endpoints[index % len(endpoints)] + ANALYZE
            for _ in range(MAX_SENDS):
                if time.perf_counter() - start > deadline:
                    sent.stopped = True
                    return False
                try:
                    response = client.post(
                        url, content=images[index], headers={"content-type": "image/png"}
                    )
                except httpx2.TransportError:
                    sent.count(-1)
                    time.sleep(1.0)
                    continue
                sent.count(response.status_code)
                if response.status_code == 200:
                    return True
                if response.status_code not in (429, 503):
                    return False
                time.sleep(max(0.0, _retry_after(response)))  # as the SDK waits
            return False

        with ThreadPoolExecutor(concurrency) as pool:
            done = list(pool.map(one, range(len(images))))
    sent.seconds = time.perf_counter() - start
    sent.ok = sum(done)
    sent.lost = len(images) - sent.ok
    return sent


# --- one scenario ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One scenario: the cache pass (which is also the warm-up), then the throughput pass and
    the simulator's counts during it."""

    name: str
    throughput: Sent
    model: SimulatorStats
    cache_images: int
    second_pass_requests: int


def run_scenario(
    name: str,
    args: argparse.Namespace,
    server: ServerProcess,
    config: ServerConfig,
    redis_url: str | None,
    images: list[bytes],
    cached: list[bytes],
    bound: float,
) -> Outcome:
    """Fresh simulator and replicas; the cache pass, one rate window's rest, the throughput
    pass."""
    model_url = server.start(config)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-replicas-") as scratch,
            replicas(args.replicas, model_url, redis_url, Path(scratch)) as endpoints,
        ):
            deadline = DEADLINE_FACTOR * len(images) / bound + 10
            send_all(cached, endpoints[:1], args.concurrency, deadline)
            before = server.counts().stats.total
            send_all(cached, endpoints[1:2], args.concurrency, deadline)
            second = server.counts().stats.total - before
            # The cache pass was also the warm-up: every limiter has seen the model's
            # headers (in (b), replica 2's only through Redis). Let the simulator's window
            # empty, so the throughput pass measures steady pacing, not the start-up burst
            # of requests sent before any limit was known.
            time.sleep(args.window)
            warm = server.counts().stats
            throughput = send_all(images, endpoints, args.concurrency, deadline)
            model = _since(warm, server.counts().stats)
    finally:
        server.stop()
    return Outcome(name, throughput, model, len(cached), second)


def _since(before: SimulatorStats, after: SimulatorStats) -> SimulatorStats:
    """The simulator's counts of the throughput pass alone."""
    return SimulatorStats(
        total=after.total - before.total,
        ok=after.ok - before.ok,
        rejected_429=after.rejected_429 - before.rejected_429,
        errors=after.errors - before.errors,
        in_flight_max=after.in_flight_max,
    )


def report(outcome: Outcome, bound: float) -> None:
    """Print one scenario."""
    sent, model = outcome.throughput, outcome.model
    rate = sent.ok / sent.seconds if sent.seconds > 0 else 0.0
    fraction = rate / bound
    flag = "" if fraction >= 0.9 else "   <-- below 0.9"
    hit_rate = 1 - outcome.second_pass_requests / outcome.cache_images
    print(f"\n{outcome.name}")
    print(
        f"  throughput: {rate:5.1f} images/s vs bound {bound:.1f} = fraction {fraction:.2f}"
        f"{flag}   ({sent.ok} images in {sent.seconds:.1f} s)"
    )
    print(
        f"  simulator (the model's limit): {model.total} requests for {sent.images} images,"
        f" {model.ok} ok, {model.rejected_429} answered 429 (upstream overrun),"
        f" {model.errors} other errors"
    )
    others = ", ".join(f"{status}: {n}" for status, n in sorted(sent.other.items()))
    print(
        f"  replicas answered the client: {sent.answered_429} x 429, {sent.answered_503} x 503"
        f" (each waited out and resent){'; other: ' + others if others else ''}"
    )
    print(f"  images lost: {sent.lost} (must be 0)")
    print(
        f"  cache across replicas: {outcome.cache_images} images on replica 1, then on"
        f" replica 2: the simulator saw {outcome.second_pass_requests} -> hit rate"
        f" {hit_rate:.2f}"
    )
    if sent.stopped:
        print("  STOPPED at its deadline: the images not answered by then count as lost")


def _command(args: argparse.Namespace) -> str:
    parts = ["python", "benchmarks/bench_replicas.py"]
    for name, value in vars(args).items():
        parts += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=2, help=f"2 to {MAX_REPLICAS}")
    parser.add_argument("--images", type=int, default=150, help="throughput pass")
    parser.add_argument("--cache-images", type=int, default=20, help="cache pass")
    parser.add_argument("--concurrency", type=int, default=8, help="client concurrency")
    parser.add_argument("--latency", type=float, default=0.2, help="simulator seconds/request")
    parser.add_argument("--rpm", type=int, default=600, help="the simulator's requests/minute")
    parser.add_argument("--window", type=float, default=6.0, help="its rate window, seconds")
    args = parser.parse_args()
    if not 2 <= args.replicas <= MAX_REPLICAS:
        parser.error(f"--replicas must be 2 to {MAX_REPLICAS}")
    if min(args.images, args.cache_images, args.concurrency) < 1 or args.latency <= 0:
        parser.error("--images, --cache-images and --concurrency must be >= 1, --latency > 0")
    if args.window <= 0 or args.rpm < 1:
        parser.error("--window must be > 0 and --rpm >= 1")

    rpm_limit = max(1, round(args.rpm * args.window / 60))
    bound = min(args.concurrency / args.latency, rpm_limit / args.window)
    config = ServerConfig(
        latency=args.latency,
        max_concurrency=None,
        rpm_limit=rpm_limit,
        window=args.window,
        inject_every=None,
        retry_after_ms=0,
        limits_per_minute=True,
    )
    images = [_png(index) for index in range(args.images)]
    cached = [_png(args.images + index) for index in range(args.cache_images)]
    print(f"command: {_command(args)}")
    print(
        f"{args.replicas} x `viewfinder serve --no-auth` (subprocesses), client concurrency"
        f" {args.concurrency} round-robin, {args.images} distinct 64x64 PNGs, features"
        f" {','.join(FEATURES)}; simulator (scripted, not a model): latency {args.latency:g} s,"
        f" rate window SCALED to {args.window:g} s: {rpm_limit} per {args.window:g} s counted,"
        f" stated as {args.rpm} per minute"
    )
    print(
        f"bound = min({args.concurrency} / {args.latency:g} s, {rpm_limit} / {args.window:g} s)"
        f" = {bound:.1f} requests/s (one model request per image)"
    )
    outcomes: list[Outcome] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-redis-") as redis_dir,
        redis_server(Path(redis_dir)) as redis_url,
        ServerProcess() as server,
    ):
        for name, shared in (
            ("(a) replicas WITHOUT --redis: each its own limiter and disk cache", None),
            ("(b) replicas WITH --redis: shared through Redis", redis_url),
        ):
            if shared is not None:
                with redis.Redis.from_url(shared) as client:
                    client.flushdb()
            outcome = run_scenario(name, args, server, config, shared, images, cached, bound)
            outcomes.append(outcome)
            report(outcome, bound)

    print(
        "\nside by side: fraction of the bound / simulator 429s / replica 429s+503s / lost"
        " / cache hit rate"
    )
    for outcome in outcomes:
        sent = outcome.throughput
        rate = sent.ok / sent.seconds / bound if sent.seconds > 0 else 0.0
        hits = 1 - outcome.second_pass_requests / outcome.cache_images
        print(
            f"  {outcome.name[:3]}  {rate:.2f} / {outcome.model.rejected_429} /"
            f" {sent.answered_429 + sent.answered_503} / {sent.lost} / {hits:.2f}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
