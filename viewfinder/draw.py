"""Draw a result on its image: boxes, polygons and labels, with Pillow only.

`draw(result, image)` works for an `ImageAnalysisResult` (each feature in its own style)
and for any pydantic model, such as a custom schema's output: every `BoundingBox` and
`Polygon` in it is drawn, labelled with a sibling `name` / `label` / `text` field or
else with its field path (`products[0].box`). Geometry is in pixels of the original
image after its EXIF orientation, which is what `draw` loads.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel

from viewfinder.errors import InvalidOptionError
from viewfinder.schemas.geometry import BoundingBox, Polygon
from viewfinder.schemas.result import AnalysisRun, ImageAnalysisResult, ImageMetadata

if TYPE_CHECKING:
    # Pillow and the loader (httpx2) load when something is drawn, not with
    # `import viewfinder`, which exports `draw` (tests/test_startup.py).
    from PIL import Image, ImageDraw, ImageFont

    from viewfinder.prepare.load import ImageInput, LoadedImage

__all__ = ["draw"]

RGB = tuple[int, int, int]
Font: TypeAlias = "ImageFont.ImageFont | ImageFont.FreeTypeFont"

PALETTE: tuple[RGB, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (255, 225, 25),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 0, 128),
    (128, 128, 0),
)
"""Distinct colours, handed out in order, one per group of marks (e.g. per object name)."""

_LABEL_FIELDS = ("name", "label", "text")
"""Sibling fields that name a box or polygon in a custom schema, first found wins."""
_MAX_LABEL = 48
"""Labels longer than this many characters are shortened with an ellipsis."""


@dataclass(frozen=True)
class _Mark:
    """One shape to draw: corners in pixels, a label, and how to stroke it."""

    points: tuple[tuple[int, int], ...]
    label: str
    group: str
    kind: Literal["box", "polygon"] = "box"
    dashed: bool = False
    thin: bool = False


def draw(
    result: BaseModel,
    image: ImageInput | LoadedImage,
    *,
    allow_hosts: Collection[str] | None = None,
) -> Image.Image:
    """Return an annotated RGB copy of `image` showing what `result` found.

    For an `ImageAnalysisResult`: objects, people and dense captions as labelled boxes
    in distinct colours, smart crops as thin dashed rectangles labelled with their
    aspect ratio, read lines as polygons labelled with their text, and the caption as a
    banner along the bottom. For any other pydantic model (an `AnalysisRun` is
    unwrapped to its `output`): every `BoundingBox` and `Polygon` found by walking it
    (fields, lists, tuples, dicts), labelled with a sibling `name`, `label` or `text`
    string field, or else with its field path such as `products[0].box`.

    Line widths and the font size (Pillow's default font) scale with the image. The
    input is never modified; with nothing to draw the copy equals the loaded image.

    Args:
        result: The result of an analysis, or any pydantic model holding geometry.
        image: The analysed image: a path, bytes, a binary file object, a PIL image, an
            http(s) URL, or a `LoadedImage`. It is loaded at full resolution with its
            EXIF orientation applied, the pixels the result's geometry is in.
        allow_hosts: Internal hosts an image URL may point at, as for
            `viewfinder.prepare.load.load_image` (default: `VIEWFINDER_ALLOW_HOSTS`).

    Returns:
        A new RGB image of the same size as the (oriented) input.

    Raises:
        InvalidOptionError: `result` is not a pydantic model, or its metadata gives an
            image size other than this image's.
        ImageError: The image cannot be read or decoded.
    """
    if not isinstance(result, BaseModel):
        raise InvalidOptionError(f"draw needs a pydantic model, not {type(result).__name__}")
    base = _open(image, allow_hosts)
    _check_size(result, base)
    caption: str | None = None
    if isinstance(result, ImageAnalysisResult):
        marks = list(_result_marks(result))
        if result.caption is not None and result.caption.text.strip():
            caption = f"{result.caption.text.strip()} ({result.caption.confidence:.2f})"
    else:
        root = result.output if isinstance(result, AnalysisRun) else result
        marks = list(_walk(root, "", None, False))
    if not marks and caption is None:
        return base
    return _render(base, marks, caption)


# --- loading ------------------------------------------------------------------------------


def _open(image: ImageInput | LoadedImage, allow_hosts: Collection[str] | None) -> Image.Image:
    """The full-resolution RGB image, EXIF orientation applied (what results measure)."""
    from PIL import Image, ImageOps

    from viewfinder.prepare.decode import decode_rgb, to_rgb
    from viewfinder.prepare.load import load_image

    if isinstance(image, Image.Image):
        return to_rgb(ImageOps.exif_transpose(image))
    loaded = load_image(image, allow_hosts=allow_hosts)
    return decode_rgb(loaded.data, loaded.source)


def _check_size(result: BaseModel, image: Image.Image) -> None:
    """Refuse a result measured on an image of another size."""
    metadata = getattr(result, "metadata", None)
    if not isinstance(metadata, ImageMetadata):
        return
    if (metadata.width, metadata.height) != image.size:
        raise InvalidOptionError(
            f"the result is for a {metadata.width}x{metadata.height} image but this image "
            f"is {image.width}x{image.height}: draw on the image that was analysed"
        )


# --- what to draw -------------------------------------------------------------------------


def _corners(box: BoundingBox) -> tuple[tuple[int, int], ...]:
    """A box's corner pixels: its last column and row are `x + width - 1`, `y + height - 1`."""
    x0, y0 = box.x, box.y
    x1, y1 = x0 + max(box.width - 1, 0), y0 + max(box.height - 1, 0)
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


def _result_marks(result: ImageAnalysisResult) -> Iterator[_Mark]:
    """The marks of an Image Analysis result, background first."""
    for index, dense in enumerate(result.dense_captions or []):
        yield _Mark(_corners(dense.box), _shorten(dense.text), f"dense {index}", thin=True)
    for crop in result.smart_crops or []:
        label = f"crop {crop.aspect_ratio:.2f}"
        yield _Mark(_corners(crop.box), label, "smart crop", dashed=True, thin=True)
    if result.read is not None:
        for line in result.read.lines:
            points = tuple((p.x, p.y) for p in line.polygon)
            yield _Mark(points, _shorten(line.text), "read", kind="polygon")
    for person in result.people or []:
        yield _Mark(_corners(person.box), f"person {person.confidence:.2f}", "person")
    for obj in result.objects or []:
        label = f"{_shorten(obj.name)} {obj.confidence:.2f}"
        yield _Mark(_corners(obj.box), label, f"object {obj.name}")


def _sibling_label(model: BaseModel) -> str | None:
    for name in _LABEL_FIELDS:
        value = getattr(model, name, None) if name in type(model).model_fields else None
        if isinstance(value, str) and value.strip():
            return _shorten(value)
    return None


def _walk(value: Any, path: str, label: str | None, several: bool) -> Iterator[_Mark]:
    """Every box and polygon in `value`, depth first, in field order.

    Args:
        value: What to search.
        path: Its field path from the root (`""` for the root).
        label: The `name`/`label`/`text` of the model holding `value` as a field.
        several: That model holds more than one geometry field (labels add the field).
    """
    group = _group(path)
    if isinstance(value, (BoundingBox, Polygon)):
        field = path.rsplit(".", 1)[-1] or type(value).__name__
        text = path or field
        if label is not None:
            text = f"{label} · {field}" if several else label
        if isinstance(value, BoundingBox):
            yield _Mark(_corners(value), text, group)
        else:
            yield _Mark(tuple((p.x, p.y) for p in value), text, group, kind="polygon")
    elif isinstance(value, BaseModel):
        own = _sibling_label(value)
        fields = type(value).model_fields
        geometric = [n for n in fields if isinstance(getattr(value, n), (BoundingBox, Polygon))]
        for name in fields:
            child = f"{path}.{name}" if path else name
            yield from _walk(getattr(value, name), child, own, len(geometric) > 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]", None, False)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}[{key!r}]", None, False)


