"""Computer Vision 3.2's Color and ImageType from the pixels: no model, no NumPy, no network.

Reference: `azure-computer-vision-3.2.md` sections 4 (`ColorInfo`, `ImageType`), 5.2
(Color) and 5.3 (Image type). Microsoft documents what the fields mean, not how the
service computes them; every rule below is ours, chosen to match the documented meaning
and the examples, and it is a heuristic (chiefly ImageType). What it does:

Working copy. The image is converted as `viewfinder.prepare.decode.to_rgb` converts it
(alpha flattened onto white, deep greys scaled) and shrunk with a box filter (an exact
area average) so that its long side is at most `WORK_SIDE` (256) pixels; a smaller image
is used as it is. Everything below is counted on that copy (at most 65,536 pixels), so
a 12-megapixel photo costs one resize.

Colour names (section 5.2's 12: black, blue, brown, gray, green, orange, pink, purple,
red, teal, white, yellow; capitalised as the service returns them). Each pixel is named
by `color_name`, a fixed table on its HSV hue, chroma (max - min of R, G, B) and value
(max): very dark is Black; low chroma is White, Gray or Black by lightness; otherwise the
hue picks the name, dark or pale variants of red, orange and yellow becoming Brown or
Pink (the table is in `color_name`'s docstring). The service's own boundaries are not
published: a colour near a boundary may be named differently by Azure.

- `dominant_color_background`: the most frequent name in the border frame, the outer
  1/8 of the width and of the height on each side (the docs do not say which pixels are
  "background"; the border is where a background shows in most photos and clip art).
- `dominant_color_foreground`: the most frequent name in the centre box, the middle half
  of the width and of the height (where the subject is, usually). Both may be equal, as
  in the section 8.1 example (Brown, Brown).
- `dominant_colors`: the names covering at least `DOMINANT_SHARE` (10 %) of the whole
  image, most frequent first, at most `MAX_DOMINANT` (3); at least the most frequent one.
- `accent_color`: "the most vibrant color in the image, based on a combination of the
  dominant color set and saturation" (section 5.2). Among the chromatic names (not
  Black, Gray or White) covering at least `ACCENT_MIN_SHARE` (0.5 %) of the image, the one
  whose pixels have the greatest total chroma (its area times its saturation) wins; the
  accent is the chroma-weighted mean colour of that name's pixels, so its most vivid
  pixels weigh most. An image without such a name gets its mean colour (a grey, for a
  black-and-white image: the docs' examples never show an empty accent).
- `is_bw_img`: at most `BW_MAX_COLOURED` (1 %) of the pixels have a chroma above
  `NEUTRAL_CHROMA` (24, JPEG's colour noise stays below it). "Black-and-white" is a
  greyscale image, not only a two-tone one, as a black-and-white photograph is; a dark
  colour photo named Black and White is still not one (the docs' own note).

ImageType (section 5.3), from statistics of the grey working copy:

- flatness `F`: the share of pixels whose 3x3 neighbourhood spans at most `FLAT_RANGE`
  (6) grey levels. Clip art is made of flat fills; a photograph has texture and noise.
- palette concentration `P`: the share of pixels in the 16 most frequent colours once
  each channel is cut to 4 bits. Clip art uses a few colours; a photograph thousands.
- `clip_art_type`: 3 (good) when P >= 0.90 and F >= 0.70; 2 (normal) when P >= 0.80 and
  F >= 0.50; 1 (ambiguous) when P >= 0.60 and F >= 0.35; else 0. A flat scan of a page
  or a plain wall also counts as clip art: these numbers say "few flat colours", not
  "drawn by a person".
- `line_drawing_type`: 1 when the image is thin strokes on a plain ground. The ground
  level is the grey value with the most pixels within +-16 of it; ground pixels lie
  within 32 of it, ink pixels more than 64 away (darker or lighter). A line drawing has
  at least 55 % ground, between 0.2 % and 35 % ink, in-between tones under 25 % of the
  image and under twice the ink (sharp strokes, not a photograph's gradients), F >= 0.5
  (a plain ground, not fur or grass), and thin ink: at most 30 % of the ink survives an
  erosion by a 5x5 square (strokes up to 4 working pixels wide, 1/64 of the long side,
  vanish). A filled shape is not a line drawing, whatever its colours; strokes much
  thinner than a working pixel blur into grey and may no longer count as ink.

Determinism: Pillow's box resize, filters and histograms are integer arithmetic, and
every rule here compares integer counts (ties between names break in the reference's
alphabetical order), so the same pixels give the same answer on any machine. Pillow's
major version is pinned (pyproject.toml). A re-encoded copy (PNG to JPEG) has slightly
different pixels: names and types are stable unless a share sits on a threshold; the
accent's hex digits may move by a few units.

What cannot be checked here: how close this comes to the service. The section 8.1
example's image (Satya Nadella, Forbidden City: Brown, Brown, [Brown, Black], 873B59,
not black-and-white, {0, 0}) is not in the reference, and no other 3.2 Color output with
its image is stored, so no test compares with Azure's numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final, cast

from PIL import Image, ImageChops, ImageFilter

from viewfinder.prepare.decode import to_rgb
from viewfinder.schemas.color import COLOR_NAMES, ColorInfo, ColorName, ImageType

__all__ = [
    "ACCENT_MIN_SHARE",
    "BW_MAX_COLOURED",
    "DOMINANT_SHARE",
    "MAX_DOMINANT",
    "NEUTRAL_CHROMA",
    "VERSION",
    "WORK_SIDE",
    "color_info",
    "color_name",
    "image_type",
    "working_copy",
]

VERSION: Final = "pixels-1"
"""Changes whenever a rule or threshold here changes (for cache keys and model_version)."""

WORK_SIDE: Final = 256
"""Long side, in pixels, of the working copy every statistic is counted on."""
DOMINANT_SHARE: Final = 0.10
"""A name is one of `dominant_colors` when it covers at least this share of the image."""
MAX_DOMINANT: Final = 3
"""At most this many `dominant_colors`."""
ACCENT_MIN_SHARE: Final = 0.005
"""A chromatic name may give the accent when it covers at least this share (not noise)."""
NEUTRAL_CHROMA: Final = 24
"""A pixel whose max - min of R, G, B is at most this is neutral (grey) for `is_bw_img`."""
BW_MAX_COLOURED: Final = 0.01
"""An image is black-and-white when at most this share of its pixels is not neutral."""

_ACHROMATIC: Final[frozenset[ColorName]] = frozenset({"Black", "Gray", "White"})
_RANK: Final = {name: index for index, name in enumerate(COLOR_NAMES)}

_FLAT_RANGE: Final = 6
_PALETTE_TOP: Final = 16
_CLIP_ART: Final = ((3, 0.90, 0.70), (2, 0.80, 0.50), (1, 0.60, 0.35))  # (type, P, F)
_GROUND_WINDOW: Final = 16
_GROUND_SPREAD: Final = 32
_INK_DISTANCE: Final = 64
_ERODE: Final = 5
_MIDDLE_PER_INK: Final = 2
_LINE_FLAT: Final = 0.5


def working_copy(image: Image.Image) -> Image.Image:
    """`image` in RGB, its long side at most `WORK_SIDE`, by an area-averaging box filter.

    An RGB image already small enough is returned itself. Callers computing both
    `color_info` and `image_type` may pass them this copy, to resize once.
    """
    width, height = image.size
    scale = WORK_SIDE / max(width, height)
    if scale >= 1:
        return to_rgb(image)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.mode in ("RGB", "RGBA", "L", "LA"):  # resized in their own mode: no big copy
        return to_rgb(image.resize(size, Image.Resampling.BOX))
    return to_rgb(image).resize(size, Image.Resampling.BOX)


def color_name(red: int, green: int, blue: int) -> ColorName:
    """The section 5.2 colour name of one 8-bit RGB colour.

    With value `V` = max(R, G, B), chroma `C` = V - min(R, G, B) and the HSV hue `H`
    in degrees:

    - V < 56: Black;
    - C < max(24, V * 0.15) (no visible hue): White when min(R, G, B) >= 200, Black
      when V < 80, else Gray;
    - H < 15 or H >= 340: Brown when V < 110, Pink when C * 2 < V (pale) and V >= 180,
      else Red;
    - 15 <= H < 45: Orange when V >= 160 and C * 2 >= V, else Brown (skin, wood);
    - 45 <= H < 70: Yellow when V >= 150, else Brown (olive);
    - 70 <= H < 165: Green; 165 <= H < 200: Teal; 200 <= H < 255: Blue;
    - 255 <= H < 290: Purple; 290 <= H < 340: Pink when V >= 150, else Purple.
    """
    high, low = max(red, green, blue), min(red, green, blue)
    chroma = high - low
    if high < 56:
        return "Black"
    if chroma < max(24, high * 0.15):
        return "White" if low >= 200 else "Black" if high < 80 else "Gray"
    hue = _hue(red, green, blue, high, chroma)
    if hue < 15 or hue >= 340:
        return "Brown" if high < 110 else "Pink" if chroma * 2 < high and high >= 180 else "Red"
    if hue < 45:
        return "Orange" if high >= 160 and chroma * 2 >= high else "Brown"
    if hue < 70:
        return "Yellow" if high >= 150 else "Brown"
    for limit, name in _HUES:
        if hue < limit:
            return name
    return "Pink" if high >= 150 else "Purple"


_HUES: Final[tuple[tuple[int, ColorName], ...]] = (
    (165, "Green"),
    (200, "Teal"),
    (255, "Blue"),
    (290, "Purple"),
)


def _hue(red: int, green: int, blue: int, high: int, chroma: int) -> float:
    """The HSV hue in degrees, [0, 360), of a colour with chroma > 0."""
    if high == red:
        hue = 60 * ((green - blue) / chroma)
    elif high == green:
        hue = 60 * ((blue - red) / chroma + 2)
    else:
        hue = 60 * ((red - green) / chroma + 4)
    return hue % 360


def color_info(image: Image.Image) -> ColorInfo:
    """The 3.2 Color feature of `image`, from its pixels (rules in the module docstring).

    Args:
        image: Any Pillow image, as a viewer shows it (orientation already applied).
    """
    small = working_copy(image)
    width, height = small.size
    pixels = _rgb_pixels(small)
    names = _names(pixels)
    labels = [names[pixel] for pixel in pixels]
    whole = Counter(labels)
    total = len(labels)

    frame_x, frame_y = max(1, width // 8), max(1, height // 8)
    border = Counter(
        labels[y * width + x]
        for y in range(height)
        for x in range(width)
        if x < frame_x or x >= width - frame_x or y < frame_y or y >= height - frame_y
    )
    left, top = width // 4, height // 4
    right, bottom = max(left + 1, width - width // 4), max(top + 1, height - height // 4)
    centre = Counter(labels[y * width + x] for y in range(top, bottom) for x in range(left, right))

    ranked = _ranked(whole)
    dominant = [name for name in ranked if whole[name] >= DOMINANT_SHARE * total]
    coloured = sum(
        count
        for (red, green, blue), count in Counter(pixels).items()
        if max(red, green, blue) - min(red, green, blue) > NEUTRAL_CHROMA
    )
    return ColorInfo(
        dominant_color_foreground=_ranked(centre or whole)[0],
        dominant_color_background=_ranked(border or whole)[0],
        dominant_colors=tuple(dominant[:MAX_DOMINANT] or ranked[:1]),
        accent_color=_accent(Counter(pixels), names, whole, total),
        is_bw_img=coloured <= BW_MAX_COLOURED * total,
    )


def _rgb_pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    """The pixels of an RGB image, row by row."""
    return cast("list[tuple[int, int, int]]", list(image.get_flattened_data()))


def _names(pixels: Iterable[tuple[int, int, int]]) -> dict[tuple[int, int, int], ColorName]:
    """Each distinct colour of `pixels` named once."""
    return {pixel: color_name(*pixel) for pixel in set(pixels)}


def _ranked(counts: Counter[ColorName]) -> list[ColorName]:
    """Names by count, most first; ties in the reference's order."""
    return sorted(counts, key=lambda name: (-counts[name], _RANK[name]))


