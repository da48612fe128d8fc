"""`viewfinder embed`: re-embed a collection into JSON Lines, resumable after any kill.

```
viewfinder embed photos/ --out vectors.jsonl --backend cohere --max-dollars 20
viewfinder embed 'scans/**/*.png' items.jsonl --out vectors.jsonl --concurrency 8 --rpm 600
viewfinder embed --query "a red bicycle" vectors.jsonl --top 5
viewfinder embed --to-parquet vectors.parquet vectors.jsonl
```

Inputs are those of `viewfinder batch` (a directory, a glob, an image path or URL, a
list file of paths/URLs, `-` for stdin), plus JSONL files (`*.jsonl`) of
`{"id", "url" | "path"}` lines. They are streamed, never listed whole, through
`Embedder.embed_many` (`viewfinder.embed.many`): bounded memory, at most `--concurrency`
requests in flight, paced by a `RateLimiter` (`--rpm`, else learned from the headers).

Each input gives one line, `EmbedItem.to_record()`: `{"id", "vector", "model",
"dimensions", "status": "ok", "id_version"}`, or `viewfinder batch`'s error shape
(`"status": "error"`, `"error": {"type", "message", ...}`). The file, its lock, and
resuming are `viewfinder batch`'s (`viewfinder.cli.batch`): whole lines, each fsynced;
a torn last line cut off on the next start; ids whose latest line is ok skipped, error
lines retried; one writer per output (`OUT.lock`, exit 2 for a second one).

`--to-parquet OUT.parquet RUN.jsonl` converts a finished run (the run's lock is taken,
so a run still writing is refused): one row per id, the last line winning, error lines
left out and counted; columns `id` (string), `vector` (list of float32), `model`,
`dimensions`. It needs pyarrow (`pip install 'viewfinder[parquet]'`).

`--query TEXT RUN.jsonl` embeds TEXT with the run's model and dimensions (refused when
`--model` / `--dimensions` say otherwise) and prints the `--top` ids by cosine, reading
the run streaming (a heap of `--top` entries).

`--shard I/N` and `viewfinder merge` split a run across hosts as `viewfinder batch`'s do
(the JSONL inputs' `"id"` is what is hashed).

Progress, the summary's failures by error type and Ctrl-C are `viewfinder batch`'s
(`viewfinder.cli.progress`).

Exit codes: 0 when every input is embedded (now or before), 1 when any failed or the
budget stopped the run first, 2 for usage and configuration errors, 130 when Ctrl-C
stopped it.
"""

from __future__ import annotations

import heapq
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from viewfinder.batch.shard import Shard
from viewfinder.cli.batch import (
    JsonlWriter,
    ShardOption,
    SourceLike,
    classify_source,
    count_pending,
    read_done_ids,
    sharded,
)
from viewfinder.cli.options import (
    EXIT_IMAGE_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ProgressEveryOption,
    ProgressOption,
    RedisOption,
    RpmOption,
    rate_limiter,
    shared_redis,
    usage_exit,
)
from viewfinder.cli.progress import (
    DEFAULT_INTERVAL,
    Snapshot,
    failure_text,
    interrupted_text,
    write_all,
)
from viewfinder.errors import InvalidOptionError, UserError, ViewfinderError, import_failure

if TYPE_CHECKING:  # httpx2, Pillow: imported when the command runs
    from viewfinder.embed.embedder import Embedder
    from viewfinder.embed.many import EmbedSummary

__all__ = ["register"]


# --- inputs -----------------------------------------------------------------------------


def _jsonl_items(path: str) -> Iterator[tuple[str, str]]:
    """`(id, path or url)` of each `{"id", "url" | "path"}` line, streaming."""
    with open(path, encoding="utf-8") as stream:
        for number, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                image = record.get("url") or record.get("path")
                ident = record["id"]
            except (ValueError, KeyError, AttributeError):
                raise InvalidOptionError(
                    f'{path}:{number}: not a {{"id", "url" | "path"}} line'
                ) from None
            if not isinstance(image, str) or ident is None:
                raise InvalidOptionError(f'{path}:{number}: needs an "id" and a "url" or "path"')
            yield str(ident), image


