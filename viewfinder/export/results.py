"""The analysed images of a batch output, as every export reads them.

A `viewfinder batch` output (`viewfinder.batch.records`) may hold an id more than once:
a resumed run appends a new line for an image that failed before. The last line of an id
wins, as when the run resumes; error lines are left out and counted, since they have no
result to export.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

from pydantic import ValidationError

from viewfinder.batch.records import BatchItem
from viewfinder.errors import UserError
from viewfinder.schemas.regions import RegionFeature
from viewfinder.schemas.result import ImageAnalysisResult

__all__ = ["DETECTION_FEATURES", "AnalysedImage", "Results", "ResultsLike", "read_results"]

DETECTION_FEATURES: Final[tuple[RegionFeature, ...]] = ("objects", "people")
"""What the detection exports (COCO, YOLO, Label Studio) take when not told."""


@dataclass(frozen=True)
class AnalysedImage:
    """One analysed image of a batch: its record's id, source and result."""

    id: str
    """The record's id, as a string (the path, the URL, or your own id)."""
    source: str
    """The printable input: the path or the URL as the batch wrote it."""
    sha256: str | None
    """Hex SHA-256 of the image's bytes."""
    result: ImageAnalysisResult
    """What the analysis found; geometry in pixels of `result.metadata`'s size."""
    cost: float | None = None
    """Dollars the record says it cost; None when unpriced."""


@dataclass(frozen=True)
class Results:
    """The analysed images of a run, in the order first seen, and the failed ones' count."""

    images: list[AnalysedImage]
    """One per id whose last record is ok."""
    failed: int = 0
    """Ids whose last record is an error: not exported."""


ResultsLike: TypeAlias = "Results | str | Path | Iterable[BatchItem[Any]]"
"""What an export takes: `read_results`'s answer, a batch output's path, or `BatchItem`s
(e.g. from `analyze_many`)."""


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a batch output; a torn last line (a run killed mid-write, which the
    next run cuts off) is skipped, any other line that is not JSON refused."""
    torn: int | None = None
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            if torn is not None:
                raise UserError(f"{path}:{torn} is not a JSON line")
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                torn = number
                continue
            if isinstance(record, dict):
                yield record


def _collect(items: Iterable[BatchItem[Any]]) -> Results:
    latest: dict[str, BatchItem[Any]] = {}
    for item in items:
        latest[str(item.id)] = item  # a later line of the id replaces it in place
    images = [
        AnalysedImage(key, item.source, item.sha256, item.result, item.cost)
        for key, item in latest.items()
        if item.ok and isinstance(item.result, ImageAnalysisResult)
    ]
    return Results(images, failed=len(latest) - len(images))


def read_results(results: ResultsLike) -> Results:
    """The analysed images of a batch output file, or of `BatchItem`s.

    Raises:
        UserError: The file is missing, holds a line that is not JSON (but a torn last
            line, skipped), or a result that
            is not an `ImageAnalysisResult`.
    """
    if isinstance(results, Results):
        return results
    if isinstance(results, str | Path):
        path = Path(results)
        if not path.is_file():
            raise UserError(f"no batch output at {path}")
        try:
            return _collect(BatchItem.from_record(record) for record in _lines(path))
        except ValidationError as error:
            raise UserError(
                f"{path} holds a result that is not an Image Analysis result "
                f"(a custom Analyzer's run?): {error.error_count()} validation errors"
            ) from None
    return _collect(results)
