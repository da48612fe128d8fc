"""A long run's progress on stderr, shared by `viewfinder batch` and `viewfinder embed`
(and by any command that streams items and keeps a `viewfinder.engine.tally.RunTally`).

```
snapshot = lambda: Snapshot.of(run.summary, total=120)
interrupted = write_all(run, write, err, "batch", snapshot, interval=10, quiet=False)
err.print(failure_text(run.summary))   # and interrupted_text(snapshot()) after a Ctrl-C
```

(`write_all` shows a `RunDisplay` and holds Ctrl-C off each line; `compare`, which writes
from a callback, uses `RunDisplay` and `Interrupts` itself.)

- On a terminal: a live rich bar (transient: the summary replaces it): n of N,
  percentage, images/min, ETA, dollars so far, failures, the limiter's pace and 429s.
- Off a terminal (stderr a file or a pipe: CI logs, nohup): a plain line when the run
  starts and then every `interval` seconds, from a ticker thread too, so a run waiting on
  a rate limit still shows it is alive (`interval=0`: one line per item, no thread).
- `quiet=True`: nothing (the caller still prints its summary).

`Interrupts` makes Ctrl-C stop a run between two output lines, never inside one, and
`interrupted_text` says how far it got. Light on purpose (rich, the standard library):
command modules import it before `--help`.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Final, TypeVar

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from viewfinder.engine.tally import RunTally

__all__ = [
    "DEFAULT_INTERVAL",
    "Interrupts",
    "RunDisplay",
    "Snapshot",
    "duration_text",
    "failure_lines",
    "failure_text",
    "interrupted_text",
    "write_all",
]

DEFAULT_INTERVAL: Final = 10.0
"""Seconds between two plain progress lines off a terminal: a line per screenful of a CI
log every few minutes, not one per image."""


def duration_text(seconds: float) -> str:
    """`4m05s`, or `1h02m` from an hour on."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@dataclass(frozen=True)
