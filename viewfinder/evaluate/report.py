"""Compare viewfinder with stored Azure results over a folder of images, and report.

```
for name, azure in load_azure("azure/"):            # or "azure.jsonl"
    ...
reports = list(compare_images(analyzer, load_azure("azure/"), "images/"))
json_path, html_path = write_report(reports, "report/", "images/")
```

Images are analysed on the batch core (`ImageAnalyzer.analyze_many`: concurrent, paced);
`on_analysis` sees each analysis as it completes (`viewfinder compare` records them to
resume), `on_report` each image's report (for a progress display).

`report.json` is for CI (the `summarize` summary, per-image scores, costs, latency, and
the charts' data); `report.html` is one self-contained page rendered from the Jinja2
template `report.html.j2` (autoescaped; no external CSS, scripts or fonts): totals, the
summary table, charts (inline SVG from `viewfinder.evaluate.charts`, with the `report`
extra), then the worst `worst` images, each drawn with Azure's and viewfinder's results
(`overlays`) as JPEG thumbnails of bounded size (`jpeg_data_url`), so the page stays
small however many images were compared.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, NamedTuple

import jinja2
from markupsafe import Markup
from PIL import Image
from pydantic import BaseModel, ConfigDict

from viewfinder.analyzers.features import Feature
from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.batch.records import BatchItem, batch_item
from viewfinder.batch.settings import DEFAULT_CONCURRENCY
from viewfinder.compat.rest import from_azure_json
from viewfinder.compat.results32 import from_cv32_json, is_cv32_json
from viewfinder.cost.pricing import cost_of
from viewfinder.draw import draw, draw_comparison
from viewfinder.errors import (
    AzureInputError,
    ConfigurationError,
    InvalidOptionError,
    ViewfinderError,
)
from viewfinder.evaluate.charts import CHARTS_HINT, ChartRow, chart_data, has_charts, render_svgs
from viewfinder.evaluate.compare import (
    FeatureScores,
    ImageComparison,
    compare_results,
    summarize,
)
from viewfinder.prepare.decode import decode_rgb, has_image_suffix
from viewfinder.schemas.result import ImageAnalysisResult, Usage

__all__ = [
    "COMPARISON_LABEL",
    "DEFAULT_WORST",
    "THUMBNAIL_BYTES",
    "THUMBNAIL_QUALITY",
    "THUMBNAIL_SIDE",
    "ImageReport",
    "Panel",
    "StoredAnalysis",
    "analyse_timed",
    "badness",
    "compare_images",
    "covers",
    "find_image",
    "jpeg_data_url",
    "load_analyses",
    "load_azure",
    "overlays",
    "stored_result",
    "write_report",
]

THUMBNAIL_SIDE: Final = 480
"""Long side, in pixels, of the pictures in the HTML report."""
THUMBNAIL_QUALITY: Final = 75
"""JPEG quality of the pictures, lowered for a picture that would exceed `THUMBNAIL_BYTES`."""
THUMBNAIL_BYTES: Final = 28_000
"""Most bytes of one picture's JPEG (some 37 KB in base64): with one picture per image
(the comparison) and `DEFAULT_WORST` images, the page stays under 5 MB however many images
were compared."""
DEFAULT_WORST: Final = 100
"""Images drawn in the HTML report unless told otherwise: the worst ones."""

_MIN_RATIO: Final = 0.75
_MAX_RATIO: Final = 1.8


class ImageReport(BaseModel):
    """The comparison of one image, or why it could not be made."""

    model_config = ConfigDict(frozen=True)

    image: str
    """The image's name, as the Azure input gives it."""
    scores: ImageComparison | None = None
    """Per-feature scores; `None` when the image failed."""
    error: str | None = None
    """`"<ErrorType>: <message>"` when the image failed, else `None`."""
    latency_s: float | None = None
    """Seconds `analyze` took (wall clock)."""
    cost: float | None = None
    """Dollars of the call; `None` when the model has no price or the call failed."""
    usage: Usage | None = None
    """Tokens and requests of the call."""
    azure: ImageAnalysisResult | None = None
    """Azure's result (the reference)."""
    viewfinder: ImageAnalysisResult | None = None
    """viewfinder's result (the prediction)."""


