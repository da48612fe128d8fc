"""`viewfinder merge`: the outputs of a job's shards joined into one file, every id once.

```
viewfinder batch photos/ --shard 1/3 --out shard-1.jsonl      # on host 1 (and 2/3, 3/3)
viewfinder merge results.jsonl shard-1.jsonl shard-2.jsonl shard-3.jsonl --expect-shards 3
```

A sub-command of its own rather than `batch --merge`: it reads outputs, not images, so it
takes none of `batch`'s options, and it joins `viewfinder embed` outputs as well (any file
of `viewfinder.batch.records` lines, in every shape `record_outcome` reads).

Each id's line in the output: its last ok line (in argument order, then line order, as a
resume reads a file), else, when no shard analysed it, its last error line, so every id
appears exactly once. Lines are copied byte for byte, in the order of
the inputs. A torn last line of an input (a crash mid-write) is skipped and said; lines
that are not records are left out and counted. Inputs are only read (a torn line is not
cut off, unlike a `batch` resume), and `OUT` is written whole to a temporary file beside
it, then renamed over it, under `OUT`'s writer lock (`viewfinder.batch.locks`).

Said, and exit 1: ids in more than one input (the shards were run on different inputs or
with different N), ids whose every line is an error, torn or unreadable lines, and with
`--expect-shards N`: lines in a file that another shard owns (a file's shard is the one
most of its ids hash to, `viewfinder.batch.shard`) and shards that no file holds.

Memory: one index entry per id, the id string and one packed int (where its winning line
starts, in which file, whether it is ok, the last file it was seen in): about 125 bytes
plus the id's length per id, measured with tracemalloc (some 1.7 GB for ten million ids
of 50 characters); the lines themselves are never held. The copy then keeps 8 bytes per
id (the winning lines' offsets; the index is freed first) and sorts one input's offsets
at a time.

Exit codes: 0 when every id has one ok line and nothing was off, 1 when something was off
(said on stderr; the output is still written), 2 for usage errors (a missing input, `OUT`
among the inputs, `OUT` being written by a running batch).
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, BinaryIO, Final

import typer
from rich.console import Console
from rich.text import Text

from viewfinder.batch.records import record_outcome
from viewfinder.batch.shard import MAX_SHARDS, shard_of
from viewfinder.cli.options import EXIT_IMAGE_FAILED, EXIT_OK, usage_exit
from viewfinder.errors import UserError

__all__ = ["MergeReport", "merge_outputs", "register"]

_EXAMPLES: Final = 5
"""Ids named in each problem's message (the count says how many there are)."""

# The index's packed entry, low bits first: multi (1 bit: seen in more than one input),
# ok (1 bit: the winning line is ok), the last input it was seen in (16 bits), the input of
# the winning line (16 bits), then the winning line's byte offset.
_FILE_BITS: Final = 16
_MAX_INPUTS: Final = 1 << _FILE_BITS
_FILE_MASK: Final = _MAX_INPUTS - 1
_SEEN_SHIFT: Final = 2
_WIN_SHIFT: Final = _SEEN_SHIFT + _FILE_BITS
_OFFSET_SHIFT: Final = _WIN_SHIFT + _FILE_BITS


def _pack(offset: int, win: int, seen: int, ok: bool, multi: bool) -> int:
    return offset << _OFFSET_SHIFT | win << _WIN_SHIFT | seen << _SEEN_SHIFT | ok << 1 | int(multi)


