"""Box conventions as data: how each model family writes a box, and the copy it needs.

A model answers boxes best in the form it was trained on (`shared/reference/vlm-grounding.md`
§2.1 and §2.3 item 1: "Match the family's convention, never one prompt for all"). A
`BoxConvention` says which: the axis order (`xy`: `[x_min, y_min, x_max, y_max]`, or
`yx`: `[y_min, x_min, y_max, x_max]`), the scale (a `grid` from 0 to `top`, the `unit`
square 0-1, or `pixels` of the copy sent) and, for pixels, the copy's size rule
(`CopyRule`) under which the model's own resize is the identity, so its pixels are ours.

`CONVENTIONS` is the table, one row per family with its source; `convention_for` picks a
row by the model name the analyzer sends; unknown models, and OpenAI's (no trained format
documented), keep `DEFAULT`: today's `xy` 0-1000 grid, so their requests and
`model_version`s are unchanged. The mapping back to pixels is exact and clamped: the
numbers are read only as the convention says, never guessed from their values (§2.3
item 3: "never guess 'normalized if all <= 1'").
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from viewfinder.errors import InvalidOptionError

__all__ = [
    "CONVENTIONS",
    "DEFAULT",
    "BoxConvention",
    "CopyRule",
    "Order",
    "Scale",
    "convention_for",
    "resolve_convention",
]

Order = Literal["xy", "yx"]
"""`xy`: `[x_min, y_min, x_max, y_max]`, points `[x, y]`; `yx`: y first, points `[y, x]`."""
Scale = Literal["grid", "unit", "pixels"]
"""`grid`: integers 0..`top` across the image; `unit`: fractions 0-1; `pixels`: integer
pixels of the copy sent to the model."""


@dataclass(frozen=True)
class CopyRule:
    """The copy's size rule of a pixel convention: the model's own resize is the identity.

    The copy is first fitted to the call's `max_side` (and `max_long_side`), then each
    side is rounded to a multiple of `multiple` and the area brought within
    `min_pixels`..`max_pixels`, as Qwen2-VL's `smart_resize` does (so applying it again
    changes nothing).

    Attributes:
        multiple: Each side a multiple of this (28 for Qwen2.5-VL); 1: any size.
        max_long_side: Long side at most this (Claude: 1568), whatever `max_side` says.
        max_pixels: Area at most this (Claude: 1.15 MP; Qwen2.5-VL: 28*28*1280).
        min_pixels: Area at least this (Qwen2.5-VL: 56*56).
    """

    multiple: int = 1
    max_long_side: int | None = None
    max_pixels: int | None = None
    min_pixels: int | None = None

    def long_side(self, max_side: int) -> int:
        """The copy's long side bound for a call whose features ask `max_side`."""
        return max_side if self.max_long_side is None else min(max_side, self.max_long_side)


_ORDER_WORDS = {
    "xy": ("[x_min, y_min, x_max, y_max]", "[x, y]", "x_min must be smaller than x_max"),
    "yx": ("[y_min, x_min, y_max, x_max]", "[y, x]", "y_min must be smaller than y_max"),
}