class _JsonlSource:
    """A JSONL file of `{"id", "url" | "path"}` lines, as an input argument."""

    countable = True

    def __init__(self, path: str) -> None:
        self.path = path

    def items(self) -> Iterator[tuple[str, str]]:
        return _jsonl_items(self.path)


def _sources(arguments: list[str], shard: Shard | None = None) -> list[SourceLike]:
    """The input arguments, checked now and read lazily (`items()`), each readable twice
    (to count them for the progress, then to embed them) unless it is stdin; only
    `shard`'s ids when one is given (`--shard`, as `viewfinder batch`'s)."""
    sources: list[SourceLike] = [
        _JsonlSource(argument)
        if argument.endswith(".jsonl") and os.path.isfile(argument)
        else classify_source(argument)
        for argument in arguments
    ]
    return sharded(sources, shard)


# --- summary ----------------------------------------------------------------------------


def _summary_text(summary: EmbedSummary, skipped: int, torn: bool) -> str:
    usage = summary.usage
    cost = f"${summary.dollars:.4f}"
    if summary.unpriced:
        cost += f" (+{summary.unpriced} unpriced requests)"
    text = (
        f"embed: {summary.ok} ok, {summary.failed} failed, {summary.cached} cached, "
        f"{skipped} skipped (already done), {summary.not_started} not started (budget); "
        f"{usage.requests} requests, {usage.input_tokens + usage.image_tokens} tokens, "
        f"{usage.images} images, {cost}, {summary.elapsed:.1f} s"
    )
    if torn:
        text += "; repaired a torn last line of the output"
    if summary.budget_error is not None and summary.not_started:
        text += f"\nstopped: {summary.budget_error}"
    failures = failure_text(summary)
    if failures:
        text += f"\n{failures}"
    return text


# --- reading a run ----------------------------------------------------------------------


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """A run's records, streaming: whole lines only (a torn last line ends it), lines that
    are not JSON objects skipped."""
    with path.open("rb") as stream:
        for line in stream:
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def _is_ok(record: dict[str, Any]) -> bool:
    return record.get("status") == "ok" and "vector" in record


def _ok_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The ok records of a run, streaming (torn or foreign lines skipped)."""
    return (record for record in _records(path) if _is_ok(record))


def _run_shape(path: Path) -> tuple[str, int]:
    """The model and dimensions of a run's first ok line."""
    for record in _ok_lines(path):
        return str(record["model"]), int(record["dimensions"])
    raise InvalidOptionError(f"{path} holds no embedded line")


def _query(embedder: Embedder, text: str, path: Path, top: int) -> list[tuple[float, str]]:
    """The `top` (score, id) pairs by cosine, best first; bounded memory (a heap)."""
    model, dimensions = _run_shape(path)
    if embedder.backend.model != model or embedder.dims.expect not in (None, dimensions):
        raise InvalidOptionError(
            f"{path} was embedded with {model} at {dimensions} dimensions; the query would "
            f"use {embedder.backend.model} at {embedder.dims.expect}: vectors of different "
            "models or lengths cannot be compared"
        )
    query = embedder.embed_texts([text])[0].vector
    heap: list[tuple[float, str]] = []
    for record in _ok_lines(path):
        vector = record["vector"]
        if record.get("model") != model or len(vector) != len(query):
            raise InvalidOptionError(f"{path}: line {record.get('id')!r} is of another model")
        score = math.fsum(a * b for a, b in zip(query, vector, strict=True))
        entry = (score, str(record["id"]))
        if len(heap) < top:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:
            heapq.heapreplace(heap, entry)
    return sorted(heap, reverse=True)


def _to_parquet(run: Path, out: Path) -> tuple[int, int]:
    """Write the run's latest ok line per id to `out`; (rows, ids left out because their
    latest line is an error)."""
    try:
        import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
    except ImportError as missing:
        raise InvalidOptionError(
            f"--to-parquet needs pyarrow, which is {import_failure('parquet', missing)}"
        ) from None
    latest: dict[str, dict[str, Any] | None] = {}
    for record in _records(run):
        if "id" not in record:
            continue
        ident = str(record["id"])
        latest.pop(ident, None)  # the last line wins, in its own position
        latest[ident] = record if _is_ok(record) else None
    rows = [record for record in latest.values() if record is not None]
    failed = len(latest) - len(rows)
    table = pa.table(
        {
            "id": pa.array([str(r["id"]) for r in rows], pa.string()),
            "vector": pa.array([r["vector"] for r in rows], pa.list_(pa.float32())),
            "model": pa.array([str(r["model"]) for r in rows], pa.string()),
            "dimensions": pa.array([int(r["dimensions"]) for r in rows], pa.int32()),
        }
    )
    pq.write_table(table, out)
    return len(rows), failed