def _accent(
    colours: Counter[tuple[int, int, int]],
    names: dict[tuple[int, int, int], ColorName],
    whole: Counter[ColorName],
    total: int,
) -> str:
    """The accent colour's hex (rule in the module docstring), integer arithmetic only."""
    vividness: Counter[ColorName] = Counter()
    for colour, count in colours.items():
        name = names[colour]
        if name not in _ACHROMATIC and whole[name] >= ACCENT_MIN_SHARE * total:
            vividness[name] += count * (max(colour) - min(colour))
    if vividness:
        best = min(vividness, key=lambda name: (-vividness[name], _RANK[name]))
        weighted = [
            (colour, count * (max(colour) - min(colour)))
            for colour, count in colours.items()
            if names[colour] == best
        ]
    else:
        weighted = list(colours.items())
    weight = sum(w for _, w in weighted)
    mean = (
        (2 * sum(colour[band] * w for colour, w in weighted) + weight) // (2 * weight)
        for band in range(3)
    )
    return "".join(f"{value:02X}" for value in mean)


def image_type(image: Image.Image) -> ImageType:
    """The 3.2 ImageType feature of `image`, a heuristic (rules in the module docstring).

    Args:
        image: Any Pillow image, as a viewer shows it.
    """
    small = working_copy(image)
    grey = small.convert("L")
    total = small.width * small.height

    spread = ImageChops.subtract(
        grey.filter(ImageFilter.MaxFilter(3)), grey.filter(ImageFilter.MinFilter(3))
    )
    flat = sum(spread.histogram()[: _FLAT_RANGE + 1]) / total
    quantised = Counter(_rgb_pixels(small.point(lambda value: value >> 4)))
    palette = sum(count for _, count in quantised.most_common(_PALETTE_TOP)) / total
    clip_art = next((kind for kind, p, f in _CLIP_ART if palette >= p and flat >= f), 0)
    return ImageType(
        clip_art_type=clip_art,
        line_drawing_type=1 if _is_line_drawing(grey, spread, total) else 0,
    )


def _is_line_drawing(grey: Image.Image, spread: Image.Image, total: int) -> bool:
    """Thin strokes on a plain ground (the rule in the module docstring)."""
    histogram = grey.histogram()

    def near(level: int, spread: int) -> int:
        return sum(histogram[max(0, level - spread) : level + spread + 1])

    ground = max(range(256), key=lambda level: (near(level, _GROUND_WINDOW), -level))
    ground_share = near(ground, _GROUND_SPREAD) / total
    ink = grey.point(lambda value: 255 if abs(value - ground) > _INK_DISTANCE else 0)
    inked = ink.histogram()[255]
    middle = total - inked - near(ground, _GROUND_SPREAD)
    if not (ground_share >= 0.55 and 0.002 * total <= inked <= 0.35 * total):
        return False
    if middle > 0.25 * total or middle > _MIDDLE_PER_INK * inked:
        return False
    flat = sum(spread.histogram()[: _FLAT_RANGE + 1])
    if flat < _LINE_FLAT * total:
        return False
    eroded = ink.filter(ImageFilter.MinFilter(_ERODE)).histogram()[255]
    return eroded <= 0.30 * inked
