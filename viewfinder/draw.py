"""Draw a result on its image: boxes, polygons, labels and a legend, with Pillow only.

`draw(result, image)` works for an `ImageAnalysisResult` (each feature in its own style)
and for any pydantic model, such as a custom schema's output: every `BoundingBox` and
`Polygon` in it is drawn, labelled with a sibling `name` / `label` / `text` field or
else with its field path (`products[0].box`). `draw_comparison(image, ours, reference)`
draws two results of one image as matched, missed and extra boxes. Geometry is in
pixels of the original image after its EXIF orientation, which is what both load.

Labels are placed here, not by supervision's `LabelAnnotator(smart_position=True)`:
supervision pulls OpenCV, matplotlib and scipy into an optional extra at most, and one
drawing should not look different depending on what else is installed. Each label takes
the first free spot of eight around its shape's corners, else the free spot nearest to
its shape (with a leader line back to it), never overlapping another label, the legend
or the caption banner, and always inside the image; a label with no free spot left is
left out rather than drawn over another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel

from viewfinder.errors import InvalidOptionError
from viewfinder.schemas.geometry import BoundingBox, Polygon
from viewfinder.schemas.matching import match_boxes
from viewfinder.schemas.result import AnalysisRun, ImageAnalysisResult, ImageMetadata

if TYPE_CHECKING:
    # Pillow and the loader (httpx2) load when something is drawn, not with
    # `import viewfinder`, which exports `draw` (tests/test_startup.py).
    from PIL import Image, ImageDraw, ImageFont

    from viewfinder.prepare.load import ImageInput, LoadedImage

__all__ = [
    "COMPARED_FEATURES",
    "DRAWN_FEATURES",
    "OUTCOME_COLOURS",
    "draw",
    "draw_comparison",
    "features_to_draw",
]

RGB = tuple[int, int, int]
Colour: TypeAlias = "RGB | str"
"""An RGB triple, or any colour Pillow names (`"red"`, `"#ff8800"`, `"rgb(0,128,0)"`)."""
Font: TypeAlias = "ImageFont.ImageFont | ImageFont.FreeTypeFont"
Stroke = Literal["solid", "dashed", "dotted"]
Rect = tuple[int, int, int, int]
"""`(left, top, right, bottom)` in pixels, right and bottom exclusive."""
Outcome = Literal["matched", "missed", "extra"]

DRAWN_FEATURES: tuple[str, ...] = (
    "caption",
    "dense_captions",
    "smart_crops",
    "read",
    "people",
    "objects",
)
"""The features `draw` shows for an `ImageAnalysisResult` (`features=` picks among them)."""
COMPARED_FEATURES: tuple[str, ...] = ("dense_captions", "read", "people", "objects")
"""The features `draw_comparison` shows (`features=` picks among them)."""

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

OUTCOME_COLOURS: Mapping[Outcome, RGB] = {
    "matched": (0, 158, 115),
    "missed": (213, 94, 0),
    "extra": (0, 114, 178),
}
"""`draw_comparison`'s colours: Okabe and Ito's bluish green, vermillion and blue, which
stay apart for the common colour vision deficiencies; the line style tells them apart too."""
_OUTCOME_STROKES: Mapping[Outcome, Stroke] = {
    "matched": "solid",
    "missed": "dashed",
    "extra": "dotted",
}
_OUTCOME_LEGEND: Mapping[Outcome, str] = {
    "matched": "matched",
    "missed": "missed (reference only)",
    "extra": "extra (ours only)",
}

_LABEL_FIELDS = ("name", "label", "text")
"""Sibling fields that name a box or polygon in a custom schema, first found wins."""
_MAX_LABEL = 48
"""Labels longer than this many characters are shortened with an ellipsis."""
_LEGEND_ROWS = 10
"""Legend rows shown; more groups end the legend with a "+N more" row."""


@dataclass(frozen=True)
class _Mark:
    """One shape to draw: corners in pixels, a label, and how to stroke it."""

    points: tuple[tuple[int, int], ...]
    label: str
    group: str
    """Marks of one group share a colour and a legend row (the row's text)."""
    feature: str = ""
    """What `features=` and `colors=` know it by: the feature, or a custom schema's field."""
    kind: Literal["box", "polygon"] = "box"
    stroke: Stroke = "solid"
    thin: bool = False
    confidence: float | None = None


def draw(
    result: BaseModel,
    image: ImageInput | LoadedImage,
    *,
    features: Collection[str] | None = None,
    min_confidence: float = 0.0,
    labels: bool = True,
    legend: bool = True,
    colors: Mapping[str, Colour] | None = None,
    allow_hosts: Collection[str] | None = None,
) -> Image.Image:
    """Return an annotated RGB copy of `image` showing what `result` found.

    For an `ImageAnalysisResult`: objects, people and dense captions as labelled boxes,
    smart crops as thin dashed rectangles labelled with their aspect ratio, read lines as
    polygons labelled with their text, and the caption as a banner along the bottom. For
    any other pydantic model (an `AnalysisRun` is unwrapped to its `output`): every
    `BoundingBox` and `Polygon` found by walking it (fields, lists, tuples, dicts),
    labelled with a sibling `name`, `label` or `text` string field, or else with its
    field path such as `products[0].box`.

    Each group (an object name, people, read lines, a custom schema's field) has its own
    colour and a row in the legend, in a corner the marks cover least. Labels stay inside
    the image and off each other, the legend and the caption (one with no free spot left
    is left out: `labels=False` or `features=` thin crowded drawings). Line widths and the font
    size (Pillow's default font) scale with the image. The input is never modified; with
    nothing to draw the copy equals the loaded image.

    Args:
        result: The result of an analysis, or any pydantic model holding geometry.
        image: The analysed image: a path, bytes, a binary file object, a PIL image, an
            http(s) URL, or a `LoadedImage`. It is loaded at full resolution with its
            EXIF orientation applied, the pixels the result's geometry is in.
        features: What to draw (default: everything). For an `ImageAnalysisResult`,
            names from `DRAWN_FEATURES` (`"objects"`, `"read"`, ...; Azure's spelling
            `"denseCaptions"` too); for a custom schema, top-level field names or field
            paths without indices (`"products.box"`).
        min_confidence: Leave out marks (and the caption) whose confidence is below this,
            0-1. Marks without a confidence (read lines, smart crops; custom schemas
            without a sibling `confidence` field) are always drawn.
        labels: Draw the labels; without them only shapes and the legend are drawn.
        legend: Draw the legend of colours.
        colors: Colours by group or feature, overriding the palette: an object name
            (`"cat"`), `"person"`, `"read"`, `"smart crop"`, `"dense caption"`, a custom
            schema's group (`"products.box"`), or a feature (`"objects"`) for its whole
            feature. Values are RGB triples or Pillow colour names.
        allow_hosts: Internal hosts an image URL may point at, as for
            `viewfinder.prepare.load.load_image` (default: `VIEWFINDER_ALLOW_HOSTS`).

    Returns:
        A new RGB image of the same size as the (oriented) input.

    Raises:
        InvalidOptionError: `result` is not a pydantic model, its metadata gives an image
            size other than this image's, or an option is invalid (an unknown feature, a
            confidence outside 0-1, a colour Pillow does not know).
        ImageError: The image cannot be read or decoded.
    """
    drawing = _prepare(
        result,
        image,
        features=features,
        min_confidence=min_confidence,
        labels=labels,
        legend=legend,
        colors=colors,
        allow_hosts=allow_hosts,
    )
    return drawing.render()


def draw_comparison(
    image: ImageInput | LoadedImage,
    ours: ImageAnalysisResult,
    reference: ImageAnalysisResult,
    *,
    features: Collection[str] | None = None,
    iou_threshold: float = 0.5,
    min_confidence: float = 0.0,
    synonyms: Mapping[str, str] | None = None,
    ignore_object_names: bool = False,
    labels: bool = True,
    legend: bool = True,
    colors: Mapping[str, Colour] | None = None,
    allow_hosts: Collection[str] | None = None,
) -> Image.Image:
    """Draw two results of one image: what they agree on, what ours missed, what it added.

    Boxes (and read lines) pair one-to-one as `viewfinder.evaluate.compare` pairs them
    (`viewfinder.schemas.matching.match_boxes`: greedy, within equal names, IoU at least
    `iou_threshold`). Matched ones are drawn with our geometry as solid lines, missed
    ones (the reference's only) with the reference's geometry as dashed lines, extra ones
    (ours only) as dotted lines, each in its colour (`OUTCOME_COLOURS`), with a legend
    counting each. A feature either result lacks is not drawn.

    Args:
        image: The analysed image, as for `draw`.
        ours: The result under test (viewfinder's).
        reference: The result to compare with (e.g. Azure's, read by `from_azure_json`).
        features: Names from `COMPARED_FEATURES` (default: all of them).
        iou_threshold: The smallest IoU that pairs two boxes.
        min_confidence: Leave out our marks below this confidence before matching (the
            references they would have matched then show as missed).
        synonyms: Object name -> canonical name, applied to both sides (lower-cased).
        ignore_object_names: Pair objects on boxes alone.
        labels: Draw the labels.
        legend: Draw the legend.
        colors: `"matched"`, `"missed"` or `"extra"` -> colour, overriding the defaults.
        allow_hosts: As for `draw`.

    Returns:
        A new RGB image of the same size as the (oriented) input.

    Raises:
        InvalidOptionError: A result's metadata gives another image size, or an option
            is invalid.
        ImageError: The image cannot be read or decoded.
    """
    for side in (ours, reference):
        if not isinstance(side, ImageAnalysisResult):
            raise InvalidOptionError(
                f"draw_comparison needs two ImageAnalysisResult, not {type(side).__name__}"
            )
    if not 0.0 <= iou_threshold <= 1.0:
        raise InvalidOptionError(f"iou_threshold must be within 0-1, not {iou_threshold}")
    _check_confidence(min_confidence)
    wanted = features_to_draw(features, COMPARED_FEATURES)
    palette = _palette(colors, set(OUTCOME_COLOURS))
    base = _open(image, allow_hosts)
    _check_size(ours, base)
    _check_size(reference, base)
    canon = _canonical(synonyms, ignore_object_names)
    marks, counts = _comparison_marks(ours, reference, wanted, iou_threshold, min_confidence, canon)
    rows = [
        (f"{_OUTCOME_LEGEND[o]}: {counts[o]}", palette.get(o, OUTCOME_COLOURS[o]), stroke)
        for o, stroke in _OUTCOME_STROKES.items()
    ]
    colours = {_OUTCOME_LEGEND[o]: palette.get(o, OUTCOME_COLOURS[o]) for o in OUTCOME_COLOURS}
    return _Drawing(base, marks, None, colours, rows if legend else [], labels).render()


def _prepare(
    result: BaseModel,
    image: ImageInput | LoadedImage,
    *,
    features: Collection[str] | None,
    min_confidence: float,
    labels: bool,
    legend: bool,
    colors: Mapping[str, Colour] | None,
    allow_hosts: Collection[str] | None,
) -> _Drawing:
    """`draw`'s work up to the pixels: options checked, image loaded, marks chosen."""
    if not isinstance(result, BaseModel):
        raise InvalidOptionError(f"draw needs a pydantic model, not {type(result).__name__}")
    _check_confidence(min_confidence)
    analysis = isinstance(result, ImageAnalysisResult)
    wanted = features_to_draw(features, DRAWN_FEATURES) if analysis else None
    palette = _palette(colors, None)
    base = _open(image, allow_hosts)
    _check_size(result, base)
    caption: str | None = None
    if isinstance(result, ImageAnalysisResult):
        assert wanted is not None
        marks = [mark for mark in _result_marks(result) if mark.feature in wanted]
        found = result.caption
        if (
            "caption" in wanted
            and found is not None
            and found.text.strip()
            and found.confidence >= min_confidence
        ):
            caption = f"{found.text.strip()} ({found.confidence:.2f})"
    else:
        root = result.output if isinstance(result, AnalysisRun) else result
        marks = list(_walk(root, "", None, False))
        if features is not None:
            names = {features} if isinstance(features, str) else set(features)
            marks = [m for m in marks if m.feature in names or m.group in names]
    marks = [m for m in marks if m.confidence is None or m.confidence >= min_confidence]
    colours = _group_colours(marks, palette)
    rows = _legend_of(marks, colours) if legend else []
    return _Drawing(base, marks, caption, colours, rows, labels)


def _legend_of(marks: Sequence[_Mark], colours: Mapping[str, RGB]) -> list[tuple[str, RGB, Stroke]]:
    """A row per look (colour and stroke), in order of first use: named after its group,
    or after the feature whose groups share it (`colors={"objects": ...}`)."""
    looks: dict[tuple[RGB, Stroke], list[_Mark]] = {}
    for mark in marks:
        same = looks.setdefault((colours[mark.group], mark.stroke), [])
        if all(other.group != mark.group for other in same):
            same.append(mark)
    rows: list[tuple[str, RGB, Stroke]] = []
    for (colour, stroke), users in looks.items():
        features = {mark.feature for mark in users}
        if len(users) == 1 or len(features) > 1:
            text = ", ".join(mark.group for mark in users)
        else:
            text = users[0].feature.replace("_", " ")
        rows.append((_shorten(text), colour, stroke))
    return rows


# --- options ------------------------------------------------------------------------------


def _check_confidence(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise InvalidOptionError(f"min_confidence must be within 0-1, not {value}")


def features_to_draw(
    features: Collection[str] | None, known: tuple[str, ...] = DRAWN_FEATURES
) -> set[str]:
    """The features named, in snake case (`"denseCaptions"` -> `"dense_captions"`).

    Args:
        features: Names, or one name; None for all of `known`.
        known: What may be named: `DRAWN_FEATURES` (`draw`) or `COMPARED_FEATURES`.

    Returns:
        The chosen names.

    Raises:
        InvalidOptionError: A name is not in `known`.
    """
    if features is None:
        return set(known)
    names = [features] if isinstance(features, str) else list(features)
    wanted: set[str] = set()
    for name in names:
        snake = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", str(name).strip()).lower()
        if snake not in known:
            raise InvalidOptionError(f"cannot draw {str(name)!r}: choose among {', '.join(known)}")
        wanted.add(snake)
    return wanted


def _palette(colors: Mapping[str, Colour] | None, keys: set[str] | None) -> dict[str, RGB]:
    """`colors` as RGB triples, checked (only `keys` allowed, when given)."""
    from PIL import ImageColor

    out: dict[str, RGB] = {}
    for key, value in (colors or {}).items():
        if keys is not None and key not in keys:
            raise InvalidOptionError(f"colors: unknown key {key!r}: use {', '.join(sorted(keys))}")
        if isinstance(value, str):
            try:
                rgb = ImageColor.getrgb(value)
            except ValueError:
                raise InvalidOptionError(f"colors: {value!r} is not a colour") from None
            out[key] = (rgb[0], rgb[1], rgb[2])
        elif (
            isinstance(value, tuple)
            and len(value) == 3
            and all(isinstance(c, int) and 0 <= c <= 255 for c in value)
        ):
            out[key] = value
        else:
            raise InvalidOptionError(f"colors: {value!r} is neither RGB 0-255 nor a colour name")
    return out


def _group_colours(marks: Sequence[_Mark], palette: Mapping[str, RGB]) -> dict[str, RGB]:
    """A colour per group: the group's own, else its feature's, else the next of PALETTE."""
    colours: dict[str, RGB] = {}
    handed = 0
    for mark in marks:
        if mark.group in colours:
            continue
        chosen = palette.get(mark.group) or palette.get(mark.feature)
        if chosen is None:
            chosen = PALETTE[handed % len(PALETTE)]
            handed += 1
        colours[mark.group] = chosen
    return colours


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
    for dense in result.dense_captions or []:
        yield _Mark(
            _corners(dense.box),
            _shorten(dense.text),
            "dense caption",
            "dense_captions",
            thin=True,
            confidence=dense.confidence,
        )
    for crop in result.smart_crops or []:
        label = f"crop {crop.aspect_ratio:.2f}"
        yield _Mark(
            _corners(crop.box), label, "smart crop", "smart_crops", stroke="dashed", thin=True
        )
    if result.read is not None:
        for line in result.read.lines:
            points = tuple((p.x, p.y) for p in line.polygon)
            yield _Mark(points, _shorten(line.text), "read", "read", kind="polygon")
    for person in result.people or []:
        label = f"person {person.confidence:.2f}"
        yield _Mark(_corners(person.box), label, "person", "people", confidence=person.confidence)
    for obj in result.objects or []:
        name = _shorten(obj.name)
        label = f"{name} {obj.confidence:.2f}"
        yield _Mark(_corners(obj.box), label, name, "objects", confidence=obj.confidence)


def _canonical(synonyms: Mapping[str, str] | None, ignore_names: bool) -> Callable[[str], str]:
    """How object names compare: as `viewfinder.evaluate.compare` compares them."""
    table = {k.strip().lower(): v.strip().lower() for k, v in (synonyms or {}).items()}

    def canon(name: str) -> str:
        key = name.strip().lower()
        return "" if ignore_names else table.get(key, key)

    return canon


@dataclass
class _Side:
    """One result's items of one feature, ready to match and draw."""

    boxes: list[BoundingBox] = field(default_factory=list)
    points: list[tuple[tuple[int, int], ...]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)


def _side(result: ImageAnalysisResult, feature: str, canon: Callable[[str], str]) -> _Side | None:
    """`result`'s items of `feature`, or None when it does not hold the feature."""
    side = _Side()
    if feature == "read":
        if result.read is None:
            return None
        for line in result.read.lines:
            side.boxes.append(line.polygon.bounds)
            side.points.append(tuple((p.x, p.y) for p in line.polygon))
            side.texts.append(_shorten(line.text))
            side.names.append("")
        return side
    items = getattr(result, feature)
    if items is None:
        return None
    for item in items:
        side.boxes.append(item.box)
        side.points.append(_corners(item.box))
        side.confidences.append(item.confidence)
        if feature == "objects":
            side.texts.append(f"{_shorten(item.name)} {item.confidence:.2f}")
            side.names.append(canon(item.name))
        else:
            text = _shorten(item.text) if feature == "dense_captions" else "person"
            side.texts.append(f"{text} {item.confidence:.2f}" if feature == "people" else text)
            side.names.append("")
    return side


def _comparison_marks(
    ours: ImageAnalysisResult,
    reference: ImageAnalysisResult,
    wanted: set[str],
    threshold: float,
    min_confidence: float,
    canon: Callable[[str], str],
) -> tuple[list[_Mark], dict[Outcome, int]]:
    """Every compared item as a mark of its outcome, and how many of each."""
    marks: list[_Mark] = []
    counts: dict[Outcome, int] = {"matched": 0, "missed": 0, "extra": 0}
    for feature in COMPARED_FEATURES:
        if feature not in wanted:
            continue
        mine, theirs = _side(ours, feature, canon), _side(reference, feature, canon)
        if mine is None or theirs is None:
            continue
        keep = [
            i
            for i in range(len(mine.boxes))
            if not mine.confidences or mine.confidences[i] >= min_confidence
        ]
        pairs = match_boxes(
            [mine.boxes[i] for i in keep],
            theirs.boxes,
            threshold,
            confidences=[mine.confidences[i] for i in keep] if mine.confidences else None,
            predicted_labels=[mine.names[i] for i in keep],
            reference_labels=theirs.names,
        )
        paired = {keep[i]: j for i, j, _ in pairs}
        outcomes: list[tuple[_Side, int, Outcome]] = [
            *((theirs, j, "missed") for j in range(len(theirs.boxes)) if j not in paired.values()),
            *((mine, i, "extra") for i in keep if i not in paired),
            *((mine, i, "matched") for i in sorted(paired)),
        ]
        for side, index, outcome in outcomes:
            counts[outcome] += 1
            marks.append(_outcome_mark(side, index, outcome, feature))
    return marks, counts


def _outcome_mark(side: _Side, index: int, outcome: Outcome, feature: str) -> _Mark:
    """One compared item drawn in its outcome's group and stroke."""
    suffix = {"matched": "", "missed": " (missed)", "extra": " (extra)"}[outcome]
    return _Mark(
        side.points[index],
        side.texts[index] + suffix,
        _OUTCOME_LEGEND[outcome],
        feature,
        kind="polygon" if feature == "read" else "box",
        stroke=_OUTCOME_STROKES[outcome],
        thin=feature == "dense_captions",
    )


def _sibling(model: BaseModel, names: Sequence[str]) -> Any:
    for name in names:
        if name in type(model).model_fields:
            return getattr(model, name)
    return None


def _sibling_label(model: BaseModel) -> str | None:
    for name in _LABEL_FIELDS:
        value = getattr(model, name, None) if name in type(model).model_fields else None
        if isinstance(value, str) and value.strip():
            return _shorten(value)
    return None


def _walk(
    value: Any, path: str, label: str | None, several: bool, confidence: float | None = None
) -> Iterator[_Mark]:
    """Every box and polygon in `value`, depth first, in field order.

    Args:
        value: What to search.
        path: Its field path from the root (`""` for the root).
        label: The `name`/`label`/`text` of the model holding `value` as a field.
        several: That model holds more than one geometry field (labels add the field).
        confidence: The `confidence` number of the model holding `value` as a field.
    """
    group = _group(path)
    if isinstance(value, (BoundingBox, Polygon)):
        name = path.rsplit(".", 1)[-1] or type(value).__name__
        text = path or name
        if label is not None:
            text = f"{label} · {name}" if several else label
        feature = re.split(r"[.\[]", path, maxsplit=1)[0]
        if isinstance(value, BoundingBox):
            yield _Mark(_corners(value), text, group, feature, confidence=confidence)
        else:
            points = tuple((p.x, p.y) for p in value)
            yield _Mark(points, text, group, feature, kind="polygon", confidence=confidence)
    elif isinstance(value, BaseModel):
        own = _sibling_label(value)
        score = _sibling(value, ("confidence",))
        own_confidence = float(score) if isinstance(score, (int, float)) else None
        fields = type(value).model_fields
        geometric = [n for n in fields if isinstance(getattr(value, n), (BoundingBox, Polygon))]
        for name in fields:
            child = f"{path}.{name}" if path else name
            yield from _walk(getattr(value, name), child, own, len(geometric) > 1, own_confidence)
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


# --- layout -------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Label:
    """A placed label: its text, tag rectangle, and whether it sits away from its shape."""

    mark: int
    text: str
    rect: Rect
    detached: bool


@dataclass(frozen=True)
class _Layout:
    """Where the caption banner, the legend and the labels go."""

    banner: Rect | None
    banner_lines: list[str]
    legend: Rect | None
    legend_rows: list[tuple[str, RGB, Stroke]]
    labels: list[_Label]


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _overlap_area(a: Rect, b: Rect) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _bounds(points: Sequence[tuple[int, int]]) -> Rect:
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return (min(xs), min(ys), max(xs) + 1, max(ys) + 1)


def _place(
    tag: tuple[int, int], shape: Rect, size: tuple[int, int], taken: list[Rect]
) -> Rect | None:
    """A tag's rectangle inside the image: the first free spot at the shape's corners
    (above, inside, below), else the free spot nearest above its top-left; None when no
    spot is free (an overlapped label is unreadable and hides the one beneath)."""
    width, height = size
    w, h = min(tag[0], width), min(tag[1], height)
    x0, y0, x1, y1 = shape

    def at(x: int, y: int) -> Rect:
        x = min(max(x, 0), width - w)
        y = min(max(y, 0), height - h)
        return (x, y, x + w, y + h)

    def free(rect: Rect) -> bool:
        return not any(_overlaps(rect, other) for other in taken)

    near = [at(x, y) for x in (x0, x1 - w) for y in (y0 - h, y0, y1, y1 - h)]
    for rect in near:
        if free(rect):
            return rect
    xs = {min(max(x0 + k * w, 0), width - w) for k in range(-4, 5)} | {width - w, 0}
    far = sorted(
        {at(x, y) for x in xs for y in range(0, height - h + 1, max(1, h // 2))},
        key=lambda r: (abs(r[0] - x0) + abs(r[1] - (y0 - h)), r),
    )
    return next((rect for rect in far if free(rect)), None)


def _fit(pen: ImageDraw.ImageDraw, text: str, font: Font, room: int) -> str:
    """`text`, shortened with an ellipsis until it is at most `room` pixels wide."""
    if pen.textlength(text, font=font) <= room:
        return text
    while len(text) > 1 and pen.textlength(text + "…", font=font) > room:
        text = text[:-1]
    return text.rstrip() + "…"


def _legend_rect(
    size: tuple[int, int], panel: tuple[int, int], bottom: int, shapes: list[Rect]
) -> Rect | None:
    """The corner (above the banner) where the legend covers the least of the shapes;
    None when it would cover more than a quarter of the image."""
    width, height = size
    w, h = panel
    if w > width or h > bottom or w * h * 4 > width * height:
        return None
    corners = [
        (width - w, 0, width, h),
        (0, 0, w, h),
        (width - w, bottom - h, width, bottom),
        (0, bottom - h, w, bottom),
    ]
    return min(corners, key=lambda c: sum(_overlap_area(c, s) for s in shapes))


# --- drawing ------------------------------------------------------------------------------


@dataclass
class _Drawing:
    """The image, what goes on it, and how it looks: laid out, then rendered."""

    base: Image.Image
    marks: list[_Mark]
    caption: str | None
    colours: dict[str, RGB]
    legend_rows: list[tuple[str, RGB, Stroke]]
    labels: bool

    def layout(self, pen: ImageDraw.ImageDraw, style: _Style) -> _Layout:
        """Banner, legend and label rectangles: none overlaps another while room is left."""
        size = width, height = self.base.size
        taken: list[Rect] = []
        banner: Rect | None = None
        lines: list[str] = []
        if self.caption is not None:
            lines = _wrap(pen, self.caption, style.font, max(1, width - 4 * style.pad))
            line_h = _text_size(pen, "Ag", style.font)[1] + style.pad
            strip_h = min(height, len(lines) * line_h + 2 * style.pad)
            banner = (0, height - strip_h, width, height)
            taken.append(banner)
        shapes = [_bounds(mark.points) for mark in self.marks]
        legend: Rect | None = None
        rows = self._legend_rows()
        if rows:
            panel = _legend_size(pen, style, rows)
            legend = _legend_rect(size, panel, banner[1] if banner else height, shapes)
            if legend is not None:
                taken.append(legend)
        placed: list[_Label] = []
        if self.labels:
            room = max(1, width - 2 * style.pad)
            for index in reversed(range(len(self.marks))):  # the foreground first
                mark = self.marks[index]
                if not mark.label:
                    continue
                text = _fit(pen, mark.label, style.font, room)
                text_w, text_h = _text_size(pen, text, style.font)
                tag = (text_w + 2 * style.pad, text_h + 2 * style.pad)
                shape = shapes[index]
                rect = _place(tag, shape, size, taken)
                if rect is None:
                    continue
                taken.append(rect)
                near = (shape[0] - 2, shape[1] - 2, shape[2] + 2, shape[3] + 2)
                placed.append(_Label(index, text, rect, not _overlaps(rect, near)))
        return _Layout(banner, lines, legend, rows if legend else [], placed)

    def _legend_rows(self) -> list[tuple[str, RGB, Stroke]]:
        rows = self.legend_rows
        if len(rows) <= _LEGEND_ROWS:
            return rows
        more: tuple[str, RGB, Stroke] = (
            f"+{len(rows) - _LEGEND_ROWS + 1} more",
            (255, 255, 255),
            "solid",
        )
        return [*rows[: _LEGEND_ROWS - 1], more]

    def render(self) -> Image.Image:
        """The annotated copy (the loaded image itself when there is nothing to draw)."""
        if not self.marks and self.caption is None:
            return self.base
        from PIL import Image, ImageDraw

        width, height = self.base.size
        style = _Style.for_size(width, height)
        overlay = Image.new("RGBA", self.base.size, (0, 0, 0, 0))
        pen = ImageDraw.Draw(overlay)
        layout = self.layout(pen, style)
        for mark in self.marks:
            points = tuple(
                (min(max(x, 0), width - 1), min(max(y, 0), height - 1)) for x, y in mark.points
            )
            colour = (*self.colours[mark.group], 255)
            line = style.thin if mark.thin else style.line
            if mark.stroke != "solid":
                _broken(pen, points, colour, line, mark.stroke)
            elif mark.kind == "box":
                (x0, y0), (x1, y1) = points[0], points[2]
                pen.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=colour, width=line)
            else:
                pen.line([*points, points[0]], fill=colour, width=line, joint="curve")
        for label in layout.labels:  # leader lines first: no line crosses a tag
            if label.detached:
                mark = self.marks[label.mark]
                tint = self.colours[mark.group]
                _leader(pen, label.rect, _bounds(mark.points), tint, style.thin)
        for label in layout.labels:
            tint = self.colours[self.marks[label.mark].group]
            x0, y0, x1, y1 = label.rect
            pen.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(*tint, 255))
            pen.text((x0 + style.pad, y0 + style.pad), label.text, fill=_ink(tint), font=style.font)
        if layout.banner is not None:
            _banner(pen, style, layout.banner, layout.banner_lines)
        if layout.legend is not None:
            _legend(pen, style, layout.legend, layout.legend_rows)
        annotated = Image.alpha_composite(self.base.convert("RGBA"), overlay)
        return annotated.convert("RGB")


def _broken(
    pen: ImageDraw.ImageDraw,
    points: Sequence[tuple[int, int]],
    colour: tuple[int, int, int, int],
    line: int,
    stroke: Stroke,
    closed: bool = True,
) -> None:
    """A dashed or dotted outline through `points` (closed unless told otherwise)."""
    if stroke == "dashed":
        dash, gap = 4 * line + 4, 3 * line + 3
    else:
        dash, gap = line + 1, 2 * line + 2
    ends = (*points[1:], points[0]) if closed else points[1:]
    for (x0, y0), (x1, y1) in zip(points, ends, strict=False):
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


def _leader(pen: ImageDraw.ImageDraw, tag: Rect, shape: Rect, colour: RGB, line: int) -> None:
    """A line from a label placed away from its shape to the shape's nearest point."""
    cx, cy = (tag[0] + tag[2]) // 2, (tag[1] + tag[3]) // 2
    x = min(max(cx, shape[0]), shape[2] - 1)
    y = min(max(cy, shape[1]), shape[3] - 1)
    pen.line([(cx, cy), (x, y)], fill=(*colour, 255), width=line)


def _text_size(pen: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[int, int]:
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    return round(right - min(left, 0)), round(bottom - min(top, 0))


def _ink(colour: RGB) -> tuple[int, int, int, int]:
    """Black or white, whichever reads better on `colour`."""
    red, green, blue = colour
    return (0, 0, 0, 255) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255,) * 4


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


def _banner(pen: ImageDraw.ImageDraw, style: _Style, strip: Rect, lines: list[str]) -> None:
    """The caption on a translucent strip along the bottom edge."""
    line_h = _text_size(pen, "Ag", style.font)[1] + style.pad
    pen.rectangle((strip[0], strip[1], strip[2] - 1, strip[3] - 1), fill=(0, 0, 0, 170))
    for index, line in enumerate(lines):
        position = (2 * style.pad, strip[1] + style.pad + index * line_h)
        pen.text(position, line, fill=(255, 255, 255, 255), font=style.font)


def _legend_size(
    pen: ImageDraw.ImageDraw, style: _Style, rows: list[tuple[str, RGB, Stroke]]
) -> tuple[int, int]:
    """The legend panel's width and height: a swatch and a text per row."""
    row_h = _text_size(pen, "Ag", style.font)[1] + style.pad
    swatch = 3 * row_h
    text_w = max(_text_size(pen, text, style.font)[0] for text, _, _ in rows)
    return (swatch + text_w + 4 * style.pad, len(rows) * row_h + 2 * style.pad)


def _legend(
    pen: ImageDraw.ImageDraw, style: _Style, panel: Rect, rows: list[tuple[str, RGB, Stroke]]
) -> None:
    """The legend: a light panel, and per row the group's stroke in its colour and its name."""
    row_h = _text_size(pen, "Ag", style.font)[1] + style.pad
    swatch = 3 * row_h
    x0, y0, x1, y1 = panel
    pen.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(255, 255, 255, 215), outline=(0, 0, 0, 255))
    for index, (text, colour, stroke) in enumerate(rows):
        top = y0 + style.pad + index * row_h
        middle = top + row_h // 2
        ends = [(x0 + style.pad, middle), (x0 + style.pad + swatch - style.pad, middle)]
        if stroke == "solid":
            pen.line(ends, fill=(*colour, 255), width=max(2, style.line))
        else:
            _broken(pen, ends, (*colour, 255), max(2, style.line), stroke, closed=False)
        pen.text((x0 + 2 * style.pad + swatch, top), text, fill=(0, 0, 0, 255), font=style.font)
