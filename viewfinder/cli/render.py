"""How results are shown on a terminal: images named without URL secrets, results as
tables, usage as one line.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from viewfinder.prepare.inputs import is_url
from viewfinder.prepare.redact import redact_url
from viewfinder.schemas.features import DetectedObject
from viewfinder.schemas.geometry import BoundingBox
from viewfinder.schemas.result import ImageAnalysisResult, Usage

__all__ = ["display_name", "plural", "render_result", "unserved_lines", "usage_text"]


def display_name(source: str) -> str:
    """How an image argument is shown: as given, or redacted when it is a URL.

    Args:
        source: A path or an http(s) URL, as given on the command line.

    Returns:
        `source`, with user info, query string and fragment removed from URLs.
    """
    return redact_url(source) if is_url(source) else source


# --- human rendering ------------------------------------------------------------------


def _box_text(box: BoundingBox) -> str:
    return f"{box.x}, {box.y}, {box.width}, {box.height}"


def _box_table(title: str, first: str | None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_edge=False)
    if first is not None:
        table.add_column(first)
    table.add_column("confidence", justify="right")
    table.add_column("box (x, y, w, h)", no_wrap=True)
    return table


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def usage_text(usage: Usage) -> str:
    """One line of what an analysis (or a run) spent.

    Args:
        usage: Tokens, requests and cache use.

    Returns:
        E.g. `usage: 1200 input tokens (0 cached), 80 output tokens, 1 request, 0 re-asks`.
    """
    return (
        f"usage: {usage.input_tokens} input tokens ({usage.cached_input_tokens} cached), "
        f"{usage.output_tokens} output tokens, {plural(usage.requests, 'request')}, "
        f"{plural(usage.reasks, 're-ask')}, cache {'hit' if usage.cache_hit else 'miss'}"
    )


def unserved_lines(unserved: dict[str, str]) -> list[str]:
    """Features not served, grouped by reason, one line per reason.

    Args:
        unserved: Feature name -> reason, as in `ImageAnalysisResult.unserved`.

    Returns:
        E.g. `["caption, tags: needs a model endpoint: set OPENAI_API_KEY, ..."]`.
    """
    by_reason: dict[str, list[str]] = {}
    for feature, reason in unserved.items():
        by_reason.setdefault(reason, []).append(feature)
    return [f"{', '.join(features)}: {reason}" for reason, features in by_reason.items()]


def _object_name(obj: DetectedObject) -> str:
    """`bulldog < dog < mammal`: the object and its 3.2 parents, when it has them."""
    names = [obj.name]
    parent = obj.parent
    while parent is not None:
        names.append(parent.name)
        parent = parent.parent
    return " < ".join(names)


def _cv32_parts(result: ImageAnalysisResult) -> list[RenderableType]:
    """The Computer Vision 3.2 features of a result, in `EVERY_FEATURE` order."""
    parts: list[RenderableType] = []
    if result.categories is not None:
        line = Text("categories: ", style="bold")
        line.append(
            ", ".join(
                f"{c.name} {c.confidence:.2f}"
                + (f" (landmarks: {', '.join(m.name for m in c.landmarks)})" if c.landmarks else "")
                for c in result.categories
            )
            or "none"
        )
        parts.append(line)
    if result.description is not None:
        parts.append(Text("description:", style="bold"))
        for caption in result.description.captions:
            parts.append(
                Text.assemble(f"  {caption.text}", (f" ({caption.confidence:.2f})", "dim"))
            )
        parts.append(Text(f"  tags: {', '.join(result.description.tags) or 'none'}"))
    if result.brands is not None:
        if result.brands:
            table = _box_table("brands", "name")
            for brand in result.brands:
                table.add_row(brand.name, f"{brand.confidence:.2f}", _box_text(brand.box))
            parts.append(table)
        else:
            parts.append(Text.assemble(("brands: ", "bold"), "none"))
    if result.adult is not None:
        adult = result.adult
        line = Text("adult: ", style="bold")
        line.append(
            f"adult {adult.is_adult_content} ({adult.adult_score:.2f}), "
            f"racy {adult.is_racy_content} ({adult.racy_score:.2f}), "
            f"gory {adult.is_gory_content} ({adult.gore_score:.2f})"
        )
        if adult.filtered:
            line.append(f"  from a content-filter refusal: {adult.evidence}", style="yellow")
        parts.append(line)
    if result.faces is not None:
        line = Text("faces: ", style="bold")
        line.append("; ".join(_box_text(face.box) for face in result.faces) or "none")
        parts.append(line)
    if result.color is not None:
        color = result.color
        line = Text("color: ", style="bold")
        line.append(
            f"foreground {color.dominant_color_foreground}, background "
            f"{color.dominant_color_background}, dominant {', '.join(color.dominant_colors)}, "
            f"accent #{color.accent_color}, black and white {color.is_bw_img}"
        )
        parts.append(line)
    if result.image_type is not None:
        line = Text("image type: ", style="bold")
        line.append(
            f"clip art {result.image_type.clip_art_type}, "
            f"line drawing {result.image_type.line_drawing_type}"
        )
        parts.append(line)
    if result.landmarks is not None:
        line = Text("landmarks: ", style="bold")
        line.append(", ".join(f"{m.name} {m.confidence:.2f}" for m in result.landmarks) or "none")
        parts.append(line)
    return parts


def render_result(name: str, result: ImageAnalysisResult) -> RenderableType:
    """A readable rendering of one result, features in `EVERY_FEATURE` order.

    Args:
        name: The image as shown to the user (URLs already redacted).
        result: What the analysis found.

    Returns:
        A rich renderable.
    """
    parts: list[RenderableType] = []
    header = Text(name, style="bold cyan")
    header.append(
        f"  {result.metadata.width}x{result.metadata.height}  {result.model_version}",
        style="dim",
    )
    parts.append(header)

    if result.caption is not None:
        line = Text("caption: ", style="bold")
        line.append(result.caption.text)
        line.append(f" ({result.caption.confidence:.2f})", style="dim")
        parts.append(line)

    if result.dense_captions is not None:
        if result.dense_captions:
            table = _box_table("dense captions", "text")
            for dense in result.dense_captions:
                table.add_row(dense.text, f"{dense.confidence:.2f}", _box_text(dense.box))
            parts.append(table)
        else:
            parts.append(Text.assemble(("dense captions: ", "bold"), "none"))

    if result.tags is not None:
        line = Text("tags: ", style="bold")
        line.append(
            ", ".join(
                f"{tag.name}{f' ({tag.hint})' if tag.hint else ''} {tag.confidence:.2f}"
                for tag in result.tags
            )
            or "none"
        )
        parts.append(line)

    if result.objects is not None:
        if result.objects:
            table = _box_table("objects", "name")
            for obj in result.objects:
                table.add_row(_object_name(obj), f"{obj.confidence:.2f}", _box_text(obj.box))
            parts.append(table)
        else:
            parts.append(Text.assemble(("objects: ", "bold"), "none"))

    if result.people is not None:
        if result.people:
            table = _box_table("people", None)
            for person in result.people:
                table.add_row(f"{person.confidence:.2f}", _box_text(person.box))
            parts.append(table)
        else:
            parts.append(Text.assemble(("people: ", "bold"), "none"))

    if result.smart_crops is not None:
        table = Table(
            title="smart crops", title_justify="left", title_style="bold", show_edge=False
        )
        table.add_column("aspect ratio", justify="right")
        table.add_column("box (x, y, w, h)", no_wrap=True)
        for crop in result.smart_crops:
            table.add_row(f"{crop.aspect_ratio:.2f}", _box_text(crop.box))
        parts.append(table)

    if result.read is not None:
        lines = result.read.lines
        if lines:
            parts.append(Text("read:", style="bold"))
            parts.extend(Text(f"  {line.text}") for line in lines)
        else:
            parts.append(Text.assemble(("read: ", "bold"), "no text"))

    parts.extend(_cv32_parts(result))

    for reason_line in unserved_lines(result.unserved or {}):
        parts.append(Text.assemble(("not served: ", "bold yellow"), reason_line))

    parts.append(Text(usage_text(result.usage), style="dim"))
    return Group(*parts)
