"""Many images through one `Embedder`: streamed, bounded, paced, budgeted.

`Embedder.embed_many` / `aembed_many` are thin wrappers around this module, modelled on
`viewfinder.batch.online` (and reusing its input sources and background-thread pump):

- inputs (`(id, image)` pairs, `BatchInput`s or bare images: `split_input`)
  are pulled one at a time, only when a slot is free, and grouped into batches of the
  backend's size (`max_batch("image")`: 1 for Cohere v3), a batch leaving with what it
  has when the source is slow (`LINGER`: stdin, a slow listing); at most `concurrency` batches
  are in flight, so memory stays flat however long the input;
- each input gives one `EmbedItem`, with its `Embedding` or a typed error: an image that
  cannot be read, or a batch the server refuses, never stops the run;
- every HTTP attempt is paced by the run's `RateLimiter` (the embedder's own, else a
  fresh adaptive one that learns from the headers), and retried by the engine's policy;
- before starting a batch the embedder's `EmbeddingBudget` is checked; once it is
  reached nothing more starts, in-flight batches finish, and the inputs never started
  are counted in the summary (`not_started`) and yield nothing (a re-run does them).
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import AsyncGenerator, AsyncIterable, Generator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeAlias

import httpx2

from viewfinder.embed.embedder import Embedding, EmbeddingUsage, share_client
from viewfinder.engine.progress import ProgressArg, ProgressFeed, total_of
from viewfinder.engine.ratelimit import RateLimiter
from viewfinder.engine.stream import (
    END,
    AsyncSource,
    InlineSource,
    PullSource,
    ThreadedSource,
    describe_input,
    in_thread,
)
from viewfinder.engine.tally import RunTally
from viewfinder.errors import (
    BadRequestError,
    BudgetExceededError,
    ImageError,
    InvalidOptionError,
    ViewfinderError,
)
from viewfinder.prepare.load import LoadedImage, load_image

if TYPE_CHECKING:
    from viewfinder.embed.embedder import Embedder

ID_VERSION: Final = 2
"""`"id_version"` of the records, as `viewfinder.batch.records.ID_VERSION` (ids of URLs
keep their query string, secret values digested): embed runs resume like batch runs."""

LINGER: Final = 0.05
"""Seconds a partly filled batch waits for one more input before it is sent."""

__all__ = [
    "EmbedError",
    "EmbedItem",
    "EmbedOk",
    "EmbedOutcome",
    "EmbedRun",
    "EmbedSummary",
    "aembed_many",
    "embed_many",
]


@dataclass(frozen=True)
class EmbedItem:
    """The outcome of one input: its embedding or a typed error.

    Attributes:
        id: Your id, else the path or the URL (`safe_url`), else the position.
        index: Position of the input in the run's iterable, from 0.
        source: Printable input (the path, the URL as `safe_url` gives it, `<bytes>`...).
        embedding: The vector, when it succeeded (its `usage`/`cost`: the request's,
            on the first item of each request).
        error: Why it failed (a `ViewfinderError`), when it did.
    """

    id: Any
    index: int
    source: str
    embedding: Embedding | None = None
    error: ViewfinderError | None = None

    @property
    def ok(self) -> bool:
        """True when the image was embedded."""
        return self.error is None

    def to_record(self) -> dict[str, Any]:
        """One JSON Lines record: `{"id", "vector", "model", "dimensions", "status": "ok",
        "id_version"}`, or `viewfinder batch`'s error shape (`{"id", "index", "source",
        "status": "error", "error": {"type", "message", ...}, "id_version"}`), so that
        `viewfinder.batch.records.record_outcome` reads both when a run resumes."""
        if self.embedding is None or self.error is not None:
            error = self.error or ViewfinderError("no embedding")
            return {
                "id": self.id,
                "index": self.index,
                "source": self.source,
                "status": "error",
                "error": error.to_record(),
                "id_version": ID_VERSION,
            }
        return {
            "id": self.id,
            # 9 significant digits give back the same float32 (and halve the line).
            "vector": [float(f"{value:.9g}") for value in self.embedding.vector],
            "model": self.embedding.model,
            "dimensions": self.embedding.dimensions,
            "status": "ok",
            "id_version": ID_VERSION,
        }


class EmbedOk(EmbedItem):
    """An input embedded: `ok` is True and `embedding` is set (`error` is None).

    The same fields and record as every `EmbedItem`; the class only tells type checkers
    that `if item.ok:` makes `item.embedding` an `Embedding`.
    """

    if TYPE_CHECKING:
        embedding: Embedding
        error: None

    @property
    def ok(self) -> Literal[True]:
        """True: the input was embedded."""
        return True


class EmbedError(EmbedItem):
    """An input that failed: `ok` is False and `error` is set (`embedding` is None)."""

    if TYPE_CHECKING:
        embedding: None
        error: ViewfinderError

    @property
    def ok(self) -> Literal[False]:
        """False: the input was not embedded; `error` says why."""
        return False


EmbedOutcome: TypeAlias = EmbedOk | EmbedError
"""What a run yields for each input: `item.ok` tells which, and narrows `item.embedding`."""


@dataclass
class EmbedSummary(RunTally):
    """Running totals of a run, updated as items are yielded.

    Attributes:
        ok, failed, cached: Inputs embedded, failed, answered from the cache.
        usage: Requests, tokens and images spent (failed batches' spend is not reported
            by the servers, so not counted).
        dollars: Dollars of the priced part of `usage`.
        unpriced: Requests whose model has no price (their cost is unknown, not 0).
        not_started: Inputs never started because the budget was reached.
        budget_error: The error that stopped the run, if its budget was reached.
    """

    usage: EmbeddingUsage = field(default_factory=EmbeddingUsage)

    def record(self, item: EmbedItem) -> None:
        """Count one yielded item."""
        if item.embedding is None:
            self.note_failure(item.error or ViewfinderError("no embedding"), item.id)
            return
        self.ok += 1
        usage = item.embedding.usage
        self.cached += usage.cache_hit
        self.usage = self.usage + dataclass_replace_cache(usage)
        if item.embedding.cost is not None:
            self.dollars += item.embedding.cost
        elif usage.requests:
            self.unpriced += 1


def dataclass_replace_cache(usage: EmbeddingUsage) -> EmbeddingUsage:
    """`usage` with `cache_hit` False, so that summing keeps counting (a run is not a hit)."""
    return EmbeddingUsage(
        usage.input_tokens, usage.images, usage.requests, False, usage.image_tokens
    )


@dataclass
class _Core:
    """Runs one embedding run: pulls inputs, keeps `concurrency` batches busy."""

    embedder: Embedder
    concurrency: int
    summary: EmbedSummary

    async def run(self, source: PullSource) -> AsyncGenerator[EmbedOutcome, None]:
        """Yield one `EmbedItem` per input started, as each batch completes."""
        summary = self.summary
        summary.started_at = time.monotonic()
        size = self.embedder.backend.max_batch("image")
        pending: set[asyncio.Task[list[EmbedOutcome]]] = set()
        index = 0
        exhausted = False
        upcoming: asyncio.Future[object] | None = None  # a pull still waiting on the source
        client = httpx2.AsyncClient(timeout=self.embedder.timeout)  # one pool for the run
        try:
            while True:
                while not exhausted and len(pending) < self.concurrency and self._may_start():
                    batch: list[tuple[int, object]] = []
                    stalled = False
                    while len(batch) < size:
                        if upcoming is None:
                            upcoming = asyncio.ensure_future(source.next())
                        if batch or pending:
                            # A slow source (stdin) holds back neither a partly
                            # filled batch nor the results of those in flight.
                            await asyncio.wait({upcoming}, timeout=LINGER)
                            if not upcoming.done():
                                stalled = not batch
                                break
                        raw = await upcoming
                        upcoming = None
                        if raw is END:
                            exhausted = True
                            break
                        batch.append((index, raw))
                        index += 1
                    if batch:
                        pending.add(asyncio.create_task(self._batch(batch, client)))
                    if stalled:
                        break
                if not pending:
                    break
                waiting: set[asyncio.Future[Any]] = set(pending)
                if upcoming is not None:
                    waiting.add(upcoming)  # wake up for a new input too
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                done = {task for task in pending if task.done()}
                pending -= done
                finished = [item for task in done for item in task.result()]
                for item in sorted(finished, key=lambda i: i.index):
                    summary.record(item)
                    yield item
            if summary.budget_error is not None and not exhausted:
                if upcoming is not None and await upcoming is not END:
                    summary.not_started += 1
                upcoming = None
                summary.not_started += await source.count_rest()
        finally:
            if upcoming is not None:
                upcoming.cancel()
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            await client.aclose()
            summary.finished_at = time.monotonic()

    def _may_start(self) -> bool:
        """False once the budget cannot afford the next request."""
        if self.summary.budget_error is not None:
            return False
        budget = self.embedder.budget
        if budget is None:
            return True
        try:
            budget.check()
        except BudgetExceededError as exc:
            self.summary.budget_error = exc
            return False
        return True

    async def _batch(
        self, batch: list[tuple[int, object]], client: httpx2.AsyncClient
    ) -> list[EmbedOutcome]:
        """Read each image (a bad one is its own error item), then embed the rest.

        Through the embedder's public `aembed_images`, so cache keys, retries, pacing
        and the budget check are exactly those of a direct call. When a request of
        several images is refused because of its input (an image that cannot be decoded
        or prepared, a 4xx), its halves are tried in turn, down to single images, so one
        bad image fails only its own item.
        """
        embedder = self.embedder
        share_client(embedder, client)  # this task's context only: the run's one pool
        items: list[EmbedOutcome] = []
        ready: list[tuple[int, Any, str, LoadedImage]] = []
        for index, raw in batch:
            given, image = split_input(raw)
            source = describe_input(image)
            ident = given
            if ident is None:
                ident = source if isinstance(image, str | os.PathLike) else index
            try:
                loaded = await asyncio.to_thread(
                    load_image,
                    image,  # type: ignore[arg-type]  # checked by load_image
                    limits=embedder.limits,
                    fetch_timeout=embedder.fetch_timeout,
                    allow_hosts=embedder.allow_hosts,
                )
            except ViewfinderError as exc:
                items.append(EmbedError(ident, index, source, error=exc))
                continue
            ready.append((index, ident, source, loaded))
        groups = [ready] if ready else []
        while groups:
            group = groups.pop()
            try:
                embeddings = await embedder.aembed_images([entry[3] for entry in group])
            except BudgetExceededError as exc:
                # Another batch spent the rest first: these never went out.
                self.summary.budget_error = self.summary.budget_error or exc
                self.summary.not_started += len(group)
            except (ImageError, BadRequestError) as exc:
                if len(group) > 1:  # halves: a bad image among n costs ~2 log2(n) requests
                    half = len(group) // 2
                    groups.extend([group[half:], group[:half]])
                else:
                    index, ident, source, _ = group[0]
                    items.append(EmbedError(ident, index, source, error=exc))
            except ViewfinderError as exc:
                items.extend(
                    EmbedError(ident, index, source, error=exc) for index, ident, source, _ in group
                )
            else:
                items.extend(
                    EmbedOk(ident, index, source, embedding=embedding)
                    for (index, ident, source, _), embedding in zip(group, embeddings, strict=True)
                )
        return items


def split_input(raw: object) -> tuple[Any, object]:
    """`(id, image)` of one input: an `(id, image)` pair, an object with `.id` and `.image`
    (`viewfinder.batch.records.BatchInput`), or a bare image (id None)."""
    if isinstance(raw, tuple) and len(raw) == 2:
        return raw[0], raw[1]
    if hasattr(raw, "image") and hasattr(raw, "id"):
        return raw.id, raw.image
    return None, raw


def _core(embedder: Embedder, concurrency: int, rate_limiter: RateLimiter | None) -> _Core:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidOptionError(f"concurrency must be an int >= 1, not {concurrency!r}")
    runner = copy.copy(embedder)  # the embedder itself is never changed
    runner.rate_limiter = rate_limiter or embedder.rate_limiter or RateLimiter()
    return _Core(runner, concurrency, EmbedSummary())


class EmbedRun:
    """The items of a run, as they complete, and its running summary (sync or async).

    `for item in run` (from `embed_many`) or `async for item in run` (`aembed_many`).
    Leaving a `with` block or `close()` / `aclose()` cancels what is still in flight.

    Attributes:
        summary: Running totals; final once the iteration ends.
        rate_limiter: The limiter pacing this run's requests.
    """

    def __init__(
        self, core: _Core, source: PullSource, *, threaded: bool, feed: ProgressFeed
    ) -> None:
        self.summary = core.summary
        self.rate_limiter = core.embedder.rate_limiter
        self._async = None if threaded else core.run(source)
        self._sync: Generator[EmbedOutcome, None, None] | None = (
            in_thread(lambda: core.run(source), core.concurrency) if threaded else None
        )
        self._feed = feed

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> EmbedOutcome:
        if self._sync is None:
            raise TypeError("this run is async: use `async for`")
        return self._feed.next_of(self._sync, self.summary)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> EmbedOutcome:
        if self._async is None:
            raise TypeError("this run is sync: use `for`")
        return await self._feed.anext_of(self._async, self.summary)

    def close(self) -> None:
        """Stop: cancel the in-flight batches and join the background thread."""
        self._feed.close()
        if self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        """Stop: cancel the in-flight batches."""
        self._feed.close()
        if self._async is not None:
            await self._async.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def embed_many(
    embedder: Embedder,
    images: Iterable[object],
    *,
    concurrency: int = 4,
    rate_limiter: RateLimiter | None = None,
    progress: ProgressArg = None,
) -> EmbedRun:
    """The sync run: the async core on a background event loop (inputs pulled in a
    worker thread, so a blocking source such as stdin is fine). See the module docstring;
    `progress` as in `viewfinder.engine.progress`.

    Raises:
        InvalidOptionError: Bad options (checked here, before anything runs).
    """
    if isinstance(images, AsyncIterable):
        raise InvalidOptionError("embed_many takes a sync iterable; use aembed_many")
    core = _core(embedder, concurrency, rate_limiter)
    feed = ProgressFeed(progress, total_of(images))
    return EmbedRun(core, ThreadedSource(images), threaded=True, feed=feed)


def aembed_many(
    embedder: Embedder,
    images: Iterable[object] | AsyncIterable[object],
    *,
    concurrency: int = 4,
    rate_limiter: RateLimiter | None = None,
    progress: ProgressArg = None,
) -> EmbedRun:
    """The async run, in the caller's event loop. See the module docstring."""
    core = _core(embedder, concurrency, rate_limiter)
    source: PullSource = (
        AsyncSource(images) if isinstance(images, AsyncIterable) else InlineSource(images)
    )
    feed = ProgressFeed(progress, total_of(images))
    return EmbedRun(core, source, threaded=False, feed=feed)
