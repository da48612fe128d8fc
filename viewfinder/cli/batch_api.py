"""Helpers for `viewfinder batch --via batch-api` (the command itself is wired in the CLI).

```python
from viewfinder.cli.batch_api import run_to_records

summary = run_to_records(analyzer, paths, work_dir="runs/june", timeout=26 * 3600,
                         emit=print_json_line, progress=err_console.print,
                         features=["caption", "tags"], rerun="online")
raise typer.Exit(0 if summary.complete else 1)
```

Records are `viewfinder.batch.records.BatchItem.to_record()`: the same line an online
`viewfinder batch` writes. Killed or timed out, the same command with the same
`--work-dir` resumes without paying twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from viewfinder.batch.records import BatchInputLike, BatchSummary

if TYPE_CHECKING:  # the engine (openai, instructor): imported when a job runs
    from viewfinder.analyzers.custom import Analyzer
    from viewfinder.analyzers.image_analysis import ImageAnalyzer
    from viewfinder.batch.provider_api import BatchState

__all__ = ["progress_text", "run_to_records"]


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
    images: Iterable[BatchInputLike],
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
        emit: Receives each item's record (`BatchItem.to_record()`).
        progress: Receives `progress_text` after each polling round.
        poll_interval: Seconds between polling rounds.
        rerun: Re-run failed items `"online"` or in a follow-up `"batch"`.
        **options: `BatchJob` options: `features=`, `language=`, ...,
            `max_requests_per_file=`, `max_bytes_per_file=`, `batch_model=`.

    Returns:
        The totals (`complete` is False when any image failed).
    """
    from viewfinder.batch.provider_api import BatchJob

    job = BatchJob(analyzer, work_dir, **options)
    on_poll = None if progress is None else (lambda state: progress(progress_text(state)))
    summary = BatchSummary()
    for item in job.run(
        images, timeout=timeout, poll_interval=poll_interval, on_poll=on_poll, rerun=rerun
    ):
        summary.record(item)
        emit(item.to_record())
    summary.finished_at = time.monotonic()
    return summary