@dataclass
class MergeReport:
    """What a merge found and wrote.

    Attributes:
        ids: Ids written (one line each).
        ok: Of them, those whose line is ok.
        lines: Record lines read from the inputs.
        torn: Inputs whose torn last line was skipped.
        unreadable: Lines that are not records, per input (left out).
        duplicates: Ids found in more than one input.
        duplicate_examples: The first few of them.
        misplaced: With `expect_shards`: per input, its shard and how many of its lines
            another shard owns, with one such id.
        missing_shards: With `expect_shards`: shards no input holds.
    """

    ids: int = 0
    ok: int = 0
    lines: int = 0
    torn: list[Path] = field(default_factory=list)
    unreadable: dict[Path, int] = field(default_factory=dict)
    duplicates: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    misplaced: list[tuple[Path, int, int, str]] = field(default_factory=list)
    missing_shards: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Ids whose every line is an error (their last error line is written)."""
        return self.ids - self.ok

    def problems(self, expect_shards: int | None = None) -> list[str]:
        """One sentence per thing that is off; empty when the merge is clean."""
        said: list[str] = []
        if self.duplicates:
            said.append(
                f"{self.duplicates} ids are in more than one input (were the shards run on "
                f"the same inputs, with the same N?), e.g. {_names(self.duplicate_examples)}"
            )
        if self.failed:
            said.append(
                f"{self.failed} ids failed in every input (their last error line is kept; "
                "re-run their shard to retry them)"
            )
        for path in self.torn:
            said.append(f"{path}: a torn last line (a write cut short) was skipped")
        for path, count in self.unreadable.items():
            said.append(f"{path}: {count} lines that are not records were left out")
        for path, shard, count, example in self.misplaced:
            said.append(
                f"{path} holds shard {shard}/{expect_shards}, but {count} of its lines "
                f"belong to other shards, e.g. {example!r}"
            )
        if self.missing_shards:
            shards = ", ".join(f"{i}/{expect_shards}" for i in self.missing_shards)
            said.append(f"no input holds shard {shards} (missing, or it had no inputs)")
        return said


def _names(idents: list[str]) -> str:
    return ", ".join(repr(ident) for ident in idents)


def _whole_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """`(offset, line)` of each whole line; stops before a torn last line."""
    offset = 0
    for line in stream:
        if not line.endswith(b"\n"):
            return
        yield offset, line
        offset += len(line)


def merge_outputs(
    out: Path, inputs: Sequence[Path], expect_shards: int | None = None
) -> MergeReport:
    """Write every id of `inputs` once to `out` (the module docstring says which line).

    Two streaming passes over the inputs: the first indexes each id's winning line, the
    second copies the winning lines; `out` is replaced only once it is whole.

    Raises:
        ValueError: More than 65,536 inputs.
        OSError: An input could not be read, or `out` written.
    """
    if len(inputs) > _MAX_INPUTS:
        raise ValueError(f"at most {_MAX_INPUTS} inputs, not {len(inputs)}")
    report = MergeReport()
    index: dict[str, int] = {}
    held: set[int] = set()  # the shards the inputs hold (`expect_shards`)
    for number, path in enumerate(inputs):
        shards: Counter[int] = Counter()
        first_of: dict[int, str] = {}  # shard -> the first id of it, for the message
        with path.open("rb") as stream:
            end = 0
            for offset, line in _whole_lines(stream):
                end = offset + len(line)
                if not line.strip():
                    continue
                try:
                    outcome = record_outcome(json.loads(line))
                except ValueError:
                    outcome = None
                if outcome is None:
                    report.unreadable[path] = report.unreadable.get(path, 0) + 1
                    continue
                report.lines += 1
                ident, ok = outcome.id, outcome.ok
                if expect_shards is not None:
                    shard = shard_of(ident, expect_shards)
                    shards[shard] += 1
                    first_of.setdefault(shard, ident)
                entry = index.get(ident)
                if entry is None:
                    index[ident] = _pack(offset, number, number, ok, False)
                    continue
                multi = bool(entry & 1)
                if not multi and (entry >> _SEEN_SHIFT) & _FILE_MASK != number:
                    multi = True
                    report.duplicates += 1
                    if len(report.duplicate_examples) < _EXAMPLES:
                        report.duplicate_examples.append(ident)
                if ok or not (entry >> 1) & 1:  # an ok line beats an error; the later wins
                    index[ident] = _pack(offset, number, number, ok, multi)
                else:
                    kept = entry >> _WIN_SHIFT
                    index[ident] = kept << _WIN_SHIFT | number << _SEEN_SHIFT | 2 | int(multi)
            if stream.seek(0, os.SEEK_END) > end:
                report.torn.append(path)
        if shards:
            assert expect_shards is not None
            (own, _), *_ = shards.most_common(1)
            others = sum(shards.values()) - shards[own]
            if others:
                example = next(first_of[shard] for shard in first_of if shard != own)
                report.misplaced.append((path, own, others, example))
            held.add(own)
    if expect_shards is not None:
        report.missing_shards = [i for i in range(1, expect_shards + 1) if i not in held]

    winners = [array("q") for _ in inputs]  # per input, the offsets of its winning lines
    for entry in index.values():
        winners[(entry >> _WIN_SHIFT) & _FILE_MASK].append(entry >> _OFFSET_SHIFT)
        report.ok += (entry >> 1) & 1
    report.ids = len(index)
    del index
    _copy(out, inputs, winners)
    return report


def _copy(out: Path, inputs: Sequence[Path], winners: list[array[int]]) -> None:
    """Copy the lines at `winners`' offsets from each input, in order, into `out`."""
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(handle, "wb") as target:
            for path, offsets in zip(inputs, winners, strict=True):
                wanted = iter(sorted(offsets))
                del offsets[:]
                next_offset = next(wanted, None)
                with path.open("rb") as stream:
                    for offset, line in _whole_lines(stream):
                        if next_offset is None:
                            break
                        if offset == next_offset:
                            target.write(line)
                            next_offset = next(wanted, None)
            target.flush()
            os.fsync(target.fileno())
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- the command --------------------------------------------------------------------------


def merge(
    out: Annotated[
        Path,
        typer.Argument(
            help="The merged JSON Lines file (replaced).",
            metavar="OUT.jsonl",
            dir_okay=False,
            show_default=False,
        ),
    ],
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="The shards' outputs (of `batch --shard` or `embed --shard`).",
            metavar="SHARD.jsonl...",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ],
    expect_shards: Annotated[
        int | None,
        typer.Option(
            help="Check that each input holds one shard of N and that no shard is missing.",
            metavar="N",
            min=1,
            max=MAX_SHARDS,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Join shard outputs into one file with every id once (ok lines win over errors).

    Exit status: 0 when every id is ok and nothing was off, 1 when something was off (said
    on stderr; the output is still written), 2 for usage errors.
    """
    from viewfinder.batch.locks import WriterLock  # filelock, socket: when the command runs

    err = Console(stderr=True, highlight=False)

    if out.exists() and any(out.samefile(path) for path in inputs):
        raise usage_exit(err, f"{out} is one of the inputs: merge into a new file")
    lock = WriterLock(out, hint="wait for it or choose another OUT")
    try:
        lock.acquire()
        try:
            report = merge_outputs(out, inputs, expect_shards)
        finally:
            lock.release()
    except (UserError, OSError, ValueError) as exc:
        raise usage_exit(err, str(exc)) from None
    err.print(
        Text(
            f"merge: {report.ids} ids ({report.ok} ok, {report.failed} failed) from "
            f"{len(inputs)} inputs ({report.lines} lines) into {out}"
        ),
        soft_wrap=True,
    )
    problems = report.problems(expect_shards)
    for problem in problems:
        err.print(Text(f"warning: {problem}", style="yellow"), soft_wrap=True)
    raise typer.Exit(EXIT_IMAGE_FAILED if problems else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add the `merge` command to `app`."""
    app.command("merge")(merge)
