"""`progress=` of the streamed runs (`analyze_many`, `aanalyze_many`, `embed_many`,
`aembed_many`): a tqdm-compatible progress object, fed in the caller's thread as each
item is handed over.

What `progress` may be:

- `None` or `False`: nothing (the default);
- `True`: a default bar on stderr, drawn by rich (already a dependency; tqdm is not),
  with n of N, percentage, ETA, failures and dollars; closed when the run ends;
- a tqdm-like object, e.g. `tqdm(desc="photos")`: anything with `update(n)`. When its
  `total` is None and the images have a `len()`, `total` is set to it (then `refresh()`,
  if it has one). After each item, `set_postfix_str("2 failed, $0.0123")` is called if
  it has one, else `set_postfix(failed=..., dollars=...)` if it has that. It is NOT
  closed: it is yours (`with tqdm(...) as bar:` closes it), as after `bar.update` loops.

Light: rich is imported only for `progress=True`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sized
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from viewfinder.errors import InvalidOptionError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from viewfinder.engine.tally import RunTally

__all__ = ["ProgressArg", "ProgressFeed", "ProgressLike", "total_of"]

T = TypeVar("T")


@runtime_checkable
class ProgressLike(Protocol):
    """What a progress object needs: tqdm's `update(n)`."""

    def update(self, n: int = 1) -> Any:
        """Advance by `n` items."""


ProgressArg: TypeAlias = "bool | ProgressLike | None"
"""`progress=`: a tqdm-like object, True for the default bar, or None/False for none."""


def total_of(images: object) -> int | None:
    """How many images a run will take, when the iterable knows (`len()`), else None."""
    return len(images) if isinstance(images, Sized) else None


class _RichBar:
    """The default bar (`progress=True`): rich on stderr, driven like a tqdm."""

    def __init__(self, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self.total = total
        self._progress: Progress = Progress(
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[postfix]}"),
            console=Console(stderr=True),
        )
        self._progress.start()
        self._task: TaskID = self._progress.add_task("images", total=total, postfix="")

    def update(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def set_postfix_str(self, text: str) -> None:
        self._progress.update(self._task, postfix=text)

    def close(self) -> None:
        self._progress.stop()


class ProgressFeed:
    """Feeds a run's progress object: one `item()` per item handed over, `close()` at
    the end (closes only the default bar, never a caller's object).

    Raises:
        InvalidOptionError: `progress` is neither a bool, None, nor has `update`.
    """

    def __init__(self, progress: ProgressArg, total: int | None) -> None:
        self._owned = progress is True
        self._bar: Any = None
        if progress is None or progress is False:
            return
        if progress is True:
            self._bar = _RichBar(total)
            return
        if not isinstance(progress, ProgressLike):
            raise InvalidOptionError(
                "progress must be True, False, None or an object with update(n) (e.g. a "
                f"tqdm), not {type(progress).__name__}"
            )
        self._bar = progress
        if total is not None and getattr(progress, "total", 0) is None:
            progress.total = total  # type: ignore[attr-defined]
            refresh = getattr(progress, "refresh", None)
            if callable(refresh):
                refresh()

    def item(self, tally: RunTally) -> None:
        """One more item handed over; `tally` already counts it."""
        bar = self._bar
        if bar is None:
            return
        bar.update(1)
        postfix = f"{tally.failed} failed, ${tally.dollars:.4f}"
        if callable(getattr(bar, "set_postfix_str", None)):
            bar.set_postfix_str(postfix)
        elif callable(getattr(bar, "set_postfix", None)):
            bar.set_postfix(failed=tally.failed, dollars=round(tally.dollars, 4))

    def next_of(self, items: Iterator[T], tally: RunTally) -> T:
        """The run's next item, fed to the progress object in the caller's thread (as tqdm
        wants); the end, an error or Ctrl-C closes the feed."""
        try:
            item = next(items)
        except BaseException:
            self.close()
            raise
        self.item(tally)
        return item

    async def anext_of(self, items: AsyncIterator[T], tally: RunTally) -> T:
        """`next_of` for an async run."""
        try:
            item = await anext(items)
        except BaseException:
            self.close()
            raise
        self.item(tally)
        return item

    def close(self) -> None:
        """The run ended (or was closed): stop the default bar; idempotent."""
        if self._owned and self._bar is not None:
            self._bar.close()
        self._bar = None