class Snapshot:
    """Where a run stands: what the display shows.

    Attributes:
        done: Inputs finished in this run (ok or failed).
        failed: Of `done`, those that failed.
        cached: Of `done`, those answered from the cache.
        total: Inputs this run will do (what a resume skips left out), if known.
        elapsed: Seconds since the run started.
        dollars: Spent so far.
        skipped: Inputs an earlier run already did (not in `done` nor `total`).
        pace: The limiter's state, e.g. `500 rpm, 3 x 429`, when known.
    """

    done: int
    failed: int
    cached: int
    total: int | None
    elapsed: float
    dollars: float
    skipped: int = 0
    pace: str | None = None

    @classmethod
    def of(
        cls, tally: RunTally, *, total: int | None, skipped: int = 0, limiter: object = None
    ) -> Snapshot:
        """The snapshot of a running tally (`BatchSummary`, `EmbedSummary`); `limiter` is
        the run's gate: a `RateLimiter` gives the pace and the 429s seen."""
        from viewfinder.engine.ratelimit import RateLimiter  # the engine: when a run shows

        pace = None
        if isinstance(limiter, RateLimiter):
            stats = limiter.stats
            rpm = "unpaced" if stats.rpm is None else f"{stats.rpm:.0f} rpm"
            pace = f"{rpm}, {stats.rate_limited} x 429"
        return cls(
            done=tally.done,
            failed=tally.failed,
            cached=tally.cached,
            total=total,
            elapsed=tally.elapsed,
            dollars=tally.dollars,
            skipped=skipped,
            pace=pace,
        )

    @property
    def per_minute(self) -> float:
        """Inputs finished per minute so far."""
        return self.done * 60.0 / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far, when the total is known and a rate exists."""
        if self.total is None or not self.done or self.elapsed <= 0:
            return None
        return max(self.total - self.done, 0) * self.elapsed / self.done

    def count_text(self) -> str:
        """`16 of 120 (13%)`, or `16 done` without a total."""
        if self.total is None:
            return f"{self.done} done"
        percent = 100 * self.done // self.total if self.total else 100
        return f"{self.done} of {self.total} ({percent}%)"

    def stats_text(self) -> str:
        """Everything but the count: failures, cache, rate, ETA, dollars, pace."""
        parts = [f"{self.failed} failed", f"{self.cached} cached"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        parts.append(f"{self.per_minute:.0f} images/min")
        eta = self.eta
        if eta is not None:
            parts.append(f"ETA {duration_text(eta)}")
        parts.append(f"${self.dollars:.4f}")
        if self.pace is not None:
            parts.append(self.pace)
        return " · ".join(parts)


class RunDisplay:
    """A run's progress on `console`: a live bar on a terminal, plain lines off one.

    Args:
        console: Where to show it (stderr).
        label: The command, first on every line (`batch`, `embed`).
        snapshot: Where the run stands now; called from the caller's thread and, off a
            terminal, from the ticker thread (it should only read counters).
        interval: Seconds between plain lines off a terminal; 0 for one line per item.
        quiet: Show nothing.
    """

    def __init__(
        self,
        console: Console,
        label: str,
        snapshot: Callable[[], Snapshot],
        *,
        interval: float = DEFAULT_INTERVAL,
        quiet: bool = False,
    ) -> None:
        self._console = console
        self._label = label
        self._snapshot = snapshot
        self._interval = interval
        self._mode = "quiet" if quiet else "bar" if console.is_terminal else "lines"
        self._lock = threading.Lock()
        self._last_line = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> RunDisplay:
        if self._mode == "bar":
            from rich.progress import (  # only on a terminal: `--help` stays light
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
            )

            self._bar = Progress(
                TextColumn(self._label),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[stats]}"),
                console=self._console,
                transient=True,
            )
            self._bar.__enter__()
            now = self._snapshot()
            self._task = self._bar.add_task(self._label, total=now.total, stats="starting")
        elif self._mode == "lines":
            self._line()
            if self._interval > 0:
                self._ticker = threading.Thread(
                    target=self._tick, name="viewfinder-progress", daemon=True
                )
                self._ticker.start()
        return self

    def advance(self) -> None:
        """After each item: move the bar, or print a line if one is due."""
        if self._bar is not None and self._task is not None:
            now = self._snapshot()
            self._bar.update(
                self._task, completed=now.done, total=now.total, stats=now.stats_text()
            )
        elif self._mode == "lines" and time.monotonic() - self._last_line >= self._interval:
            self._line()

    def _line(self) -> None:
        with self._lock:
            now = self._snapshot()
            self._console.print(
                Text(f"{self._label}: {now.count_text()} · {now.stats_text()}"), soft_wrap=True
            )
            self._last_line = time.monotonic()

    def _tick(self) -> None:
        """Off a terminal: a line every `interval`, also while no item arrives."""
        while not self._stop.wait(self._interval):
            if time.monotonic() - self._last_line >= self._interval:
                self._line()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, traceback)


def failure_lines(tally: RunTally) -> list[str]:
    """The failed inputs grouped by error type, most frequent first, a few ids each.

    Returns:
        E.g. `["ImageFormatError: 2 (photos/a.png, photos/b.png)", ...]`; empty when
        nothing failed.
    """
    lines = []
    for name, group in sorted(tally.failures.items(), key=lambda entry: -entry[1].count):
        shown = ", ".join(group.examples)
        more = ", ..." if group.count > len(group.examples) else ""
        lines.append(f"{name}: {group.count} ({shown}{more})")
    return lines


def failure_text(tally: RunTally) -> str:
    """`failed by error type:` and `failure_lines`, indented; empty when none failed."""
    lines = failure_lines(tally)
    return "\n".join(["failed by error type:", *(f"  {line}" for line in lines)]) if lines else ""


def interrupted_text(now: Snapshot) -> str:
    """What Ctrl-C left: `interrupted after 16 of 120; re-run the same command to resume`."""
    count = f"{now.done} of {now.total}" if now.total is not None else str(now.done)
    return f"interrupted after {count}; re-run the same command to resume"


class Interrupts:
    """Ctrl-C (SIGINT) as `KeyboardInterrupt`, but never inside a `held()` block (an
    output line being written): there it waits for the block's end, so the file keeps
    whole lines. Only the main thread can install it; elsewhere it changes nothing. It is
    installed even where SIGINT was ignored (a job started in the background by a
    non-interactive shell): an explicit `kill -INT` then stops the run as Ctrl-C does, and
    the previous disposition comes back on exit."""

    def __init__(self) -> None:
        self._holding = False
        self._pending = False
        self._previous: object = None
        self._installed = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._holding:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._installed = False

    @contextmanager
    def held(self) -> Iterator[None]:
        """A block Ctrl-C does not cut: an interrupt inside it is raised at its end."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt


T = TypeVar("T")


def write_all(
    items: Iterable[T],
    write: Callable[[T], None],
    console: Console,
    label: str,
    snapshot: Callable[[], Snapshot],
    *,
    interval: float,
    quiet: bool,
) -> bool:
    """Write each item as it comes, whole (Ctrl-C waits for the line), with the run's
    progress on `console` (`RunDisplay`): the loop `batch` and `embed` share.

    Returns:
        True when Ctrl-C stopped it (the caller then cancels what is in flight), False
        when every item was written.
    """
    display = RunDisplay(console, label, snapshot, interval=interval, quiet=quiet)
    with Interrupts() as interrupts, display:
        try:
            for item in items:
                with interrupts.held():
                    write(item)
                display.advance()
        except KeyboardInterrupt:
            return True
    return False
