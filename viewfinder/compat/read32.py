"""Computer Vision 3.2 Read (asynchronous) on `viewfinder serve`.

References are to `azure-computer-vision-3.2.md` (sections 2-4, 6-7, 8.8, 8.9, 9.4, 9.6).

- `POST /vision/v3.2/read/analyze` (section 2): a binary body or `{"url"}`, read with the
  same authentication, body limits, URL policy and error bodies as the 4.0 analyze route
  (`viewfinder.compat.server`), answers 202 with no body and `Operation-Location:
  <endpoint>/vision/v3.2/read/analyzeResults/<uuid>` (the docs' format, section 8.8;
  clients take the last path segment as the id, section 9.6). The query (section 3):
  `language` (a forced language: reported as the page's `language`, the text is read the
  same way), `pages` (an image has one page: a selection that names another page is the
  service's `InvalidPageRange`), `readingOrder` (`basic` or `natural`; viewfinder's lines
  come in the model's reading order either way), `model-version` (`latest`,
  `latest-preview` or one of the Read model dates; all mean viewfinder's model).
  The image's header is checked before the 202 (format, sides), so a bad or too small
  image is the 4.0 route's 400, not a failed operation.
- `GET /vision/v3.2/read/analyzeResults/{operationId}` (section 4, `ReadOperationResult`):
  `status` `notStarted` / `running` / `succeeded` / `failed`, `createdDateTime`,
  `lastUpdatedDateTime` and, once succeeded, `analyzeResult` (`version` "3.2",
  `modelVersion` = the engine's true `<model>+<hash>`, `readResults` with page 1:
  `angle` 0, the image's `width` and `height`, `unit` "pixel", the lines with 8-number
  `boundingBox`es and their words with `confidence`). `appearance` is left out: the
  `read` feature does not tell handwriting from print, and the schema makes it optional.
  An id the store does not hold (unknown, expired, or lost) is the 4.0 route's 404 body.

The text comes from viewfinder's `read` feature: the plan of the 4.0 route's
`features=read` (`check_options`), so one model request per image, the same prompts,
the same answer cache. It runs as a task of the server's event loop, paced by the same
rate limiter and pixel budget as the 4.0 route; a model error fails the operation (the
3.2 result has no error field: the reason is logged).

Operations live in `OperationStore`, a diskcache directory that every worker given the
same directory shares. A record holds the status and, once done, the JSON result: never
the image, which only the running task holds. Finished records expire after 48 hours
(the Read specification: "The operation ID will expire in 48 hours", section 7);
records in flight after `IN_FLIGHT_SECONDS`, so an operation whose process died is
forgotten (404) instead of running forever. A restart loses the operations in flight:
a graceful stop marks them `failed`, a crash leaves them to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import diskcache

from viewfinder.compat.rest import MAX_CONFIDENCE, MIN_CONFIDENCE
from viewfinder.compat.service import DEFAULT_RETRY_AFTER, ServiceError, check_options
from viewfinder.errors import ViewfinderError
from viewfinder.prepare.decode import DEFAULT_LIMITS, open_checked

if TYPE_CHECKING:
    from viewfinder.analyzers.image_analysis import FeatureOptions, ImageAnalyzer
    from viewfinder.build.plan import CallPlan
    from viewfinder.schemas.geometry import Polygon
    from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "IN_FLIGHT_SECONDS",
    "MAX_IN_FLIGHT",
    "OPERATION_SECONDS",
    "READ_PATH",
    "RESULTS_PATH",
    "OperationStore",
    "ReadOperations",
    "ReadQuery",
    "check_image",
    "read_plan",
    "read_results",
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


def check_image(image: bytes, query: ReadQuery) -> None:
    """Check the image's header (format, sides) and the page selection before the 202.

    Raises:
        ViewfinderError: `ImageFormatError` / `ImageSizeError` / `DecompressionBombError`,
            answered as the 4.0 route answers them.
        ServiceError: A page selection beyond the image's one page.
    """
    open_checked(image, "image", DEFAULT_LIMITS).close()
    query.check_pages(1)


# --- the result ---------------------------------------------------------------------------


def _now() -> str:
    """An ISO 8601 UTC time as the specification's example writes it (section 8.9)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _box(polygon: Polygon) -> list[int]:
    """The 8-number `boundingBox`: four points clockwise from the top-left (section 4)."""
    return [value for point in polygon.points for value in (point.x, point.y)]


