"""Draw `shelf.png`: a 600x400 store shelf with three rows of products and two gaps.

Run it from anywhere (`python examples/shelf_audit/make_image.py`); it writes the PNG
next to this file. The drawing is deterministic, so re-running it gives the same
picture. What is where, in pixels (x_min, y_min, x_max, y_max):

| row | product | facings | box |
|---|---|---|---|
| 1 (top) | COLA | 3 | 30, 50, 290, 120 |
| 1 | LIME | 2 | 300, 50, 470, 120 |
| 1 | (empty) | | 480, 50, 560, 120 |
| 2 | CHIPS | 2 | 30, 160, 200, 240 |
| 2 | (empty) | | 210, 160, 290, 240 |
| 2 | SOAP | 3 | 300, 160, 560, 240 |
| 3 (bottom) | MILK | 4 | 30, 275, 380, 360 |
| 3 | JAM | 2 | 390, 275, 560, 360 |
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 600, 400
SLOT_LEFT, SLOT_PITCH, SLOT_WIDTH = 30, 90, 80
WALL = (236, 232, 224)
WOOD = (139, 94, 60)
WOOD_EDGE = (101, 67, 42)

Color = tuple[int, int, int]
Slot = tuple[str, Color, Color] | None
"""(label, body colour, label colour) of the product in a slot; None for an empty slot."""
WHITE: Color = (255, 255, 255)


def units(label: str, body: Color, ink: Color, count: int) -> list[Slot]:
    """`count` side-by-side units of one product."""
    return [(label, body, ink)] * count


EMPTY: list[Slot] = [None]

# (top, bottom) of the products of each row; the board sits right under them.
ROWS: list[tuple[int, int]] = [(50, 120), (160, 240), (275, 360)]
STOCK: list[list[Slot]] = [
    units("COLA", (200, 30, 40), WHITE, 3) + units("LIME", (60, 160, 60), WHITE, 2) + EMPTY,
    units("CHIPS", (240, 190, 40), (120, 40, 20), 2)
    + EMPTY
    + units("SOAP", (40, 90, 200), WHITE, 3),
    units("MILK", (245, 245, 245), (30, 80, 170), 4)
    + units("JAM", (120, 40, 120), (255, 230, 120), 2),
]


def draw_shelf() -> Image.Image:
    """Draw the shelf.

    Returns:
        A 600x400 RGB image.
    """
    image = Image.new("RGB", (WIDTH, HEIGHT), WALL)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=15)
    # the shelf unit: two uprights and a back panel
    draw.rectangle((12, 20, 588, 380), fill=(222, 216, 204))
    draw.rectangle((10, 20, 22, 385), fill=WOOD_EDGE)
    draw.rectangle((578, 20, 590, 385), fill=WOOD_EDGE)
    for (top, bottom), slots in zip(ROWS, STOCK, strict=True):
        draw.rectangle((10, bottom, 590, bottom + 12), fill=WOOD, outline=WOOD_EDGE)
        for index, item in enumerate(slots):
            left = SLOT_LEFT + index * SLOT_PITCH
            right = left + SLOT_WIDTH
            if item is None:
                # a price tag on the board edge and nothing above it
                draw.rectangle((left + 25, bottom + 2, right - 25, bottom + 10), fill="white")
                continue
            label, body, ink = item
            draw.rounded_rectangle((left, top, right, bottom), radius=6, fill=body, outline="black")
            middle = (top + bottom) // 2
            draw.rectangle((left + 4, middle - 11, right - 4, middle + 11), fill=ink)
            draw.text(((left + right) / 2, middle), label, fill=body, font=font, anchor="mm")
    return image


def main() -> None:
    """Write `shelf.png` next to this script."""
    target = Path(__file__).with_name("shelf.png")
    draw_shelf().save(target, optimize=True)
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
