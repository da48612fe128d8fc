"""Batch throughput as a fraction of the bound the server's limits allow, against the simulator.

Run: python benchmarks/bench_throughput.py [--images 200] [--latency 0.2] [--concurrency 8]
         [--max-concurrency 16] [--rpm 1200] [--limiter-rpm RPM] [--window 6]
         [--inject-429 20] [--retry-after-ms 50] [--concurrency-limit 4]

`analyzer.analyze_many(...)` (cache off) analyses `--images` small, distinct in-memory PNGs
(so no answer can come from a cache) in three scenarios, each against a fresh simulator:

  (a) latency-bound: no rate limit on the server;
  (b) rpm-bound: the server admits at most `rpm_limit` requests per sliding window;
  (c) as (b), and every `--inject-429`-th admitted request is answered 429 with
      `retry-after-ms`, as a provider does under load;
  (d) concurrency-bound: no rate limit, but the server processes at most
      `--concurrency-limit` requests at once and answers 429 beyond, with no rate
      headers (no `retry-after*`, no `x-ratelimit-*`), as servers capping concurrency do.
      Its bound is min(concurrency, concurrency_limit) / latency; it is also reported in
      steady state (from the 10th percent of images on), as the limiter must first learn
      the cap from a few 429s.

The rate window is SCALED so a run takes seconds, not minutes: the server counts
`rpm_limit = round(rpm * window / 60)` requests per `--window` seconds (the real services
count per 60 s), i.e. the same requests per second as `--rpm` per minute. The bound, in
requests per second, is

    min(min(concurrency, max_concurrency) / latency, rpm_limit / window)

with the actual window; in (c) only (k - 1) of every k admitted requests can succeed, so
the image bound is that times (k - 1) / k. Achieved = images / wall time of the whole run
(start-up included); fraction = achieved / bound, the target being >= 0.9 (in (d), in
steady state). A sliding window
also lets a client burst `rpm_limit` requests at once, which the bound leaves out.

Each rpm scenario is run with two `RateLimiter`s: one configured with `--limiter-rpm`
(default `--rpm`: exactly the server's limit), and one that learns the limit from the
`x-ratelimit-limit-requests` header. The simulator states that header per window, while
the real services state it per minute, so both limiters here see it multiplied by
60 / window (`WindowScaledLimiter`); unscaled, the limiter would learn a limit ten times
too low and, the lower limit winning, pace even the configured one at it.

The simulator (viewfinder.testing.simulator) is a scripted server on 127.0.0.1, NOT a model: it
answers every request with the same canned JSON after `--latency` seconds. It runs in a
process of its own so that its handler threads do not compete with the client for the GIL.
Every run is bounded in requests and in time (a run past its deadline is stopped and
said so), and the benchmark stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from PIL import Image

import viewfinder as vf
from viewfinder.analyzers.compact import compact_answer
from viewfinder.engine.ratelimit import RateLimiter
from viewfinder.testing.simulator import Reply, Simulator, SimulatorStats

FEATURES = ("caption", "tags")
ANSWER: dict[str, Any] = {
    "caption": {"text": "a small square of colour", "confidence": 0.5},
    "tags": [{"name": "colour", "confidence": 0.5}],
}
ANSWER = compact_answer(ANSWER)  # written in the verbose form, sent as the default
LIMIT_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-limit-tokens")
DEADLINE_FACTOR = 1.25
"""A run is stopped after this many times the time the bound allows it (plus 2 s)."""
REPLY_TIMEOUT = 30.0
"""Seconds to wait for the simulator process to answer a command."""


# --- the simulator, in a process of its own ---------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """How the simulator is set up for one run (picklable, sent to the server process)."""

    latency: float
    max_concurrency: int | None
    rpm_limit: int | None
    window: float
    inject_every: int | None
    retry_after_ms: int
    concurrency_retry_after: bool = True
    limits_per_minute: bool = False  # the simulator's: see Simulator(limits_per_minute=)


@dataclass(frozen=True)
class ServerCounts:
    """What the simulator saw: its counters, and the 429s it was told to inject."""

    stats: SimulatorStats
    injected: int


def _serve(conn: Connection) -> None:
    """Server process: host one simulator at a time, as the parent commands."""
    sim: Simulator | None = None
    injected = [0]
    try:
        while True:
            command, config = conn.recv()
            if command == "start":
                sim, injected = _start(config)
                conn.send(sim.base_url)
            elif command == "stats" and sim is not None:
                conn.send(ServerCounts(sim.stats, injected[0]))
            elif command == "stop":
                if sim is not None:
                    sim.stop()
                    sim = None
                conn.send(None)
            else:  # "quit"
                return
    except (EOFError, KeyboardInterrupt):
        return
    finally:
        if sim is not None:
            sim.stop()


def _start(config: ServerConfig) -> tuple[Simulator, list[int]]:
    """A started simulator whose default answer injects a 429 every `inject_every`-th time."""
    lock = threading.Lock()
    counter = [0]
    injected = [0]

    def answer(body: dict[str, Any]) -> Reply | dict[str, Any]:
        with lock:
            counter[0] += 1
            inject = config.inject_every is not None and counter[0] % config.inject_every == 0
            injected[0] += inject
        if inject:
            return Reply(
                status=429,
                error_message="simulator: injected 429",
                headers={"retry-after-ms": str(config.retry_after_ms)},
            )
        return ANSWER

    sim = Simulator(
        latency=config.latency,
        max_concurrency=config.max_concurrency,
        concurrency_retry_after=config.concurrency_retry_after,
        rpm_limit=config.rpm_limit,
        rate_window=config.window,
        default=answer,
        limits_per_minute=config.limits_per_minute,
    )
    return sim.start(), injected


class ServerProcess:
    """The parent's handle on the server process; a context manager that ends it."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()
        child.close()

    def _ask(self, command: str, config: ServerConfig | None = None) -> Any:
        self._conn.send((command, config))
        if not self._conn.poll(REPLY_TIMEOUT):
            raise TimeoutError(f"the simulator process did not answer {command!r}")
        return self._conn.recv()

    def start(self, config: ServerConfig) -> str:
        """Start a simulator; returns its base URL."""
        return str(self._ask("start", config))

    def counts(self) -> ServerCounts:
        counts: ServerCounts = self._ask("stats")
        return counts

    def stop(self) -> None:
        self._ask("stop")

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("quit", None))
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()  # our own child, by its handle
            self._process.join()
        self._conn.close()


