"""Compare viewfinder with stored Azure results over a folder of images, and report.

```
for name, azure in load_azure("azure/"):            # or "azure.jsonl"
    ...
reports = list(compare_images(analyzer, load_azure("azure/"), "images/"))
json_path, html_path = write_report(reports, "report/", "images/")
```

`report.json` is for CI (the `summarize` summary, per-image scores, costs, latency);
`report.html` is one self-contained page (images embedded as base64 PNG data URLs, no
external CSS, scripts or fonts) showing the images worst first, each drawn with
Azure's and viewfinder's results side by side.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from PIL import Image
from pydantic import BaseModel, ConfigDict

from viewfinder.analyzers.features import Feature
from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.compat.rest import from_azure_json
from viewfinder.compat.results32 import from_cv32_json, is_cv32_json
from viewfinder.cost.pricing import cost_of
from viewfinder.draw import draw
from viewfinder.errors import AzureInputError
from viewfinder.evaluate.compare import (
    FeatureScores,
    ImageComparison,
    compare_results,
    summarize,
)
from viewfinder.prepare.decode import has_image_suffix
from viewfinder.schemas.result import ImageAnalysisResult, Usage

__all__ = [
    "MAX_WIDTH",
    "ImageReport",
    "badness",
    "compare_images",
    "find_image",
    "load_azure",
    "stored_result",
    "write_report",
]

MAX_WIDTH: Final = 640
"""Widest image, in pixels, embedded in the HTML report."""

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


def _compare_one(
    analyzer: ImageAnalyzer,
    name: str,
    azure: ImageAnalysisResult,
    images_dir: str | Path,
    synonyms: Mapping[str, str] | None,
) -> ImageReport:
    image = find_image(name, images_dir)
    if image is None:
        raise FileNotFoundError(f"no image named {name!r} in {images_dir}")
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
    start = time.perf_counter()
    result = analyzer.analyze(
        image,
        features=features,
        smart_crops_aspect_ratios=ratios or None,
        # a stored 3.2 result is asked for as it was: its caption count, hints, parents
        max_candidates=min(max(candidates, 1), 10),
        tag_hints=any(tag.hint for tag in azure.tags or ()),
        object_parents=any(obj.parent for obj in azure.objects or ()),
    )
    latency = time.perf_counter() - start
    return ImageReport(
        image=name,
        scores=compare_results(result, azure, synonyms=synonyms),
        latency_s=latency,
        cost=cost_of(result.usage, analyzer.model),
        usage=result.usage,
        azure=azure,
        viewfinder=result,
    )


def compare_images(
    analyzer: ImageAnalyzer | None,
    azure_items: Iterable[tuple[str, ImageAnalysisResult]],
    images_dir: str | Path,
    *,
    synonyms: Mapping[str, str] | None = None,
    stored: Mapping[str, tuple[ImageAnalysisResult, float | None]] | None = None,
) -> Iterator[ImageReport]:
    """Analyse each image with viewfinder and score it against Azure's result.

    Each image is analysed for exactly the features its Azure result has (smart crops
    at Azure's aspect ratios). A failure (missing image, analysis error) becomes an
    entry with `error` set; the run goes on.

    Args:
        analyzer: The analyzer to evaluate.
        azure_items: `(image name, Azure result)` pairs, e.g. from `load_azure`.
        images_dir: The directory holding the images (found by `find_image`).
        synonyms: Name -> canonical name for tags and object names (see
            `compare_results`).
        stored: viewfinder results already made (`load_viewfinder_batch`): used instead
            of analysing, so `analyzer` may be `None`. Latency is then unknown.

    Yields:
        One report per Azure item, in order.
    """
    for name, azure in azure_items:
        try:
            if stored is not None:
                yield _compare_stored(name, azure, stored, synonyms)
            elif analyzer is None:
                raise ValueError("compare_images needs an analyzer or stored results")
            else:
                yield _compare_one(analyzer, name, azure, images_dir, synonyms)
        except Exception as exc:  # an entry, never a stop
            yield ImageReport(image=name, error=f"{type(exc).__name__}: {exc}", azure=azure)


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


def _document(reports: Sequence[ImageReport]) -> dict[str, Any]:
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


def _data_url(image: Image.Image) -> str:
    if image.width > MAX_WIDTH:
        height = max(1, round(image.height * MAX_WIDTH / image.width))
        image = image.resize((MAX_WIDTH, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _panel(label: str, result: ImageAnalysisResult | None, image: Path | None) -> str:
    parts = [f"<figure><figcaption><b>{_e(label)}</b></figcaption>"]
    if result is not None and image is not None:
        try:
            parts.append(f'<img alt="{_e(label)}" src="{_data_url(draw(result, image))}">')
        except Exception as exc:  # a picture that cannot be drawn must not lose the page
            parts.append(f'<p class="err">cannot draw: {_e(type(exc).__name__)}: {_e(exc)}</p>')
    caption = None if result is None or result.caption is None else result.caption.text
    if caption is None and result is not None and result.description is not None:
        caption = next((c.text for c in result.description.captions), None)  # 3.2's best
    parts.append(f"<p>caption: {_e(caption if caption is not None else '-')}</p></figure>")
    return "".join(parts)


def _scores_html(comparison: ImageComparison) -> str:
    rows = []
    for feature in comparison.features:
        score = getattr(comparison.scores, feature)
        metrics = ", ".join(
            f"{_e(k)} {_e(_fmt(v))}"
            for k, v in score.model_dump().items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        )
        rows.append(f"<tr><td>{_e(feature)}</td><td>{metrics}</td></tr>")
    for feature in comparison.unscored:
        rows.append(f"<tr><td>{_e(feature)}</td><td>not scored: viewfinder has none</td></tr>")
    return "<table><tr><th>feature</th><th>scores</th></tr>" + "".join(rows) + "</table>"


_STYLE: Final = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:90%}"
    ".pair{display:flex;gap:1em;flex-wrap:wrap}figure{margin:0;max-width:640px}"
    "img{max-width:100%}.err{color:#b00}section{border-top:2px solid #888;margin-top:1em}"
)


def _html(reports: Sequence[ImageReport], document: Mapping[str, Any], images_dir: Path) -> str:
    summary = document["summary"]
    total = document["total_cost"]
    latency = document["mean_latency_s"]
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>viewfinder vs Azure</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>viewfinder vs Azure</h1>",
        f"<p>images: {_e(document['images'])}, failed: {_e(document['failed'])}, "
        f"total cost: {_e('unknown' if total is None else f'${total:.4f}')}, "
        f"mean latency: {_e('-' if latency is None else f'{latency:.2f} s')}</p>",
        "<table><tr><th>feature</th><th>images</th><th>mean per metric</th></tr>",
    ]
    for feature, metrics in summary["features"].items():
        means = ", ".join(f"{_e(k)} {_e(_fmt(v))}" for k, v in metrics.items() if k != "images")
        out.append(
            f"<tr><td>{_e(feature)}</td><td>{_e(metrics['images'])}</td><td>{means}</td></tr>"
        )
    out.append("</table><h2>Images, worst first</h2>")
    for report in sorted(reports, key=badness, reverse=True):
        image = find_image(report.image, images_dir)
        out.append(
            f"<section><h3>{_e(report.image)}</h3><p>badness {_e(_fmt(badness(report)))}"
            + ("" if report.latency_s is None else f", latency {report.latency_s:.2f} s")
            + ("" if report.cost is None else f", cost ${report.cost:.5f}")
            + "</p>"
        )
        if report.error is not None:
            out.append(f'<p class="err">{_e(report.error)}</p>')
        out.append('<div class="pair">')
        out.append(_panel("Azure", report.azure, image))
        out.append(_panel("viewfinder", report.viewfinder, image))
        out.append("</div>")
        if report.scores is not None:
            out.append(_scores_html(report.scores))
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    reports: Iterable[ImageReport], out_dir: str | Path, images_dir: str | Path
) -> tuple[Path, Path]:
    """Write `report.json` and a self-contained `report.html` into `out_dir`.

    Args:
        reports: The per-image reports (e.g. from `compare_images`).
        out_dir: Directory to write into (created if missing).
        images_dir: The directory of images, to draw them in the HTML page.

    Returns:
        The paths of `report.json` and `report.html`.
    """
    items = list(reports)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    document = _document(items)
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    html_path = folder / "report.html"
    html_path.write_text(_html(items, document, Path(images_dir)), encoding="utf-8")
    return json_path, html_path
