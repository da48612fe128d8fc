"""`viewfinder cost`: estimate tokens and dollars before any model call.

```
viewfinder cost photos/ --model gpt-4.1-mini
viewfinder cost 'scans/*.png' --model gpt-4o --detail low -f caption,tags
viewfinder cost photo.jpg --model gpt-4.1-nano --json
viewfinder cost --from results.jsonl
```

Every figure is an estimate made offline (`viewfinder.cost.estimate`): no endpoint needs to
be configured and no request is sent to a model. With `--from`, the records of a
`viewfinder batch` run give its real usage and dollars (`viewfinder.cost.actual`), beside the
estimate of the same images when their files can be read. Exit codes: 0 when every image was
estimated, 1 when any image could not be read (the others are still estimated), 2 for
usage errors (and a `--from` file that cannot be read).
"""

from __future__ import annotations

import glob
import json
import math
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from viewfinder.analyzers.features import ALL_FEATURES, Feature
from viewfinder.analyzers.settings import Detail
from viewfinder.batch.records import BatchItem, record_outcome
from viewfinder.cli.options import (
    EXIT_IMAGE_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AllowHostOption,
    AnswerFormatChoice,
    AnswerFormatOption,
    BoxConventionOption,
    DetailChoice,
    DetailOption,
    FeaturesHelp,
    MaxCandidatesOption,
    MaxSideOption,
    ObjectParentsOption,
    TagHintsOption,
    allow_hosts_of,
    features_callback,
    features_of,
)
from viewfinder.cost.pricing import load_prices
from viewfinder.errors import UserError, ViewfinderError
from viewfinder.prepare.inputs import has_image_suffix, is_url
from viewfinder.prepare.redact import redact_url

if TYPE_CHECKING:  # the estimator loads the engine (openai, instructor): when a command runs
    from viewfinder.analyzers.compact import AnswerFormat
    from viewfinder.cost.actual import ImageCheck, RunCheck, RunCost, RunLine
    from viewfinder.cost.estimate import Estimate, EstimateSummary

__all__ = ["FROM_NOTICE", "NOTICE", "expand_images", "read_run", "register"]


NOTICE: Final = (
    "Estimates only: no request is sent to a model. Image tokens follow OpenAI's "
    "published rules for the model family, text tokens are counted on the exact "
    "prompts and schema, output tokens are estimated from example answers (viewfinder's "
    "bundled examples, not a model's answers to your images), and prices come from "
    "viewfinder's price table (VIEWFINDER_PRICES overrides it). Cached input is shown "
    "apart: the prefix before the image is the same for every image, and OpenAI's prompt "
    "cache bills what it holds of it at the cached price. Real usage varies: re-asks, "
    "retries and reasoning tokens are not included."
)
"""Shown before any figure, and in the JSON output."""

FROM_NOTICE: Final = (
    "Real usage from the run's records, repriced with viewfinder's price table "
    "(VIEWFINDER_PRICES overrides it): cached input tokens at the cached price, Batch API "
    "answers at the Batch API price. Beside it, the offline estimate of the same images: "
    "one request each, with no prompt-cache hit (the ratio is against this one) and in the "
    "best case, where the prompt cache serves every prefix."
)
"""Shown before the figures of `viewfinder cost --from`, and in its JSON output."""

_SHOWN_ROWS: Final = 20

_GLOB_CHARS = re.compile(r"[*?\[]")


_DETAILS: Final[dict[DetailChoice, Detail]] = {
    DetailChoice.HIGH: "high",
    DetailChoice.LOW: "low",
    DetailChoice.AUTO: "auto",
}


