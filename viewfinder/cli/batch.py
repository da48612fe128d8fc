"""`viewfinder batch`: many images into a JSON Lines file, resumable after any kill.

```
viewfinder batch photos/ --out results.jsonl -f caption,tags --concurrency 16
viewfinder batch 'scans/**/*.png' --out scans.jsonl --rpm 500 --max-dollars 20
find /data -name '*.jpg' | viewfinder batch - --out results.jsonl
```

Inputs are a directory (walked recursively for image files), a glob, a single image,
or a text file listing one path or http(s) URL per line (`-` reads the list from
stdin). They are streamed, never listed whole.

Each image gives one line, `viewfinder.batch.records.BatchItem.to_record()` (the same
with `--via batch-api`): `{"id", "index", "source", "sha256", "status": "ok"|"error",
"result" | "error": {"type", "message", ...attributes}, "usage", "cost", "batch_priced",
"custom_id", "id_version": 2}`, written whole, flushed and fsynced: a kill loses at
most the requests in flight and never leaves a torn line behind (a torn last line from a
crash mid-write is cut off on the next start). On a re-run the images whose latest line
is "ok" are skipped, and the others are tried again (the new line is appended; the
latest line wins).

Ids: a path (normalised), or a URL as `viewfinder.prepare.redact.safe_url` prints it: the query
string is kept, so `img?id=1` and `img?id=2` are two images, but the values of
signature-like parameters (`sig`, `token`, `X-Amz-Signature`...) are replaced by a short
digest, so no secret reaches the file. Lines in every earlier shape are read on resume
(`viewfinder.batch.records.record_outcome`). Lines without `"id_version"` were written
when URL ids had no query string at all; on resuming such a file, a URL whose query-less id is
"ok" there counts as done (that run could not tell its query variants apart), and the
summary says how many were skipped that way.

Across hosts: `--shard I/N` takes only the inputs whose id hashes to shard I of N
(`viewfinder.batch.shard`: SHA-256 of the id, never Python's salted `hash()`), so N hosts
given the same input arguments split one job with no coordination, each writing its own
`--out`; the progress total, the run and its resume see only that shard's ids.
`viewfinder merge` joins the outputs (`viewfinder.cli.merge`). The ids are the paths as
given, so every host must name the inputs the same way (`photos/` on one and
`/data/photos/` on another are different ids, and a different split).

One run at a time per output file: the run holds an OS lock on `OUT.lock` (dropped by the
kernel however the process ends, kill -9 included) and records itself in
`OUT.lock.json`; a second run on the same `--out` exits at once with code 2, naming the
first (its pid, host, start time and command).

Progress (`viewfinder.cli.progress`): a live bar on a terminal, plain lines every
`--progress-every` seconds off one, nothing with `--quiet`; its total is counted by one
listing of the inputs before the run (not for stdin), less what a resume skips. The
summary lists the failed images grouped by error type.

Ctrl-C stops the run between two lines: the images in flight are cancelled (answers
already received are in the cache, so a re-run does not pay for them twice), the file
keeps whole lines, and the command says how far it got and exits 130.

Exit codes: 0 when every image is analysed (now or before), 1 when any failed or the
budget stopped the batch before every image was started, 2 for usage and
configuration errors, 130 when Ctrl-C stopped it.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeAlias

import typer
from rich.console import Console
from rich.text import Text

from viewfinder.analyzers.features import Feature
from viewfinder.batch.records import BatchInput, BatchSummary, record_outcome
from viewfinder.batch.settings import DEFAULT_CONCURRENCY
from viewfinder.batch.shard import Shard
from viewfinder.cli.batch_api import progress_text
from viewfinder.cli.options import (
    EXIT_IMAGE_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    AllowHostOption,
    AnswerFormatChoice,
    AnswerFormatOption,
    BaseUrlOption,
    BoxConventionOption,
    ConcurrencyOption,
    FeaturesHelp,
    ModelOption,
    NoCacheOption,
    ProgressEveryOption,
    ProgressOption,
    ReadGeometryChoice,
    ReadGeometryOption,
    RedisOption,
    RpmOption,
    allow_hosts_of,
    features_callback,
    features_of,
    rate_limiter,
    shared_redis,
    usage_exit,
)
from viewfinder.cli.progress import (
    DEFAULT_INTERVAL,
    Snapshot,
    duration_text,
    failure_text,
    interrupted_text,
    write_all,
)
from viewfinder.errors import InvalidOptionError, UserError, ViewfinderError
from viewfinder.prepare.inputs import has_image_suffix, is_url
from viewfinder.prepare.redact import legacy_url_id, safe_url

if TYPE_CHECKING:  # the engine (openai, instructor): imported when the command runs
    from viewfinder.analyzers.image_analysis import ImageAnalyzer

__all__ = [
    "JsonlWriter",
    "ShardOption",
    "SourceLike",
    "classify_source",
    "count_pending",
    "duration_text",
    "iter_sources",
    "read_done_ids",
    "register",
    "sharded",
]

# The same codes as `viewfinder.cli` (not imported from there: cli imports this module).

_GLOB_CHARS = re.compile(r"[*?\[]")


class Via(StrEnum):
    """How requests are sent: one chat completion per image, or the provider's Batch API."""

    ONLINE = "online"
    BATCH_API = "batch-api"


