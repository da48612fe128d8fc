"""Computer Vision 3.2 Read (asynchronous) on `viewfinder serve`.

References are to `azure-computer-vision-3.2.md` (sections 2-4, 6-7, 8.8, 8.9, 9.4, 9.6).

- `POST /vision/v3.2/read/analyze` (section 2): a binary body or `{"url"}`, read with the
  same authentication, body limits, URL policy and error bodies as the 4.0 analyze route
  (`viewfinder.compat.server`), answers 202 with no body and `Operation-Location:
  <endpoint>/vision/v3.2/read/analyzeResults/<uuid>` (the docs' format, section 8.8;
  clients take the last path segment as the id, section 9.6). The query (section 3):
  `language` (a forced language: reported as the page's `language`, the text is read the
  same way), `pages` (pages of a PDF or a multi-page TIFF, `viewfinder.compat.read_pages`;
  an image has one page; a selection that names a page the document lacks is the
  service's `InvalidPageRange`), `readingOrder` (`basic` or `natural`; viewfinder's lines
  come in the model's reading order either way), `model-version` (`latest`,
  `latest-preview` or one of the Read model dates; all mean viewfinder's model).
  The input is checked before the 202 (`read_pages.open_document`: Read's formats,
  sides, page count and selection), so a bad, corrupt or too small input is a 400, not
  a failed operation.
- Errors of both routes are Read's own `ComputerVisionOcrError` (section 6.1): top-level
  `{"code", "message", "requestId"}` (`ocr_error`), not the 4.0 route's `{"error": ...}`.
  Microsoft's 3.2 SDK raises `ComputerVisionOcrErrorException` for Read and reads only
  this shape: `e.error.code`, `e.error.message` and `str(e)` come from it, while for a
  wrapped body they are `None` and "Operation returned an invalid status code" (section
  9.5). A bad key's 401 takes the same shape for the same reason (the gateway's wrapped
  401 is UNVERIFIED for 3.2, section 6.2).
- `GET /vision/v3.2/read/analyzeResults/{operationId}` (section 4, `ReadOperationResult`):
  `status` `notStarted` / `running` / `succeeded` / `failed`, `createdDateTime`,
  `lastUpdatedDateTime` and, once succeeded, `analyzeResult` (`version` "3.2",
  `modelVersion` = the engine's true `<model>+<hash>`, `readResults`: one per selected
  page, with its number in the document, `angle` 0, its `width` and `height` in `unit`
  "pixel" (images, TIFF) or "inch" (PDF, boxes converted too), the lines with 8-number
  `boundingBox`es and their words with `confidence`). `appearance` is left out: the
  `read` feature does not tell handwriting from print, and the schema makes it optional.
  An id the store does not hold (unknown, expired, or lost) is the 4.0 route's 404 body.

The text comes from viewfinder's `read` feature: the plan of the 4.0 route's
`features=read` (`check_options`), so one model request per page, the same prompts,
the same answer cache. It runs as a task of the server's event loop, paced by the same
rate limiter and pixel budget as the 4.0 route, at most `PAGE_CONCURRENCY` pages of an
operation at once. Any page failing fails the whole operation and stops its other pages:
the service has one status per operation and the 3.2 result no error field, so a result
without a page's text would pass for a page without text (the reason is logged).

Operations live in a store (`OperationRecords`, chosen by `open_store`): `OperationStore`,
a diskcache directory that every worker given the same directory shares, or, when the
server is given a Redis URL (`ServerSettings.redis`), `read_redis.RedisOperationStore`,
shared by every replica naming that Redis, so a Read submitted on one is polled on any
other. A record holds the status and, once done, the JSON result: never
the image, which only the running task holds. Finished records expire after 48 hours
(the Read specification: "The operation ID will expire in 48 hours", section 7);
records in flight after `IN_FLIGHT_SECONDS`, renewed while they run (a long document
lives on), so an operation whose process died is forgotten (404) instead of running
forever. A restart loses the operations in flight: a graceful stop marks them `failed`,
a crash leaves them to expire.

A store that cannot be reached (Redis down) loses nothing and never blocks the event loop
(its calls run in a worker thread): a submit it cannot record is answered 503
(`StorageException`, `Retry-After`) and starts nothing; a poll it cannot answer is a 503
too, not a 404 (the operation may well exist); a record it refuses while the operation
runs or once it finished is kept in memory by the process that ran it, answered to polls
reaching that process, and written again every `PENDING_RETRY_SECONDS` until the store
takes it (for up to `IN_FLIGHT_SECONDS`); a graceful stop tries once more and logs the ids
of what is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import diskcache

from viewfinder.compat.read_pages import Document, Page
from viewfinder.compat.rest import MAX_CONFIDENCE, MIN_CONFIDENCE
from viewfinder.compat.rest32 import OCR_ERROR_CODES
from viewfinder.compat.service import DEFAULT_RETRY_AFTER, ServiceError, check_options
from viewfinder.errors import (
    ConfigurationError,
    ImageFetchError,
    ImageSizeError,
    ViewfinderError,
    import_failure,
)
from viewfinder.prepare.pixel_budget import run_holding

if TYPE_CHECKING:
    from viewfinder.analyzers.image_analysis import FeatureOptions, ImageAnalyzer
    from viewfinder.build.plan import CallPlan
    from viewfinder.schemas.geometry import Polygon
    from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "IN_FLIGHT_SECONDS",
    "MAX_IN_FLIGHT",
    "OPERATION_SECONDS",
    "PAGE_CONCURRENCY",
    "PENDING_RETRY_SECONDS",
    "READ_PATH",
    "RESULTS_PATH",
    "OperationRecords",
    "OperationStore",
    "ReadOperations",
    "ReadQuery",
    "StoreUnavailable",
    "ocr_error",
    "open_store",
    "read_document",
    "read_error_for",
    "read_page",
    "read_plan",
]

READ_PATH: Final = "/vision/v3.2/read/analyze"
"""The Read submit route, under the endpoint (section 2)."""
RESULTS_PATH: Final = "/vision/v3.2/read/analyzeResults"
"""The Read result route; the operation id follows it (section 2)."""
OPERATION_SECONDS: Final = 48 * 3600
"""How long a finished operation is kept: "The operation ID will expire in 48 hours"."""
IN_FLIGHT_SECONDS: Final = 15 * 60
"""How long a record not yet finished is kept (renewed at each status change): an
operation whose process stopped is forgotten after this, not `running` for 48 hours."""
MAX_IN_FLIGHT: Final = 32
"""Operations one process runs at once (each holds its image in memory); one more is
answered 429 with `Retry-After`, as a busy 4.0 route is."""
PAGE_CONCURRENCY: Final = 4
"""Pages of one operation analysed at once (each a model request and a decoded page);
the server's rate limiter and pixel budget bound all operations together."""
PENDING_RETRY_SECONDS: Final = 5.0
"""How often a record the store refused (Redis down) is written again; also the
`Retry-After` of the 503 answered meanwhile."""
MODEL_VERSIONS: Final = frozenset(
    ("latest", "latest-preview", "2021-04-12", "2021-09-30", "2022-01-30", "2022-04-30")
)
"""`model-version` values of Read 3.2 (the specification's and the docs', section 3)."""
READING_ORDERS: Final = frozenset(("basic", "natural"))

