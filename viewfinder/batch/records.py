"""What a batch takes and gives, online (`analyze_many`) or through the Batch API.

One input type (`BatchInput`), one outcome per input (`BatchItem`: a `BatchOk` or a
`BatchError`, so that `item.ok` narrows `item.result` for type checkers), one set of running
totals (`BatchSummary`), and one JSON Lines record: `viewfinder batch` writes
`BatchItem.to_record()` whichever way the requests went, and resumes from files written
in any earlier shape (`record_outcome`).

The record (keys in this order; `"result"` when `"status"` is `"ok"`, else `"error"`):

```
{"id", "index", "source", "sha256", "status": "ok" | "error",
 "result": {...} | "error": {"type", "message", ...attributes},
 "usage", "cost", "batch_priced", "custom_id", "id_version": 2}
```

`"error"` is `ViewfinderError.to_record()`; `"custom_id"` is the Batch API line's (None
online); `"batch_priced"` says the answer was billed at Batch API prices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Literal,
    NamedTuple,
    Protocol,
    TypeAlias,
    TypeVar,
)

from pydantic import BaseModel

from viewfinder.engine.tally import RunTally
from viewfinder.errors import ViewfinderError
from viewfinder.schemas.result import ImageAnalysisResult, Usage

if TYPE_CHECKING:  # the loader imports Pillow and httpx2; the CLI reads records at start-up
    from viewfinder.prepare.load import ImageInput

__all__ = [
    "ID_VERSION",
    "BatchError",
    "BatchInput",
    "BatchInputLike",
    "BatchItem",
    "BatchOk",
    "BatchOutcome",
    "BatchSummary",
    "RecordOutcome",
    "batch_item",
    "record_outcome",
    "split_input",
]

ID_VERSION: Final = 2
"""`"id_version"` of every record written now: a URL's id keeps its query string, secret
values digested (`viewfinder.prepare.redact.safe_url`). Records without it (version 1) gave
a URL the id `viewfinder.prepare.redact.legacy_url_id`, without its query."""


class _Result(Protocol):
    """What an analysis returns: `ImageAnalysisResult` or `AnalysisRun`."""

    @property
    def usage(self) -> Usage: ...

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


R = TypeVar("R", bound=_Result)


@dataclass(frozen=True)
class BatchInput:
    """An image with your own id for it.

    Attributes:
        image: Anything `analyze` accepts.
        id: Your id (JSON-able: it is written to the record). None: the path for a path,
            the URL as `viewfinder.prepare.redact.safe_url` prints it for a URL, else a
            position (online: the index; Batch API: `item-<index>`).
    """

    image: ImageInput
    id: Any = None


BatchInputLike: TypeAlias = "ImageInput | BatchInput | tuple[Any, ImageInput]"
"""What a batch iterable may hold: an image, a `BatchInput`, or an `(id, image)` pair."""


def split_input(raw: object) -> tuple[Any, ImageInput]:
    """`(id, image)` of one batch input; the id is None when none was given."""
    if isinstance(raw, BatchInput):
        return raw.id, raw.image
    if isinstance(raw, tuple) and len(raw) == 2:
        return raw[0], raw[1]
    return None, raw  # type: ignore[return-value]  # checked when the image is prepared


@dataclass(frozen=True)
class BatchItem(Generic[R]):
    """The outcome of one input: a result or a typed error, with what it cost.

    Attributes:
        id: Your id, else the path or the URL (`viewfinder.prepare.redact.safe_url`: query
            kept, secret values digested), else a position (see `BatchInput.id`).
        index: Position of the input in the run's iterable, from 0.
        source: Printable input: the path, the URL as `safe_url` gives it, `<bytes>`...
        sha256: Hex SHA-256 of the input bytes; None when they could not be read.
        result: The analysis, when it succeeded.
        error: Why it failed (a `ViewfinderError`), when it did.
        usage: Tokens and requests spent on it (failed attempts included).
        cost: Dollars spent on it (`viewfinder.cost.pricing.cost_of`); None if unpriced.
        batch_priced: True when the answer came from a Batch API batch (and is priced so).
        custom_id: The Batch API line's `custom_id` (`<id>#<12 hex of sha256>`); None online.
    """

    id: Any
    index: int
    source: str
    sha256: str | None
    result: R | None = None
    error: ViewfinderError | None = None
    usage: Usage = field(default_factory=Usage)
    cost: float | None = None
    batch_priced: bool = False
    custom_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when the image was analysed."""
        return self.error is None

    def to_record(self) -> dict[str, Any]:
        """The JSON-able record of this item (the module docstring shows its keys)."""
        record: dict[str, Any] = {
            "id": self.id,
            "index": self.index,
            "source": self.source,
            "sha256": self.sha256,
            "status": "ok" if self.ok else "error",
        }
        if self.error is not None:
            record["error"] = self.error.to_record()
        elif self.result is not None:
            record["result"] = self.result.model_dump(mode="json")
        record |= {
            "usage": self.usage.model_dump(mode="json"),
            "cost": self.cost,
            "batch_priced": self.batch_priced,
            "custom_id": self.custom_id,
            "id_version": ID_VERSION,
        }
        return record

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        result_type: type[BaseModel] = ImageAnalysisResult,
    ) -> BatchOutcome[Any]:
        """The item a record describes, written now or in an earlier shape.

        Args:
            record: A record from `to_record`, a line of an older `viewfinder batch`
                output (`{"id", ..., "error": {"type", "message"}}`), or an older Batch
                API record (`{"image", "custom_id", "result" | "error", ...}`).
            result_type: The model of `"result"` (`AnalysisRun[YourSchema]` for an
                `Analyzer`).
        """
        outcome = record_outcome(record)
        error = record.get("error")
        result = record.get("result")
        return batch_item(
            id=record.get("id", outcome.id if outcome else None),
            index=int(record.get("index") or 0),
            source=str(record.get("source", record.get("image", ""))),
            sha256=record.get("sha256"),
            result=None if result is None else result_type.model_validate(result),
            error=None if error is None else ViewfinderError.from_record(error),
            usage=Usage.model_validate(record.get("usage") or {}),
            cost=record.get("cost"),
            batch_priced=bool(record.get("batch_priced", False)),
            custom_id=record.get("custom_id"),
        )


