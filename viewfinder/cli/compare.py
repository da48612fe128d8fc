"""`viewfinder compare`: score viewfinder against stored Azure results, write a report.

```
viewfinder compare --azure azure/ --images photos/ --model gpt-4.1-mini --out report/
viewfinder compare --azure azure.jsonl --images photos/ --synonyms synonyms.json
```

The stored results may be Image Analysis 4.0 or Computer Vision 3.2 analyze bodies
(`viewfinder.evaluate.report.load_azure`). Features only the Azure side holds are listed
as not scored.

Exit codes: 0 when every image was compared, 1 when any image failed (the others are
still compared and reported), 2 for usage or configuration errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from viewfinder.cli.options import EXIT_IMAGE_FAILED, EXIT_OK, EXIT_USAGE
from viewfinder.errors import AzureInputError, ViewfinderError

__all__ = ["register"]


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
        Path,
        typer.Option(
            "--azure",
            help="Stored Azure results (Image Analysis 4.0 or Computer Vision 3.2): a directory "
            "of <image-stem>.json, or a JSONL file.",
            metavar="DIR_OR_JSONL",
        ),
    ],
    images: Annotated[
        Path, typer.Option("--images", help="Directory of the images.", metavar="DIR")
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model to evaluate.", metavar="NAME"),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="OpenAI-compatible endpoint.", metavar="URL"),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for report.json and report.html.")
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
            help="A `viewfinder batch` output file to score instead of analysing again.",
            metavar="JSONL",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Compare viewfinder with stored Azure results and write an HTML and JSON report."""
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
    if not images.is_dir():
        err.print(Text(f"error: {images}: not a directory"), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
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
    try:
        reports = list(compare_images(analyzer, items, images, synonyms=synonym_map, stored=stored))
    finally:
        if analyzer is not None:
            analyzer.close()
    json_path, html_path = write_report(reports, out, images)

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


def register(app: typer.Typer) -> None:
    """Add the `compare` command to `app`.

    Args:
        app: The Typer application (`viewfinder.cli.app`, or one a test builds).
    """
    app.command("compare")(compare)