def expand_images(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """Turn image arguments into image sources.

    A directory gives its image files (by suffix, sorted, not recursive); a glob
    pattern that names no existing file gives its matching files, sorted (`**` recurses);
    an http(s) URL or any other path is kept as given (a missing file is reported when
    it is read). Duplicates are dropped, first occurrence kept.

    Args:
        items: Arguments as given on the command line.

    Returns:
        The sources, and one message per argument that gave no image.
    """
    sources: list[str] = []
    problems: list[str] = []
    for item in items:
        path = Path(item)
        if is_url(item) or (path.exists() and not path.is_dir()):
            sources.append(item)
        elif path.is_dir():
            found = sorted(
                str(child)
                for child in path.iterdir()
                if child.is_file() and has_image_suffix(child)
            )
            sources.extend(found)
            if not found:
                problems.append(f"{item}: no image files in this directory")
        elif _GLOB_CHARS.search(item):
            found = sorted(
                match for match in glob.glob(item, recursive=True) if Path(match).is_file()
            )
            sources.extend(found)
            if not found:
                problems.append(f"{item}: no file matches this pattern")
        else:
            sources.append(item)
    return list(dict.fromkeys(sources)), problems


# --- rendering -------------------------------------------------------------------------


def _dollars(value: float | None) -> str:
    """Dollars to three significant digits (at least cents); `unknown` for `None`."""
    if value is None:
        return "unknown"
    if value <= 0:
        return "$0.00"
    digits = max(2, 2 - math.floor(math.log10(value)))
    return f"${value:,.{digits}f}"


def _tokens(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f}"


def _table(rows: Sequence[tuple[str, Estimate]]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("image")
    table.add_column("sent (px)", justify="right")
    for name in ("prompt", "schema", "image", "input", "cached", "output"):
        table.add_column(f"{name} tok", justify="right")
    table.add_column("no cache", justify="right")
    table.add_column("best case", justify="right")
    for name, est in rows:
        table.add_row(
            name,
            f"{est.model_width}x{est.model_height}",
            _tokens(est.prompt_tokens),
            _tokens(est.schema_tokens),
            _tokens(est.image_tokens),
            _tokens(est.input_tokens),
            _tokens(est.cached_input_tokens),
            _tokens(est.output_tokens),
            _dollars(est.cost_usd),
            _dollars(est.cached_cost_usd),
        )
    return table


def _summary_lines(summary: EstimateSummary, batch_discount: float) -> list[str]:
    images = f"{summary.images} image" + ("" if summary.images == 1 else "s")
    off = f"{(1 - batch_discount) * 100:.0f}% off"
    return [
        f"total ({images}): {_tokens(summary.input_tokens)} input tokens "
        f"({_tokens(summary.cached_input_tokens)} of them cacheable), "
        f"{_tokens(summary.output_tokens)} output tokens (estimated from example answers)",
        f"per 1,000 images, best case (every prefix served from the prompt cache): "
        f"{_dollars(summary.cached_cost_per_1000_images_usd)}; with the Batch API ({off}): "
        f"{_dollars(summary.batch_cached_cost_per_1000_images_usd)}",
        f"per 1,000 images, no prompt-cache hit: {_dollars(summary.cost_per_1000_images_usd)}; "
        f"with the Batch API: {_dollars(summary.batch_cost_per_1000_images_usd)}",
    ]


# --- the command -----------------------------------------------------------------------


def _estimates(
    sources: Sequence[str],
    *,
    model: str | None,
    features: tuple[Feature, ...],
    detail: Detail,
    max_side: int | None,
    allow_hosts: tuple[str, ...] | None,
    answer_format: AnswerFormat,
    box_convention: str | None,
    options: dict[str, Any],
) -> Iterator[tuple[str, Estimate | ViewfinderError]]:
    from viewfinder.cost.estimate import estimate_request, offline_analyzer

    analyzer = offline_analyzer(
        model,
        detail=detail,
        max_side=max_side,
        allow_hosts=allow_hosts,
        answer_format=answer_format,
        box_convention=box_convention,
    )
    try:
        for source in sources:
            name = redact_url(source) if is_url(source) else source
            try:
                yield name, estimate_request(analyzer, source, features, **options)
            except ViewfinderError as exc:
                yield name, exc
    finally:
        analyzer.close()


# --- cost --from: a run's records -------------------------------------------------------


def read_run(path: Path) -> tuple[list[RunLine], int, bool]:
    """The records of a `viewfinder batch` output, in every shape viewfinder wrote.

    Args:
        path: The output file (`viewfinder batch --out`).

    Returns:
        Its lines in file order; how many lines were not records (blank, not JSON, or
        not a record); and whether the last line was torn (a run still writing, or a crash).

    Raises:
        OSError: The file cannot be read.
    """
    from viewfinder.cost.actual import RecordedResult, RunLine

    lines: list[RunLine] = []
    skipped = 0
    torn = False
    with path.open("rb") as stream:
        for raw in stream:
            if not raw.endswith(b"\n"):
                torn = True  # only ever the last line
                break
            try:
                record = json.loads(raw)
            except ValueError:
                skipped += bool(raw.strip())
                continue
            outcome = record_outcome(record)
            if outcome is None:
                skipped += 1
                continue
            item = BatchItem.from_record(record, result_type=RecordedResult)
            result = item.result if isinstance(item.result, RecordedResult) else None
            lines.append(
                RunLine(
                    id=outcome.id,
                    source=item.source,
                    ok=outcome.ok,
                    usage=item.usage,
                    batch_priced=item.batch_priced,
                    recorded_cost=item.cost,
                    model=None if result is None else result.model,
                    features=() if result is None else result.features,
                )
            )
    return lines, skipped, torn


def _image_file(source: str, base: Path) -> Path | str:
    """The readable file a record's source names (as given, else beside the results
    file), or why there is none."""
    if is_url(source):
        return "a URL: not fetched (estimate a local copy with `viewfinder cost`)"
    for candidate in (Path(source), base / source):
        if candidate.is_file():
            return candidate
    return "not a readable file"


def _run_estimates(
    lines: Sequence[RunLine],
    base: Path,
    *,
    model: str | None,
    features: tuple[Feature, ...] | None,
    detail: Detail,
    max_side: int | None,
    answer_format: AnswerFormat,
    box_convention: str | None,
) -> dict[str, Estimate | str]:
    """By image id: the estimate of its latest source with the run's features, or why
    there is none."""
    from viewfinder.cost.actual import run_cost
    from viewfinder.cost.estimate import estimate_request, offline_analyzer

    latest = {line.id: line for line in lines}
    run_features = run_cost(lines).features
    outcomes: dict[str, Estimate | str] = {}
    analyzer = offline_analyzer(
        model,
        detail=detail,
        max_side=max_side,
        answer_format=answer_format,
        box_convention=box_convention,
    )
    try:
        for image_id, line in latest.items():
            found = _image_file(line.source, base)
            if isinstance(found, str):
                outcomes[image_id] = found
                continue
            chosen = features or line.features or run_features or None
            try:
                outcomes[image_id] = estimate_request(
                    analyzer, str(found), chosen if chosen else ALL_FEATURES
                )
            except ViewfinderError as exc:
                outcomes[image_id] = f"{type(exc).__name__}: {exc}"
    finally:
        analyzer.close()
    return outcomes


def _usage_text(spent: RunCost) -> str:
    return (
        f"{_tokens(spent.input_tokens)} input tokens ({_tokens(spent.cached_input_tokens)} "
        f"cached, {_tokens(spent.uncached_input_tokens)} uncached), "
        f"{_tokens(spent.output_tokens)} output tokens"
    )


def _from_lines(path: Path, spent: RunCost, check: RunCheck, notes: Sequence[str]) -> list[str]:
    images = f"{spent.images} image" + ("" if spent.images == 1 else "s")
    lines = [
        f"{path}: {spent.lines} records, {images} ({spent.ok} ok, {spent.failed} failed), "
        f"{spent.cache_hits} answered from viewfinder's cache, "
        f"{spent.batch_priced_lines} at Batch API prices; "
        f"model {', '.join(spent.models) or 'unknown'}",
        f"used: {_usage_text(spent)}, {spent.requests:,} requests, {spent.reasks:,} re-asks",
        f"billed: {_dollars(spent.cost_usd)} (cached input at the cached price); "
        f"per 1,000 images: {_dollars(spent.cost_per_1000_images_usd)}; "
        f"without the prompt cache: {_dollars(spent.cost_without_prompt_cache_usd)}; "
        f"as the run recorded: {_dollars(spent.recorded_cost_usd)}",
    ]
    if check.compared:
        ratio = "" if check.ratio is None else f" ({check.ratio:.2f}x the estimate)"
        lines += [
            f"estimate for the same {check.compared} images: "
            f"{_tokens(check.predicted_input_tokens)} input tokens, "
            f"{_tokens(check.predicted_output_tokens)} output tokens, "
            f"{_dollars(check.predicted_cost_usd)} with no prompt-cache hit, "
            f"{_dollars(check.predicted_best_cost_usd)} in the best case",
            f"actual for those images: {_usage_text(check.actual)}, "
            f"{_dollars(check.actual.cost_usd)}{ratio}",
        ]
    else:
        lines.append("estimate: no image of the run could be estimated (see below)")
    return lines + [f"note: {note}" for note in notes]


def _check_table(checks: Sequence[ImageCheck]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("image")
    for name in ("input tok est", "input tok", "cached", "output tok est", "output tok"):
        table.add_column(name, justify="right")
    table.add_column("cost est", justify="right")
    table.add_column("cost", justify="right")
    for check in checks:
        est = check.estimate
        table.add_row(
            check.id,
            _tokens(None if est is None else est.input_tokens),
            _tokens(check.actual.input_tokens),
            _tokens(check.actual.cached_input_tokens),
            _tokens(None if est is None else est.output_tokens),
            _tokens(check.actual.output_tokens),
            _dollars(check.predicted_cost_usd),
            _dollars(check.actual.cost_usd),
        )
    return table


def _cost_from(
    path: Path,
    *,
    model: str | None,
    features: tuple[Feature, ...] | None,
    detail: Detail,
    max_side: int | None,
    answer_format: AnswerFormat,
    box_convention: str | None,
    json_output: bool,
) -> int:
    """`viewfinder cost --from`: print a run's real spend beside its estimate; the exit code."""
    from viewfinder.cost.actual import compare, run_cost, run_model

    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    try:
        lines, skipped, torn = read_run(path)
    except OSError as exc:
        err.print(Text(f"error: cannot read {path}: {exc}"), soft_wrap=True)
        return EXIT_USAGE
    priced_as = run_model(lines, model)
    try:
        estimates = _run_estimates(
            lines,
            path.parent,
            model=priced_as,
            features=features,
            detail=detail,
            max_side=max_side,
            answer_format=answer_format,
            box_convention=box_convention,
        )
    except UserError as exc:  # an option the analyzer refuses
        err.print(Text(f"error: {exc}"), soft_wrap=True)
        return EXIT_USAGE
    spent = run_cost(lines, model=model)
    checks, check = compare(lines, estimates, model=model)
    notes = [
        f"the estimate assumes detail {detail}, "
        + ("a copy sized by the features" if max_side is None else f"max side {max_side} px")
        + f" and the {answer_format} answer format, as the run used unless it set others"
    ]
    if skipped:
        notes.append(f"{skipped} lines are not batch records and were skipped")
    if torn:
        notes.append("the last line is torn (a run still writing, or a crash): not counted")
    if spent.cost_usd is None:
        notes.append("some lines used a model with no price: pass --model or VIEWFINDER_PRICES")
    unestimated = [c for c in checks if c.not_estimated is not None]
    if json_output:
        document: dict[str, Any] = {
            "from": str(path),
            "note": FROM_NOTICE,
            "notes": notes,
            "detail": detail,
            "max_side": max_side,
            "run": spent.model_dump(mode="json"),
            "comparison": check.model_dump(mode="json"),
            "images": [c.model_dump(mode="json") for c in checks],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        sys.stdout.flush()
    else:
        out.print(Text(FROM_NOTICE, style="bold yellow"), soft_wrap=True)
        for line in _from_lines(path, spent, check, notes):
            out.print(
                Text(line, style="yellow" if line.startswith("note:") else "bold"), soft_wrap=True
            )
        compared = [c for c in checks if c.not_estimated is None]
        if compared:
            out.print(_check_table(compared[:_SHOWN_ROWS]))
            if len(compared) > _SHOWN_ROWS:
                out.print(f"... {len(compared) - _SHOWN_ROWS} more images (--json lists all)")
        for c in unestimated[:_SHOWN_ROWS]:
            out.print(
                Text(f"not compared: {c.id}: {c.not_estimated}", style="yellow"), soft_wrap=True
            )
        if len(unestimated) > _SHOWN_ROWS:
            out.print(f"... {len(unestimated) - _SHOWN_ROWS} more not compared (--json lists all)")
    unreadable = [c for c in unestimated if c.estimate is None]
    return EXIT_IMAGE_FAILED if unreadable else EXIT_OK


def cost(
    images: Annotated[
        list[str] | None,
        typer.Argument(
            help="Image paths, directories (their image files), glob patterns, or URLs.",
            metavar="IMAGE",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help=(
                "Model whose token rules and prices to use (a model name, not an Azure "
                "deployment name); default VIEWFINDER_MODEL or gpt-4.1-mini."
            ),
            metavar="NAME",
        ),
    ] = None,
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
    detail: DetailOption = DetailChoice.HIGH,
    max_side: MaxSideOption = None,
    answer_format: AnswerFormatOption = AnswerFormatChoice.COMPACT,
    box_convention: BoxConventionOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document instead of a table.")
    ] = False,
    allow_host: AllowHostOption = None,
    max_candidates: MaxCandidatesOption = 1,
    tag_hints: TagHintsOption = False,
    object_parents: ObjectParentsOption = False,
    from_results: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help=(
                "A `viewfinder batch` output: the run's real tokens and dollars (cached "
                "input priced apart), beside the estimate of the same images."
            ),
            metavar="RESULTS.jsonl",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Estimate tokens and dollars per image, in total and per 1,000 images; sends nothing.

    With --from, what a batch run really spent, beside the estimate of its images.
    """
    from viewfinder.cost.estimate import Estimate, estimate_many

    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    chosen = features_of(features)
    if (from_results is None) == (not images):
        err.print(Text("error: give images, or --from a batch output, not both"), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    if from_results is not None:
        raise typer.Exit(
            _cost_from(
                from_results,
                model=model,
                features=chosen if features else None,
                detail=_DETAILS[detail],
                max_side=max_side,
                answer_format=answer_format.value,
                box_convention=box_convention,
                json_output=json_output,
            )
        )
    images = images or []
    sources, problems = expand_images(images)

    if not json_output:
        out.print(Text(NOTICE, style="bold yellow"), soft_wrap=True)

    rows: list[tuple[str, Estimate]] = []
    errors: list[dict[str, str]] = [{"image": p, "type": "NoImage", "message": p} for p in problems]
    try:
        for name, outcome in _estimates(
            sources,
            model=model,
            features=chosen,
            detail=_DETAILS[detail],
            max_side=max_side,
            allow_hosts=allow_hosts_of(allow_host),
            answer_format=answer_format.value,
            box_convention=box_convention,
            options={
                "max_candidates": max_candidates,
                "tag_hints": tag_hints,
                "object_parents": object_parents,
            },
        ):
            if isinstance(outcome, Estimate):
                rows.append((name, outcome))
            else:
                errors.append(
                    {"image": name, "type": type(outcome).__name__, "message": str(outcome)}
                )
    except UserError as exc:  # an option the analyzer refuses
        err.print(Text(f"error: {exc}"), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None

    summary = estimate_many(estimate for _, estimate in rows)
    batch_discount = load_prices().batch_discount
    if json_output:
        document: dict[str, Any] = {
            "estimate": True,
            "note": NOTICE,
            "features": [f.value for f in chosen],
            "detail": _DETAILS[detail],
            "max_side": max_side,
            "answer_format": answer_format.value,
            "images": [estimate.model_dump(mode="json") for _, estimate in rows],
            "errors": errors,
            "summary": summary.model_dump(mode="json"),
            "batch_discount": batch_discount,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        sys.stdout.flush()
    else:
        for error in errors:
            err.print(
                Text(f"error: {error['image']}: {error['type']}: {error['message']}", style="red"),
                soft_wrap=True,
            )
        if rows:
            first = rows[0][1]
            out.print(
                Text(
                    f"model {first.model}, detail {first.detail}, "
                    f"features {', '.join(f.value for f in chosen)}",
                    style="bold",
                ),
                soft_wrap=True,
            )
            out.print(_table(rows))
            for line in _summary_lines(summary, batch_discount):
                out.print(Text(line, style="bold"), soft_wrap=True)
            for note in dict.fromkeys(note for _, estimate in rows for note in estimate.notes):
                out.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    raise typer.Exit(EXIT_IMAGE_FAILED if errors else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add the `cost` command to `app`.

    Args:
        app: The Typer application (`viewfinder.cli.app`, or one a test builds).
    """
    app.command("cost")(cost)
