"""The shared rate limit over a REAL Redis (tests/redis_server.py): one budget per deployment.

Two limiters (two instances, and two processes against the simulator) book slots from one
budget; a 429 seen by one pauses the other; a limit learned by one paces the other; Redis
killed mid-run leaves requests flowing on the in-process budget, then shared again. The
in-process tests run on one fake clock standing in for both Redis' `TIME` and the local
monotonic clock, so they assert on booked slots, never on wall-clock speed.
"""

from __future__ import annotations

import io
import itertools
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from local_server import post_analyze
from PIL import Image
from redis_server import RedisServer

from viewfinder import Embedder
from viewfinder.compat.server import ServerSettings, create_app
from viewfinder.embed.backends import OpenAICompatibleBackend
from viewfinder.engine.shared_limit import (
    KEY_PREFIX,
    SharedRateLimiter,
    deployment_id,
    shared_limiter,
)
from viewfinder.errors import InvalidOptionError
from viewfinder.testing.simulator import Reply, Simulator

SECRET = "s3cret-Pa55"
DEPLOYMENT = deployment_id("https://res.openai.azure.com/openai/deployments/vision", "gpt-4.1")


class FakeTime:
    """One clock for Redis and both processes; `sleep` records each delay and moves it on."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 4))
        self.now += seconds


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 80), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _limiter(url: str, time: FakeTime, **options: object) -> SharedRateLimiter:
    return SharedRateLimiter(
        url,
        DEPLOYMENT,
        redis_clock=time.clock,
        clock=time.clock,
        sleep=time.sleep,
        **options,
    )


def test_deployment_id_ignores_credentials_query_and_key() -> None:
    plain = deployment_id("https://res.openai.azure.com/openai/deployments/vision", "gpt-4.1")
    assert len(plain) == 16
    assert plain == deployment_id(
        "https://user:pw@RES.openai.azure.com/openai/deployments/vision/?api-version=1", "gpt-4.1"
    )
    deployments = "https://res.openai.azure.com/openai/deployments/"
    assert plain != deployment_id(deployments + "other", "gpt-4.1")
    assert plain != deployment_id(deployments + "vision", "o4")


def test_two_limiters_book_one_budget(redis_url: str) -> None:
    """60 rpm at full headroom: whoever asks, slots are one second apart."""
    time = FakeTime()
    first, second = (_limiter(redis_url, time, rpm=60, headroom=1.0) for _ in range(2))
    for limiter in (first, second, first, second, second):
        limiter.acquire()
    assert time.sleeps == [1.0, 1.0, 1.0, 1.0]
    assert first.stats.acquired == 2 and second.stats.acquired == 3
    assert second.stats.rpm == pytest.approx(60)
    with redis.Redis.from_url(redis_url) as raw:
        assert raw.exists(KEY_PREFIX + DEPLOYMENT) and 0 < raw.ttl(KEY_PREFIX + DEPLOYMENT) <= 3600
    for limiter in (first, second):
        limiter.close()


def test_a_429_seen_by_one_pauses_the_other(redis_url: str) -> None:
    time = FakeTime()
    first, second = (_limiter(redis_url, time, rpm=60, headroom=1.0) for _ in range(2))
    first.acquire()
    first.observe(429, {"retry-after": "7"})
    assert second.paused_for == pytest.approx(7)
    stats = second.stats
    assert stats.factor == 0.5 and stats.rpm == pytest.approx(30)
    assert first.stats.rate_limited == first.stats.decreases == 1
    assert second.stats.rate_limited == 0  # counters are per process
    second.acquire()
    assert time.sleeps == [7.0]
    second.acquire()  # paced at the cut rate: 30 rpm
    assert time.sleeps == [7.0, 2.0]
    for limiter in (first, second):
        limiter.close()


def test_with_no_limit_known_the_rate_cut_is_of_the_rate_both_sent(redis_url: str) -> None:
    """The first 429 with no limit known halves the rate measured over all holders, then
    quiet periods bring it back."""
    time = FakeTime()
    first, second = (_limiter(redis_url, time) for _ in range(2))
    for limiter in (first, second, first, second):  # one request a second, two processes
        limiter.acquire()
        limiter.observe(200, {})
        time.now += 1
    time.now -= 1
    second.observe(429, {"retry-after": "0"})
    stats = first.stats
    assert stats.rpm_limit == pytest.approx(80)  # 4 grants over 3 s, whoever sent them
    assert stats.factor == 0.5 and stats.rpm == pytest.approx(40)
    time.now += 10  # one quiet recovery period
    assert first.stats.factor == pytest.approx(0.6)
    for limiter in (first, second):
        limiter.close()


def test_a_pause_during_the_wait_makes_the_sleeper_queue_again(redis_url: str) -> None:
    """A caller sleeping toward its slot while another process sees a 429 books again."""
    time = FakeTime()
    first = _limiter(redis_url, time, rpm=60, headroom=1.0)
    other = _limiter(redis_url, time, rpm=60, headroom=1.0)
    first.acquire()

    def sleep_through_a_429(seconds: float) -> None:
        time.sleep(seconds)
        if len(time.sleeps) == 1:
            other.observe(429, {"retry-after": "5"})

    first._sleep = sleep_through_a_429
    first.acquire()
    assert time.sleeps == [1.0, 5.0]  # its slot was erased: it waited for the pause
    for limiter in (first, other):
        limiter.close()


def test_a_limit_learned_by_one_paces_the_other(redis_url: str) -> None:
    time = FakeTime()
    first, second = (_limiter(redis_url, time) for _ in range(2))
    first.acquire()
    first.observe(200, {"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "9"})
    assert second.stats.rpm_limit == 120
    second.acquire()
    second.acquire()
    assert time.sleeps == [pytest.approx(60 / (120 * 0.95), abs=1e-4)]
    for limiter in (first, second):
        limiter.close()


def test_max_wait_refuses_without_booking(redis_url: str) -> None:
    from viewfinder.errors import RateLimitError

    time = FakeTime()
    first = _limiter(redis_url, time, rpm=60, headroom=1.0)
    patient = _limiter(redis_url, time, rpm=60, headroom=1.0, max_wait=0.5)
    first.acquire()
    with pytest.raises(RateLimitError) as refused:
        patient.acquire()
    assert refused.value.retry_after == pytest.approx(1.0)
    first.acquire()  # the refused caller booked nothing: the next slot is still at +1 s
    assert time.sleeps == [1.0] and patient.stats.refused == 1
    for limiter in (first, patient):
        limiter.close()


def test_redis_killed_mid_run_falls_back_then_shares_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path, password=SECRET).start()
    caplog.set_level(logging.DEBUG, logger="viewfinder.ratelimit")
    time = FakeTime()
    try:
        limiter = _limiter(server.url(), time, rpm=60, headroom=1.0, retry_interval=0)
        limiter.acquire()
        limiter.observe(200, {})
        server.stop()
        for _ in range(3):  # the in-process budget, same settings: never an error
            limiter.acquire()
            limiter.observe(200, {})
        assert time.sleeps == [1.0, 1.0]  # the local budget started fresh, then paced
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
        assert limiter.stats.acquired == 4

        server.start()  # empty (no persistence), same port
        limiter.acquire()
        assert any("reachable again" in r.getMessage() for r in caplog.records)
        with redis.Redis.from_url(server.url()) as raw:
            assert raw.exists(limiter.key)  # booked in Redis again
    finally:
        server.stop()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert SECRET not in caplog.text and SECRET not in repr(limiter)


WORKER = textwrap.dedent(
    """
    import json
    import sys
    import urllib.error
    import urllib.request
    from viewfinder.engine.shared_limit import shared_limiter

    redis_url, base_url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limiter = shared_limiter(redis_url, base_url, "sim-model", rpm=480)
    slots = []
    book = limiter._book

    def recording(cost, wait):
        booked = book(cost, wait)
        slots.append(booked[3])
        return booked

    limiter._book = recording
    print("ready", flush=True)
    sys.stdin.readline()
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        base_url.rstrip("/") + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer placeholder"},
    )
    for _ in range(count):
        limiter.acquire()
        try:
            status = urllib.request.urlopen(request, timeout=10).status
        except urllib.error.HTTPError as error:
            status = error.code
        # the simulator's window is 1 s but its headers speak per minute: status only
        limiter.observe(status, {})
    print(" ".join(repr(slot) for slot in slots), flush=True)
    """
)


def test_two_processes_stay_under_one_limit_together(redis_url: str) -> None:
    """Two workers at 480 rpm each would send 15 requests a second together; shared, they
    send 7.6 (480 x 95%), under the simulator's 10 per second: no 429."""
    with Simulator(default=lambda body: {"ok": True}, rpm_limit=10, rate_window=1.0) as sim:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, redis_url, sim.base_url, "6"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        for worker in workers:  # both start together
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        slots = []
        for worker in workers:
            out, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0
            slots += [float(slot) for slot in out.split()]
        stats = sim.stats
    assert stats.total == 12 and stats.rejected_429 == 0
    slots.sort()
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert min(gaps) >= 60 / (480 * 0.95) - 1e-3  # one pace for both processes


