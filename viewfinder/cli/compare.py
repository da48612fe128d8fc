"""`viewfinder compare`: score viewfinder against stored Azure results or COCO ground truth.

```
viewfinder compare --azure azure/ --images photos/ --model gpt-4.1-mini --out report/
viewfinder compare --azure azure.jsonl --images photos/ --synonyms synonyms.json
viewfinder compare --ground-truth labels/coco.json --images photos/ --label-map map.json
viewfinder compare --ground-truth labels/coco.json --results out.jsonl
```

The stored results may be Image Analysis 4.0 or Computer Vision 3.2 analyze bodies
(`viewfinder.evaluate.report.load_azure`). Features only the Azure side holds are listed
as not scored. COCO ground truth scores objects and people boxes as COCO's evaluation
does (`viewfinder.evaluate.coco`), writing report.json and report.md.

With --azure, the images are analysed on the batch core (`ImageAnalyzer.analyze_many`:
`--concurrency` at a time, paced by `--rpm`), and each analysis is appended, as it
completes, to `OUT/analyses.jsonl` as a batch record (`BatchItem.to_record()` with
`"latency_s"`), flushed and fsynced: a re-run with the same `--out` analyses only what is
not there yet and pays nothing for the rest; a kill loses nothing already written. One
run at a time per `--out` (an OS lock, as `viewfinder batch` takes). Progress: a live
bar on a terminal, a plain line every `--progress-every` seconds off one (the display
`batch` and `embed` share, `viewfinder.cli.progress`).

Exit codes: 0 when every image was compared, 1 when any image failed (the others are
still compared and reported), 2 for usage or configuration errors, 130 when interrupted
(Ctrl-C; re-run the same command to resume).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from viewfinder.batch.settings import DEFAULT_CONCURRENCY
from viewfinder.cli.options import (
    EXIT_IMAGE_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ConcurrencyOption,
    ProgressEveryOption,
    ProgressOption,
    RpmOption,
    usage_exit,
)
from viewfinder.cli.progress import (
    DEFAULT_INTERVAL,
    Interrupts,
    RunDisplay,
    Snapshot,
    interrupted_text,
)
from viewfinder.errors import AzureInputError, UserError, ViewfinderError

if TYPE_CHECKING:
    from viewfinder.analyzers.image_analysis import ImageAnalyzer
    from viewfinder.batch.records import BatchItem
    from viewfinder.evaluate.ground_truth import GroundTruthRun, ImageOutcome
    from viewfinder.evaluate.report import ImageReport, StoredAnalysis
    from viewfinder.schemas.result import ImageAnalysisResult

__all__ = ["ANALYSES_FILE", "register"]

ANALYSES_FILE: Final = "analyses.jsonl"
"""The file in `--out` that a `--azure` run appends its analyses to, and resumes from."""


class _CompareProgress:
    """Progress of a comparison, fed once per image report (`advance`), shown by the
    shared display (`viewfinder.cli.progress.RunDisplay`): a bar on a terminal, a plain
    line every `--progress-every` seconds off one, as `batch` and `embed` show theirs."""

    def __init__(
        self,
        console: Console,
        total: int,
        *,
        interval: float,
        quiet: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._total = total
        self._clock = clock
        self._start = clock()
        self.done = 0
        self.failed = 0
        self.dollars = 0.0
        self.display = RunDisplay(console, "compare", self.snapshot, interval=interval, quiet=quiet)

    def snapshot(self) -> Snapshot:
        """Where the comparison stands (read from the display's ticker thread too)."""
        return Snapshot(
            done=self.done,
            failed=self.failed,
            cached=0,
            total=self._total,
            elapsed=self._clock() - self._start,
            dollars=self.dollars,
        )

    def advance(self, report: ImageReport | ImageOutcome) -> None:
        """Count one image's report (or ground-truth outcome) and move the display."""
        self.done += 1
        self.failed += report.error is not None
        self.dollars += report.cost or 0.0
        self.display.advance()


def _load_synonyms(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AzureInputError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise AzureInputError(f"{path}: expected a JSON object of name -> name")
    return data


def compare(
    azure: Annotated[
        Path | None,
        typer.Option(
            "--azure",
            help="Stored Azure results (Image Analysis 4.0 or Computer Vision 3.2): a directory "
            "of <image-stem>.json, or a JSONL file.",
            metavar="DIR_OR_JSONL",
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="Directory of the images (with --ground-truth: default, the JSON's directory).",
            metavar="DIR",
        ),
    ] = None,
    ground_truth: Annotated[
        Path | None,
        typer.Option(
            "--ground-truth",
            help="COCO detection ground truth (images, annotations, categories) to score "
            "objects and people boxes against, instead of --azure.",
            metavar="COCO_JSON",
            dir_okay=False,
        ),
    ] = None,
    label_map: Annotated[
        Path | None,
        typer.Option(
            "--label-map",
            help="With --ground-truth: JSON object mapping the model's names to the "
            "dataset's (case-insensitive).",
            metavar="FILE",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model to evaluate.", metavar="NAME"),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="OpenAI-compatible endpoint.", metavar="URL"),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Directory for report.json and report.html (report.md with COCO)."
        ),
    ] = Path("report"),
    synonyms: Annotated[
        Path | None,
        typer.Option(
            "--synonyms", help="JSON object mapping names to canonical names.", metavar="FILE"
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the response cache.")
    ] = False,
    viewfinder_results: Annotated[
        Path | None,
        typer.Option(
            "--viewfinder",
            "--results",
            help="A `viewfinder batch` output file to score instead of analysing again.",
            metavar="JSONL",
            dir_okay=False,
        ),
    ] = None,
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    rpm: RpmOption = None,
    progress: ProgressOption = True,
    progress_every: ProgressEveryOption = DEFAULT_INTERVAL,
    worst: Annotated[
        int,
        typer.Option(
            "--worst",
            help="Images drawn in report.html: the worst N (every image is in report.json).",
            metavar="N",
            min=0,
        ),
    ] = 100,  # viewfinder.evaluate.report.DEFAULT_WORST (not imported: --help stays light)
) -> None:
    """Compare viewfinder with stored Azure results or COCO ground truth, and report.

    With --azure: an HTML and JSON report; the analyses are recorded in OUT/analyses.jsonl,
    so a re-run resumes where a killed one stopped. With --ground-truth: boxes scored as COCO does
    (precision, recall, F1 at IoU 0.5; AP50, AP75, AP over 0.5:0.95), a JSON and
    Markdown report.
    """
    # The engine and the report (openai, instructor, Pillow) load when the command runs.
    from viewfinder.analyzers.image_analysis import ImageAnalyzer
    from viewfinder.evaluate.report import (
        compare_images,
        load_azure,
        load_viewfinder_batch,
        write_report,
    )

    out_console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)

    if (azure is None) == (ground_truth is None):
        raise usage_exit(err, "give exactly one reference: --azure or --ground-truth")
    if ground_truth is not None:
        if synonyms is not None:
            raise usage_exit(err, "--synonyms is for --azure; with --ground-truth use --label-map")
        folder = ground_truth.parent if images is None else images
        if viewfinder_results is None and not folder.is_dir():
            raise usage_exit(err, f"{folder}: not a directory")
        run = _ground_truth_run(
            ground_truth,
            folder,
            out,
            label_map,
            viewfinder_results,
            lambda: ImageAnalyzer(model=model, base_url=base_url, cache=not no_cache),
            err,
            concurrency=concurrency,
            rpm=rpm,
            interval=progress_every,
            quiet=not progress,
        )
        _print_ground_truth(run, out, out_console, err)
        raise typer.Exit(EXIT_IMAGE_FAILED if run.failed else EXIT_OK)
    if label_map is not None:
        raise usage_exit(err, "--label-map is for --ground-truth; with --azure use --synonyms")
    if images is None:
        raise usage_exit(err, "--azure needs --images")
    assert azure is not None  # exactly one reference, checked above
    if not images.is_dir():
        raise usage_exit(err, f"{images}: not a directory")
    try:
        synonym_map = None if synonyms is None else _load_synonyms(synonyms)
        items = list(load_azure(azure))
        stored = None if viewfinder_results is None else load_viewfinder_batch(viewfinder_results)
        analyzer = (
            None
            if stored is not None
            else ImageAnalyzer(model=model, base_url=base_url, cache=not no_cache)
        )
    except (ViewfinderError, OSError) as exc:  # AzureInputError is a ViewfinderError
        err.print(Text(f"error: {exc}"), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    tracker = _CompareProgress(err, len(items), interval=progress_every, quiet=not progress)
    try:
        if analyzer is None:
            with tracker.display:
                reports = list(
                    compare_images(
                        None, items, images, synonyms=synonym_map, stored=stored,
                        on_report=tracker.advance,
                    )
                )  # fmt: skip
        else:
            reports = _analyse_and_compare(
                analyzer, items, images, out, synonym_map, concurrency, rpm, tracker, err
            )
    finally:
        if analyzer is not None:
            analyzer.close()
    json_path, html_path = write_report(reports, out, images, worst=worst)

    document = json.loads(json_path.read_text(encoding="utf-8"))
    for report in reports:
        if report.error is not None:
            err.print(Text(f"error: {report.image}: {report.error}", style="red"), soft_wrap=True)
    table = Table(show_edge=False, header_style="bold")
    table.add_column("feature")
    table.add_column("images", justify="right")
    table.add_column("mean per metric")
    for feature, metrics in document["summary"]["features"].items():
        table.add_row(
            feature,
            str(metrics["images"]),
            ", ".join(
                f"{k} {v:.3f}" for k, v in metrics.items() if k != "images" and v is not None
            ),
        )
    out_console.print(table)
    if document["unscored"]:
        out_console.print(
            Text(
                "not scored (in the Azure results, not in viewfinder's): "
                + ", ".join(document["unscored"])
            ),
            soft_wrap=True,
        )
    total = document["total_cost"]
    latency = document["mean_latency_s"]
    out_console.print(
        Text(
            f"images {document['images']}, failed {document['failed']}, total cost "
            + ("unknown" if total is None else f"${total:.4f}")
            + ", mean latency "
            + ("-" if latency is None else f"{latency:.2f} s"),
            style="bold",
        ),
        soft_wrap=True,
    )
    out_console.print(Text(f"report: {json_path}\nreport: {html_path}"), soft_wrap=True)
    raise typer.Exit(EXIT_IMAGE_FAILED if document["failed"] else EXIT_OK)


@contextmanager
def _recorded(
    out: Path, progress: _CompareProgress, err: Console
) -> Iterator[
    tuple[dict[str, StoredAnalysis], Callable[[BatchItem[ImageAnalysisResult], float], None]]
]:
    """`OUT/analyses.jsonl` under its lock: the analyses an earlier run recorded, and the
    function appending each new one (a whole line: Ctrl-C waits for it), with the progress
    display shown meanwhile. Ctrl-C ends the command with 130 and how far it got."""
    from viewfinder.batch.locks import WriterLock  # filelock: when the command runs
    from viewfinder.cli.batch import JsonlWriter, read_done_ids
    from viewfinder.evaluate.report import load_analyses

    path = out / ANALYSES_FILE
    lock = WriterLock(
        path, hint="wait for it or choose another --out", doing="being written by a compare"
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        read_done_ids(path)  # cuts off a torn last line before anything is appended
        reuse = load_analyses(path)
        writer = JsonlWriter(path)
    except (UserError, OSError) as exc:
        lock.release()
        err.print(Text(f"error: {exc}"), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    if reuse:
        err.print(Text(f"compare: {len(reuse)} analyses recorded in {path}"), soft_wrap=True)

    interrupts = Interrupts()

    def record(item: BatchItem[ImageAnalysisResult], latency: float) -> None:
        with interrupts.held():  # Ctrl-C waits for the whole line
            writer.write(item.to_record() | {"latency_s": latency})

    try:
        with interrupts, progress.display:
            yield reuse, record
    except KeyboardInterrupt:
        err.print(Text(interrupted_text(progress.snapshot())), soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        writer.close()
        lock.release()


def _analyse_and_compare(
    analyzer: ImageAnalyzer,
    items: list[tuple[str, ImageAnalysisResult]],
    images: Path,
    out: Path,
    synonyms: dict[str, str] | None,
    concurrency: int,
    rpm: int | None,
    progress: _CompareProgress,
    err: Console,
) -> list[ImageReport]:
    """Analyse what `OUT/analyses.jsonl` does not hold yet, appending each analysis to it
    as it completes, and score every image (recorded analyses reused)."""
    from viewfinder.evaluate.report import compare_images

    with _recorded(out, progress, err) as (reuse, record):
        return list(
            compare_images(
                analyzer, items, images, synonyms=synonyms, reuse=reuse,
                concurrency=concurrency, rpm=rpm, on_analysis=record,
                on_report=progress.advance,
            )
        )  # fmt: skip


def _ground_truth_run(
    ground_truth: Path,
    images: Path,
    out: Path,
    label_map: Path | None,
    results: Path | None,
    make_analyzer: Callable[[], ImageAnalyzer],
    err: Console,
    *,
    concurrency: int,
    rpm: int | None,
    interval: float,
    quiet: bool,
) -> GroundTruthRun:
    """Read the dataset and viewfinder's results (stored, or analysed now on the batch
    core, recorded in `OUT/analyses.jsonl` as `--azure` records them), and score."""
    from viewfinder.evaluate.coco import load_coco
    from viewfinder.evaluate.ground_truth import run_ground_truth
    from viewfinder.evaluate.report import load_viewfinder_batch

    analyzer = None
    try:
        mapping = None if label_map is None else _load_synonyms(label_map)
        truth = load_coco(ground_truth)
        stored = None if results is None else load_viewfinder_batch(results)
        analyzer = None if stored is not None else make_analyzer()
    except (ViewfinderError, OSError) as exc:
        err.print(Text(f"error: {exc}"), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    progress = _CompareProgress(err, len(truth.images), interval=interval, quiet=quiet)
    try:
        if analyzer is None:
            with progress.display:
                return run_ground_truth(
                    truth, images, stored=stored, label_map=mapping, on_outcome=progress.advance
                )
        with _recorded(out, progress, err) as (reuse, record):
            return run_ground_truth(
                truth, images, analyzer=analyzer, label_map=mapping, reuse=reuse,
                concurrency=concurrency, rpm=rpm, on_analysis=record,
                on_outcome=progress.advance,
            )  # fmt: skip
    finally:
        if analyzer is not None:
            analyzer.close()


def _print_ground_truth(run: GroundTruthRun, out: Path, console: Console, err: Console) -> None:
    """The terminal table (one row per class, then all), failures, and the report paths."""
    from viewfinder.evaluate.ground_truth import write_ground_truth_report

    json_path, md_path = write_ground_truth_report(run, out)
    for outcome in run.outcomes:
        if outcome.error is not None:
            err.print(Text(f"error: {outcome.image}: {outcome.error}", style="red"), soft_wrap=True)

    def f(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    s = run.scores
    table = Table(show_edge=False, header_style="bold")
    for column in ("class", "boxes", "detections", "matched", "P", "R", "F1"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for column in ("AP50", "AP75", "AP"):
        table.add_column(column, justify="right")
    for c in s.classes:
        table.add_row(
            c.name, str(c.reference), str(c.predicted), str(c.matched),
            *(f(v) for v in (c.precision, c.recall, c.f1, c.ap50, c.ap75, c.ap)),
        )  # fmt: skip
    table.add_row(
        "all", str(s.reference), str(s.predicted), str(s.matched),
        *(f(v) for v in (s.precision, s.recall, s.f1, s.map50, s.map75, s.map)),
        style="bold",
    )  # fmt: skip
    console.print(table)
    if s.unknown_names:
        console.print(
            Text("names outside the dataset (false positives): " + ", ".join(s.unknown_names)),
            soft_wrap=True,
        )
    costs = [o.cost for o in run.outcomes if o.cost is not None]
    console.print(
        Text(
            f"images {len(run.outcomes)}, scored {s.images}, failed {run.failed}, "
            f"mean IoU of matches {f(s.mean_iou)}, total cost "
            + (f"${sum(costs):.4f}" if costs else "unknown"),
            style="bold",
        ),
        soft_wrap=True,
    )
    console.print(Text(f"report: {json_path}\nreport: {md_path}"), soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `compare` command to `app`.

    Args:
        app: The Typer application (`viewfinder.cli.app`, or one a test builds).
    """
    app.command("compare")(compare)