# --- input ---------------------------------------------------------------------------------


def _parse(data: Any, where: str) -> ImageAnalysisResult:
    """An Image Analysis 4.0 body, or a Computer Vision 3.2 analyze body (`is_cv32_json`)."""
    if not isinstance(data, Mapping):
        raise AzureInputError(f"{where}: expected a JSON object")
    try:
        if is_cv32_json(data):
            return from_cv32_json(data)
        return from_azure_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise AzureInputError(f"{where}: not Azure Image Analysis JSON ({exc!r})") from None


def load_azure(path: str | Path) -> Iterator[tuple[str, ImageAnalysisResult]]:
    """Read stored Azure REST results.

    Each result is an Image Analysis 4.0 body or a stored Computer Vision 3.2 analyze
    (describe, tag, detect) body (`viewfinder.compat.results32`); a directory or file
    may mix both.

    Args:
        path: A directory of `<image-stem>.json` files (read in name order; the name is
            the stem), or a JSONL file whose lines are `{"image": ..., "result": {...}}`
            or the Azure JSON itself with an `"image"` key added (the name is that value,
            a file name or a path). Blank lines are skipped.

    Yields:
        `(image name, Azure result)` pairs.

    Raises:
        AzureInputError: The path is missing, or a file or line is not Azure JSON.
    """
    source = Path(path)
    if source.is_dir():
        for file in sorted(source.glob("*.json")):
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise AzureInputError(f"{file}: {exc}") from None
            yield file.stem, _parse(data, str(file))
        return
    if not source.is_file():
        raise AzureInputError(f"{source}: no such file or directory")
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise AzureInputError(f"{source}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise AzureInputError(f"{where}: {exc}") from None
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise AzureInputError(f'{where}: expected an object with an "image" string')
        name = item["image"]
        data = (
            item["result"] if "result" in item else {k: v for k, v in item.items() if k != "image"}
        )
        yield name, _parse(data, where)


def find_image(name: str, images_dir: str | Path) -> Path | None:
    """The file of `images_dir` for the image `name`.

    Args:
        name: A file name, a path (its last part is used), or a stem without suffix.
        images_dir: The directory of images.

    Returns:
        The exact file name if it exists, else the first image file (sorted) whose
        stem is `name`; `None` when there is neither.
    """
    folder = Path(images_dir)
    base = Path(name).name
    exact = folder / base
    if base and exact.is_file():
        return exact
    stem = Path(base).stem if has_image_suffix(base) else base
    if not folder.is_dir():
        return None
    for child in sorted(folder.iterdir()):
        if child.is_file() and child.stem == stem and has_image_suffix(child):
            return child
    return None


_REFERENCE_FIELDS: Final = (*FeatureScores.model_fields, "landmarks")
"""Result fields a reference may hold."""


def _features_of(result: ImageAnalysisResult) -> tuple[Feature, ...]:
    return tuple(f for f in Feature if getattr(result, f.value, None) is not None)


# --- comparing -----------------------------------------------------------------------------


def load_viewfinder_batch(path: str | Path) -> dict[str, tuple[ImageAnalysisResult, float | None]]:
    """Successful results of a `viewfinder batch` output file, by image file name and stem.

    Later lines win (a re-run's success replaces an earlier failure).
    """
    found: dict[str, tuple[ImageAnalysisResult, float | None]] = {}
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line from a killed run
            if record.get("status") != "ok" or "result" not in record:
                continue
            entry = (ImageAnalysisResult.model_validate(record["result"]), record.get("cost"))
            ident = Path(str(record.get("id", "")))
            found[ident.name] = found[ident.stem] = entry
    return found


def stored_result(
    name: str, stored: Mapping[str, tuple[ImageAnalysisResult, float | None]]
) -> tuple[ImageAnalysisResult, float | None]:
    """The stored result (and its cost) of image `name`, by its file name or stem, from
    `load_viewfinder_batch`'s mapping.

    Raises:
        LookupError: The batch output holds no successful result for it.
    """
    entry = stored.get(name) or stored.get(Path(name).stem)
    if entry is None:
        raise LookupError(f"no successful result for {name!r} in the viewfinder batch output")
    return entry


def _compare_stored(
    name: str,
    azure: ImageAnalysisResult,
    stored: Mapping[str, tuple[ImageAnalysisResult, float | None]],
    synonyms: Mapping[str, str] | None,
) -> ImageReport:
    result, cost = stored_result(name, stored)
    return ImageReport(
        image=name,
        scores=compare_results(result, azure, synonyms=synonyms),
        cost=cost,
        usage=result.usage,
        azure=azure,
        viewfinder=result,
    )


class StoredAnalysis(NamedTuple):
    """An analysis an earlier `compare` run made and recorded (`load_analyses`)."""

    result: ImageAnalysisResult
    cost: float | None
    latency_s: float | None


def load_analyses(path: str | Path) -> dict[str, StoredAnalysis]:
    """The successful analyses of a `compare` run's JSONL, by record id (the image's name).

    The file holds batch records (`viewfinder.batch.records.BatchItem.to_record`) with a
    `"latency_s"` added; the latest line of an id wins, so a failure after a success
    forgets it. Unreadable lines (a torn last line) are skipped; a missing file is empty.
    """
    found: dict[str, StoredAnalysis] = {}
    source = Path(path)
    if not source.exists():
        return found
    with source.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or "id" not in record:
                continue
            ident = str(record["id"])
            if record.get("status") != "ok" or "result" not in record:
                found.pop(ident, None)
                continue
            latency = record.get("latency_s")
            found[ident] = StoredAnalysis(
                ImageAnalysisResult.model_validate(record["result"]),
                record.get("cost"),
                latency if isinstance(latency, int | float) else None,
            )
    return found


class Ask(NamedTuple):
    """What an image is analysed for: its Azure result's features, asked as they were (or,
    for COCO ground truth, objects and perhaps people)."""

    features: tuple[Feature, ...]
    ratios: tuple[float, ...]
    max_candidates: int
    tag_hints: bool
    object_parents: bool


def _ask_of(azure: ImageAnalysisResult) -> Ask:
    """Exactly the features the Azure result has (smart crops at Azure's aspect ratios; a
    stored 3.2 result asked as it was: its caption count, tag hints, object parents)."""
    features = _features_of(azure)
    if not features:
        held = [name for name in _REFERENCE_FIELDS if getattr(azure, name) is not None]
        raise AzureInputError(
            "the Azure result has no feature viewfinder can analyze"
            + (f" (it holds: {', '.join(held)})" if held else "")
        )
    ratios = sorted(
        {
            c.aspect_ratio
            for c in azure.smart_crops or ()
            if _MIN_RATIO <= c.aspect_ratio <= _MAX_RATIO
        }
    )
    candidates = len(azure.description.captions) if azure.description is not None else 1
    return Ask(
        features,
        tuple(ratios),
        min(max(candidates, 1), 10),
        any(tag.hint for tag in azure.tags or ()),
        any(obj.parent for obj in azure.objects or ()),
    )


def covers(result: ImageAnalysisResult, ask: Ask) -> bool:
    """Whether a recorded result holds every feature asked now (else it is analysed again)."""
    return all(getattr(result, f.value, None) is not None for f in ask.features)


class _Pending(NamedTuple):
    position: int
    name: str
    image: Path
    azure: ImageAnalysisResult


def analyse_timed(
    analyzer: ImageAnalyzer,
    ask: Ask,
    images: Sequence[tuple[str, Path]],
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
) -> Iterator[tuple[BatchItem[ImageAnalysisResult], float]]:
    """`(name, path)` images asked the same, through one `analyze_many` run: each batch
    item (its `index` is the image's position in `images`) and its latency, as it
    completes. Latency: from the moment the run pulls the image (a slot is free, so its
    work starts: pacing waits included, as a lone `analyze` waits) to its result. An
    analyzer whose async client has an `http_client` of its own cannot be run on the
    batch's event loop: its images are analysed one at a time instead. Shared by
    `compare --azure` and `compare --ground-truth`."""
    started: dict[int, float] = {}

    def inputs() -> Iterator[tuple[str, Path]]:
        for index, (name, path) in enumerate(images):
            started[index] = time.perf_counter()
            yield name, path

    try:
        run = analyzer.analyze_many(
            inputs(),
            ask.features,
            smart_crops_aspect_ratios=ask.ratios or None,
            max_candidates=ask.max_candidates,
            tag_hints=ask.tag_hints,
            object_parents=ask.object_parents,
            concurrency=concurrency,
            rpm=rpm,
        )
    except ConfigurationError:
        yield from _one_by_one(analyzer, ask, images)
        return
    with run:
        for item in run:
            yield item, time.perf_counter() - started[item.index]


def _one_by_one(
    analyzer: ImageAnalyzer, ask: Ask, images: Sequence[tuple[str, Path]]
) -> Iterator[tuple[BatchItem[ImageAnalysisResult], float]]:
    """`analyse_timed` for an analyzer the batch core cannot run: `analyze`, in order."""
    for index, (name, path) in enumerate(images):
        with path.open("rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
        start = time.perf_counter()
        try:
            result = analyzer.analyze(
                path,
                features=ask.features,
                smart_crops_aspect_ratios=ask.ratios or None,
                max_candidates=ask.max_candidates,
                tag_hints=ask.tag_hints,
                object_parents=ask.object_parents,
            )
        except ViewfinderError as exc:
            usage = getattr(exc, "usage", None) or Usage()
            cost = cost_of(usage, analyzer.model)
            item: BatchItem[ImageAnalysisResult] = batch_item(
                name, index, str(path), digest, error=exc, usage=usage, cost=cost
            )
        else:
            cost = cost_of(result.usage, analyzer.model)
            item = batch_item(name, index, str(path), digest, result, usage=result.usage, cost=cost)
        yield item, time.perf_counter() - start


def _analyse_group(
    analyzer: ImageAnalyzer,
    ask: Ask,
    group: Sequence[_Pending],
    synonyms: Mapping[str, str] | None,
    concurrency: int,
    rpm: float | None,
    on_analysis: Callable[[BatchItem[ImageAnalysisResult], float], None] | None,
) -> Iterator[tuple[int, ImageReport]]:
    """`(position, report)` of each image of the group, as its analysis completes."""
    images = [(pending.name, pending.image) for pending in group]
    for item, latency in analyse_timed(analyzer, ask, images, concurrency, rpm):
        if on_analysis is not None:
            on_analysis(item, latency)
        pending = group[item.index]
        if item.result is None:
            error = item.error
            report = ImageReport(
                image=pending.name,
                error=f"{type(error).__name__}: {error}",
                usage=item.usage,
                cost=item.cost,
                azure=pending.azure,
            )
        else:
            report = ImageReport(
                image=pending.name,
                scores=compare_results(item.result, pending.azure, synonyms=synonyms),
                latency_s=latency,
                cost=item.cost,
                usage=item.usage,
                azure=pending.azure,
                viewfinder=item.result,
            )
        yield pending.position, report


def compare_images(
    analyzer: ImageAnalyzer | None,
    azure_items: Iterable[tuple[str, ImageAnalysisResult]],
    images_dir: str | Path,
    *,
    synonyms: Mapping[str, str] | None = None,
    stored: Mapping[str, tuple[ImageAnalysisResult, float | None]] | None = None,
    reuse: Mapping[str, StoredAnalysis] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    on_analysis: Callable[[BatchItem[ImageAnalysisResult], float], None] | None = None,
    on_report: Callable[[ImageReport], None] | None = None,
) -> Iterator[ImageReport]:
    """Analyse the images with viewfinder, on the batch core, and score each against Azure.

    Each image is analysed for exactly the features its Azure result has (smart crops
    at Azure's aspect ratios); images asked the same go through one
    `ImageAnalyzer.analyze_many` run: `concurrency` at a time, paced. A failure (missing
    image, analysis error) becomes an entry with `error` set; the run goes on.

    Args:
        analyzer: The analyzer to evaluate.
        azure_items: `(image name, Azure result)` pairs, e.g. from `load_azure`.
        images_dir: The directory holding the images (found by `find_image`).
        synonyms: Name -> canonical name for tags and object names (see
            `compare_results`).
        stored: viewfinder results already made (`load_viewfinder_batch`): used instead
            of analysing, so `analyzer` may be `None`. Latency is then unknown.
        reuse: Analyses an earlier run recorded (`load_analyses`), by image name: an image
            whose recorded result holds every feature asked is not analysed again.
        concurrency: Images analysed at the same time.
        rpm: Requests per minute (default: the analyzer's limiter, else learned).
        on_analysis: Called with each analysis made (a batch item) and its latency in
            seconds, as it completes: the place to record it (`viewfinder compare` appends
            `item.to_record()` to its JSONL).
        on_report: Called with each image's report as it is made (reused, failed or
            analysed): the place to feed a progress display.

    Yields:
        One report per Azure item, in input order, once all are made.
    """
    items = list(azure_items)
    reports: list[ImageReport | None] = [None] * len(items)

    def done(position: int, report: ImageReport) -> None:
        reports[position] = report
        if on_report is not None:
            on_report(report)

    groups: dict[Ask, list[_Pending]] = {}
    for position, (name, azure) in enumerate(items):
        try:
            if stored is not None:
                done(position, _compare_stored(name, azure, stored, synonyms))
                continue
            if analyzer is None:
                raise ValueError("compare_images needs an analyzer or stored results")
            image = find_image(name, images_dir)
            if image is None:
                raise FileNotFoundError(f"no image named {name!r} in {images_dir}")
            ask = _ask_of(azure)
            earlier = None if reuse is None else reuse.get(name)
            if earlier is not None and covers(earlier.result, ask):
                report = ImageReport(
                    image=name,
                    scores=compare_results(earlier.result, azure, synonyms=synonyms),
                    latency_s=earlier.latency_s,
                    cost=earlier.cost,
                    usage=earlier.result.usage,
                    azure=azure,
                    viewfinder=earlier.result,
                )
                done(position, report)
                continue
            groups.setdefault(ask, []).append(_Pending(position, name, image, azure))
        except Exception as exc:  # an entry, never a stop
            done(
                position, ImageReport(image=name, error=f"{type(exc).__name__}: {exc}", azure=azure)
            )
    if analyzer is not None:
        for ask, group in groups.items():
            for position, report in _analyse_group(
                analyzer, ask, group, synonyms, concurrency, rpm, on_analysis
            ):
                done(position, report)
    for made in reports:
        assert made is not None  # every position is filled above
        yield made


# --- scoring for the order -----------------------------------------------------------------


def _headlines(comparison: ImageComparison) -> dict[str, float]:
    s = comparison.scores
    values: dict[str, float] = {}
    if s.caption is not None:
        values["caption token F1"] = s.caption.token_f1
    if s.tags is not None:
        values["tags F1"] = s.tags.f1
    if s.objects is not None:
        values["objects recall"] = s.objects.recall
    if s.people is not None:
        values["people recall"] = s.people.recall
    if s.read is not None:
        values["read 1-CER"] = max(0.0, 1.0 - s.read.cer)
    if s.smart_crops is not None:
        values["crops mean IoU"] = s.smart_crops.mean_iou
    if s.categories is not None:
        values["categories family F1"] = s.categories.family_f1
    if s.description is not None:
        values["description token F1"] = s.description.token_f1
    if s.brands is not None:
        values["brands recall"] = s.brands.recall
    if s.faces is not None:
        values["faces recall"] = s.faces.recall
    if s.adult is not None:
        values["adult agreement"] = s.adult.agreement
    return values


def badness(report: ImageReport) -> float:
    """How badly viewfinder did on an image: higher is worse.

    Args:
        report: One image's report.

    Returns:
        `1 - mean` of the available headline metrics (caption token F1, tags F1,
        objects and people recall, read `1 - CER` floored at 0, smart crops mean IoU;
        for 3.2 references also categories family F1, description token F1, brands
        and faces recall, adult agreement), in 0-1; `2.0` for a failed image, `1.0`
        when no headline metric applies.
    """
    if report.scores is None:
        return 2.0
    values = list(_headlines(report.scores).values())
    return 1.0 - sum(values) / len(values) if values else 1.0


# --- writing -------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _chart_row(report: ImageReport) -> ChartRow:
    """What the charts read of one image: headline scores, IoU of matches, cost, latency."""
    if report.scores is None:
        return ChartRow(cost=report.cost, latency_s=report.latency_s)
    s = report.scores.scores
    ious: dict[str, float] = {}
    for name in _IOU_FIELDS:
        score = getattr(s, name)
        value = None if score is None else score.mean_iou
        if value is not None and (name == "smart_crops" or score.matched):
            ious[name] = value
    if s.read is not None and s.read.line_mean_iou is not None and s.read.predicted_lines:
        ious["read lines"] = s.read.line_mean_iou
    return ChartRow(
        headlines=_headlines(report.scores),
        ious=ious,
        cost=report.cost,
        latency_s=report.latency_s,
    )


_IOU_FIELDS: Final = ("objects", "people", "dense_captions", "brands", "faces", "smart_crops")
"""Scores with a `mean_iou`: of matched boxes (of crops, for smart crops)."""


def _document(reports: Sequence[ImageReport], worst: int) -> dict[str, Any]:
    comparisons = [r.scores for r in reports if r.scores is not None]
    costs = [r.cost for r in reports if r.cost is not None]
    latencies = [r.latency_s for r in reports if r.latency_s is not None]
    return {
        "summary": summarize(comparisons),
        "images": len(reports),
        "failed": sum(r.error is not None for r in reports),
        "total_cost": sum(costs) if costs else None,
        "mean_latency_s": _mean(latencies),
        "unscored": sorted({name for c in comparisons for name in c.unscored}),
        "shown_in_html": min(worst, len(reports)),
        "charts": chart_data([_chart_row(r) for r in reports]),
        "results": [
            {
                "image": r.image,
                "error": r.error,
                "badness": badness(r),
                "latency_s": r.latency_s,
                "cost": r.cost,
                "usage": None if r.usage is None else r.usage.model_dump(mode="json"),
                "scores": None if r.scores is None else r.scores.model_dump(mode="json"),
            }
            for r in reports
        ],
    }


# --- pictures ------------------------------------------------------------------------------


class Panel(NamedTuple):
    """One picture of an image in the page: a label, the JPEG thumbnail, text below it."""

    label: str
    thumbnail: Image.Image | None
    error: str | None = None
    lines: tuple[str, ...] = ()


def _scaled(result: ImageAnalysisResult, size: tuple[int, int], full: tuple[int, int]) -> Any:
    """`result` with its geometry (every box and point) moved from `full` pixels to `size`,
    so it is drawn on the thumbnail at a legible line width and font size.

    Raises:
        InvalidOptionError: The result was made on an image of another size (as `draw`
            refuses it: its boxes would land in the wrong places).
    """
    meta = result.metadata
    if meta is not None and (meta.width, meta.height) != full:
        raise InvalidOptionError(
            f"the result is for a {meta.width}x{meta.height} image, this one is {full[0]}x{full[1]}"
        )
    fx, fy = size[0] / full[0], size[1] / full[1]

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            keys = set(value)
            if keys == {"x", "y", "width", "height"} or keys == {"x", "y"}:
                out = {"x": round(value["x"] * fx), "y": round(value["y"] * fy)}
                if "width" in value:
                    out["width"] = round(value["width"] * fx)
                    out["height"] = round(value["height"] * fy)
                return out
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    data = walk(result.model_dump(mode="json", exclude={"metadata"}))
    data["metadata"] = {"width": size[0], "height": size[1]}
    return ImageAnalysisResult.model_validate(data)


def _caption_of(result: ImageAnalysisResult | None) -> str:
    if result is None:
        return "-"
    if result.caption is not None:
        return result.caption.text
    if result.description is not None and result.description.captions:
        return result.description.captions[0].text  # 3.2's best
    return "-"


COMPARISON_LABEL: Final = "viewfinder against Azure"
"""The label of the one picture drawn where both results exist."""


def overlays(report: ImageReport, image: Path | None) -> list[Panel]:
    """The pictures of one image in the page: the one place an image's overlay is made.

    The image is shrunk to a thumbnail (`THUMBNAIL_SIDE`) and the results' geometry scaled
    to it, so lines and labels keep a legible size (drawing at full size and shrinking
    would shrink the text with the picture). Where both results exist, ONE picture:
    `vf.draw_comparison`, matched, missed (Azure's only) and extra (viewfinder's only)
    boxes of objects, people, dense captions and read lines in their colours and line
    styles with a legend, paired as the scores pair them; where one side is missing, that
    side's result drawn by `vf.draw`. A picture that cannot be made becomes a panel with
    its error: it must not lose the page.
    """
    captions = (
        f"Azure caption: {_caption_of(report.azure)}",
        f"viewfinder caption: {_caption_of(report.viewfinder)}",
    )
    both = report.azure is not None and report.viewfinder is not None
    label = COMPARISON_LABEL if both else "Azure" if report.azure is not None else "viewfinder"
    if image is None:
        return [Panel(label, None, None, captions)]
    try:
        full = decode_rgb(image.read_bytes(), str(image))  # the decoder's limits, oriented
        thumb = full.copy()
        thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
        if report.azure is not None and report.viewfinder is not None:
            drawn = draw_comparison(
                thumb,
                _scaled(report.viewfinder, thumb.size, full.size),
                _scaled(report.azure, thumb.size, full.size),
            )
        else:
            only = report.azure if report.azure is not None else report.viewfinder
            drawn = thumb if only is None else draw(_scaled(only, thumb.size, full.size), thumb)
    except Exception as exc:  # an unreadable or undrawable picture must not lose the page
        return [Panel(label, None, f"{type(exc).__name__}: {exc}", captions)]
    return [Panel(label, drawn, None, captions)]


def jpeg_data_url(picture: Image.Image) -> tuple[str, tuple[int, int]]:
    """A JPEG data URL of `picture` of at most `THUMBNAIL_BYTES` bytes, and its size.

    Quality `THUMBNAIL_QUALITY` first; a picture whose JPEG is larger (fine detail,
    noise) is written at lower qualities, then smaller, so every picture has a bound.
    """
    image = picture.convert("RGB")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    data = b""
    for quality, scale in _THUMBNAIL_STEPS:
        candidate = image
        if scale < 1:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            candidate = image.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        candidate.save(buffer, format="JPEG", quality=quality, optimize=True)
        data = buffer.getvalue()
        if len(data) <= THUMBNAIL_BYTES:
            break
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"), candidate.size


_THUMBNAIL_STEPS: Final = ((THUMBNAIL_QUALITY, 1.0), (60, 1.0), (45, 1.0), (45, 0.75), (35, 0.5))
"""(JPEG quality, scale) tried in turn until the picture fits `THUMBNAIL_BYTES`; a 240 px
picture at quality 35 fits however noisy it is."""


# --- the page ------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _metrics(score: BaseModel) -> list[tuple[str, str]]:
    return [
        (k, _fmt(v))
        for k, v in score.model_dump().items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]


def _image_view(report: ImageReport, images_dir: Path) -> dict[str, Any]:
    panels = []
    for panel in overlays(report, find_image(report.image, images_dir)):
        view: dict[str, Any] = {"label": panel.label, "error": panel.error, "lines": panel.lines}
        view["src"] = view["width"] = view["height"] = None
        if panel.thumbnail is not None:
            view["src"], (view["width"], view["height"]) = jpeg_data_url(panel.thumbnail)
        panels.append(view)
    scores: list[dict[str, Any]] = []
    if report.scores is not None:
        comparison = report.scores
        scores = [
            {"name": f, "metrics": _metrics(getattr(comparison.scores, f))}
            for f in comparison.features
        ]
        scores += [{"name": f, "metrics": []} for f in comparison.unscored]
    return {
        "name": report.image,
        "badness": _fmt(badness(report)),
        "latency": None if report.latency_s is None else f"{report.latency_s:.2f} s",
        "cost": None if report.cost is None else f"${report.cost:.5f}",
        "error": report.error,
        "panels": panels,
        "scores": scores,
    }


@cache
def _template() -> jinja2.Template:
    source = (resources.files("viewfinder.evaluate") / "report.html.j2").read_text("utf-8")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(source)


def _html(
    reports: Sequence[ImageReport], document: Mapping[str, Any], images_dir: Path, worst: int
) -> str:
    total = document["total_cost"]
    latency = document["mean_latency_s"]
    features = [
        {
            "name": name,
            "images": metrics["images"],
            "metrics": [(k, _fmt(v)) for k, v in metrics.items() if k != "images"],
        }
        for name, metrics in document["summary"]["features"].items()
    ]
    shown = sorted(reports, key=badness, reverse=True)[:worst]
    svgs = render_svgs(document["charts"])
    return _template().render(
        side=THUMBNAIL_SIDE,
        totals={
            "images": document["images"],
            "failed": document["failed"],
            "cost": "unknown" if total is None else f"${total:.4f}",
            "latency": "-" if latency is None else f"{latency:.2f} s",
        },
        features=features,
        unscored=document["unscored"],
        charts=[{"name": name, "svg": Markup(svg)} for name, svg in svgs.items()],
        charts_missing=not has_charts(),
        charts_hint=CHARTS_HINT,
        shown=[_image_view(r, images_dir) for r in shown],
    )


def write_report(
    reports: Iterable[ImageReport],
    out_dir: str | Path,
    images_dir: str | Path,
    *,
    worst: int = DEFAULT_WORST,
) -> tuple[Path, Path]:
    """Write `report.json` and a self-contained `report.html` into `out_dir`.

    Args:
        reports: The per-image reports (e.g. from `compare_images`).
        out_dir: Directory to write into (created if missing).
        images_dir: The directory of images, to draw them in the HTML page.
        worst: Images drawn in the page: the worst `worst` (every image is in the JSON).

    Returns:
        The paths of `report.json` and `report.html`.
    """
    items = list(reports)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    document = _document(items, worst)
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    html_path = folder / "report.html"
    html_path.write_text(_html(items, document, Path(images_dir), worst), encoding="utf-8")
    return json_path, html_path
