"""Score viewfinder's boxes on a COCO-labelled set of images, and report.

```
truth = load_coco("labels.json")
run = run_ground_truth(truth, "images/", analyzer=analyzer, concurrency=8)  # analyse
run = run_ground_truth(truth, None, stored=load_viewfinder_batch("out.jsonl"))  # no call
json_path, md_path = write_ground_truth_report(run, "report/")
```

Each image is analysed for `objects`, and `people` too when the dataset has a `person`
category, with whatever the analyzer is configured for (model, local engine, hybrid), or
its result is read from a `viewfinder batch` output. An image that fails (missing file,
analysis error, no result in the batch output) is reported and left out of the scores:
its boxes count neither as found nor as missed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from viewfinder.analyzers.features import Feature
from viewfinder.analyzers.image_analysis import ImageAnalyzer
from viewfinder.batch.records import BatchItem
from viewfinder.batch.settings import DEFAULT_CONCURRENCY
from viewfinder.evaluate.coco import (
    PERSON,
    CocoGroundTruth,
    CocoImage,
    CocoScores,
    Detection,
    detections_of,
    score_coco,
)
from viewfinder.evaluate.report import (
    Ask,
    StoredAnalysis,
    analyse_timed,
    covers,
    find_image,
    stored_result,
)
from viewfinder.schemas.result import ImageAnalysisResult

__all__ = [
    "GroundTruthRun",
    "ImageOutcome",
    "markdown_report",
    "run_ground_truth",
    "write_ground_truth_report",
]


class ImageOutcome(BaseModel):
    """How one image's result was obtained."""

    model_config = ConfigDict(frozen=True)

    image: str
    """The image's `file_name`."""
    error: str | None = None
    """`"<ErrorType>: <message>"` when there is no result to score, else `None`."""
    latency_s: float | None = None
    """Seconds `analyze` took; `None` for stored results."""
    cost: float | None = None
    """Dollars of the call (or as the batch recorded it); `None` when unknown."""
    model_version: str | None = None
    """The result's `model_version` (model, convention, engine)."""


class GroundTruthRun(BaseModel):
    """A whole set: the scores and how each image went."""

    model_config = ConfigDict(frozen=True)

    scores: CocoScores
    """The scores over the images that have a result."""
    outcomes: tuple[ImageOutcome, ...]
    """One per image of the dataset, in its order."""

    @property
    def failed(self) -> int:
        """Images without a result to score."""
        return sum(o.error is not None for o in self.outcomes)


def _features(truth: CocoGroundTruth) -> tuple[Feature, ...]:
    if PERSON in truth.categories:
        return (Feature.OBJECTS, Feature.PEOPLE)
    return (Feature.OBJECTS,)


def _image_path(image: CocoImage, images_dir: Path) -> Path:
    exact = images_dir / image.file_name
    if exact.is_file():
        return exact
    found = find_image(image.file_name, images_dir)
    if found is None:
        raise FileNotFoundError(f"no image {image.file_name!r} in {images_dir}")
    return found