class Rerun(StrEnum):
    """What `--via batch-api` does with items the batch could not answer."""

    ONLINE = "online"
    BATCH = "batch"
    NONE = "none"


# --- inputs -----------------------------------------------------------------------------


def _entry(line: str) -> tuple[str, str]:
    """`(id, image)` for a path or URL: a URL's id keeps its query, secrets digested."""
    return (safe_url(line), line) if is_url(line) else (os.path.normpath(line), line)


def _walk(directory: str) -> Iterator[tuple[str, str]]:
    """Image files under `directory`, depth first, one `os.scandir` at a time."""
    pending = [directory]  # directories still to read: memory grows with depth x breadth
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue  # unreadable directory: nothing to analyse in it
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif has_image_suffix(entry.name):
                    yield _entry(entry.path)


def _lines(stream: Iterator[str]) -> Iterator[tuple[str, str]]:
    for raw in stream:
        line = raw.strip()
        if line and not line.startswith("#"):
            yield _entry(line)


def _list_file(path: str) -> Iterator[tuple[str, str]]:
    with open(path, encoding="utf-8") as stream:
        yield from _lines(stream)


def _globbed(pattern: str) -> Iterator[tuple[str, str]]:
    for match in glob.iglob(pattern, recursive=True):
        if os.path.isfile(match):
            yield _entry(match)


class SourceLike(Protocol):
    """An input argument: its `(id, image)` items, and whether it can be read twice."""

    @property
    def countable(self) -> bool:
        """True when `items()` may be called twice (to count, then to run)."""

    def items(self) -> Iterator[tuple[str, str]]:
        """`(id, image)` for every image it names, lazily."""


@dataclass(frozen=True)
class _Source:
    """One command-line argument: what it is, and how many images it holds if cheap."""

    argument: str
    kind: str  # "stdin", "directory", "image", "list", "glob"

    def items(self) -> Iterator[tuple[str, str]]:
        if self.kind == "stdin":
            return _lines(iter(sys.stdin))
        if self.kind == "directory":
            return _walk(self.argument)
        if self.kind == "image":
            return iter([_entry(self.argument)])
        if self.kind == "list":
            return _list_file(self.argument)
        return _globbed(self.argument)

    @property
    def countable(self) -> bool:
        """True when it can be read twice: once to count, once to run (not stdin)."""
        return self.kind != "stdin"


def classify_source(argument: str) -> _Source:
    """Raises `InvalidOptionError` for an argument that names nothing."""
    if argument == "-":
        return _Source(argument, "stdin")
    if is_url(argument):
        return _Source(argument, "image")
    if os.path.isdir(argument):
        return _Source(argument, "directory")
    if os.path.isfile(argument):
        return _Source(argument, "image" if has_image_suffix(argument) else "list")
    if _GLOB_CHARS.search(argument):
        return _Source(argument, "glob")
    raise InvalidOptionError(f"{argument}: no such file, directory or list")


@dataclass(frozen=True)
class _ShardOf:
    """The items of `source` that `shard` takes (by the hash of their id), as a source."""

    source: SourceLike
    shard: Shard

    @property
    def countable(self) -> bool:
        return self.source.countable

    def items(self) -> Iterator[tuple[str, str]]:
        return (item for item in self.source.items() if self.shard.takes(item[0]))


