"""`viewfinder export`: a batch output in the formats other tools read.

```
viewfinder export results.jsonl --to coco --out predictions.json
viewfinder export results.jsonl --to coco-results --categories person,car --out res.json
viewfinder export results.jsonl --to yolo --out labels/
viewfinder export results.jsonl --to csv --per image --out images.csv
viewfinder export results.jsonl --to parquet --out detections.parquet
viewfinder export results.jsonl --to label-studio -f objects,people,read \\
    --image-root '/data/local-files/?d=photos' --out tasks.json --config config.xml
```

The formats are `viewfinder.export`'s (its module docstrings say each one's shape):
`coco` (a detection dataset pycocotools loads), `coco-results` (COCOeval's results
list), `yolo` (a directory of label files and `classes.txt`), `csv` and `parquet` (one row
per finding, or per image with `--per image`) and `label-studio` (tasks with predictions;
`--config` also writes the labelling configuration they fit). Images whose last line is
an error are left out and counted on stderr.

Exit codes: 0 when written, 2 for usage errors (an unreadable output, a missing extra).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.text import Text

from viewfinder.cli.options import EXIT_USAGE, split_commas
from viewfinder.errors import UserError

if TYPE_CHECKING:
    from viewfinder.schemas.regions import RegionFeature

__all__ = ["ExportFormat", "export", "register"]


class ExportFormat(StrEnum):
    """`--to`: the file format written."""

    COCO = "coco"
    COCO_RESULTS = "coco-results"
    YOLO = "yolo"
    CSV = "csv"
    PARQUET = "parquet"
    LABEL_STUDIO = "label-studio"


class PerChoice(StrEnum):
    """`--per`: one table row per finding or per image."""

    DETECTION = "detection"
    IMAGE = "image"


def _features(values: list[str] | None, table: bool) -> tuple[RegionFeature, ...]:
    """The `--features` names, checked; each format's default when none are given."""
    from viewfinder.export import DETECTION_FEATURES
    from viewfinder.schemas.regions import REGION_FEATURES

    names = split_commas(values or ())
    if not names:
        return REGION_FEATURES if table else DETECTION_FEATURES
    unknown = [name for name in names if name not in REGION_FEATURES]
    if unknown:
        choices = ", ".join(REGION_FEATURES)
        raise typer.BadParameter(f"{', '.join(unknown)}: not boxed features ({choices})")
    return tuple(cast("RegionFeature", name) for name in names)


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def export(
    results: Annotated[
        Path,
        typer.Argument(
            help="A `viewfinder batch` output.",
            metavar="RESULTS.jsonl",
            dir_okay=False,
            show_default=False,
        ),
    ],
    to: Annotated[
        ExportFormat,
        typer.Option("--to", "-t", help="The format written.", case_sensitive=False),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The file written (for yolo: the directory).",
            metavar="PATH",
            show_default=False,
        ),
    ],
    features: Annotated[
        list[str] | None,
        typer.Option(
            "--features",
            "-f",
            help=(
                "Boxed features exported: objects, people, dense_captions, read, brands, "
                "faces (comma-separated or repeated). Default: objects,people; every one "
                "for csv and parquet."
            ),
            metavar="LIST",
            show_default=False,
        ),
    ] = None,
    per: Annotated[
        PerChoice,
        typer.Option("--per", help="csv, parquet: a row per finding or per image."),
    ] = PerChoice.DETECTION,
    categories: Annotated[
        list[str] | None,
        typer.Option(
            "--categories",
            help=(
                "coco, coco-results, yolo: class names in the order of a dataset's ids "
                "(COCO from 1, YOLO from 0); findings of other names are left out."
            ),
            metavar="LIST",
            show_default=False,
        ),
    ] = None,
    confidence: Annotated[
        bool, typer.Option("--confidence", help="yolo: the score as a sixth column.")
    ] = False,
    image_root: Annotated[
        str | None,
        typer.Option(
            "--image-root",
            help=(
                "label-studio: a URL prefix or local-files root joined with each image's "
                "file name (default: the source as the batch wrote it)."
            ),
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    model_version: Annotated[
        str | None,
        typer.Option(
            "--model-version",
            help="label-studio: the predictions' model_version (default: each result's).",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="label-studio: also write the labelling configuration (XML) here.",
            metavar="PATH",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a batch output as COCO, YOLO, CSV, Parquet or Label Studio tasks."""
    from viewfinder import export as exports

    err = Console(stderr=True, highlight=False)
    table = to in (ExportFormat.CSV, ExportFormat.PARQUET)
    chosen = _features(features, table)
    names = split_commas(categories) if categories else None
    try:
        read = exports.read_results(results)
        if to is ExportFormat.COCO:
            document = exports.to_coco(read, features=chosen, categories=names)
            _write_json(out, document)
            written = f"{len(document['annotations'])} annotations"
        elif to is ExportFormat.COCO_RESULTS:
            found = exports.to_coco_results(read, features=chosen, categories=names)
            _write_json(out, found)
            written = f"{len(found)} detections"
        elif to is ExportFormat.YOLO:
            files = exports.write_yolo(
                read, out, features=chosen, classes=names, confidence=confidence
            )
            written = f"{len(files)} label files and classes.txt"
        elif to is ExportFormat.CSV:
            written = f"{exports.write_csv(read, out, per=per.value, features=chosen)} rows"
        elif to is ExportFormat.PARQUET:
            written = f"{exports.write_parquet(read, out, per=per.value, features=chosen)} rows"
        else:
            tasks = exports.to_label_studio(
                read, features=chosen, image_root=image_root, model_version=model_version
            )
            _write_json(out, tasks)
            if config is not None:
                xml = exports.label_studio_config(read, features=chosen)
                config.write_text(xml, encoding="utf-8")
            written = f"{len(tasks)} tasks"
    except (UserError, ImportError, OSError) as exc:
        err.print(Text(f"error: {exc}"), soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    failed = f"; {read.failed} failed images left out" if read.failed else ""
    err.print(
        Text(f"{len(read.images)} images: {written} written to {out}{failed}"), soft_wrap=True
    )


def register(app: typer.Typer) -> None:
    """Add the `export` command to `app`.

    Args:
        app: The Typer application (`viewfinder.cli.app`, or one a test builds).
    """
    app.command("export")(export)