def read_results(result: ImageAnalysisResult, language: str | None) -> dict[str, Any]:
    """The `analyzeResult` of an image's analysis (sections 4, 8.9): one page."""
    read = result.read
    lines = [] if read is None else read.lines
    page: dict[str, Any] = {"page": 1}
    if language is not None:
        page["language"] = language
    page.update(
        angle=0,
        width=result.metadata.width,
        height=result.metadata.height,
        unit="pixel",
        lines=[
            {
                "boundingBox": _box(line.polygon),
                "text": line.text,
                "words": [
                    {
                        "boundingBox": _box(word.polygon),
                        "text": word.text,
                        "confidence": min(max(word.confidence, MIN_CONFIDENCE), MAX_CONFIDENCE),
                    }
                    for word in line.words
                ],
            }
            for line in lines
        ],
    )
    return {"version": "3.2", "modelVersion": result.model_version, "readResults": [page]}


# --- the store ----------------------------------------------------------------------------


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

    def close(self) -> None:
        """Close the directory (a temp one is removed)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None


class ReadOperations:
    """Read operations run as tasks of the server's event loop, recorded in a store."""

    def __init__(self, store: OperationStore, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.store = store
        self._max = max_in_flight
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def submit(
        self, analyze: Callable[[], Awaitable[ImageAnalysisResult]], query: ReadQuery
    ) -> str:
        """Record a `notStarted` operation, start `analyze` in the background, return its id.

        Raises:
            ServiceError: 429 when `max_in_flight` operations are running.
        """
        if len(self._tasks) >= self._max:
            raise _BUSY
        operation_id = str(uuid.uuid4())
        created = _now()
        self._write(operation_id, "notStarted", created)
        task = asyncio.get_running_loop().create_task(
            self._run(operation_id, created, analyze, query)
        )
        self._tasks[operation_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(operation_id, None))
        return operation_id

    def result(self, operation_id: str) -> dict[str, Any] | None:
        """The `ReadOperationResult` JSON, or `None` for an id the store does not hold."""
        return self.store.get(operation_id)

    async def _run(
        self,
        operation_id: str,
        created: str,
        analyze: Callable[[], Awaitable[ImageAnalysisResult]],
        query: ReadQuery,
    ) -> None:
        self._write(operation_id, "running", created)
        try:
            result = await analyze()
        except ViewfinderError as exc:
            logger.warning("read %s failed: %s: %s", operation_id, type(exc).__name__, exc)
            self._write(operation_id, "failed", created)
            return
        except Exception:
            logger.exception("read %s: unexpected error", operation_id)
            self._write(operation_id, "failed", created)
            return
        self._write(operation_id, "succeeded", created, read_results(result, query.language))

    def _write(
        self, operation_id: str, status: str, created: str, analyzed: dict[str, Any] | None = None
    ) -> None:
        record: dict[str, Any] = {
            "status": status,
            "createdDateTime": created,
            "lastUpdatedDateTime": _now(),
        }
        if analyzed is not None:
            record["analyzeResult"] = analyzed
        done = status in ("succeeded", "failed")
        self.store.put(operation_id, record, OPERATION_SECONDS if done else IN_FLIGHT_SECONDS)

    async def aclose(self) -> None:
        """Stop the operations in flight, recorded `failed` (a restart loses them), and
        close the store."""
        tasks = dict(self._tasks)
        for task in tasks.values():
            task.cancel()
        for operation_id, task in tasks.items():
            with contextlib.suppress(asyncio.CancelledError):
                await task
            record = self.store.get(operation_id)
            if record is not None and record["status"] in ("notStarted", "running"):
                self._write(operation_id, "failed", record["createdDateTime"])
        self.store.close()