@dataclass(frozen=True)
class BoxConvention:
    """How a model writes boxes and polygon points, and how they map to pixels.

    Attributes:
        name: The row's name (`--box-convention NAME`, `box_convention="NAME"`).
        order: Axis order of boxes and points.
        scale: What the numbers measure.
        top: For `grid`, the value of the far edge (1000, 999 or 1024): a value `v`
            is at `v / top` of the image's side. Unused by `unit` and `pixels`.
        copy: For `pixels`, the copy's size rule; `CopyRule()` elsewhere.
        source: Where the row comes from (the reference's source column).
    """

    name: str
    order: Order = "xy"
    scale: Scale = "grid"
    top: int = 1000
    copy: CopyRule = field(default_factory=CopyRule)
    source: str = ""

    def __post_init__(self) -> None:
        if self.order not in ("xy", "yx"):
            raise InvalidOptionError(f"box convention order must be xy or yx, not {self.order!r}")
        if self.scale not in ("grid", "unit", "pixels"):
            raise InvalidOptionError(
                f"box convention scale must be grid, unit or pixels, not {self.scale!r}"
            )
        if self.scale == "grid" and self.top < 1:
            raise InvalidOptionError(f"a grid's top must be >= 1, not {self.top!r}")
        if self.copy.multiple < 1:
            raise InvalidOptionError("a copy rule's multiple must be >= 1")

    # --- wording: the prompt and the schema ---------------------------------------------

    def _range(self) -> str:
        if self.scale == "grid":
            return f"integers on a 0-{self.top} grid of the image you were sent"
        if self.scale == "unit":
            return "fractions from 0 to 1 of the image you were sent's width and height"
        return "integer pixel coordinates of the image you were sent, as you see it"

    def _corners(self) -> str:
        if self.scale == "grid":
            far = f"{self.top},{self.top}"
            return f"0,0 is the top-left corner and {far} the bottom-right corner"
        if self.scale == "unit":
            return "0,0 is the top-left corner and 1,1 the bottom-right corner"
        return "0,0 is the top-left pixel"

    def wording(self, *, compact: bool = False) -> str:
        """The system prompt's paragraph on boxes in this convention.

        `compact`: the compact format's words (`Boxes: every "box" is ...`), else the
        verbose format's (`Coordinates: every box is ... and every polygon point is ...`).
        """
        box, point, rule = _ORDER_WORDS[self.order]
        second = "x" if self.order == "yx" else "y"
        rules = f"{rule} and {second}_min smaller than {second}_max."
        if compact:
            return (
                f'Boxes: every "box" is {box}, {self._range()}: {self._corners()}, whatever '
                f"the image's shape. {rules} Make every box tight around what it holds."
            )
        return (
            f"Coordinates: every box is {box} and every polygon point is {point}, as "
            f"{self._range()}: {self._corners()}, whatever the image's shape. {rules}"
        )

    def from_grid(self, box: list[int], side: int = 1000) -> list[float]:
        """A 0-1000 grid box (an example answer's) written in this convention.

        Pixels are those of an example copy `side` px on each side (examples show the
        form and the magnitudes, not a real image); `grid` and `unit` rescale; `yx`
        swaps the axes.
        """
        if self.scale == "grid":
            values: list[float] = [round(v * self.top / 1000) for v in box]
        elif self.scale == "unit":
            values = [round(v / 1000, 3) for v in box]
        else:
            values = [round(v * side / 1000) for v in box]
        if self.order == "yx":
            values = [values[1], values[0], values[3], values[2]]
        return values

    def box_description(self) -> str:
        """A box field's description in the schema."""
        return f"{_ORDER_WORDS[self.order][0]} as {self._range()}"

    def polygon_description(self) -> str:
        """A polygon field's description in the schema."""
        point = _ORDER_WORDS[self.order][1]
        return f"four {point} points as {self._range()}, clockwise from the top-left corner"

    def empty_box_message(self, value: list[float]) -> str:
        """The re-ask's message for a box whose min is not below its max."""
        box = _ORDER_WORDS[self.order][0]
        return f"box {value} is empty: it must be {box} with min < max on both axes"

    def describe(self) -> str:
        """Canonical JSON of every field: what `model_version` and cache keys hash."""
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def digest(self) -> str:
        """Short sha256 of `describe()`."""
        return hashlib.sha256(self.describe().encode()).hexdigest()[:12]

    # --- the mapping ----------------------------------------------------------------------

    def divisors(self, copy_width: int, copy_height: int) -> tuple[float, float]:
        """What an x and a y value are divided by to give a fraction of the side."""
        if self.scale == "grid":
            return float(self.top), float(self.top)
        if self.scale == "unit":
            return 1.0, 1.0
        return float(copy_width), float(copy_height)

    def point_to_pixels(
        self, point: tuple[float, float], size: tuple[int, int], copy: tuple[int, int]
    ) -> tuple[int, int]:
        """One answered point (in the convention's order) as `(x, y)` pixels of the
        original image of `size`, clamped to it; `copy` is the copy sent's size."""
        if self.scale == "pixels" and not (copy[0] > 0 and copy[1] > 0):
            raise ValueError(f"the {self.name} convention needs the copy's size, not {copy}")
        a, b = point
        x, y = (a, b) if self.order == "xy" else (b, a)
        dx, dy = self.divisors(*copy)
        return _scale(x, size[0], dx), _scale(y, size[1], dy)


def _scale(value: float, size: int, divisor: float) -> int:
    """`value / divisor` of `size`, rounded and clamped to `0..size` (grid.py's formula)."""
    return min(max(round(value * size / divisor), 0), size)


