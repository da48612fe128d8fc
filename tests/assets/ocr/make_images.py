"""Draw the OCR test images `skewed.png` and `columns.png`.

Run it from anywhere (`python tests/assets/ocr/make_images.py`); it writes the PNGs
next to this file. The drawings are deterministic (Pillow's bundled font, no
randomness). The texts are this project's own.

- `skewed.png`: a printed paragraph as if photographed at an angle: drawn flat,
  rotated by 4 degrees, warped in perspective (the top edge narrower than the bottom,
  as a page seen from below), shaded left to right like uneven light, slightly blurred.
- `columns.png`: a heading across the page over two columns of running text whose
  lines sit side by side; the reading order is the heading, the left column, then the
  right column.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

LINES = [
    "Field notes, Tuesday 9 April",
    "The river was high after three days of rain,",
    "so we crossed at the old stone bridge instead.",
    "Count of birds: 14 herons, 6 egrets, 2 kites.",
    "Water temperature 11.5 C at noon, clear sky.",
    "Next visit: check the nets by the north bank.",
]
FONT_SIZE = 26
LEADING = 44
MARGIN = 40
INK = (30, 30, 36)
PAPER = (246, 242, 232)


def _flat() -> Image.Image:
    font = ImageFont.load_default(size=FONT_SIZE)
    width = MARGIN * 2 + max(int(font.getlength(line)) for line in LINES)
    height = MARGIN * 2 + LEADING * len(LINES)
    image = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(LINES):
        draw.text((MARGIN, MARGIN + index * LEADING), line, fill=INK, font=font)
    return image


def _perspective_coefficients(
    source: list[tuple[float, float]], target: list[tuple[float, float]]
) -> list[float]:
    """Coefficients for `Image.transform(PERSPECTIVE)`: target pixel -> source pixel."""
    rows: list[list[float]] = []
    values: list[float] = []
    for (sx, sy), (tx, ty) in zip(source, target, strict=True):
        rows.append([tx, ty, 1, 0, 0, 0, -sx * tx, -sx * ty])
        rows.append([0, 0, 0, tx, ty, 1, -sy * tx, -sy * ty])
        values.extend([sx, sy])
    return _solve(rows, values)


def _solve(matrix: list[list[float]], values: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (8x8; no numpy needed)."""
    size = len(values)
    augmented = [[*row, value] for row, value in zip(matrix, values, strict=True)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(augmented[r][col]))
        augmented[col], augmented[pivot] = augmented[pivot], augmented[col]
        for row in range(size):
            if row != col:
                factor = augmented[row][col] / augmented[col][col]
                augmented[row] = [
                    a - factor * b for a, b in zip(augmented[row], augmented[col], strict=True)
                ]
    return [augmented[i][size] / augmented[i][i] for i in range(size)]


def draw_skewed() -> Image.Image:
    """Draw the paragraph, rotated, warped and shaded.

    Returns:
        An RGB image about 760x470.
    """
    flat = _flat().rotate(4, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=PAPER)
    width, height = flat.size
    inset = width * 0.06
    corners = [(0.0, 0.0), (width, 0.0), (width, height), (0.0, height)]
    warped_corners = [(inset, 0.0), (width - inset, 0.0), (width, height), (0.0, height)]
    coefficients = _perspective_coefficients(corners, warped_corners)
    warped = flat.transform(
        (width, height),
        Image.Transform.PERSPECTIVE,
        coefficients,
        resample=Image.Resampling.BICUBIC,
        fillcolor=(90, 80, 70),
    )
    shade = Image.linear_gradient("L").rotate(90).resize((width, height))  # dark left edge
    dark = Image.new("RGB", (width, height), (120, 112, 100))
    shaded = Image.composite(warped, dark, shade.point(lambda v: 150 + v * 105 // 255))
    return shaded.filter(ImageFilter.GaussianBlur(0.8))


HEADING = "Notes on the spring survey"
LEFT_COLUMN = [
    "The first team walked the",
    "eastern shore at dawn and",
    "counted nests in the reeds.",
]
RIGHT_COLUMN = [
    "The second team stayed on",
    "the island and measured",
    "the water level each hour.",
]


def draw_columns() -> Image.Image:
    """Draw a heading over two side-by-side columns of text.

    Returns:
        A 600x190 RGB image.
    """
    image = Image.new("RGB", (600, 190), "white")
    draw = ImageDraw.Draw(image)
    draw.text((30, 20), HEADING, fill=INK, font=ImageFont.load_default(size=26))
    body = ImageFont.load_default(size=18)
    for index, (left, right) in enumerate(zip(LEFT_COLUMN, RIGHT_COLUMN, strict=True)):
        y = 80 + index * 30
        draw.text((30, y), left, fill=INK, font=body)
        draw.text((320, y), right, fill=INK, font=body)
    return image


def main() -> None:
    """Write `skewed.png` and `columns.png` next to this script."""
    for name, image in (("skewed.png", draw_skewed()), ("columns.png", draw_columns())):
        target = Path(__file__).with_name(name)
        image.save(target, optimize=True)
        print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