def sharded(sources: Sequence[SourceLike], shard: Shard | None) -> list[SourceLike]:
    """`sources` with only `shard`'s items (`viewfinder.batch.shard`); all of them for None.

    Everything after reads the filtered sources (the progress count, the run, what a
    resume skips), so a shard counts, runs and resumes only its own ids.
    """
    if shard is None or shard.count == 1:
        return list(sources)
    return [_ShardOf(source, shard) for source in sources]


def _parse_shard(value: str | None) -> Shard | None:
    if value is None:
        return None
    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


ShardOption: TypeAlias = Annotated[
    Shard | None,
    typer.Option(
        help="Take only shard I of N (e.g. 2/8), chosen by a stable hash of each input's id: "
        "N hosts given the same inputs split the job, each with its own --out; join the "
        "outputs with `viewfinder merge`.",
        metavar="I/N",
        parser=_parse_shard,
        show_default=False,
    ),
]
"""`--shard I/N` of `batch` and `embed`."""


def iter_sources(arguments: Sequence[str]) -> Iterator[tuple[str, str]]:
    """`(id, image)` for every image the arguments name, lazily, in argument order.

    Raises:
        InvalidOptionError: An argument names nothing (checked before anything is read).
    """
    sources = [classify_source(argument) for argument in arguments]
    return (item for source in sources for item in source.items())


# --- the output file --------------------------------------------------------------------


def read_done_ids(path: Path, legacy: set[str] | None = None) -> tuple[set[str], bool]:
    """Ids whose latest line in `path` is "ok", read streaming; cuts off a torn last line.

    Lines of every shape viewfinder wrote count (`viewfinder.batch.records.record_outcome`).

    Memory: one string per finished image (about 100 bytes with the set's overhead for
    a short path, so some 1 GB for ten million images); the lines themselves are not kept.

    Args:
        path: The output file.
        legacy: If given, receives the URL ids among them whose latest line has no
            `"id_version"` (written when URL ids had no query string).

    Returns:
        The ids to skip, and whether a torn last line was cut off.
    """
    done: set[str] = set()
    if not path.exists():
        return done, False
    good_end = 0
    torn = False
    with path.open("rb") as stream:
        for line in stream:
            if not line.endswith(b"\n"):
                torn = True  # a write cut short: only ever the last line
                break
            good_end += len(line)
            try:
                outcome = record_outcome(json.loads(line))
            except ValueError:
                continue
            if outcome is None:
                continue
            ident = outcome.id
            if outcome.ok:
                done.add(ident)
            else:
                done.discard(ident)
            if legacy is not None:
                if outcome.ok and outcome.id_version == 1 and is_url(ident):
                    legacy.add(ident)
                else:
                    legacy.discard(ident)
    if torn:
        os.truncate(path, good_end)
    return done, torn


