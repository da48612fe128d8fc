"""The compare report's charts: their data (always, for report.json) and their pictures
(inline SVG drawn by matplotlib, when the `report` extra is installed).

```
data = chart_data(rows)             # rows: one per image, from report._chart_rows
svgs = render_svgs(data)            # {} without matplotlib: the page says how to get them
```

Four charts: the mean of each headline metric (per-feature scores), each headline metric's
spread across images (a box plot), per-image mean IoU of matched boxes by feature (a
histogram), and per-image cost and latency (histograms). The histograms' bins and counts
are the data: what report.json holds is exactly what is drawn.

matplotlib is used without pyplot (a `Figure` on the SVG canvas: no global state, no GUI
backend), text kept as text (`svg.fonttype: none`, smaller and selectable), and the SVG
made deterministic (a fixed `svg.hashsalt`, no date or creator metadata) so the same data
gives the same bytes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["BINS", "CHARTS_HINT", "ChartRow", "chart_data", "has_charts", "render_svgs"]

BINS: Final = 10
"""Histogram bins over 0-1 (scores, IoU)."""

CHARTS_HINT: Final = "pip install 'viewfinder[report]'"
"""How to get the charts drawn (matplotlib), said on a page without them."""

_IOU_FEATURES: Final = ("objects", "people", "dense_captions", "brands", "faces", "smart_crops")
"""Features whose scores hold a per-image `mean_iou` of matched boxes."""

_SVG_RC: Final[dict[RcKeyType, Any]] = {
    "svg.hashsalt": "viewfinder-report",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@dataclass(frozen=True)
class ChartRow:
    """What the charts read of one compared image."""

    headlines: Mapping[str, float] = field(default_factory=dict)
    """Headline metrics (`report._headlines`), higher is better, 0-1."""
    ious: Mapping[str, float] = field(default_factory=dict)
    """Feature -> mean IoU of its matched boxes on this image."""
    cost: float | None = None
    latency_s: float | None = None


def _histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts of `values` per bin; the last bin includes its right edge."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        for i in range(len(counts)):
            last = i == len(counts) - 1
            if edges[i] <= value < edges[i + 1] or (last and value == edges[-1]):
                counts[i] += 1
                break
    return counts


def _unit_edges() -> list[float]:
    return [round(i / BINS, 10) for i in range(BINS + 1)]


def _span_edges(values: Sequence[float]) -> list[float]:
    """BINS equal bins from 0 to the largest value (a little above, so it is counted)."""
    top = max(values, default=0.0)
    top = top if top > 0 else 1.0
    step = top / BINS
    return [step * i for i in range(BINS + 1)]


def chart_data(rows: Sequence[ChartRow]) -> dict[str, Any]:
    """The numbers every chart draws, JSON-able (report.json's `"charts"`).

    Returns:
        `feature_scores` (metric -> mean over the images having it), `score_spread`
        (metric -> the per-image values), `iou` (`edges`, feature -> counts),
        `cost` and `latency_s` (`edges`, `counts`; `None` when no image has one).
    """
    spread: dict[str, list[float]] = {}
    ious: dict[str, list[float]] = {}
    for row in rows:
        for metric, value in row.headlines.items():
            spread.setdefault(metric, []).append(value)
        for feature, value in row.ious.items():
            ious.setdefault(feature, []).append(value)
    unit = _unit_edges()

    def spread_of(values: Sequence[float]) -> dict[str, Any] | None:
        if not values:
            return None
        edges = _span_edges(values)
        return {"edges": edges, "counts": _histogram(values, edges)}

    return {
        "feature_scores": {m: sum(v) / len(v) for m, v in spread.items()},
        "score_spread": spread,
        "iou": {
            "edges": unit,
            "counts": {
                f: _histogram(ious[f], unit) for f in (*_IOU_FEATURES, "read lines") if f in ious
            },
        },
        "cost": spread_of([r.cost for r in rows if r.cost is not None]),
        "latency_s": spread_of([r.latency_s for r in rows if r.latency_s is not None]),
    }


def has_charts() -> bool:
    """Whether matplotlib (the `report` extra) is installed."""
    return find_spec("matplotlib") is not None


def render_svgs(data: Mapping[str, Any]) -> dict[str, str]:
    """Each chart with data as an inline `<svg>` element, by name; `{}` without matplotlib.

    Args:
        data: `chart_data`'s output.
    """
    if not has_charts():
        return {}
    from matplotlib import rc_context

    svgs: dict[str, str] = {}
    with rc_context(_SVG_RC):
        if data["feature_scores"]:
            svgs["feature_scores"] = _svg(_feature_scores(data["feature_scores"]))
            svgs["score_spread"] = _svg(_score_spread(data["score_spread"]))
        if data["iou"]["counts"]:
            svgs["iou"] = _svg(_iou(data["iou"]))
        if data["cost"] is not None or data["latency_s"] is not None:
            svgs["cost_latency"] = _svg(_cost_latency(data["cost"], data["latency_s"]))
    return svgs


# --- drawing (matplotlib imported by the caller's check) ------------------------------------


def _figure(height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(6.4, height), layout="constrained")


def _svg(figure: Any) -> str:
    """The figure as an `<svg>` element: no XML prolog, no metadata block."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    FigureCanvasSVG(figure)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)


def _feature_scores(means: Mapping[str, float]) -> Any:
    names = list(means)
    figure = _figure(0.6 + 0.32 * len(names))
    axes = figure.add_subplot()
    bars = axes.barh(names, [means[n] for n in names], color="#4c78a8")
    axes.bar_label(bars, fmt="%.2f", padding=2)
    axes.set_xlim(0, 1.08)
    axes.invert_yaxis()
    axes.set_xlabel("mean over the images (1 = agrees with Azure)")
    axes.set_title("Per-feature scores", loc="left")
    return figure


def _score_spread(spread: Mapping[str, Sequence[float]]) -> Any:
    names = list(spread)
    figure = _figure(0.6 + 0.32 * len(names))
    axes = figure.add_subplot()
    axes.boxplot(
        [list(spread[n]) for n in names],
        orientation="horizontal",
        tick_labels=names,
        widths=0.6,
        flierprops={"markersize": 3},
    )
    axes.set_xlim(-0.02, 1.02)
    axes.invert_yaxis()
    axes.set_xlabel("per-image score (box: middle half of the images; line: median)")
    axes.set_title("Score distribution across images", loc="left")
    return figure


def _iou(iou: Mapping[str, Any]) -> Any:
    """Grouped bars, one colour per feature, side by side in each bin (lines would hide
    each other where features agree, e.g. all at 1.0)."""
    edges = iou["edges"]
    series = iou["counts"]
    figure = _figure(2.6)
    axes = figure.add_subplot()
    step = edges[1] - edges[0]
    width = step / (len(series) + 1)
    for k, (feature, counts) in enumerate(series.items()):
        lefts = [edge + width * (k + 0.5) for edge in edges[:-1]]
        axes.bar(lefts, counts, width=width, align="edge", label=feature)
    axes.set_xlim(0, 1)
    axes.set_xticks(edges)
    axes.set_xlabel("mean IoU of matched boxes on an image")
    axes.set_ylabel("images")
    axes.legend(frameon=False, loc="upper left")
    axes.set_title("IoU of matched boxes", loc="left")
    return figure


def _cost_latency(cost: Mapping[str, Any] | None, latency: Mapping[str, Any] | None) -> Any:
    figure = _figure(2.4)
    if cost is not None:  # per 1,000 images: readable ticks where one image costs $0.0012
        cost = {"edges": [e * 1000 for e in cost["edges"]], "counts": cost["counts"]}
    panels = ((cost, "Cost", "$ per 1,000 images"), (latency, "Latency per image", "s"))
    shown = [(p, t, u) for p, t, u in panels if p is not None]
    for k, (panel, title, unit) in enumerate(shown, 1):
        axes = figure.add_subplot(1, len(shown), k)
        axes.stairs(panel["counts"], panel["edges"], fill=True, color="#72b7b2")
        axes.set_xlabel(unit)
        axes.set_ylabel("images")
        axes.set_title(title, loc="left")
    return figure
