"""Draw `receipt.png`: a narrow till receipt with four items and a total in euros.

Run it from anywhere (`python examples/receipt/make_image.py`); it writes the PNG next
to this file. The drawing is deterministic. The receipt reads:

    CORNER GROCER / 12 Rue Victor Hugo, Lyon / 14/03/2025 09:42
    Coffee beans 250g 8.90, Oat milk 1 L 2.49, Croissant x2 3.60, Dark chocolate 2.75
    TOTAL EUR 17.74
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 300, 420
MARGIN = 20
INK = (35, 35, 40)

ITEMS: list[tuple[str, str]] = [
    ("Coffee beans 250g", "8.90"),
    ("Oat milk 1 L", "2.49"),
    ("Croissant x2", "3.60"),
    ("Dark chocolate", "2.75"),
]
TOTAL = "17.74"


def draw_receipt() -> Image.Image:
    """Draw the receipt.

    Returns:
        A 300x420 RGB image.
    """
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    title = ImageFont.load_default(size=24)
    body = ImageFont.load_default(size=15)
    bold = ImageFont.load_default(size=18)
    centre = WIDTH / 2
    right = WIDTH - MARGIN

    draw.text((centre, 40), "CORNER GROCER", fill=INK, font=title, anchor="mm")
    draw.text((centre, 72), "12 Rue Victor Hugo, Lyon", fill=INK, font=body, anchor="mm")
    draw.text((centre, 94), "14/03/2025  09:42", fill=INK, font=body, anchor="mm")

    def rule(y: int) -> None:
        for x in range(MARGIN, right, 8):
            draw.line((x, y, x + 4, y), fill=INK, width=1)

    rule(118)
    y = 145
    for description, amount in ITEMS:
        draw.text((MARGIN, y), description, fill=INK, font=body, anchor="lm")
        draw.text((right, y), amount, fill=INK, font=body, anchor="rm")
        y += 30
    rule(y - 8)
    y += 20
    draw.text((MARGIN, y), "TOTAL EUR", fill=INK, font=bold, anchor="lm")
    draw.text((right, y), TOTAL, fill=INK, font=bold, anchor="rm")
    draw.text((MARGIN, y + 40), "Card  **** 4821", fill=INK, font=body, anchor="lm")
    draw.text((MARGIN, y + 62), "VAT included", fill=INK, font=body, anchor="lm")
    draw.text((centre, HEIGHT - 40), "Merci - Thank you!", fill=INK, font=body, anchor="mm")
    return image


def main() -> None:
    """Write `receipt.png` next to this script."""
    target = Path(__file__).with_name("receipt.png")
    draw_receipt().save(target, optimize=True)
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