# --- the command --------------------------------------------------------------------------


def embed(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Directories, globs, images, list files, JSONL of {id, url|path} ('-': "
            "stdin); with --query / --to-parquet: the run's JSONL.",
            metavar="DIR|GLOB|LIST|JSONL",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="JSON Lines file to append to; re-runs skip what it holds as ok.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="cohere, infinity, vllm or local (default: VIEWFINDER_EMBED_BACKEND)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Embedding model; for local, the model's directory "
            "(default: VIEWFINDER_EMBED_MODEL)."
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="The embeddings API's base URL (default: VIEWFINDER_EMBED_BASE_URL; Cohere's "
            "API for cohere).",
            metavar="URL",
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Name of the environment variable holding the API key."),
    ] = None,
    dimensions: Annotated[
        int | None, typer.Option(help="Vector length (default: 1,024 where allowed).", min=1)
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.", min=1)] = 4,
    rpm: RpmOption = None,
    max_dollars: Annotated[
        float | None,
        typer.Option(help="Stop starting requests once this many dollars are spent."),
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            help=(
                "Cache: a directory, or a Redis URL (redis://host:6379/0) shared by every "
                "host of the job. Inputs embedded before cost nothing."
            ),
            metavar="DIR|URL",
        ),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(help="Rank the run's ids against this text (the input is the run)."),
    ] = None,
    top: Annotated[int, typer.Option(help="--query: ids to print.", min=1)] = 10,
    to_parquet: Annotated[
        Path | None,
        typer.Option(
            help="Convert the finished run (the input) to this Parquet file.", dir_okay=False
        ),
    ] = None,
    progress: ProgressOption = True,
    progress_every: ProgressEveryOption = DEFAULT_INTERVAL,
    shard: ShardOption = None,
    redis: RedisOption = None,
) -> None:
    """Embed many images into a JSON Lines file; re-run to resume or retry failures.

    Exit status: 0 when every input is embedded (now or before), 1 when any failed or the
    budget stopped the run first, 2 for usage errors, 130 when Ctrl-C stopped it (re-run
    the same command to resume).
    """
    from viewfinder.batch.locks import WriterLock

    err = Console(stderr=True, highlight=False)

    if query is not None or to_parquet is not None:
        if len(inputs) != 1 or out is not None or (query is not None and to_parquet is not None):
            raise usage_exit(err, "--query and --to-parquet take one run JSONL, and no --out")
        run_path = Path(inputs[0])
        if not run_path.is_file():
            raise usage_exit(err, f"{run_path}: no such file")
        if to_parquet is not None:
            lock = WriterLock(
                run_path, hint="let it finish first", doing="being written by viewfinder embed"
            )
            try:
                lock.acquire()
                try:
                    rows, failed = _to_parquet(run_path, to_parquet)
                finally:
                    lock.release()
            except UserError as exc:
                raise usage_exit(err, str(exc)) from None
            err.print(
                Text(
                    f"parquet: {rows} rows to {to_parquet}; {failed} ids left out (their "
                    "latest line is an error: re-run the embedding to retry them)"
                ),
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_OK)
        assert query is not None
        try:
            run_model, run_dimensions = _run_shape(run_path)
            embedder = _embedder(
                backend,
                model or run_model,
                base_url,
                api_key_env,
                dimensions or run_dimensions,
                cache,
                None,
                None,
            )
            try:
                ranked = _query(embedder, query, run_path, top)
            finally:
                _close(embedder)
        except ViewfinderError as exc:
            raise usage_exit(err, f"{type(exc).__name__}: {exc}") from None
        for score, ident in ranked:
            typer.echo(f"{score:.6f}\t{ident}")
        raise typer.Exit(EXIT_OK)

    if out is None:
        raise usage_exit(err, "--out is required to embed (or give --query / --to-parquet)")
    try:
        sources = _sources(inputs, shard)
        embedder = _embedder(
            backend, model, base_url, api_key_env, dimensions, cache, max_dollars, rpm, redis
        )
    except UserError as exc:
        raise usage_exit(err, str(exc)) from None
    lock = WriterLock(
        out, hint="wait for it or choose another --out", doing="being written by viewfinder embed"
    )
    try:
        lock.acquire()  # before reading: a torn line is only cut off by the one writer
        done_ids, torn = read_done_ids(out)
        writer = JsonlWriter(out)
    except (UserError, OSError) as exc:
        lock.release()
        _close(embedder)
        raise usage_exit(err, str(exc)) from None

    skipped = 0

    def pending() -> Iterator[tuple[str, str]]:
        nonlocal skipped
        for source in sources:
            for ident, image in source.items():
                if ident in done_ids:
                    skipped += 1
                else:
                    yield ident, image

    interrupted = False
    try:
        listed = count_pending(sources, lambda ident, _: ident in done_ids) if progress else None
        total = None if listed is None else listed[0]
        with embedder.embed_many(pending(), concurrency=concurrency) as run:

            def snapshot() -> Snapshot:
                return Snapshot.of(
                    run.summary,
                    total=total,
                    skipped=skipped if listed is None else listed[1],
                    limiter=run.rate_limiter,
                )

            interrupted = write_all(
                run,
                lambda item: writer.write(item.to_record()),
                err,
                "embed",
                snapshot,
                interval=progress_every,
                quiet=not progress,
            )  # on Ctrl-C, leaving the run cancels what is in flight
            summary = run.summary
    except ViewfinderError as exc:  # an input argument that turned out unreadable
        err.print(Text(f"error: {type(exc).__name__}: {exc}"), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:  # while counting the inputs, or a second Ctrl-C on the way out
        err.print(Text("interrupted; re-run the same command to resume"), soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        writer.close()
        _close(embedder)
        lock.release()
    err.print(Text(_summary_text(summary, skipped, torn)), soft_wrap=True)
    if interrupted:
        err.print(Text(interrupted_text(snapshot())), soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_OK if summary.complete else EXIT_IMAGE_FAILED)


def _embedder(
    backend: str | None,
    model: str | None,
    base_url: str | None,
    api_key_env: str | None,
    dimensions: int | None,
    cache: str | None,
    max_dollars: float | None,
    rpm: int | None,
    redis: str | None = None,
) -> Embedder:
    """The `Embedder` the options describe (the environment fills the rest). With a shared
    Redis (`--redis`, see `shared_redis`) its rate limit is the deployment's shared one,
    and without `--cache` it caches in the Redis answer cache, as `serve` does.

    Raises:
        UserError: An option that cannot work (an unset key variable, a bad Redis URL...).
    """
    from viewfinder.embed.embedder import Embedder
    from viewfinder.embed.pricing import EmbeddingBudget
    from viewfinder.engine.cache import open_cache

    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise InvalidOptionError(f"--api-key-env: {api_key_env} is not set")
    shared = shared_redis(redis)
    cache = cache or shared.answer_cache
    embedder = Embedder(
        backend,
        model=model,
        base_url=base_url,
        api_key=api_key,
        dimensions=dimensions,
        cache=open_cache(cache) if cache is not None else None,
        budget=EmbeddingBudget(max_dollars=max_dollars) if max_dollars is not None else None,
    )
    if rpm is not None or shared.url is not None:
        backend_ = embedder.backend
        embedder.rate_limiter = rate_limiter(shared.url, backend_.base_url, backend_.model, rpm)
    return embedder


def _close(embedder: Embedder) -> None:
    """Close the embedder, and the cache and rate limiter `_embedder` made for it (Redis
    connections)."""
    embedder.close()
    if embedder.cache is not None:
        embedder.cache.close()
    if embedder.rate_limiter is not None:
        embedder.rate_limiter.close()


def register(app: typer.Typer) -> None:
    """Add the `embed` command to `app`."""
    app.command("embed")(embed)