def test_shared_limiter_names_the_deployment(redis_url: str) -> None:
    limiter = shared_limiter(redis_url, "http://127.0.0.1:1/v1/", "m", rpm=60)
    assert limiter.key == KEY_PREFIX + deployment_id("http://127.0.0.1:1/v1", "m")
    limiter.close()
    with pytest.raises(InvalidOptionError, match="ttl"):
        shared_limiter(redis_url, "http://127.0.0.1:1/v1", "m", ttl=0)
    with pytest.raises(InvalidOptionError) as caught:
        shared_limiter(f"redis://:{SECRET}@127.0.0.1:port/0", "http://127.0.0.1:1/v1", "m")
    assert SECRET not in str(caught.value)


def test_two_serve_replicas_share_one_pause(
    redis_url: str, serve: Callable[[ServerSettings], str]
) -> None:
    """A 429 answered to one replica: the other answers 429 at once, with no model call."""
    image = _png()
    with Simulator(default=lambda body: {"caption": {"text": "a square", "conf": 90}}) as sim:
        sim.script(Reply(status=429, headers={"retry-after": "30"}, error_message="slow down"))
        options = {"base_url": sim.base_url, "api_key": "test-key-placeholder", "cache": False}
        replicas = [
            serve(ServerSettings(api_keys=("k",), analyzer_options=options, redis=redis_url))
            for _ in range(2)
        ]
        query = "api-version=2024-02-01&features=caption"
        first = post_analyze(replicas[0], query, key="k", image=image)
        second = post_analyze(replicas[1], query, key="k", image=image)
        assert (first.status_code, first.headers["Retry-After"]) == (429, "30")
        assert second.status_code == 429 and second.headers["Retry-After"] in ("29", "30")
        assert sim.stats.total == 1  # the second replica was paused by the first one's 429


def test_the_server_gives_the_embedder_a_shared_limiter(redis_url: str) -> None:
    backend = OpenAICompatibleBackend(model="siglip2", base_url="http://127.0.0.1:9/v1")
    with Embedder(backend) as embedder:
        create_app(ServerSettings(api_keys=("k",), embedder=embedder, redis=redis_url))
        limiter = embedder.rate_limiter
        assert isinstance(limiter, SharedRateLimiter)
        assert limiter.key == KEY_PREFIX + deployment_id("http://127.0.0.1:9/v1", "siglip2")
        assert redis_url not in repr(ServerSettings(redis=redis_url))
