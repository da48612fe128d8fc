"""The pixel budget: how many pixels are decoded at once, and the server's 429 past it.

Behaviour only, no RSS: what the budget holds, who waits, who is refused, and that it is
whole again after every path. A decode is held open with a `threading.Event` in the
worker thread, so "the first upload is still decoding" is a fact, not a race.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import viewfinder.analyzers.base as analyzers_base
from viewfinder import ImageAnalyzer, RetryPolicy
from viewfinder.errors import DecodeBusyError, InvalidOptionError
from viewfinder.images import prepare_image
from viewfinder.local.engine import LocalEngine
from viewfinder.pixel_budget import PixelBudget, budget_scope, decode_pixels, run_decode
from viewfinder.simulator import Simulator

CAT = (Path(__file__).parent / "assets" / "chelsea.png").read_bytes()  # 451 x 300
CAT_PIXELS = 451 * 300
QUERY = "api-version=2023-10-01&features=caption"
ANSWER = {"caption": {"text": "a cat", "confidence": 0.9}}


def png(size: tuple[int, int], colour: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def wait_until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition` holds; fail (not hang) after 5 s."""
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)


class HeldDecodes:
    """Decodes that stop in their worker thread until `open()`; counts who got there."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()

    def wrap(self, decode: Callable[..., Any]) -> Callable[..., Any]:
        def held(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.entered += 1
            if not self.gate.wait(10):
                raise RuntimeError("the test never let the decode go on")
            return decode(*args, **kwargs)

        return held

    def open(self) -> None:
        self.gate.set()


# --- the budget -------------------------------------------------------------------------


async def test_waiters_are_served_first_come_first_served() -> None:
    budget = PixelBudget(100)
    assert await budget.acquire(60, wait=5) == 60
    large = asyncio.create_task(budget.acquire(60, wait=5))
    small = asyncio.create_task(budget.acquire(10, wait=5))
    await wait_until(lambda: budget.waiting == 2)

    assert not small.done()  # 10 would fit, but the large one came first
    budget.release(60)

    assert await large == 60
    assert await small == 10
    assert budget.available == 30


async def test_past_the_wait_a_decode_is_refused_and_nothing_is_held() -> None:
    budget = PixelBudget(100)
    await budget.acquire(80, wait=0)

    with pytest.raises(DecodeBusyError) as refused:
        await budget.acquire(30, wait=0.01)

    assert refused.value.retry_after >= 1
    assert (budget.available, budget.waiting) == (20, 0)


async def test_an_image_larger_than_the_budget_is_decoded_alone() -> None:
    budget = PixelBudget(100)
    await budget.acquire(10, wait=0)
    huge = asyncio.create_task(budget.acquire(10_000, wait=5))
    await wait_until(lambda: budget.waiting == 1)

    budget.release(10)

    assert await huge == 100  # the whole budget, once it is all free
    assert budget.available == 0


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    budget = PixelBudget(100)
    await budget.acquire(100, wait=0)
    waiter = asyncio.create_task(budget.acquire(50, wait=5))
    await wait_until(lambda: budget.waiting == 1)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release(100)

    assert (budget.available, budget.waiting) == (100, 0)


def test_a_budget_is_a_positive_integer() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidOptionError):
            PixelBudget(bad)  # type: ignore[arg-type]


def test_decode_pixels_counts_what_is_decoded() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (2000, 1500), "teal").save(buffer, format="JPEG")
    jpeg = buffer.getvalue()

    assert decode_pixels(jpeg, 256) == 500 * 375  # decoded at 1/4 scale for the copy
    assert decode_pixels(jpeg, None) == 2000 * 1500  # the local engine: full size
    assert decode_pixels(png((2000, 1500)), 256) == 2000 * 1500  # PNG: always full size
    assert decode_pixels(b"not an image", 256) == 0


async def test_outside_a_scope_a_decode_holds_nothing() -> None:
    assert await run_decode(CAT, 1024, lambda: "ran") == "ran"


async def test_a_cancelled_decode_keeps_its_pixels_until_its_thread_ends() -> None:
    budget = PixelBudget(10 * CAT_PIXELS)
    decodes = HeldDecodes()
    with budget_scope(budget, wait=5):
        task = asyncio.create_task(run_decode(CAT, None, decodes.wrap(lambda: None)))
    await wait_until(lambda: decodes.entered == 1)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.available == 9 * CAT_PIXELS  # its thread still holds that memory

    decodes.open()
    await wait_until(lambda: budget.available == budget.total)


@pytest.mark.parametrize("path", ["model", "local", "fallback"])
async def test_every_decode_path_holds_the_image_pixels(
    path: str, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = PixelBudget(10 * CAT_PIXELS)
    seen: list[int] = []

    def spy(decode: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            seen.append(budget.available)
            return decode(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(analyzers_base, "prepare_image", spy(prepare_image))
    monkeypatch.setattr(LocalEngine, "analyze", spy(LocalEngine.analyze))
    sim.script(ANSWER)
    endpoint: dict[str, Any] = {
        "model": {"base_url": sim.base_url},
        "local": {"engine": "local"},
        "fallback": {"base_url": "http://127.0.0.1:9/v1", "fallback": "local"},  # closed port
    }
    options: dict[str, Any] = {"api_key": "unused", "cache": False, **endpoint[path]}
    analyzer = ImageAnalyzer(model="gpt-4.1-mini", retry=RetryPolicy(max_attempts=1), **options)
    try:
        with budget_scope(budget, wait=5):
            await analyzer.aanalyze(CAT, ["caption"])
    finally:
        await analyzer.aclose()

    decodes = {"model": 1, "local": 1, "fallback": 2}[path]  # fallback: model copy, then local
    assert [budget.total - available for available in seen] == [CAT_PIXELS] * decodes
    assert budget.available == budget.total
