"""The pixel budget: how many pixels are decoded at once, and the server's 429 past it.

Behaviour only, no RSS: what the budget holds, who waits, who is refused, and that it is
whole again after every path. A decode is held open with a `threading.Event` in the
worker thread, so "the first upload is still decoding" is a fact, not a race.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image

import viewfinder.analyzers.base as analyzers_base
from viewfinder import ConfigurationError, ImageAnalyzer, RetryPolicy
from viewfinder.compat.server import ANALYZE_PATH, ServerSettings, create_app
from viewfinder.errors import DecodeBusyError, InvalidOptionError
from viewfinder.local.engine import LocalEngine
from viewfinder.prepare import pixel_budget, prepare_image
from viewfinder.prepare.decode import decode_pixels
from viewfinder.prepare.pixel_budget import PixelBudget, budget_scope, run_decode
from viewfinder.testing.simulator import Reply, Simulator

CAT = (Path(__file__).parent / "assets" / "chelsea.png").read_bytes()  # 451 x 300
CAT_PIXELS = 451 * 300
QUERY = "api-version=2023-10-01&features=caption"
ANSWER = {"caption": {"text": "a cat", "conf": 90}}


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


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldDecodes]:
    """The model path's decodes (`prepare_image`) wait for `held.open()`."""
    decodes = HeldDecodes()
    monkeypatch.setattr(analyzers_base, "prepare_image", decodes.wrap(prepare_image))
    yield decodes
    decodes.open()  # never leave a worker thread waiting


@pytest.fixture
def analyzer(sim: Simulator) -> Iterator[ImageAnalyzer]:
    """The server's analyzer, on the simulator (scripted, not a model), cache off."""
    sim.script(*[ANSWER] * 8)
    made = ImageAnalyzer(
        base_url=sim.base_url,
        api_key="test-key-placeholder",
        model="gpt-4.1-mini",
        cache=False,
        retry=RetryPolicy(max_attempts=1),
    )
    yield made
    made.close()


Serve = Callable[..., Any]


@pytest.fixture
async def serve(analyzer: ImageAnalyzer) -> AsyncIterator[Serve]:
    """An in-process app and a client for it: `client, budget = serve(**settings)`."""
    clients: list[httpx2.AsyncClient] = []

    def start(**settings: Any) -> tuple[httpx2.AsyncClient, PixelBudget]:
        app = create_app(ServerSettings(no_auth=True, analyzer=analyzer, **settings))
        client = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://testserver"
        )
        clients.append(client)
        budget: PixelBudget = app.state.pixel_budget
        return client, budget

    yield start
    for client in clients:
        await client.aclose()


async def upload(client: httpx2.AsyncClient, body: bytes = CAT) -> httpx2.Response:
    return await client.post(
        f"{ANALYZE_PATH}?{QUERY}", content=body, headers={"Content-Type": "image/png"}
    )


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


def declared_png(width: int, height: int) -> bytes:
    """A valid tiny PNG whose header declares `width` x `height` (never decoded here)."""
    data = bytearray(png((1, 1)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


async def test_a_large_decode_gives_freed_heap_memory_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[str] = []

    def trim() -> bool:
        trims.append(threading.current_thread().name)
        return True

    monkeypatch.setattr(pixel_budget, "trim_heap", trim)
    large = declared_png(5000, 4000)  # 20 megapixels
    assert decode_pixels(large, None) == 20_000_000 >= pixel_budget.TRIM_PIXELS

    await run_decode(large, None, lambda: None)  # no budget: nothing more than a thread
    with budget_scope(PixelBudget(10**9), wait=5):
        await run_decode(CAT, None, lambda: None)  # small: not worth a trim
        await run_decode(large, None, lambda: None)

    assert len(trims) == 1
    assert trims[0] != threading.main_thread().name  # in the worker, not the event loop


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


# --- the server ---------------------------------------------------------------------------


async def test_a_second_upload_waits_for_the_first_and_is_served_after(
    serve: Serve, held: HeldDecodes
) -> None:
    client, budget = serve(max_decode_pixels=1000, decode_wait_seconds=5)  # < one image
    first = asyncio.create_task(upload(client))
    await wait_until(lambda: held.entered == 1)
    second = asyncio.create_task(upload(client, png((300, 200))))
    await wait_until(lambda: budget.waiting == 1)

    assert held.entered == 1 and not second.done()  # not decoding: waiting for pixels
    held.open()

    assert (await first).status_code == 200
    assert (await second).status_code == 200
    assert held.entered == 2
    assert (budget.available, budget.waiting) == (budget.total, 0)


async def test_past_the_wait_an_upload_is_answered_429_with_retry_after(
    serve: Serve, held: HeldDecodes
) -> None:
    client, budget = serve(max_decode_pixels=1000, decode_wait_seconds=0.05)
    first = asyncio.create_task(upload(client))
    await wait_until(lambda: held.entered == 1)

    refused = await upload(client, png((300, 200)))

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["x-ms-error-code"] == "429"
    assert refused.json()["error"]["code"] == "429"
    assert "pixels" in refused.json()["error"]["message"]
    assert held.entered == 1  # the refused upload was never decoded
    held.open()
    assert (await first).status_code == 200
    assert budget.available == budget.total


async def test_the_budget_is_whole_again_after_errors_and_cancellations(
    serve: Serve, held: HeldDecodes, sim: Simulator
) -> None:
    client, budget = serve(max_decode_pixels=10 * CAT_PIXELS, decode_wait_seconds=5)
    held.open()
    truncated = png((400, 300))[:-40]
    assert (await upload(client, truncated)).status_code == 400  # decode failed
    sim.reset()
    sim.script(Reply(status=500, error_message="boom"))
    assert (await upload(client)).status_code == 503  # the model call failed
    assert budget.available == budget.total

    held.gate.clear()  # the next decode stops in its thread again
    holding = asyncio.create_task(upload(client, png((1000, 1000))))  # > 2/3 of the budget
    await wait_until(lambda: held.entered == 3)
    waiting = asyncio.create_task(upload(client, png((1000, 1000), "red")))
    await wait_until(lambda: budget.waiting == 1)

    waiting.cancel()  # the client gave up while waiting for pixels
    holding.cancel()  # ... and while decoding: the thread goes on, holding its pixels
    await asyncio.gather(waiting, holding, return_exceptions=True)
    assert budget.waiting == 0
    assert budget.available == budget.total - 1000 * 1000

    held.open()
    await wait_until(lambda: budget.available == budget.total)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_decode_pixels": 0},
        {"max_decode_pixels": 1.5e9},
        {"decode_wait_seconds": -1},
        {"decode_wait_seconds": float("nan")},
    ],
)
def test_settings_refuse_a_bad_budget(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"max_decode_pixels|decode_wait_seconds"):
        ServerSettings(no_auth=True, **settings).validate()
