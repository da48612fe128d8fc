"""`analyze_many` / `aanalyze_many` against the scripted simulator (NOT a model).

The simulator's `default` answers every request, so no cassettes are involved: these
tests measure the batch machinery (streaming, concurrency, retries, pacing, budgets,
cancellation), never the quality of an answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from local_images import serve_images, trust_local_images
from PIL import Image
from pydantic import BaseModel

import viewfinder as vf
from viewfinder.batch.online import BatchItem
from viewfinder.engine.ratelimit import RateLimiter
from viewfinder.prepare import prepare_image
from viewfinder.testing.simulator import Reply, Simulator

CAPTION = {"caption": {"text": "a square", "conf": 90}}
FAST = vf.RetryPolicy(max_attempts=6, initial_backoff=0.001, max_backoff=0.01)
CORRUPT = b"this is not an image"


def png(i: int) -> bytes:
    """A small PNG, different for every i."""
    buffer = io.BytesIO()
    Image.new("RGB", (64 + i % 7, 64), (i * 37 % 256, i * 11 % 256, 90)).save(buffer, "PNG")
    return buffer.getvalue()


IMAGES = [png(i) for i in range(50)]


def data_url(image: bytes) -> str:
    return prepare_image(image).data_url()


def image_url(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"][-1]["image_url"]["url"])


def analyzer_for(sim: Simulator, **options: Any) -> vf.ImageAnalyzer:
    return vf.ImageAnalyzer(
        base_url=sim.base_url,
        api_key="test-key-placeholder",
        model="gpt-4.1-mini",
        cache=False,
        retry=FAST,
        **options,
    )


def batch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "viewfinder-batch"]


@pytest.fixture
def answer_all() -> Iterator[Callable[..., Simulator]]:
    """A simulator whose `default` answers every request with a caption."""
    started: list[Simulator] = []

    def start(
        default: Callable[[dict[str, Any]], Reply] | None = None, **options: Any
    ) -> Simulator:
        sim = Simulator(default=default or (lambda body: Reply(CAPTION)), **options).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def test_fifty_images_one_item_each_with_429s_and_failures(
    answer_all: Callable[..., Simulator],
) -> None:
    slow, rejected = data_url(IMAGES[0]), data_url(IMAGES[13])
    calls = itertools.count(1)
    injected = itertools.count()

    def default(body: dict[str, Any]) -> Reply:
        if next(calls) % 7 == 0:
            next(injected)
            return Reply(status=429, headers={"retry-after-ms": "1"})
        url = image_url(body)
        if url == rejected:
            return Reply(status=400, error_message="scripted: this image is refused")
        return Reply(CAPTION, delay=0.3 if url == slow else 0.0)  # finishes after others

    sim = answer_all(default, rpm_limit=60_000)  # sends x-ratelimit-* headers to learn from
    inputs = [(f"img-{i}", CORRUPT if i == 7 else data) for i, data in enumerate(IMAGES)]
    with analyzer_for(sim) as analyzer:
        run = analyzer.analyze_many(iter(inputs), ["caption"], concurrency=8)
        items = list(run)

    assert len(items) == 50 and sorted(item.index for item in items) == list(range(50))
    by_id = {item.id: item for item in items}
    assert set(by_id) == {f"img-{i}" for i in range(50)}
    for ident, data in inputs:
        assert by_id[ident].sha256 == hashlib.sha256(data).hexdigest()
    corrupt, refused = by_id["img-7"], by_id["img-13"]
    assert isinstance(corrupt.error, vf.ImageFormatError) and corrupt.usage.requests == 0
    assert isinstance(refused.error, vf.BadRequestError) and refused.cost is not None
    record = refused.to_record()["error"]
    assert record["type"] == "BadRequestError" and record["message"] == refused.error.message
    ok = [item for item in items if item.ok]
    assert len(ok) == 48
    assert all(isinstance(item.result, vf.ImageAnalysisResult) for item in ok)
    assert all(item.result is not None and item.result.caption is not None for item in ok)
    assert all(item.cost is not None and item.cost > 0 for item in ok)

    # results come as they complete: the slow first image is not first
    assert [item.index for item in items] != list(range(50))
    assert items[0].index != 0

    # exactly the requests the retries need: one 200 per success, the 400, every 429
    stats = sim.stats
    assert stats.ok == 48 and stats.errors == 1 and stats.rejected_429 == next(injected) > 0
    assert stats.total == 48 + 1 + stats.rejected_429
    assert sum(item.usage.requests for item in items) == stats.total
    assert stats.in_flight_max <= 8

    limiter = run.rate_limiter
    assert isinstance(limiter, RateLimiter)
    assert limiter.stats.rate_limited == stats.rejected_429
    assert limiter.stats.rpm_limit == 60_000  # learned from the headers
    summary = run.summary
    assert (summary.ok, summary.failed, summary.not_started) == (48, 2, 0)
    assert summary.usage.requests == stats.total and summary.dollars > 0
    assert not batch_threads()


def test_a_generator_is_read_lazily(answer_all: Callable[..., Simulator]) -> None:
    sim = answer_all()
    produced = 0

    def images() -> Iterator[bytes]:
        nonlocal produced
        for data in IMAGES[:16]:
            produced += 1
            yield data

    ahead = []
    with analyzer_for(sim) as analyzer:
        run = analyzer.analyze_many(images(), ["caption"], concurrency=4)
        got = 0
        for _ in run:
            got += 1
            ahead.append(produced - got)
            time.sleep(0.005)  # a slow consumer: the batch must wait for it
    assert got == 16
    assert 0 < max(ahead) <= run.concurrency + run.queue_size


async def test_an_async_generator_is_read_lazily(answer_all: Callable[..., Simulator]) -> None:
    sim = answer_all()
    produced = 0

    async def images() -> AsyncIterator[tuple[int, bytes]]:
        nonlocal produced
        for i, data in enumerate(IMAGES[:12]):
            produced += 1
            yield i, data

    ahead: list[int] = []
    analyzer = analyzer_for(sim)
    async with analyzer.aanalyze_many(images(), ["caption"], concurrency=3) as run:
        async for item in run:
            assert item.ok and item.sha256 == hashlib.sha256(IMAGES[item.id]).hexdigest()
            ahead.append(produced - len(ahead) - 1)
            await asyncio.sleep(0.005)
    await analyzer.aclose()
    assert len(ahead) == 12 and max(ahead) <= 3
    assert run.summary.ok == 12


def first_fast_others_slow(body: dict[str, Any]) -> Reply:
    """IMAGES[0] is answered at once, every other image after 20 s (the simulator wakes
    sleeping handlers when it stops, so nothing waits that long)."""
    return Reply(CAPTION, delay=0.0 if image_url(body) == FIRST else 20.0)


FIRST = data_url(IMAGES[0])


def test_breaking_out_early_cancels_in_flight_work(answer_all: Callable[..., Simulator]) -> None:
    sim = answer_all(first_fast_others_slow)
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield IMAGES[i % 50]

    with analyzer_for(sim) as analyzer:
        start = time.monotonic()
        for item in analyzer.analyze_many(endless(), ["caption"], concurrency=4):
            assert item.ok and item.index == 0
            break  # dropping the iterator cancels the three slow requests in flight
        assert not batch_threads()
        assert time.monotonic() - start < 10  # cancelled, not waited for (20 s each)
        assert pulled <= 4 + 4 + 1
        # the 4 first requests, and at most one more: image 0's slot may be refilled in
        # the moment between its answer and the consumer's break
        assert sim.stats.total <= 5

        with analyzer.analyze_many(endless(), ["caption"], concurrency=4) as run:
            assert next(run).index == 0
        assert not batch_threads()
        assert time.monotonic() - start < 15


async def test_async_break_cancels_cleanly(answer_all: Callable[..., Simulator]) -> None:
    sim = answer_all(first_fast_others_slow)
    analyzer = analyzer_for(sim)
    start = time.monotonic()
    async with analyzer.aanalyze_many(IMAGES, ["caption"], concurrency=4) as run:
        async for item in run:
            assert item.index == 0
            break
    assert time.monotonic() - start < 10  # cancelled, not waited for (20 s each)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    await analyzer.aclose()


def test_a_batch_budget_stops_starting_new_images(answer_all: Callable[..., Simulator]) -> None:
    sim = answer_all(lambda body: Reply(CAPTION, prompt_tokens=1000, completion_tokens=100))
    budget = vf.Budget(max_tokens=3500, scope="per batch")
    with analyzer_for(sim) as analyzer:
        run = analyzer.analyze_many(iter(IMAGES[:20]), ["caption"], concurrency=1, budget=budget)
        items = list(run)
    # 3 x 1,100 tokens spent; a 4th request (1,000 input tokens expected) would cross 3,500
    assert [item.ok for item in items] == [True, True, True]
    assert run.summary.not_started == 17
    assert isinstance(run.summary.budget_error, vf.BudgetExceededError)
    assert "per batch" in str(run.summary.budget_error)
    assert sim.stats.total == 3 and budget.spent.total_tokens == 3300


def test_a_budget_with_concurrency_accounts_for_every_input(
    answer_all: Callable[..., Simulator],
) -> None:
    sim = answer_all(lambda body: Reply(CAPTION, prompt_tokens=1000, completion_tokens=100))
    budget = vf.Budget(max_tokens=5000, scope="per batch")
    with analyzer_for(sim) as analyzer:
        run = analyzer.analyze_many(iter(IMAGES[:12]), ["caption"], concurrency=4, budget=budget)
        items = list(run)
    assert len(items) + run.summary.not_started == 12
    assert run.summary.not_started > 0
    assert budget.spent.total_tokens <= 5000 + 4 * 1100  # at most the in-flight overshoot


class Thing(BaseModel):
    name: str
    box: vf.BoundingBox


async def test_custom_schemas_batch_too(answer_all: Callable[..., Simulator]) -> None:
    sim = answer_all(lambda body: Reply({"name": "square", "box": [0, 0, 500, 1000]}))
    options: dict[str, Any] = {"base_url": sim.base_url, "api_key": "k", "cache": False}
    audit = vf.Analyzer(schema=Thing, prompt="Name the thing in {{ place }}.", **options)
    with audit:
        items: list[BatchItem[vf.AnalysisRun[Thing]]] = list(
            audit.analyze_many([("a", IMAGES[0]), ("b", IMAGES[1])], place="the lab")
        )
    assert sorted(item.id for item in items) == ["a", "b"]
    for item in items:
        assert item.result is not None
        assert item.result.output.name == "square"
        width = item.result.metadata.width
        assert item.result.output.box == vf.BoundingBox(x=0, y=0, width=round(width / 2), height=64)
    assert "the lab" in str(sim.requests[0]["messages"])

    async_audit = vf.Analyzer(schema=Thing, prompt="Name the thing.", **options)
    found = [item async for item in async_audit.aanalyze_many(IMAGES[:3], concurrency=2)]
    await async_audit.aclose()
    assert sorted(item.id for item in found) == [0, 1, 2] and all(item.ok for item in found)


def test_options_are_checked_before_anything_runs(answer_all: Callable[..., Simulator]) -> None:
    sim = answer_all()
    with analyzer_for(sim) as analyzer:
        with pytest.raises(vf.InvalidOptionError, match="iterable of images"):
            analyzer.analyze_many("photo.jpg")  # a str is iterable, but it is one image
        with pytest.raises(vf.InvalidOptionError, match="unknown feature"):
            analyzer.analyze_many(IMAGES, ["colour"])
        with pytest.raises(vf.InvalidOptionError, match="concurrency"):
            analyzer.analyze_many(IMAGES, concurrency=0)
        with pytest.raises(vf.InvalidOptionError, match="RateLimiter"):
            analyzer.analyze_many(IMAGES, rate_limiter=RateLimiter(), rpm=10)
    assert sim.stats.total == 0


def test_the_analyzer_is_left_unchanged_and_its_limiter_is_used(
    answer_all: Callable[..., Simulator],
) -> None:
    sim = answer_all()
    shared = RateLimiter(rpm=60_000)
    with analyzer_for(sim, rate_limiter=shared) as analyzer:
        run = analyzer.analyze_many(IMAGES[:5], ["caption"])
        assert run.rate_limiter is shared
        assert len(list(run)) == 5
        assert analyzer.engine.gate is shared
        assert shared.stats.acquired == 5
        # the analyzer still works synchronously after a batch ran on another loop
        assert analyzer.analyze(IMAGES[0], ["caption"]).caption is not None


def test_url_ids_keep_the_query_string_but_never_a_secret(
    answer_all: Callable[..., Simulator],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trust_local_images(monkeypatch)
    caplog.set_level(logging.DEBUG)
    secret = "SECRETSIG0123456789"
    sim = answer_all()
    with serve_images({"/img.png": IMAGES[0]}) as base, analyzer_for(sim) as analyzer:
        urls = [
            f"{base}/img.png?id=1&sv=2024-05-04&sig={secret}",
            f"{base}/img.png?id=2&sv=2024-05-04&sig={secret}",
            f"{base}/gone.png?id=1&X-Amz-Signature={secret}",
        ]
        items = sorted(analyzer.analyze_many(urls, ["caption"]), key=lambda item: item.index)

    sig = "~" + hashlib.sha256(secret.encode()).hexdigest()[:8]
    assert [item.id for item in items] == [
        f"{base}/img.png?id=1&sv=2024-05-04&sig={sig}",
        f"{base}/img.png?id=2&sv=2024-05-04&sig={sig}",
        f"{base}/gone.png?id=1&X-Amz-Signature={sig}",
    ]
    assert [item.source for item in items] == [item.id for item in items]
    assert [item.ok for item in items] == [True, True, False]
    assert isinstance(items[2].error, vf.ImageFetchError)
    shown = json.dumps([item.to_record() for item in items]) + caplog.text + str(items[2].error)
    assert secret not in shown
