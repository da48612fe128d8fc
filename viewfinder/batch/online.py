"""Many images through one analyzer: streamed, bounded, paced, budgeted.

`ImageAnalyzer.analyze_many` / `aanalyze_many` (and `Analyzer`'s) are thin wrappers
around this module. There is one implementation, the async core (`_Core.run`):

- inputs are pulled from the caller's iterable one at a time, only when a slot is free,
  so at most `concurrency` inputs are being worked on and a generator of ten million
  paths is never materialised;
- each input is prepared and analysed in its own asyncio task; results are yielded as
  they complete, as `viewfinder.batch.records.BatchItem`s (a failing image is an item
  with a typed `error`, and never stops the batch);
- before starting an image the batch budget is checked with the expected size of the
  next request (the mean input tokens so far); once it is reached nothing more starts,
  in-flight images finish, and the inputs never started are counted in the summary.

`aanalyze_many` runs the core in the caller's event loop. `analyze_many` runs it on an
event loop of its own in a background thread and hands items over through a bounded
queue (`queue_size`); closing the sync iterator (or breaking out of a `for` loop over it
and dropping it) cancels the in-flight work and joins the thread. The sync run uses a
copy of the analyzer's async client with its own connection pool, closed at the end,
because connections belong to the event loop that opened them.

Progress: `progress=` (a tqdm-like object, or True for a default rich bar) is fed in the
consumer's thread as each item is handed over (`viewfinder.engine.progress`).

Pacing: the batch never changes the analyzer. It sends through a shallow copy of the
analyzer's engine whose gate is the batch's limiter: `rate_limiter=` if given, else a
`RateLimiter(rpm, tpm)` when `rpm=` / `tpm=` are given, else the analyzer's own
`rate_limiter`, else a fresh adaptive `RateLimiter()` that learns from the headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import os
import stat
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeAlias

from viewfinder.batch.records import (
    BatchError,
    BatchInputLike,
    BatchItem,
    BatchOk,
    BatchOutcome,
    BatchSummary,
    R,
    split_input,
)
from viewfinder.batch.settings import DEFAULT_CONCURRENCY
from viewfinder.cost.pricing import cost_of
from viewfinder.engine.budget import Budget
from viewfinder.engine.engine import Engine, Gate
from viewfinder.engine.progress import ProgressArg, ProgressFeed, total_of
from viewfinder.engine.providers import has_own_http_client, with_own_pool
from viewfinder.engine.ratelimit import RateLimiter
from viewfinder.engine.stream import END as _END
from viewfinder.engine.stream import AsyncSource as _AsyncSource
from viewfinder.engine.stream import InlineSource as _InlineSource
from viewfinder.engine.stream import PullSource as _Source
from viewfinder.engine.stream import ThreadedSource as _ThreadedSource
from viewfinder.engine.stream import describe_input as _describe
from viewfinder.engine.stream import in_thread as _in_thread
from viewfinder.errors import (
    BudgetExceededError,
    ConfigurationError,
    InvalidOptionError,
    ViewfinderError,
)
from viewfinder.prepare.load import ImageInput, LoadedImage, is_url
from viewfinder.schemas.result import Usage

if TYPE_CHECKING:
    from viewfinder.analyzers.base import BaseAnalyzer

__all__ = [
    "DEFAULT_CONCURRENCY",
    "AsyncBatchRun",
    "BatchCall",
    "BatchItem",
    "BatchRun",
    "arun_many",
    "run_many",
]


BatchCall: TypeAlias = Callable[[LoadedImage, Engine, Budget | None], Awaitable[R]]
"""Analyse one read image through `engine`, charging `budget`; built by the analyzer."""


# --- inputs -----------------------------------------------------------------------------


def _digest_of(image: object) -> str | None:
    """SHA-256 of an input that could not be prepared, if its bytes can still be read."""
    if isinstance(image, bytes | bytearray):
        return hashlib.sha256(image).hexdigest()
    if isinstance(image, str) and is_url(image):
        return None
    if not isinstance(image, str | os.PathLike):
        return None
    try:
        with open(image, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                return None
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except (OSError, ValueError):
        return None


# --- the core ---------------------------------------------------------------------------


@dataclass
class _Core(Generic[R]):
    """Runs one batch: pulls inputs, keeps `concurrency` tasks busy, yields as they end."""

    load: Callable[[ImageInput], Awaitable[LoadedImage]]
    call: BatchCall[R]
    engine: Engine
    budget: Budget | None
    gate: Gate
    concurrency: int
    model: str
    summary: BatchSummary
    output_cap: int = 0
    _input_tokens: int = 0
    _completions: int = 0

    async def run(self, source: _Source) -> AsyncGenerator[BatchOutcome[R], None]:
        """Yield one `BatchItem` per input started, as each completes."""
        summary = self.summary
        summary.started_at = time.monotonic()
        pending: set[asyncio.Task[BatchOutcome[R]]] = set()
        index = 0
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.concurrency and self._may_start():
                    raw = await source.next()
                    if raw is _END:
                        exhausted = True
                        break
                    pending.add(asyncio.create_task(self._one(index, raw)))
                    index += 1
                if not pending:
                    break
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for item in sorted((task.result() for task in done), key=lambda i: i.index):
                    summary.record(item)
                    yield item
            if summary.budget_error is not None and not exhausted:
                summary.not_started += await source.count_rest()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            summary.finished_at = time.monotonic()

    def _may_start(self) -> bool:
        """False once the batch budget cannot afford the next request."""
        if self.summary.budget_error is not None:
            return False
        if self.budget is None:
            return True
        expected = self._input_tokens // self._completions if self._completions else 0
        try:
            self.budget.check(expected)
        except BudgetExceededError as exc:
            self.summary.budget_error = exc
            return False
        return True

    async def _one(self, index: int, raw: object) -> BatchOutcome[R]:
        given, image = split_input(raw)
        source = _describe(image)
        ident = given
        if ident is None:
            ident = source if isinstance(image, str | os.PathLike) else index
        try:
            loaded = await self.load(image)
        except ViewfinderError as exc:
            digest = await asyncio.to_thread(_digest_of, image)
            return BatchError(ident, index, source, digest, error=exc)
        try:
            result = await self.call(loaded, self.engine, self.budget)
        except ViewfinderError as exc:
            usage = getattr(exc, "usage", None) or Usage()
            self._learn(usage)
            return BatchError(
                ident,
                index,
                source,
                loaded.sha256,
                error=exc,
                usage=usage,
                cost=self._cost(usage),
            )
        self._learn(result.usage)
        return BatchOk(
            ident,
            index,
            source,
            loaded.sha256,
            result=result,
            usage=result.usage,
            cost=self._cost(result.usage),
        )

    def _learn(self, usage: Usage) -> None:
        """Request sizes, for the budget's expectation and the limiter's token pacing."""
        if usage.cache_hit or not usage.input_tokens:
            return
        completions = usage.reasks + 1
        self._input_tokens += usage.input_tokens
        self._completions += completions
        if isinstance(self.gate, RateLimiter):
            # Providers count a request as its prompt plus its output cap when admitting it.
            self.gate.record_request_tokens(usage.input_tokens / completions + self.output_cap)

    def _cost(self, usage: Usage) -> float | None:
        return cost_of(usage, self.model)


# --- set-up shared by both front ends -----------------------------------------------------


def _check_images(images: object) -> None:
    if isinstance(images, str | bytes | bytearray | os.PathLike) or hasattr(images, "read"):
        raise InvalidOptionError(
            "images must be an iterable of images (or of (id, image) pairs), not one image"
        )
    if not isinstance(images, Iterable | AsyncIterable):
        raise InvalidOptionError(f"images must be an iterable, not {type(images).__name__}")


def _core(
    analyzer: BaseAnalyzer,
    call: BatchCall[R],
    *,
    concurrency: int,
    rate_limiter: Gate | None,
    rpm: float | None,
    tpm: float | None,
    budget: Budget | None,
) -> _Core[R]:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidOptionError(f"concurrency must be an int >= 1, not {concurrency!r}")
    if rate_limiter is not None and (rpm is not None or tpm is not None):
        raise InvalidOptionError("give rpm/tpm to the RateLimiter you pass, not to the batch")
    gate: Gate
    if rate_limiter is not None:
        gate = rate_limiter
    elif rpm is not None or tpm is not None:
        gate = RateLimiter(rpm, tpm)
    else:
        gate = analyzer.engine.gate or RateLimiter()
    engine = copy.copy(analyzer.engine)  # the analyzer itself is never changed
    engine.gate = gate
    sampling = engine.sampling
    cap = sampling.get("max_tokens") or sampling.get("max_completion_tokens") or 0
    return _Core(
        load=analyzer.aload,  # off the event loop, URLs under the analyzer's allow_hosts
        call=call,
        engine=engine,
        budget=budget,
        gate=gate,
        concurrency=concurrency,
        model=analyzer.model,
        summary=BatchSummary(),
        output_cap=int(cap),
    )


# --- async front end ----------------------------------------------------------------------


class AsyncBatchRun(AsyncIterator[BatchOutcome[R]]):
    """The items of an `aanalyze_many` batch, as they complete, and its running summary.

    Use `async for item in run`; `await run.aclose()` (or `async with`) cancels what is
    still in flight when you stop early.

    Attributes:
        summary: Running totals; final once the iteration ends.
        rate_limiter: The gate pacing this batch's requests.
    """

    def __init__(self, core: _Core[R], source: _Source, feed: ProgressFeed) -> None:
        self.summary = core.summary
        self.rate_limiter = core.gate
        self.concurrency = core.concurrency
        self._items = core.run(source)
        self._feed = feed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BatchOutcome[R]:
        return await self._feed.anext_of(self._items, self.summary)

    async def aclose(self) -> None:
        """Stop: cancel the in-flight images and wait for them to wind down."""
        self._feed.close()
        await self._items.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def arun_many(
    analyzer: BaseAnalyzer,
    images: Iterable[BatchInputLike] | AsyncIterable[BatchInputLike],
    call: BatchCall[R],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    rate_limiter: Gate | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    budget: Budget | None = None,
    progress: ProgressArg = None,
) -> AsyncBatchRun[R]:
    """The async batch: see the module docstring. A sync iterable is pulled on the loop;
    `progress` is fed as items are handed over (`viewfinder.engine.progress`).

    Raises:
        InvalidOptionError: Bad options (checked here, before anything runs).
    """
    _check_images(images)
    core = _core(
        analyzer,
        call,
        concurrency=concurrency,
        rate_limiter=rate_limiter,
        rpm=rpm,
        tpm=tpm,
        budget=budget,
    )
    source: _Source = (
        _AsyncSource(images) if isinstance(images, AsyncIterable) else _InlineSource(images)
    )
    return AsyncBatchRun(core, source, ProgressFeed(progress, total_of(images)))


# --- sync front end -----------------------------------------------------------------------


class BatchRun(Iterator[BatchOutcome[R]]):
    """The items of an `analyze_many` batch, as they complete, and its running summary.

    Use `for item in run`. Breaking out and dropping the run, `run.close()`, or leaving a
    `with` block cancels the in-flight images and stops the background thread.

    Attributes:
        summary: Running totals; final once the iteration ends.
        rate_limiter: The gate pacing this batch's requests.
        concurrency: Images worked on at once.
        queue_size: Finished items the background thread may hold for you; with
            `concurrency`, it bounds how far the input is read ahead of what you got.
    """

    def __init__(
        self, items: Generator[BatchOutcome[R], None, None], core: _Core[R], feed: ProgressFeed
    ) -> None:
        self.summary = core.summary
        self.rate_limiter = core.gate
        self.concurrency = core.concurrency
        self.queue_size = core.concurrency
        self._items = items
        self._feed = feed

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> BatchOutcome[R]:
        return self._feed.next_of(self._items, self.summary)

    def close(self) -> None:
        """Stop: cancel the in-flight images and join the background thread."""
        self._feed.close()
        self._items.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


async def _on_own_loop(core: _Core[R], source: _Source) -> AsyncGenerator[BatchOutcome[R], None]:
    """`core.run` with a private async client, closed when the batch ends."""
    provider = core.engine.provider
    client = with_own_pool(provider.async_client)
    core.engine.provider = dataclasses.replace(provider, async_client=client)
    try:
        async with contextlib.aclosing(core.run(source)) as items:
            async for item in items:
                yield item
    finally:
        await client.close()


def run_many(
    analyzer: BaseAnalyzer,
    images: Iterable[BatchInputLike],
    call: BatchCall[R],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    rate_limiter: Gate | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    budget: Budget | None = None,
    progress: ProgressArg = None,
) -> BatchRun[R]:
    """The sync batch: the async core on a background event loop; see the module docstring.
    `progress` is fed in the caller's thread as items are handed over
    (`viewfinder.engine.progress`).

    Raises:
        InvalidOptionError: Bad options (checked here, before anything runs).
        ConfigurationError: The analyzer's async client has an HTTP client of its own,
            which cannot be copied onto the batch's event loop: use `aanalyze_many`.
    """
    _check_images(images)
    if isinstance(images, AsyncIterable):
        raise InvalidOptionError("analyze_many takes a sync iterable; use aanalyze_many")
    if has_own_http_client(analyzer.provider.async_client):
        raise ConfigurationError(
            "analyze_many runs on an event loop of its own and needs its own connection "
            "pool, but this analyzer's async client has a custom http_client it cannot "
            "copy: use aanalyze_many in your event loop instead"
        )
    core = _core(
        analyzer,
        call,
        concurrency=concurrency,
        rate_limiter=rate_limiter,
        rpm=rpm,
        tpm=tpm,
        budget=budget,
    )
    source = _ThreadedSource(images)
    feed = ProgressFeed(progress, total_of(images))
    return BatchRun(_in_thread(lambda: _on_own_loop(core, source), core.concurrency), core, feed)