# --- the client side --------------------------------------------------------------------


class WindowScaledLimiter(RateLimiter):
    """A `RateLimiter` for a simulator whose rate window is `window` s instead of 60 s.

    The simulator states `x-ratelimit-limit-*` per window; this rescales them to per
    minute, as the real services state them, before the limiter learns from them.
    Without it, a limiter learns "120 per minute" from a 120-per-6-s window, and since
    the lower of the configured and the learned limit wins, even `rpm=1200` would pace
    at 120 per minute (one tenth of the bound).
    """

    def __init__(self, window: float, rpm: float | None = None) -> None:
        super().__init__(rpm)
        self._per_minute = 60.0 / window

    def observe(self, status: int | None, headers: Mapping[str, str]) -> None:
        scaled = {name.lower(): value for name, value in headers.items()}
        for name in LIMIT_HEADERS:
            if name in scaled:
                scaled[name] = str(float(scaled[name]) * self._per_minute)
        super().observe(status, scaled)


def _png(index: int) -> bytes:
    """A 64x64 PNG whose bytes differ for every index (so no two requests are alike)."""
    buffer = io.BytesIO()
    colour = (index % 256, index // 256 % 256, 97)
    Image.new("RGB", (64, 64), colour).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Outcome:
    """One run: what the client got and what the server saw."""

    images: int
    results: int
    failed: int
    seconds: float
    stopped: bool
    server: ServerCounts
    limiter_rpm: float | None
    limiter_factor: float
    times: tuple[float, ...] = ()
    """Seconds from the start at which each result came."""
    limiter_concurrency: int | None = None
    """The limiter's concurrency cap at the end (None: none learned)."""

    @property
    def per_second(self) -> float:
        return self.results / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_per_second(self) -> float:
        """Results per second from the 10th percent of results on (start-up left out)."""
        first = len(self.times) // 10
        span = self.times[-1] - self.times[first] if self.times else 0.0
        return (len(self.times) - 1 - first) / span if span > 0 else 0.0


def _run(
    server: ServerProcess,
    config: ServerConfig,
    images: list[bytes],
    limiter: RateLimiter,
    concurrency: int,
    deadline: float,
) -> Outcome:
    """Analyse `images` through a fresh simulator; stop if `deadline` seconds pass."""
    base_url = server.start(config)
    analyzer = vf.ImageAnalyzer(base_url=base_url, cache=False)
    pairs = [(f"img-{index}", image) for index, image in enumerate(images)]
    results = failed = 0
    stopped = False
    times: list[float] = []
    try:
        start = time.perf_counter()
        with analyzer.analyze_many(
            pairs, FEATURES, concurrency=concurrency, rate_limiter=limiter
        ) as run:
            for item in run:
                results += 1
                failed += not item.ok
                times.append(time.perf_counter() - start)
                if time.perf_counter() - start > deadline:
                    stopped = True
                    break
        seconds = time.perf_counter() - start
        counts = server.counts()
    finally:
        analyzer.close()
        server.stop()
    stats = limiter.stats
    return Outcome(
        images=len(images),
        results=results,
        failed=failed,
        seconds=seconds,
        stopped=stopped,
        server=counts,
        limiter_rpm=stats.rpm,
        limiter_factor=stats.factor,
        times=tuple(times),
        limiter_concurrency=getattr(stats, "concurrency", None),
    )


def _warm_up() -> None:
    """Pay the one-off costs (imports, instructor's patching) before anything is timed."""
    with Simulator(default=lambda body: ANSWER) as sim:
        analyzer = vf.ImageAnalyzer(base_url=sim.base_url, cache=False)
        list(analyzer.analyze_many([_png(65535)], FEATURES))
        analyzer.close()


# --- report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One server set-up and the bound it allows."""

    name: str
    config: ServerConfig
    request_bound: float  # requests per second
    image_bound: float  # images per second
    steady: bool = False  # judged in steady state (start-up left out)


def _report(label: str, outcome: Outcome, scenario: Scenario) -> float:
    """Print one run; returns its fraction of the bound."""
    stats, injected = outcome.server.stats, outcome.server.injected
    fraction = outcome.per_second / scenario.image_bound
    steady = outcome.steady_per_second / scenario.image_bound
    minimum = outcome.results + injected
    unfinished = outcome.images - outcome.results
    lost = "n/a (stopped)" if outcome.stopped else str(unfinished)
    judged = steady if scenario.steady else fraction
    flag = "" if judged >= 0.9 else "   <-- below 0.9"
    pace = "unpaced" if outcome.limiter_rpm is None else f"{outcome.limiter_rpm:.0f} rpm"
    print(f"  {label}")
    print(
        f"    {outcome.per_second:6.1f} images/s vs bound {scenario.image_bound:5.1f}"
        f"  = fraction {fraction:.2f}{'' if scenario.steady else flag}"
        f"   ({outcome.results} images in {outcome.seconds:.1f} s)"
    )
    print(
        f"    steady state (from the {len(outcome.times) // 10 + 1}th result):"
        f" {outcome.steady_per_second:6.1f} images/s = fraction {steady:.2f}"
        f"{flag if scenario.steady else ''}"
    )
    print(
        f"    lost {lost}, failed {outcome.failed}; server saw {stats.total} requests vs"
        f" {minimum} needed (images + injected 429s) = {stats.total - minimum:+d} extra;"
        f" 429s {stats.rejected_429} ({injected} injected,"
        f" {stats.rejected_429 - injected} from the server's limits)"
    )
    print(
        f"    limiter at the end: {pace}, factor {outcome.limiter_factor:.2f},"
        f" concurrency cap {outcome.limiter_concurrency}"
    )
    if outcome.stopped:
        print(
            f"    STOPPED by the benchmark at its deadline ({outcome.seconds:.0f} s):"
            f" {unfinished} images not analysed (the extra requests include those cut off"
            f" in flight); the rate is over the images done"
        )
    return judged


def _command(args: argparse.Namespace) -> str:
    parts = ["python", "benchmarks/bench_throughput.py"]
    for name, value in vars(args).items():
        parts += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def _scenarios(args: argparse.Namespace) -> Iterator[Scenario]:
    latency_bound = min(args.concurrency, args.max_concurrency) / args.latency
    rpm_limit = max(1, round(args.rpm * args.window / 60))
    rpm_bound = rpm_limit / args.window
    k = args.inject_429

    def config(rpm: int | None, inject: int | None) -> ServerConfig:
        return ServerConfig(
            args.latency, args.max_concurrency, rpm, args.window, inject, args.retry_after_ms
        )

    yield Scenario("(a) latency-bound", config(None, None), latency_bound, latency_bound)
    bound = min(latency_bound, rpm_bound)
    yield Scenario("(b) rpm-bound", config(rpm_limit, None), bound, bound)
    yield Scenario(
        f"(c) rpm-bound, every {k}th admitted request answered 429 "
        f"(retry-after-ms {args.retry_after_ms})",
        config(rpm_limit, k),
        bound,
        bound * (k - 1) / k,
    )
    cap = args.concurrency_limit
    bound = min(args.concurrency, cap) / args.latency
    yield Scenario(
        f"(d) concurrency-bound: at most {cap} in flight, 429 beyond with no rate headers",
        ServerConfig(args.latency, cap, None, args.window, None, args.retry_after_ms, False),
        bound,
        bound,
        steady=True,
    )


def _limiters(
    args: argparse.Namespace, scenario: Scenario
) -> list[tuple[str, Callable[[], RateLimiter]]]:
    """The limiters a scenario is run with: nothing to configure, or configured and learned."""
    if scenario.config.rpm_limit is None:
        return [("RateLimiter(): no limit configured or advertised", RateLimiter)]
    return [
        (
            f"RateLimiter(rpm={args.limiter_rpm}): configured",
            lambda: WindowScaledLimiter(args.window, args.limiter_rpm),
        ),
        (
            "RateLimiter(): learned from x-ratelimit-limit-requests (x 60 / window)",
            lambda: WindowScaledLimiter(args.window),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--concurrency", type=int, default=8, help="client concurrency")
    parser.add_argument("--max-concurrency", type=int, default=16, help="server cap (429 above)")
    parser.add_argument("--rpm", type=int, default=1200, help="requests per minute, (b) and (c)")
    parser.add_argument(
        "--limiter-rpm", type=int, help="rpm of the configured limiter (default: --rpm)"
    )
    parser.add_argument("--window", type=float, default=6.0, help="server rate window, seconds")
    parser.add_argument("--inject-429", type=int, default=20, help="every Nth request 429, (c)")
    parser.add_argument("--retry-after-ms", type=int, default=50, help="of an injected 429")
    parser.add_argument(
        "--concurrency-limit", type=int, default=4, help="server's in-flight cap, (d)"
    )
    args = parser.parse_args()
    if args.limiter_rpm is None:
        args.limiter_rpm = args.rpm
    if args.latency <= 0 or args.inject_429 < 2 or args.images < 1 or args.concurrency_limit < 1:
        parser.error(
            "--latency must be > 0, --inject-429 >= 2, --images >= 1, --concurrency-limit >= 1"
        )

    images = [_png(index) for index in range(args.images)]
    scenarios = list(_scenarios(args))
    rpm_limit = scenarios[1].config.rpm_limit
    print(f"command: {_command(args)}")
    print(
        f"{args.images} distinct 64x64 PNGs, features {','.join(FEATURES)}, cache off;"
        f" client concurrency {args.concurrency}; simulator (scripted, not a model):"
        f" latency {args.latency} s, max_concurrency {args.max_concurrency}"
    )
    print(
        f"rate window SCALED to {args.window:g} s: rpm_limit {rpm_limit} per {args.window:g} s"
        f" = {args.rpm} per minute; bound = min({min(args.concurrency, args.max_concurrency)}"
        f" / {args.latency:g} s, {rpm_limit} / {args.window:g} s) requests/s"
    )
    _warm_up()
    worst = 1.0
    with ServerProcess() as server:
        for scenario in scenarios:
            print(
                f"\n{scenario.name}: bound {scenario.request_bound:.1f} requests/s"
                f" = {scenario.image_bound:.1f} images/s"
            )
            deadline = DEADLINE_FACTOR * args.images / scenario.image_bound + 2
            for label, make_limiter in _limiters(args, scenario):
                limiter = make_limiter()
                outcome = _run(server, scenario.config, images, limiter, args.concurrency, deadline)
                worst = min(worst, _report(label, outcome, scenario))
    print(f"\nlowest fraction of the bound: {worst:.2f} (target >= 0.9)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
