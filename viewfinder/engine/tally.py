"""`RunTally`: the counts and clock of a streamed run, shared by `viewfinder batch`'s
`BatchSummary` and `viewfinder embed`'s `EmbedSummary` (each adds its own usage type).

Light on purpose (errors only): the command line's summaries import it before `--help`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

from viewfinder.errors import BudgetExceededError

__all__ = ["FAILURE_EXAMPLES", "FailureGroup", "RunTally"]

FAILURE_EXAMPLES: Final = 3
"""Ids kept per error type: enough to find the images, bounded however many fail."""


@dataclass
class FailureGroup:
    """The failures of one error type in a run.

    Attributes:
        count: Inputs that failed with it.
        examples: The first `FAILURE_EXAMPLES` of their ids, as printable strings.
    """

    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class RunTally:
    """The counts and clock of a streamed run, updated as items are yielded: what a batch
    summary and an embedding run's summary share (each adds its own `usage`).

    Attributes:
        ok: Inputs done.
        failed: Inputs that failed (each yielded with its error).
        cached: Done inputs answered from the cache (no request sent).
        dollars: Dollars spent on the priced part of the usage.
        unpriced: Items (or requests) that spent on a model with no price.
        not_started: Inputs never started because the budget was reached.
        budget_error: The error that stopped the run, if its budget was reached.
        failures: Failed inputs by error type name (`note_failure`), in first-seen order,
            for a summary that says what went wrong, not only how often.
        started_at: `time.monotonic()` when the run started.
        finished_at: `time.monotonic()` when it ended; None while it runs.
    """

    ok: int = 0
    failed: int = 0
    cached: int = 0
    dollars: float = 0.0
    unpriced: int = 0
    not_started: int = 0
    budget_error: BudgetExceededError | None = None
    failures: dict[str, FailureGroup] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    def note_failure(self, error: BaseException, ident: object) -> None:
        """Count one failed input, under its error's type name."""
        self.failed += 1
        group = self.failures.setdefault(type(error).__name__, FailureGroup())
        group.count += 1
        if len(group.examples) < FAILURE_EXAMPLES:
            group.examples.append(str(ident))

    @property
    def done(self) -> int:
        """Items yielded so far (done or failed)."""
        return self.ok + self.failed

    @property
    def complete(self) -> bool:
        """True when every input was done: none failed, none left unstarted."""
        return not self.failed and not self.not_started

    @property
    def elapsed(self) -> float:
        """Seconds since the start (until the end, once finished)."""
        return (self.finished_at or time.monotonic()) - self.started_at

    @property
    def per_minute(self) -> float:
        """Items yielded per minute so far."""
        return self.done * 60.0 / self.elapsed if self.elapsed > 0 else 0.0
