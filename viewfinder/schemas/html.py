"""A result as a small HTML summary, for notebooks (`ImageAnalysisResult._repr_html_`).

Jupyter shows a result with this rather than its long `repr`: the caption, the first
tags, how many findings each requested feature has, the first read lines, what was not
served and what the analysis spent. Every value from the result is HTML-escaped, nothing
remote is loaded, and the size is bounded (long texts shortened, at most `_MAX_TAGS` tags
and `_MAX_LINES` read lines), whatever the result holds.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from viewfinder.schemas.result import ImageAnalysisResult

__all__ = ["summary_html"]

_MAX_TAGS: Final = 20
"""Tags listed; the rest are counted."""
_MAX_LINES: Final = 5
"""Read lines listed; the rest are counted."""
_MAX_TEXT: Final = 200
"""Characters of one caption, tag or line shown; longer ones end in an ellipsis."""

_COUNTED: Final = (
    "objects",
    "people",
    "dense_captions",
    "smart_crops",
    "brands",
    "faces",
    "categories",
    "landmarks",
)
"""List features whose findings are counted, in the order shown."""


def _text(value: str) -> str:
    """`value` on one line, shortened to `_MAX_TEXT` characters, HTML-escaped."""
    value = " ".join(value.split())
    if len(value) > _MAX_TEXT:
        value = value[: _MAX_TEXT - 1] + "…"
    return escape(value)


def _row(name: str, value: str) -> str:
    return f"<tr><th style='text-align:left'>{escape(name)}</th><td>{value}</td></tr>"


def summary_html(result: ImageAnalysisResult) -> str:
    """The HTML table `ImageAnalysisResult._repr_html_` shows (see the module docstring)."""
    meta = result.metadata
    rows = [_row("image", f"{meta.width} × {meta.height} px")]
    if result.caption is not None:
        caption = result.caption
        rows.append(_row("caption", f"{_text(caption.text)} ({caption.confidence:.2f})"))
    if result.tags is not None:
        shown = ", ".join(f"{_text(t.name)} ({t.confidence:.2f})" for t in result.tags[:_MAX_TAGS])
        more = len(result.tags) - _MAX_TAGS
        rows.append(_row("tags", shown + (f", … {more} more" if more > 0 else "")))
    counts = [
        f"{escape(name)}: {len(found)}"
        for name in _COUNTED
        if (found := getattr(result, name)) is not None
    ]
    if result.read is not None:
        lines = result.read.lines
        counts.append(f"read: {len(lines)} lines")
    if counts:
        rows.append(_row("found", ", ".join(counts)))
    if result.read is not None and result.read.lines:
        lines = result.read.lines
        text = "<br>".join(_text(line.text) for line in lines[:_MAX_LINES])
        more = len(lines) - _MAX_LINES
        rows.append(_row("text", text + (f"<br>… {more} more lines" if more > 0 else "")))
    if result.unserved:
        reasons = "; ".join(f"{_text(k)}: {_text(v)}" for k, v in result.unserved.items())
        rows.append(_row("not served", reasons))
    usage = result.usage
    spent = (
        "cache hit, no request"
        if usage.cache_hit
        else f"{usage.input_tokens} in ({usage.cached_input_tokens} cached), "
        f"{usage.output_tokens} out, {usage.requests} requests"
    )
    rows.append(_row("usage", spent))
    rows.append(_row("model", _text(result.model_version)))
    return (
        "<table class='viewfinder-result'>"
        "<caption style='text-align:left'><b>ImageAnalysisResult</b></caption>"
        + "".join(rows)
        + "</table>"
    )