DEFAULT = BoxConvention(
    name="grid-1000",
    source="viewfinder's own choice (no trained format documented for OpenAI models: "
    "developers.openai.com images-vision guide)",
)
"""Today's convention: `xy` on a 0-1000 grid. OpenAI's models and unknown models use it."""

_QWEN25_COPY = CopyRule(multiple=28, max_pixels=28 * 28 * 1280, min_pixels=56 * 56)
_CLAUDE_COPY = CopyRule(max_long_side=1568, max_pixels=1_150_000)

CONVENTIONS: dict[str, BoxConvention] = {
    c.name: c
    for c in (
        DEFAULT,
        BoxConvention(
            name="gemini",
            order="yx",
            source="Gemini docs: box_2d [ymin, xmin, ymax, xmax] normalized to 0-1000 "
            "(quoted in huggingface.co/google/gemma-3-4b-it/discussions/38; supervision "
            "detection/vlm.py)",
        ),
        BoxConvention(
            name="qwen2.5-vl",
            scale="pixels",
            copy=_QWEN25_COPY,
            source="QwenLM/Qwen3-VL #721 (absolute coordinates, resize so height and width "
            "are 28*n), #940, #830; ms-swift #6167; min/max pixels 56*56 and 28*28*1280 "
            "(Qwen2-VL processor defaults, Ollama's qwen2.5vl)",
        ),
        BoxConvention(
            name="qwen3-vl",
            source="QwenLM/Qwen3-VL #1741 (quotes the README: relative 0-1000), #1485; "
            "ms-swift #6167. Alibaba Model Studio says 0-999: read as 0-1000, a value is "
            "off by at most 0.1 % of the side",
        ),
        BoxConvention(name="qwen2-vl", source="QwenLM/Qwen3-VL #663, #1485 (0-1000, relative)"),
        BoxConvention(
            name="claude",
            scale="pixels",
            copy=_CLAUDE_COPY,
            source="platform.claude.com build-with-claude/vision-coordinates (absolute pixel "
            "coordinates; not 0-1000) and /vision (scaled down over 1568 px long edge; "
            "recommended at most 1.15 megapixels)",
        ),
        BoxConvention(name="moondream", scale="unit", source="rubydoc moondream-client (0-1)"),
        BoxConvention(name="deepseek-vl2", top=999, source="deepseek-ai/DeepSeek-VL2 #94 (0-999)"),
        BoxConvention(
            name="paligemma",
            order="yx",
            top=1024,
            source="supervision detection/vlm.py (<locYYYY> y first, /1024)",
        ),
    )
}
"""Every row, by name; the patterns below say which model names use which."""

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), name)
    for pattern, name in (
        (r"qwen2[._-]?5[._-]?vl", "qwen2.5-vl"),
        (r"qwen3[._-]?vl", "qwen3-vl"),
        (r"qwen2[._-]?vl", "qwen2-vl"),
        (r"gemini", "gemini"),
        (r"claude", "claude"),
        (r"moondream", "moondream"),
        (r"deepseek[._-]?vl2", "deepseek-vl2"),
        (r"paligemma", "paligemma"),
    )
)
"""Model-name patterns (searched, case-insensitive; first match wins) -> row name.
`qwen2.5vl:7b` (Ollama), `Qwen/Qwen2.5-VL-7B-Instruct` (vLLM, Hugging Face),
`gemini-2.5-flash`, `claude-sonnet-4-5`, ..."""


def convention_for(model: str) -> BoxConvention:
    """The table's convention for the model name the analyzer sends; `DEFAULT` if none."""
    for pattern, name in _PATTERNS:
        if pattern.search(model):
            return CONVENTIONS[name]
    return DEFAULT


def resolve_convention(given: str | BoxConvention | None, model: str) -> BoxConvention:
    """`given` (a row's name or a `BoxConvention`) if any, else the table's row for `model`.

    Raises:
        InvalidOptionError: `given` names no row.
    """
    if given is None:
        return convention_for(model)
    if isinstance(given, BoxConvention):
        return given
    if isinstance(given, str) and given in CONVENTIONS:
        return CONVENTIONS[given]
    raise InvalidOptionError(
        f"box_convention must be one of {sorted(CONVENTIONS)} or a BoxConvention, not {given!r}"
    )
