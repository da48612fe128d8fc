"""The fast model copy keeps small text: compared with a full-quality reference.

The reference is what the copy would be without any shortcut: a full-resolution decode
(`decode_rgb`: every pixel, the orientation applied) resized with LANCZOS, not encoded.
The copy is `prepare_image`'s, decoded back from its JPEG: a JPEG drafted at 1/2 scale
(`Image.draft`), a PNG box-reduced before its LANCZOS resize.

The threshold, in PSNR against the reference: the copy must be no more than
`MAX_EXTRA_LOSS` dB below what the JPEG encoding alone costs the reference (quality 90,
4:4:4; 37.6-40.2 dB on these images), and above `MIN_PSNR`. Measured with Pillow 13 and
libjpeg-turbo 3: rocket.jpg 37.2 dB (encoding alone 37.6), page.png 37.6 (37.7), the
12-megapixel text page 37.3 (40.2). The text page loses most: 40 px letters become 10 px,
the size where the draft's 2x2 DCT shows; at that level the local OCR still reads the
same letters from the copy as from the reference (the last test).
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageStat

from viewfinder.prepare import prepare_image
from viewfinder.prepare.decode import decode_pixels, decode_rgb

ASSETS = Path(__file__).parent / "assets"
MIN_PSNR = 35.0
"""dB: below this, 10 px text shows visible ringing and smear (BICUBIC from the draft,
rejected for the fast path, gives 32.9 dB on the text page)."""
MAX_EXTRA_LOSS = 3.5
"""dB the copy may lose beyond the JPEG encoding's own loss (the text page: 2.9)."""
WORDS = "invoice total amount paid receipt number date quick brown fox jumps over the lazy dog"


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _text_page_jpeg() -> bytes:
    """A 12-megapixel page of 40 px text (10 px in a 1024 copy), as a quality-90 JPEG."""
    page = Image.new("RGB", (4000, 3000), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=40)
    rng = random.Random(12)
    words = WORDS.split()
    for y in range(40, 2960, 60):
        draw.text((40, y), " ".join(rng.choice(words) for _ in range(25)), "black", font)
    return _encode(page, "JPEG", quality=90)


@pytest.fixture(scope="module")
def text_page() -> bytes:
    return _text_page_jpeg()


def _reference(data: bytes, max_side: int) -> Image.Image:
    """Full decode, orientation, LANCZOS to the copy's size; not encoded."""
    full = decode_rgb(data, "reference")
    scale = max_side / max(full.size)
    size = (round(full.width * scale), round(full.height * scale))
    return full.resize(size, Image.Resampling.LANCZOS)


def _copy(data: bytes, max_side: int) -> Image.Image:
    prepared = prepare_image(data, max_side=max_side)
    return Image.open(io.BytesIO(prepared.model_bytes)).convert("RGB")


def _psnr(first: Image.Image, second: Image.Image) -> float:
    mean_square = sum(ImageStat.Stat(ImageChops.difference(first, second)).sum2) / (
        3 * first.width * first.height
    )
    return math.inf if mean_square == 0 else 10 * math.log10(255**2 / mean_square)


def _encoding_only(reference: Image.Image) -> Image.Image:
    data = _encode(reference, "JPEG", quality=90, subsampling=0)
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize(
    ("name", "max_side", "fewer_pixels"),
    [
        ("rocket.jpg", 200, True),  # 640x427: drafted at 1/2 scale
        ("page.png", 64, False),  # 384x191 grey: reduced 3x in bands, then LANCZOS
        ("text_page", 1024, True),  # 4000x3000: drafted at 1/2 scale
    ],
)
def test_the_copy_is_close_to_a_full_quality_reference(
    name: str, max_side: int, fewer_pixels: bool, text_page: bytes
) -> None:
    data = text_page if name == "text_page" else (ASSETS / name).read_bytes()
    with Image.open(io.BytesIO(data)) as header:
        full_pixels = header.width * header.height
    assert (decode_pixels(data, max_side) < full_pixels) is fewer_pixels  # the fast path ran

    reference = _reference(data, max_side)
    copy = _copy(data, max_side)

    assert copy.size == reference.size
    quality = _psnr(copy, reference)
    assert quality > MIN_PSNR
    assert quality > _psnr(_encoding_only(reference), reference) - MAX_EXTRA_LOSS


def test_the_copy_is_deterministic(text_page: bytes) -> None:
    assert prepare_image(text_page).model_bytes == prepare_image(text_page).model_bytes


def test_the_local_ocr_reads_the_same_letters_in_the_copy(text_page: bytes) -> None:
    pytest.importorskip("rapidocr", reason="the local extra is not installed")
    from viewfinder.local.read import read_text

    top_lines = (0, 0, 1024, 40)  # the first two lines of 10 px text, whole
    reference = read_text(_reference(text_page, 1024).crop(top_lines)).text
    copy = read_text(_copy(text_page, 1024).crop(top_lines)).text

    assert len(reference.split()) >= 10  # the reference itself is read
    # spaces aside: PP-OCR sometimes drops one between two words in either image
    assert "".join(copy.split()) == "".join(reference.split())