def run_ground_truth(
    truth: CocoGroundTruth,
    images_dir: str | Path | None,
    *,
    analyzer: ImageAnalyzer | None = None,
    stored: Mapping[str, tuple[ImageAnalysisResult, float | None]] | None = None,
    label_map: Mapping[str, str] | None = None,
    reuse: Mapping[str, StoredAnalysis] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: float | None = None,
    on_analysis: Callable[[BatchItem[ImageAnalysisResult], float], None] | None = None,
    on_outcome: Callable[[ImageOutcome], None] | None = None,
) -> GroundTruthRun:
    """Obtain viewfinder's result for every image of the dataset and score the boxes.

    Analysis runs on the batch core (`evaluate.report.analyse_timed`: one `analyze_many`
    run, `concurrency` at a time, paced), as `compare --azure` does.

    Args:
        truth: The dataset (`load_coco`).
        images_dir: Where `file_name`s are resolved (exact relative path first, else by
            name or stem, as `find_image`); not needed with `stored`.
        analyzer: The analyzer to evaluate, when `stored` is not given.
        stored: Results of a `viewfinder batch` run (`load_viewfinder_batch`), matched by
            the file name or stem of `file_name`: scored with no model call.
        label_map: The model's names -> the dataset's names (case-insensitive).
        reuse: Analyses an earlier run recorded (`load_analyses`), by `file_name`: an
            image whose recorded result holds every feature asked is not analysed again.
        concurrency: Images analysed at the same time.
        rpm: Requests per minute (default: the analyzer's limiter, else learned).
        on_analysis: Called with each analysis made (a batch item, its id the
            `file_name`) and its latency, as it completes: the place to record it.
        on_outcome: Called with each image's outcome as it is known: the place to feed
            a progress display.

    Returns:
        The scores and each image's outcome, in the dataset's order.

    Raises:
        ValueError: Neither `analyzer` nor `stored` is given, or `images_dir` is missing
            when analysing.
    """
    if stored is None and (analyzer is None or images_dir is None):
        raise ValueError("run_ground_truth needs stored results, or an analyzer and images")
    ask = Ask(_features(truth), (), 1, False, False)
    detections: dict[int, list[Detection]] = {}
    outcomes: dict[int, ImageOutcome] = {}

    def settle(
        image: CocoImage,
        result: ImageAnalysisResult | None,
        error: str | None,
        cost: float | None = None,
        latency: float | None = None,
    ) -> None:
        if result is not None and result.objects is None and result.people is None:
            result, error = None, "LookupError: the result holds neither objects nor people"
        if result is None:
            outcome = ImageOutcome(image=image.file_name, error=error or "no result")
        else:
            detections[image.id] = detections_of(result, truth.categories, label_map)
            outcome = ImageOutcome(
                image=image.file_name,
                latency_s=latency,
                cost=cost,
                model_version=result.model_version,
            )
        outcomes[image.id] = outcome
        if on_outcome is not None:
            on_outcome(outcome)

    pending: list[tuple[CocoImage, Path]] = []
    for image in truth.images:
        try:
            if stored is not None:
                result, cost = stored_result(Path(image.file_name).name, stored)
                settle(image, result, None, cost)
                continue
            earlier = None if reuse is None else reuse.get(image.file_name)
            if earlier is not None and covers(earlier.result, ask):
                settle(image, earlier.result, None, earlier.cost, earlier.latency_s)
                continue
            assert images_dir is not None  # checked above
            pending.append((image, _image_path(image, Path(images_dir))))
        except Exception as exc:  # an entry, never a stop
            settle(image, None, _error(exc))
    if analyzer is not None and pending:
        names = [(image.file_name, path) for image, path in pending]
        for item, latency in analyse_timed(analyzer, ask, names, concurrency, rpm):
            if on_analysis is not None:
                on_analysis(item, latency)
            image = pending[item.index][0]
            if item.result is None:
                settle(image, None, _error(item.error) if item.error else None)
            else:
                settle(image, item.result, None, item.cost, latency)
    ordered = tuple(outcomes[image.id] for image in truth.images)
    return GroundTruthRun(scores=score_coco(truth, detections), outcomes=ordered)


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _document(run: GroundTruthRun) -> dict[str, Any]:
    costs = [o.cost for o in run.outcomes if o.cost is not None]
    latencies = [o.latency_s for o in run.outcomes if o.latency_s is not None]
    return {
        "images": len(run.outcomes),
        "failed": run.failed,
        "total_cost": sum(costs) if costs else None,
        "mean_latency_s": _mean(latencies),
        "model_versions": sorted({o.model_version for o in run.outcomes if o.model_version}),
        "scores": run.scores.model_dump(mode="json"),
        "outcomes": [o.model_dump(mode="json") for o in run.outcomes],
    }


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown_report(run: GroundTruthRun) -> str:
    """The scores as Markdown: the overall line, one row per class, one per image.

    Args:
        run: A scored run.

    Returns:
        Markdown text (GitHub tables).
    """
    s = run.scores
    lines = [
        f"images {len(run.outcomes)}, scored {s.images}, failed {run.failed}; "
        f"boxes {s.reference}, detections {s.predicted}, matched at IoU 0.5 {s.matched}",
        "",
        "| class | boxes | detections | matched | precision | recall | F1 | AP50 | AP75 | AP |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in s.classes:
        lines.append(
            f"| {c.name} | {c.reference} | {c.predicted} | {c.matched} | {_f(c.precision)} "
            f"| {_f(c.recall)} | {_f(c.f1)} | {_f(c.ap50)} | {_f(c.ap75)} | {_f(c.ap)} |"
        )
    lines.append(
        f"| **all** | {s.reference} | {s.predicted} | {s.matched} | {_f(s.precision)} "
        f"| {_f(s.recall)} | {_f(s.f1)} | {_f(s.map50)} | {_f(s.map75)} | {_f(s.map)} |"
    )
    if s.unknown_names:
        lines += ["", "names outside the dataset: " + ", ".join(s.unknown_names)]
    lines += [
        "",
        "| image | boxes | detections | matched | precision | recall | F1 | mean IoU |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for i in s.per_image:
        lines.append(
            f"| {i.image} | {i.reference} | {i.predicted} | {i.matched} | {_f(i.precision)} "
            f"| {_f(i.recall)} | {_f(i.f1)} | {_f(i.mean_iou)} |"
        )
    for o in run.outcomes:
        if o.error is not None:
            lines.append(f"| {o.image} | failed: {o.error} |||||||")
    return "\n".join(lines) + "\n"


def write_ground_truth_report(run: GroundTruthRun, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `report.json` (for CI) and `report.md` into `out_dir`.

    Args:
        run: A scored run.
        out_dir: Directory to write into (created if missing).

    Returns:
        The paths of `report.json` and `report.md`.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(_document(run), indent=2) + "\n", encoding="utf-8")
    md_path = folder / "report.md"
    md_path.write_text(markdown_report(run), encoding="utf-8")
    return json_path, md_path