_PAGES_ITEM = re.compile(r"^(\d+|\d+-\d+|\d+-|-\d+)$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_BUSY: Final = ServiceError(
    429,
    "429",
    "Too many requests: the server is running as many Read operations as it allows.",
    retry_after=DEFAULT_RETRY_AFTER,
)
_STORE_DOWN: Final = ServiceError(
    503,
    "StorageException",
    "The Read operation store is temporarily unavailable; try again.",
    retry_after=round(PENDING_RETRY_SECONDS),
)

logger = logging.getLogger(__name__)


def _bad(code: str, message: str) -> ServiceError:
    """A 400 with one of the Read error codes (`ComputerVisionOcrError`, section 6.1)."""
    return ServiceError(400, code, message)


# --- the query --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadQuery:
    """The Read query (section 3), checked as the service checks it."""

    language: str | None = None
    """A forced language (`None`: detected); reported as the page's `language`."""
    pages: tuple[tuple[int, int | None], ...] = ()
    """Page ranges `(first, last)`, `last` `None` for "to the end"; empty: every page."""
    reading_order: str = "basic"
    model_version: str = "latest"

    @classmethod
    def of(cls, params: Sequence[tuple[str, str]]) -> ReadQuery:
        """The query of `(name, value)` pairs (the last of a repeated one counts).

        Raises:
            ServiceError: 400 `NotSupportedLanguage`, `InvalidPageRange`,
                `InvalidReadingOrder` or `BadArgument` (an unknown model version).
        """
        last = dict(params)
        language = last.get("language")
        if language is not None and not _LANGUAGE.match(language):
            raise _bad("NotSupportedLanguage", f"The language '{language}' is not supported.")
        order = last.get("readingOrder", "basic")
        if order not in READING_ORDERS:
            raise _bad("InvalidReadingOrder", "readingOrder must be 'basic' or 'natural'.")
        version = last.get("model-version", "latest")
        if version not in MODEL_VERSIONS:
            raise _bad("BadArgument", f"The model version '{version}' is not supported.")
        pages = [
            item.strip()
            for value in (v for k, v in params if k == "pages")
            for item in value.split(",")
        ]
        return cls(language, tuple(_page_range(item) for item in pages), order, version)

    def check_pages(self, page_count: int) -> None:
        """Refuse a selection that names a page the document lacks.

        Raises:
            ServiceError: 400 `InvalidPageRange`.
        """
        for first, last in self.pages:
            if first > page_count or (last is not None and last > page_count):
                raise _bad(
                    "InvalidPageRange",
                    f"The page range is not valid: the document has {page_count} page(s).",
                )

    def select(self, page_count: int) -> tuple[int, ...]:
        """The page numbers to read of a document of `page_count` pages, in order, each
        once; every page when `pages` is not given.

        Raises:
            ServiceError: 400 `InvalidPageRange` (see `check_pages`).
        """
        self.check_pages(page_count)
        if not self.pages:
            return tuple(range(1, page_count + 1))
        chosen = {
            number
            for first, last in self.pages
            for number in range(first, (page_count if last is None else last) + 1)
        }
        return tuple(sorted(chosen))