def _group(path: str) -> str:
    """The colour group of a path: the same field in every list item shares a colour."""
    out, depth = [], 0
    for char in path:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


# --- drawing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Style:
    """Sizes scaled to the image."""

    line: int
    thin: int
    pad: int
    font: Font

    @classmethod
    def for_size(cls, width: int, height: int) -> _Style:
        from PIL import ImageFont

        long_side = max(width, height)
        line = max(1, round(long_side / 300))
        size = max(10, round(long_side / 55))
        font: Font = ImageFont.load_default(size=size)
        return cls(line=line, thin=max(1, line // 2), pad=max(1, size // 6), font=font)


def _render(base: Image.Image, marks: list[_Mark], caption: str | None) -> Image.Image:
    width, height = base.size
    from PIL import Image, ImageDraw

    style = _Style.for_size(width, height)
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    pen = ImageDraw.Draw(overlay)
    colours: dict[str, RGB] = {}
    for mark in marks:
        colours.setdefault(mark.group, PALETTE[len(colours) % len(PALETTE)])
    clamped = [
        tuple((min(max(x, 0), width - 1), min(max(y, 0), height - 1)) for x, y in mark.points)
        for mark in marks
    ]
    for mark, points in zip(marks, clamped, strict=True):
        colour = (*colours[mark.group], 255)
        line = style.thin if mark.thin else style.line
        if mark.dashed:
            _dashed(pen, points, colour, line)
        elif mark.kind == "box":
            (x0, y0), (x1, y1) = points[0], points[2]
            pen.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=colour, width=line)
        else:
            pen.line([*points, points[0]], fill=colour, width=line, joint="curve")
    for mark, points in zip(marks, clamped, strict=True):
        if mark.label:
            _label(pen, style, mark.label, points, colours[mark.group], (width, height))
    if caption is not None:
        _banner(pen, style, caption, (width, height))
    annotated = Image.alpha_composite(base.convert("RGBA"), overlay)
    return annotated.convert("RGB")


def _dashed(
    pen: ImageDraw.ImageDraw,
    points: tuple[tuple[int, int], ...],
    colour: tuple[int, int, int, int],
    line: int,
) -> None:
    """A closed dashed outline through `points`."""
    dash, gap = 4 * line + 4, 3 * line + 3
    for (x0, y0), (x1, y1) in zip(points, (*points[1:], points[0]), strict=True):
        length = max(abs(x1 - x0), abs(y1 - y0))
        if length == 0:
            continue
        start = 0
        while start < length:
            end = min(start + dash, length)
            a = (x0 + (x1 - x0) * start / length, y0 + (y1 - y0) * start / length)
            b = (x0 + (x1 - x0) * end / length, y0 + (y1 - y0) * end / length)
            pen.line([a, b], fill=colour, width=line)
            start = end + gap


def _text_size(pen: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[int, int]:
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    return round(right - min(left, 0)), round(bottom - min(top, 0))


def _ink(colour: RGB) -> tuple[int, int, int, int]:
    """Black or white, whichever reads better on `colour`."""
    red, green, blue = colour
    return (0, 0, 0, 255) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255,) * 4


def _label(
    pen: ImageDraw.ImageDraw,
    style: _Style,
    text: str,
    points: tuple[tuple[int, int], ...],
    colour: RGB,
    size: tuple[int, int],
) -> None:
    """A filled tag above the shape's top-left corner (inside it when at the top edge)."""
    width, height = size
    text_w, text_h = _text_size(pen, text, style.font)
    tag_w, tag_h = text_w + 2 * style.pad, text_h + 2 * style.pad
    left = min(x for x, _ in points)
    top = min(y for _, y in points)
    y = top - tag_h if top - tag_h >= 0 else top
    x = max(0, min(left, width - tag_w))
    y = max(0, min(y, height - tag_h))
    pen.rectangle((x, y, x + tag_w - 1, y + tag_h - 1), fill=(*colour, 255))
    pen.text((x + style.pad, y + style.pad), text, fill=_ink(colour), font=style.font)


def _wrap(pen: ImageDraw.ImageDraw, text: str, font: Font, room: int) -> list[str]:
    """Greedy word wrap to `room` pixels (a word longer than that stays on its own line)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}" if current else word
        if current and pen.textlength(trial, font=font) > room:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def _banner(pen: ImageDraw.ImageDraw, style: _Style, text: str, size: tuple[int, int]) -> None:
    """The caption on a translucent strip along the bottom edge."""
    width, height = size
    lines = _wrap(pen, text, style.font, max(1, width - 4 * style.pad))
    line_h = _text_size(pen, "Ag", style.font)[1] + style.pad
    strip_h = min(height, len(lines) * line_h + 2 * style.pad)
    top = height - strip_h
    pen.rectangle((0, top, width - 1, height - 1), fill=(0, 0, 0, 170))
    for index, line in enumerate(lines):
        position = (2 * style.pad, top + style.pad + index * line_h)
        pen.text(position, line, fill=(255, 255, 255, 255), font=style.font)