class JsonlWriter:
    """Appends whole lines, each flushed and fsynced before the next is written."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("ab", buffering=0)

    def write(self, record: dict[str, Any]) -> None:
        """Append `record` as one line."""
        view = memoryview((json.dumps(record, ensure_ascii=False) + "\n").encode())
        while view:
            written = self._file.write(view) or 0
            view = view[written:]
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


# --- progress and summary ---------------------------------------------------------------


@dataclass
class _Counts:
    skipped: int = 0
    legacy: int = 0  # of `skipped`: URLs done according to a version 1 (query-less) id


def count_pending(
    sources: Sequence[SourceLike], skip: Callable[[str, str], bool] | None = None
) -> tuple[int, int] | None:
    """`(to do, skipped)`: the images the sources name that `skip` does not skip (what a
    resume leaves to do) and those it does, counted by one listing before the run, so
    the progress has a total from the start; None when a source can only be read once
    (stdin).

    The listing is a directory walk, a glob or a list file read: seconds for a million
    files, nothing next to analysing them.
    """
    if not all(source.countable for source in sources):
        return None
    todo = skipped = 0
    for source in sources:
        for ident, image in source.items():
            if skip is not None and skip(ident, image):
                skipped += 1
            else:
                todo += 1
    return todo, skipped


def _summary_text(summary: BatchSummary, counts: _Counts, torn: bool) -> str:
    text = (
        f"batch: {summary.ok} ok, {summary.failed} failed, {summary.cached} cached, "
        f"{counts.skipped} skipped (already done), {summary.not_started} not started "
        f"(budget); {summary.usage.total_tokens} tokens "
        f"({summary.usage.input_tokens} in, {summary.usage.output_tokens} out, "
        f"{summary.usage.requests} requests), ${summary.dollars:.4f}"
    )
    if summary.unpriced:
        text += f" (+{summary.unpriced} unpriced)"
    text += f", {summary.elapsed:.1f} s"
    if counts.legacy:
        text += (
            f"; {counts.legacy} of the skipped URLs matched a line written without the "
            "query string (an older version), so their query variants count as done: "
            "use a new --out to analyse them"
        )
    if torn:
        text += "; repaired a torn last line of the output"
    if summary.budget_error is not None and summary.not_started:
        text += f"\nstopped: {summary.budget_error}"
    failures = failure_text(summary)
    if failures:
        text += f"\n{failures}"
    return text


# --- the command --------------------------------------------------------------------------


def batch(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Directories, globs, image files, or list files of paths/URLs ('-': stdin).",
            metavar="DIR|GLOB|LIST",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="JSON Lines file to append to; re-runs skip what it holds as ok.",
            dir_okay=False,
            show_default=False,
        ),
    ],
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    features: Annotated[
        list[str] | None,
        typer.Option(
            "--features",
            "-f",
            help=FeaturesHelp,
            callback=features_callback,
            metavar="LIST",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    rpm: RpmOption = None,
    tpm: Annotated[
        int | None,
        typer.Option(help="Tokens per minute (default: learned from the headers).", min=1),
    ] = None,
    max_dollars: Annotated[
        float | None,
        typer.Option(help="Stop starting images once this many dollars are spent."),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(help="Stop starting images once this many tokens are spent.", min=1),
    ] = None,
    no_cache: NoCacheOption = False,
    via: Annotated[
        Via,
        typer.Option(
            help="online: one request per image now; batch-api: the provider's Batch API "
            "(half price, results within 24 h).",
            case_sensitive=False,
        ),
    ] = Via.ONLINE,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            help="--via batch-api: where shards and the job state live; re-run with the same "
            "one to resume without paying twice (default: OUT.batch).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(help="--via batch-api: seconds to wait for the batches.", min=1),
    ] = 26 * 3600.0,
    poll_interval: Annotated[
        float, typer.Option(help="--via batch-api: seconds between status checks.", min=0.001)
    ] = 60.0,
    rerun: Annotated[
        Rerun,
        typer.Option(
            help="--via batch-api: re-run items the batch could not answer online (with "
            "re-asks), in a follow-up batch, or not at all.",
            case_sensitive=False,
        ),
    ] = Rerun.ONLINE,
    progress: ProgressOption = True,
    progress_every: ProgressEveryOption = DEFAULT_INTERVAL,
    allow_host: AllowHostOption = None,
    answer_format: AnswerFormatOption = AnswerFormatChoice.COMPACT,
    box_convention: BoxConventionOption = None,
    read_geometry: ReadGeometryOption = ReadGeometryChoice.MODEL,
    shard: ShardOption = None,
    redis: RedisOption = None,
) -> None:
    """Analyse many images into a JSON Lines file; re-run to resume or retry failures.

    Exit status: 0 when every image is analysed (now or before), 1 when any failed or the
    budget stopped the batch first, 2 for usage errors, 130 when Ctrl-C stopped it (re-run
    the same command to resume).
    """
    from viewfinder.analyzers.image_analysis import ImageAnalyzer
    from viewfinder.batch.locks import WriterLock  # filelock, socket: when the command runs
    from viewfinder.engine.budget import Budget

    err = Console(stderr=True, highlight=False)

    try:
        sources = sharded([classify_source(argument) for argument in inputs], shard)
        shared = shared_redis(redis)
        analyzer = ImageAnalyzer(
            model=model,
            base_url=base_url,
            cache=False if no_cache else shared.cache or True,
            allow_hosts=allow_hosts_of(allow_host),
            answer_format=answer_format.value,
            box_convention=box_convention,
            read_geometry=read_geometry.value,
        )
        endpoint = analyzer.engine.provider.endpoint if analyzer.has_endpoint else None
        limiter = rate_limiter(shared.url, endpoint, analyzer.model, rpm, tpm)
    except UserError as exc:
        raise usage_exit(err, str(exc)) from None
    lock = WriterLock(out, hint="wait for it or choose another --out")
    legacy: set[str] = set()
    try:
        budget = None
        if max_dollars is not None or max_tokens is not None:
            budget = Budget(
                max_tokens=max_tokens,
                max_dollars=max_dollars,
                model=analyzer.model,
                scope="per batch",
            )
        lock.acquire()  # before reading: a torn line is only cut off by the one writer
        done_ids, torn = read_done_ids(out, legacy)
        writer = JsonlWriter(out)
    except (UserError, OSError) as exc:
        lock.release()
        analyzer.close()
        limiter.close()
        raise usage_exit(err, str(exc)) from None

    counts = _Counts()

    def is_done(ident: str, image: str) -> bool:
        """Whether an earlier run analysed it (the ids whose latest line is ok)."""
        return ident in done_ids or bool(
            legacy and is_url(image) and legacy_url_id(image) in legacy
        )

    def pending() -> Iterator[tuple[str, str]]:
        for source in sources:
            for ident, image in source.items():
                if ident in done_ids:
                    counts.skipped += 1
                elif is_done(ident, image):
                    counts.skipped += 1  # an older run analysed it or a query variant of it
                    counts.legacy += 1
                else:
                    yield ident, image

    if via is Via.BATCH_API:
        try:
            failed = _run_batch_api(
                analyzer,
                pending(),
                writer,
                work_dir=work_dir or out.with_name(out.name + ".batch"),
                features=features_of(features),
                timeout=timeout,
                poll_interval=poll_interval,
                rerun=None if rerun is Rerun.NONE else rerun.value,
                err=err,
                done=done_ids,
            )
        except ViewfinderError as exc:
            err.print(Text(f"error: {type(exc).__name__}: {exc}"), soft_wrap=True)
            failed = -1
        except KeyboardInterrupt:  # the job's state is in work_dir: a re-run picks it up
            err.print(Text("interrupted; re-run the same command to resume"), soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            writer.close()
            analyzer.close()
            limiter.close()
            lock.release()
        raise typer.Exit(EXIT_IMAGE_FAILED if failed else EXIT_OK)

    try:
        listed = count_pending(sources, is_done) if progress else None
    except KeyboardInterrupt:
        writer.close()
        analyzer.close()
        limiter.close()
        lock.release()
        err.print(Text("interrupted while counting the inputs; nothing was analysed"))
        raise typer.Exit(EXIT_INTERRUPTED) from None
    total = None if listed is None else listed[0]
    interrupted = False
    try:
        with analyzer.analyze_many(
            pending(),
            features_of(features),
            concurrency=concurrency,
            rate_limiter=limiter,
            budget=budget,
        ) as run:

            def snapshot() -> Snapshot:
                skipped = counts.skipped if listed is None else listed[1]
                return Snapshot.of(
                    run.summary, total=total, skipped=skipped, limiter=run.rate_limiter
                )

            interrupted = write_all(
                run,
                lambda item: writer.write(item.to_record()),
                err,
                "batch",
                snapshot,
                interval=progress_every,
                quiet=not progress,
            )  # on Ctrl-C, leaving the run cancels what is in flight
            summary = run.summary
    finally:
        writer.close()
        analyzer.close()
        limiter.close()
        lock.release()
    err.print(Text(_summary_text(summary, counts, torn)), soft_wrap=True)
    if interrupted:
        err.print(Text(interrupted_text(snapshot())), soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_OK if summary.complete else EXIT_IMAGE_FAILED)


def _run_batch_api(
    analyzer: ImageAnalyzer,
    pending: Iterator[tuple[str, str]],
    writer: JsonlWriter,
    *,
    work_dir: Path,
    features: tuple[Feature, ...],
    timeout: float,
    poll_interval: float,
    rerun: str | None,
    err: Console,
    done: set[str],
) -> int:
    """`--via batch-api`: the job in `work_dir`, one output line per image; failures count."""
    from viewfinder.batch.provider_api import BatchJob

    job = BatchJob(analyzer, work_dir, features=features)
    failed = 0
    for item in job.run(
        (BatchInput(image, id=ident) for ident, image in pending),
        timeout=timeout,
        poll_interval=poll_interval,
        on_poll=lambda state: err.print(Text(progress_text(state)), soft_wrap=True),
        rerun=rerun,  # type: ignore[arg-type]
    ):
        if item.id in done:
            continue  # a resumed job replays what an earlier run already wrote
        failed += 0 if item.ok else 1
        writer.write(item.to_record())
    return failed


def register(app: typer.Typer) -> None:
    """Add the `batch` command to `app`."""
    app.command("batch")(batch)