def _page_range(item: str) -> tuple[int, int | None]:
    """`3` -> (3, 3), `1-3` -> (1, 3), `2-` -> (2, None), `-3` -> (1, 3); pages count from 1."""
    if not _PAGES_ITEM.match(item):
        raise _bad("InvalidPageRange", f"The page range '{item}' is not valid.")
    head, dash, tail = item.partition("-")
    first = int(head) if head else 1
    last = (int(tail) if tail else None) if dash else first
    if first < 1 or (last is not None and last < first):
        raise _bad("InvalidPageRange", f"The page range '{item}' is not valid.")
    return first, last


def read_plan(analyzer: ImageAnalyzer) -> CallPlan[FeatureOptions, ImageAnalysisResult]:
    """The plan of the 4.0 route's `features=read`: the same prompts and cache keys."""
    return check_options(analyzer, ["read"])


# --- the result ---------------------------------------------------------------------------


def _now() -> str:
    """An ISO 8601 UTC time as the specification's example writes it (section 8.9)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _box(polygon: Polygon) -> list[int]:
    """The 8-number `boundingBox`: four points clockwise from the top-left (section 4)."""
    return [value for point in polygon.points for value in (point.x, point.y)]


def read_page(result: ImageAnalysisResult, page: Page, language: str | None) -> dict[str, Any]:
    """The `ReadResult` of one page's analysis (sections 4, 8.9).

    An image's page is in its pixels; a PDF page (`page.inches`) in inches: its size, and
    its boxes scaled from the rendered pixels, rounded to 4 decimals.
    """
    read = result.read
    lines = [] if read is None else read.lines
    width: float = result.metadata.width
    height: float = result.metadata.height
    unit = "pixel"

    def box(polygon: Polygon) -> list[int | float]:
        return [*_box(polygon)]

    if page.inches is not None:
        unit = "inch"
        x_scale, y_scale = page.inches[0] / width, page.inches[1] / height
        width, height = page.inches

        def box(polygon: Polygon) -> list[int | float]:
            return [
                round(value * (x_scale if i % 2 == 0 else y_scale), 4)
                for i, value in enumerate(_box(polygon))
            ]

    answer: dict[str, Any] = {"page": page.number}
    if language is not None:
        answer["language"] = language
    answer.update(
        angle=0,
        width=width,
        height=height,
        unit=unit,
        lines=[
            {
                "boundingBox": box(line.polygon),
                "text": line.text,
                "words": [
                    {
                        "boundingBox": box(word.polygon),
                        "text": word.text,
                        "confidence": min(max(word.confidence, MIN_CONFIDENCE), MAX_CONFIDENCE),
                    }
                    for word in line.words
                ],
            }
            for line in lines
        ],
    )
    return answer


async def read_document(
    document: Document,
    query: ReadQuery,
    analyze: Callable[[bytes], Awaitable[ImageAnalysisResult]],
) -> dict[str, Any]:
    """The `analyzeResult` of `document`'s selected pages (sections 4, 8.9).

    Each page's image is made in a worker thread holding its pixels of the current pixel
    budget (`run_holding`), then analysed by `analyze`; at most `PAGE_CONCURRENCY` pages
    at once. The document is closed at the end.

    Raises:
        ViewfinderError: The first page that failed (the others are cancelled).
    """
    gate = asyncio.Semaphore(PAGE_CONCURRENCY)

    async def one(page: Page) -> tuple[dict[str, Any], str]:
        async with gate:
            if page.pixels:
                image = await run_holding(page.pixels, document.page_image, page)
            else:
                image = document.page_image(page)
            result = await analyze(image)
        return read_page(result, page, query.language), result.model_version

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(page)) for page in document.pages]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    finally:
        await asyncio.to_thread(document.close)
    pages = [task.result() for task in tasks]
    return {
        "version": "3.2",
        "modelVersion": pages[0][1],
        "readResults": [page for page, _ in pages],
    }


# --- errors -------------------------------------------------------------------------------


def read_error_for(exc: ImageFetchError | ImageSizeError) -> ServiceError:
    """Read's error for an input that could not be had: a URL not fetched
    (`InvalidImageUrl`) or a body too large or empty (`InvalidImageSize`)."""
    if isinstance(exc, ImageFetchError):
        return _bad("InvalidImageUrl", "The provided image url is not accessible.")
    return _bad("InvalidImageSize", "The input is empty or larger than this server accepts.")


def ocr_error(error: ServiceError, request_id: str | None) -> dict[str, Any]:
    """`error` as Read's `ComputerVisionOcrError` body: top-level `code`, `message`,
    `requestId` (section 6.1). A 4.0 error whose inner code is one of Read's codes
    (`InvalidImageSize`, `InvalidImageFormat`, ...) is answered with that code."""
    inner = error.inner_code in OCR_ERROR_CODES and error.inner_message is not None
    body: dict[str, Any] = {
        "code": error.inner_code if inner else error.code,
        "message": error.inner_message if inner else error.message,
    }
    if request_id is not None:
        body["requestId"] = request_id
    return body


# --- the store ----------------------------------------------------------------------------


class StoreUnavailable(Exception):
    """The operation store could not be reached (or refused a write): not "unknown"."""


class OperationRecords(Protocol):
    """Where operation records live: `OperationStore` (a directory) or
    `viewfinder.compat.read_redis.RedisOperationStore` (Redis, shared by replicas).

    Calls may block (disk, network): `ReadOperations` makes them in a worker thread.
    """

    def put(self, operation_id: str, record: dict[str, Any], seconds: float) -> None:
        """Keep `record` (JSON-able) for `seconds`; raises `StoreUnavailable` if not kept."""

    def get(self, operation_id: str) -> dict[str, Any] | None:
        """The record, `None` when unknown or expired; raises `StoreUnavailable` when the
        store cannot tell."""

    def retry_now(self) -> None:
        """Forget a recent failure, so that the next call tries (a last attempt)."""

    def close(self) -> None:
        """Release what the store holds."""


def open_store(directory: Path | None, redis_url: str | None) -> OperationRecords:
    """The Redis store when `redis_url` is given, else the disk store at `directory`.

    Raises:
        ConfigurationError: A Redis URL without the `redis` extra installed.
        InvalidOptionError: A Redis URL redis-py cannot read.
    """
    if redis_url is None:
        return OperationStore(directory)
    try:
        from viewfinder.compat.read_redis import RedisOperationStore
    except ImportError as exc:
        raise ConfigurationError(
            f"a Read store in Redis needs redis-py, which is {import_failure('redis', exc)}"
        ) from exc
    return RedisOperationStore(redis_url.strip())


class OperationStore:
    """Operation records in a diskcache directory, shared by every process given it.

    Args:
        directory: Where the records live; `None`: a temp directory of this store,
            created on first use and removed by `close`.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._temp: str | None = None
        self._cache: Any = None

    def _open(self) -> Any:
        if self._cache is None:
            if self._directory is None:
                self._temp = tempfile.mkdtemp(prefix="viewfinder-read-")
            self._cache = diskcache.Cache(str(self._directory or self._temp))
        return self._cache

    def put(self, operation_id: str, record: dict[str, Any], seconds: float) -> None:
        """Keep `record` for `seconds`."""
        self._open().set(operation_id, record, expire=seconds)

    def get(self, operation_id: str) -> dict[str, Any] | None:
        """The record, or `None` when it is unknown or expired."""
        record = self._open().get(operation_id)
        return record if isinstance(record, dict) else None

    def retry_now(self) -> None:
        """Nothing to forget: a directory does not fail and recover."""

    def close(self) -> None:
        """Close the directory (a temp one is removed)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None


class ReadOperations:
    """Read operations run as tasks of the server's event loop, recorded in a store.

    Every store call runs in a worker thread: a store that blocks (a Redis that is down
    costs a connect timeout) never stalls the event loop. Writes are made one at a time,
    so a late write never replaces a newer status.

    A write the store refuses (`StoreUnavailable`) is not lost: this process keeps the
    record in memory, answers polls reaching it from there, and writes it again every
    `retry_seconds` until the store takes it, for at most `IN_FLIGHT_SECONDS`. Only a
    submit's first record must be stored before the 202 (else 503, nothing started).

    Args:
        store: Where records live (`open_store`).
        max_in_flight: Operations run at once; one more is a 429.
        renew_seconds: How often a running record is written again.
        retry_seconds: How often records the store refused are written again.
    """

    def __init__(
        self,
        store: OperationRecords,
        max_in_flight: int = MAX_IN_FLIGHT,
        renew_seconds: float = IN_FLIGHT_SECONDS / 3,
        retry_seconds: float = PENDING_RETRY_SECONDS,
    ) -> None:
        self.store = store
        self._max = max_in_flight
        self._renew = renew_seconds
        self._retry = retry_seconds
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._created: dict[str, str] = {}
        self._pending: dict[str, _Pending] = {}
        self._writing = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, work: Callable[[], Awaitable[dict[str, Any]]]) -> str:
        """Record a `notStarted` operation, start `work` (which returns the `analyzeResult`,
        `read_document`) in the background, return its id.

        Raises:
            ServiceError: 429 when `max_in_flight` operations are running; 503
                (`StorageException`, `Retry-After`) when the store cannot record it:
                nothing is started.
        """
        if len(self._tasks) >= self._max:
            raise _BUSY
        operation_id = str(uuid.uuid4())
        created = _now()
        if not await self._write(operation_id, "notStarted", created, keep=False):
            raise _STORE_DOWN
        task = asyncio.get_running_loop().create_task(self._run(operation_id, created, work))
        self._tasks[operation_id] = task
        self._created[operation_id] = created
        task.add_done_callback(lambda _: self._forget(operation_id))
        return operation_id

    async def result(self, operation_id: str) -> dict[str, Any] | None:
        """The `ReadOperationResult` JSON, or `None` for an id the store does not hold.

        A record the store has not taken yet is answered from this process's memory.

        Raises:
            ServiceError: 503 (`StorageException`, `Retry-After`) when the store cannot be
                read: the operation may well exist.
        """
        pending = self._pending.get(operation_id)
        if pending is not None:
            return pending.record
        try:
            return await asyncio.to_thread(self.store.get, operation_id)
        except StoreUnavailable:
            raise _STORE_DOWN from None

    def _forget(self, operation_id: str) -> None:
        self._tasks.pop(operation_id, None)
        self._created.pop(operation_id, None)

    async def _run(
        self, operation_id: str, created: str, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> None:
        await self._write(operation_id, "running", created)
        renewing = asyncio.get_running_loop().create_task(self._keep(operation_id, created))
        try:
            analyzed = await work()
        except ViewfinderError as exc:
            logger.warning("read %s failed: %s: %s", operation_id, type(exc).__name__, exc)
            await self._write(operation_id, "failed", created)
            return
        except Exception:
            logger.exception("read %s: unexpected error", operation_id)
            await self._write(operation_id, "failed", created)
            return
        finally:
            renewing.cancel()
        await self._write(operation_id, "succeeded", created, analyzed)

    async def _keep(self, operation_id: str, created: str) -> None:
        """Renew a running record every `renew_seconds`: a long document outlives
        `IN_FLIGHT_SECONDS`, while the record of a process that died still expires."""
        while True:
            await asyncio.sleep(self._renew)
            await self._write(operation_id, "running", created)

    async def _write(
        self,
        operation_id: str,
        status: str,
        created: str,
        analyzed: dict[str, Any] | None = None,
        *,
        keep: bool = True,
    ) -> bool:
        """Store the operation's record; whether the store took it. Refused, the record is
        kept in memory and retried (`keep`), except a submit's first: that one is refused."""
        record: dict[str, Any] = {
            "status": status,
            "createdDateTime": created,
            "lastUpdatedDateTime": _now(),
        }
        if analyzed is not None:
            record["analyzeResult"] = analyzed
        done = status in ("succeeded", "failed")
        seconds = OPERATION_SECONDS if done else IN_FLIGHT_SECONDS
        async with self._writing:
            try:
                await asyncio.to_thread(self.store.put, operation_id, record, seconds)
            except StoreUnavailable:
                if keep:
                    self._hold(operation_id, record, seconds, done)
                return False
            self._pending.pop(operation_id, None)
            return True

    def _hold(self, operation_id: str, record: dict[str, Any], seconds: float, done: bool) -> None:
        """Keep a record the store refused, and make sure something retries it."""
        held = self._pending.get(operation_id)
        since = held.since if held is not None else time.monotonic()
        self._pending[operation_id] = _Pending(record, seconds, since)
        if done:
            logger.warning(
                "read %s %s while the Read operation store is unavailable: this process "
                "keeps the record, answers polls reaching it, and writes it again every "
                "%g s until the store takes it (for up to %d s)",
                operation_id,
                record["status"],
                self._retry,
                IN_FLIGHT_SECONDS,
            )
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_pending())

    async def _flush_pending(self) -> None:
        """Write the held records again every `retry_seconds` until none is left; a record
        held longer than `IN_FLIGHT_SECONDS` is given up (elsewhere it is 404 by then)."""
        while self._pending:
            await asyncio.sleep(self._retry)
            for operation_id in list(self._pending):
                async with self._writing:
                    held = self._pending.get(operation_id)
                    if held is None:
                        continue
                    if time.monotonic() - held.since > IN_FLIGHT_SECONDS:
                        del self._pending[operation_id]
                        logger.error(
                            "read %s: the store did not take its record for %d s; it is lost",
                            operation_id,
                            IN_FLIGHT_SECONDS,
                        )
                        continue
                    try:
                        await asyncio.to_thread(
                            self.store.put, operation_id, held.record, held.seconds
                        )
                    except StoreUnavailable:
                        break  # still unavailable: wait before trying the others
                    del self._pending[operation_id]
                    logger.info("read %s: its record is now in the store", operation_id)

    async def aclose(self) -> None:
        """Stop the operations in flight, recorded `failed` (a restart loses them), try
        once more to store the records the store refused, log what is lost (ids only), and
        close the store."""
        tasks = dict(self._tasks)
        created = dict(self._created)
        for task in tasks.values():
            task.cancel()
        for operation_id, task in tasks.items():
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if task.cancelled():  # stopped before it finished: its record is not final
                await self._write(operation_id, "failed", created[operation_id])
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._pending:
            await asyncio.to_thread(self.store.retry_now)
            lost: list[str] = []
            for operation_id, held in self._pending.items():
                try:
                    await asyncio.to_thread(self.store.put, operation_id, held.record, held.seconds)
                except StoreUnavailable:
                    lost.append(operation_id)
            self._pending.clear()
            if lost:
                logger.error(
                    "stopping: the Read operation store is unavailable; %d operation "
                    "record(s) are lost: %s",
                    len(lost),
                    ", ".join(lost),
                )
        await asyncio.to_thread(self.store.close)


@dataclass(frozen=True)
class _Pending:
    """A record the store refused, held by the process that ran the operation."""

    record: dict[str, Any]
    seconds: float
    since: float
    """When the store first refused this operation's record (monotonic seconds)."""
