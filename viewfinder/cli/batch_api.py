"""Helpers for `viewfinder batch --via batch-api` (the command itself is wired in the CLI).

```python
from viewfinder.cli.batch_api import run_to_records

summary = run_to_records(analyzer, paths, work_dir="runs/june", timeout=26 * 3600,
                         emit=print_json_line, progress=err_console.print,
                         features=["caption", "tags"], rerun="online")
raise typer.Exit(summary.exit_code)
```

Records have the shape `viewfinder analyze --json` prints (`{"image", "result"}` or
`{"image", "error": {"type", "message"}}`) plus the batch fields (`custom_id`, `sha256`,
`usage`, `cost`, `batch_priced`). Exit code: 0 when every image has a result, 1 otherwise.
Killed or timed out, the same command with the same `--work-dir` resumes without paying
twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from viewfinder.analyzers.custom import Analyzer
from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.batch.provider_api import (
    BatchInput,
    BatchItemResult,
    BatchJob,
    BatchState,
)
from viewfinder.prepare.load import ImageInput
from viewfinder.schemas.result import Usage

__all__ = ["BatchSummary", "item_record", "progress_text", "run_to_records"]

EXIT_OK = 0
EXIT_ITEMS_FAILED = 1


@dataclass
class BatchSummary:
    """Totals over the items of a batch run.

    Attributes:
        items: Images seen.
        failed: Images without a result.
        usage: Tokens of every answer (batch and online re-runs).
        cost: Dollars, each item at its own price; `None` if any item had no price.
    """

    items: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float | None = 0.0

    def add(self, item: BatchItemResult) -> None:
        """Count `item`."""
        self.items += 1
        self.failed += 0 if item.ok else 1
        self.usage = self.usage + item.usage
        if self.cost is not None:
            self.cost = None if item.cost is None else self.cost + item.cost

    @property
    def exit_code(self) -> int:
        """0 when every image has a result, 1 otherwise."""
        return EXIT_ITEMS_FAILED if self.failed else EXIT_OK


def item_record(item: BatchItemResult) -> dict[str, Any]:
    """One JSON-able record per image, `analyze --json` style plus the batch fields."""
    record: dict[str, Any] = {"image": item.source, "custom_id": item.custom_id}
    if item.result is not None:
        record["result"] = item.result.model_dump(mode="json")
    else:
        record["error"] = dict(item.error or {})
    record |= {
        "sha256": item.sha256,
        "usage": item.usage.model_dump(mode="json"),
        "cost": item.cost,
        "batch_priced": item.batch_priced,
    }
    return record


def progress_text(state: BatchState) -> str:
    """One line on where the batches are, e.g. `2 batches: 1 completed, 1 in_progress`."""
    counts: dict[str, int] = {}
    for shard in state.shards:
        status = shard["status"] or "not submitted"
        counts[status] = counts.get(status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    noun = "batch" if len(state.shards) == 1 else "batches"
    return f"{len(state.shards)} {noun} for {state.items} images: {parts or 'nothing to send'}"


def run_to_records(
    analyzer: ImageAnalyzer | Analyzer[Any],
    images: Iterable[ImageInput | BatchInput],
    *,
    work_dir: str | os.PathLike[str],
    timeout: float,
    emit: Callable[[dict[str, Any]], None],
    progress: Callable[[str], None] | None = None,
    poll_interval: float = 60.0,
    rerun: Literal["online", "batch"] | None = None,
    **options: Any,
) -> BatchSummary:
    """Run (or resume) a batch job and emit one record per image, in input order.

    Args:
        analyzer: Analyzer whose client, model and prompts make the requests.
        images: Paths (or other inputs); not read again when resuming.
        work_dir: The job's directory (state file, shards, downloads).
        timeout: Seconds to wait for the batches; on expiry `BatchTimeoutError` is
            raised and the same call resumes later.
        emit: Receives each record (`item_record`).
        progress: Receives `progress_text` after each polling round.
        poll_interval: Seconds between polling rounds.
        rerun: Re-run failed items `"online"` or in a follow-up `"batch"`.
        **options: `BatchJob` options: `features=`, `language=`, ...,
            `max_requests_per_file=`, `max_bytes_per_file=`, `batch_model=`.

    Returns:
        The totals; `exit_code` for the command.
    """
    job = BatchJob(analyzer, work_dir, **options)
    on_poll = None if progress is None else (lambda state: progress(progress_text(state)))
    summary = BatchSummary()
    for item in job.run(
        images, timeout=timeout, poll_interval=poll_interval, on_poll=on_poll, rerun=rerun
    ):
        summary.add(item)
        emit(item_record(item))
    return summary