class BatchOk(BatchItem[R]):
    """An input analysed: `ok` is True and `result` is set (`error` is None).

    The same record and fields as every `BatchItem`; the class only tells type checkers
    that `if item.ok:` makes `item.result` an `R`.
    """

    if TYPE_CHECKING:
        result: R
        error: None

    @property
    def ok(self) -> Literal[True]:
        """True: the image was analysed."""
        return True


class BatchError(BatchItem[R]):
    """An input that failed: `ok` is False and `error` is set (`result` is None)."""

    if TYPE_CHECKING:
        result: None
        error: ViewfinderError

    @property
    def ok(self) -> Literal[False]:
        """False: the image was not analysed; `error` says why."""
        return False


BatchOutcome: TypeAlias = BatchOk[R] | BatchError[R]
"""What a run yields for each input: `item.ok` tells which, and narrows `item.result`."""


def batch_item(*args: Any, **fields: Any) -> BatchOutcome[Any]:
    """A `BatchError` when `error` is given, else a `BatchOk` (`BatchItem`'s arguments)."""
    failed = fields.get("error") is not None
    return BatchError(*args, **fields) if failed else BatchOk(*args, **fields)


class RecordOutcome(NamedTuple):
    """What resuming needs of a record: whose it is and whether it succeeded."""

    id: str
    ok: bool
    id_version: int
    """`ID_VERSION` for records written with today's ids; 1 for older ones."""


def record_outcome(record: object) -> RecordOutcome | None:
    """The id and status of a record in any shape viewfinder wrote; None if not a record.

    Cheap (nothing is validated): `viewfinder batch` reads every line of its output on
    start. Older shapes: a `viewfinder batch` line without `"id_version"` (version 1
    ids), and a Batch API record without `"id"`/`"status"`, whose id is its
    `custom_id` up to the last `#` and whose status is whether it has a `"result"`.
    """
    if not isinstance(record, dict):
        return None
    version = record.get("id_version")
    version = version if isinstance(version, int) else 1
    if "id" in record:
        return RecordOutcome(str(record["id"]), record.get("status") == "ok", version)
    custom_id = record.get("custom_id")
    if isinstance(custom_id, str) and "#" in custom_id:
        ok = record.get("result") is not None and record.get("error") is None
        return RecordOutcome(custom_id.rsplit("#", 1)[0], ok, version)
    return None


@dataclass
class BatchSummary(RunTally):
    """Running totals of a batch, updated as items are yielded.

    Attributes:
        ok: Images analysed.
        failed: Images that failed (each yielded with its error).
        cached: Analysed images answered from the cache (no request sent).
        usage: Everything spent, failures included.
        dollars: Dollars spent on the priced part of `usage`.
        unpriced: Items that spent tokens on a model with no price.
        not_started: Inputs never started because the batch budget was reached.
        budget_error: The error that stopped the batch, if its budget was reached.
        started_at: `time.monotonic()` when the batch started.
        finished_at: `time.monotonic()` when it ended; None while it runs.
    """

    usage: Usage = field(default_factory=Usage)

    def record(self, item: BatchItem[Any]) -> None:
        """Count one yielded item."""
        if item.ok:
            self.ok += 1
            self.cached += item.usage.cache_hit
        else:
            self.note_failure(item.error or ViewfinderError("failed"), item.id)
        self.usage = self.usage + item.usage
        if item.cost is not None:
            self.dollars += item.cost
        elif item.usage.total_tokens:
            self.unpriced += 1
