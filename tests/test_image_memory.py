"""Memory of the model copy: decode once, at reduced size where the format allows.

Pixel memory is measured with Pillow's own allocator statistics, not RSS (RSS tests
flake): with freed blocks kept for reuse, a fresh block is only allocated when more are
live at once than ever before, so fresh blocks x block size is the high-water mark of
the pixel buffers. Pillow keeps RGB in 4 bytes per pixel, so one decoded copy of a
w x h RGB image is w * h * 4 bytes here.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps, ImageStat
from PIL import _imaging as core

from viewfinder.local.engine import decode_full
from viewfinder.prepare import PreparedImage, decode, prepare_image

BLOCK: int = 1 << 16
"""Pillow block size while measuring: small, so images span many blocks."""


@pytest.fixture
def pixel_peak() -> Iterator[Callable[[Callable[[], Any]], int]]:
    """Run a callable and return the most bytes Pillow held in image buffers at once."""
    block_size, blocks_max = core.get_block_size(), core.get_blocks_max()
    core.set_block_size(BLOCK)
    core.set_blocks_max(1 << 14)

    def measure(call: Callable[[], Any]) -> int:
        core.clear_cache()
        core.reset_stats()
        call()
        allocated: int = core.get_stats()["allocated_blocks"]
        return allocated * BLOCK

    try:
        yield measure
    finally:
        core.set_blocks_max(blocks_max)
        core.clear_cache()
        core.set_block_size(block_size)


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def pattern(size: tuple[int, int]) -> Image.Image:
    """A deterministic RGB picture with edges, gradients and a red top-left quadrant."""
    width, height = size
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.radial_gradient("L").resize(size)
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    for i in range(0, max(size), 37):
        draw.line((i, 0, 0, i), fill=(255, 255, 255), width=3)
        draw.ellipse((i, i // 2, i + 40, i // 2 + 25), outline=(0, 0, 0), width=2)
    draw.rectangle((0, 0, width // 2, height // 2), fill=(230, 20, 20))
    return image


def exif(orientation: int) -> Image.Exif:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags


def model(prepared: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(prepared.model_bytes))
    image.load()
    return image


def psnr(first: Image.Image, second: Image.Image) -> float:
    """Peak signal-to-noise ratio between two RGB images of one size, in dB."""
    mean_square = sum(ImageStat.Stat(ImageChops.difference(first, second)).sum2) / (
        3 * first.width * first.height
    )
    return math.inf if mean_square == 0 else 10 * math.log10(255**2 / mean_square)


def plain_lanczos(data: bytes, max_side: int) -> Image.Image:
    """The copy as a full-size decode, orientation, LANCZOS resize and encoding make it."""
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    scale = max_side / max(shown.size)
    size = (round(shown.width * scale), round(shown.height * scale))
    copy = shown.resize(size, Image.Resampling.LANCZOS)
    decoded = Image.open(io.BytesIO(encode(copy, "JPEG", quality=90, subsampling=0)))
    decoded.load()
    return decoded


# --- memory -----------------------------------------------------------------------------

SIZE = (2000, 1500)
ONE_RGB_COPY = SIZE[0] * SIZE[1] * 4


def test_an_rgb_png_is_decoded_once_and_never_copied(
    pixel_peak: Callable[[Callable[[], Any]], int],
) -> None:
    data = encode(pattern(SIZE), "PNG", compress_level=1)

    peak = pixel_peak(lambda: prepare_image(data, max_side=256))

    # the decoded image plus its 1/9 reduction and the small copy; was 2.2 copies
    assert peak <= 1.25 * ONE_RGB_COPY


def test_a_large_jpeg_is_decoded_at_reduced_scale(
    pixel_peak: Callable[[Callable[[], Any]], int],
) -> None:
    data = encode(pattern(SIZE), "JPEG", quality=90)

    peak = pixel_peak(lambda: prepare_image(data, max_side=256))

    assert peak <= 0.2 * ONE_RGB_COPY  # decoded at 1/4 scale: 1/16 of the pixels


def test_the_orientation_turns_the_small_copy_not_the_decoded_image(
    pixel_peak: Callable[[Callable[[], Any]], int],
) -> None:
    data = encode(pattern(SIZE), "PNG", compress_level=1, exif=exif(6))

    peak = pixel_peak(lambda: prepare_image(data, max_side=256))

    assert peak <= 1.25 * ONE_RGB_COPY  # was 2.3 copies: decoded, turned, converted


@pytest.mark.parametrize(
    ("mode", "limit"),
    [("P", 0.5), ("RGBA", 1.3), ("LA", 1.3), ("I;16", 0.8)],
)
def test_other_modes_are_converted_in_bands(
    pixel_peak: Callable[[Callable[[], Any]], int],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    limit: float,
) -> None:
    monkeypatch.setattr(decode, "_BAND_PIXELS", 1 << 16)
    picture = pattern(SIZE)
    picture = picture.convert("L").convert("I;16") if mode == "I;16" else picture.convert(mode)
    data = encode(picture, "PNG", compress_level=1)

    peak = pixel_peak(lambda: prepare_image(data, max_side=256))

    # the decoded image in its own mode (P: 1 byte a pixel, I;16: 2, LA: 4), plus bands;
    # was 1.4 copies for P, 2.6 for I;16, 4.1 for RGBA and LA (converted, then flattened,
    # whole)
    assert peak <= limit * ONE_RGB_COPY


def test_the_local_engine_decodes_once_without_copies(
    pixel_peak: Callable[[Callable[[], Any]], int],
) -> None:
    data = encode(pattern(SIZE), "PNG", compress_level=1)

    peak = pixel_peak(lambda: decode_full(data))

    assert peak <= 1.05 * ONE_RGB_COPY  # was 3 copies: decoded, "oriented", "converted"


# --- the copy itself --------------------------------------------------------------------


def test_a_drafted_rotated_jpeg_keeps_its_geometry() -> None:
    shown = pattern((1600, 2400))  # as a viewer shows it; stored turned a quarter
    data = encode(shown.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif(6))

    prepared = prepare_image(data, max_side=256)

    assert (prepared.width, prepared.height) == (1600, 2400)  # the original's, not the draft's
    assert (prepared.model_width, prepared.model_height) == (171, 256)
    copy = model(prepared)
    assert copy.size == (171, 256)
    red, green, _ = copy.getpixel((20, 20))  # type: ignore[misc]
    assert red > 200 and green < 60  # the red quadrant is still top left
    assert psnr(copy, plain_lanczos(data, 256)) > 33


@pytest.mark.parametrize(
    ("fmt", "size", "max_side"),
    [("PNG", (2400, 1600), 256), ("JPEG", (2400, 1600), 256), ("JPEG", (2000, 1500), 512)],
)
def test_a_reduced_copy_is_close_to_a_plain_lanczos_resize(
    fmt: str, size: tuple[int, int], max_side: int
) -> None:
    params = {"quality": 95} if fmt == "JPEG" else {"compress_level": 1}
    data = encode(pattern(size), fmt, **params)

    copy = model(prepare_image(data, max_side=max_side))

    assert psnr(copy, plain_lanczos(data, max_side)) > 33


def test_bands_do_not_change_the_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(_with_alpha(pattern((1300, 900))), "PNG")

    whole = prepare_image(data, max_side=128)
    monkeypatch.setattr(decode, "_BAND_PIXELS", 5000)  # bands of 3 rows, reduced 3 times
    banded = prepare_image(data, max_side=128)

    assert banded.model_bytes == whole.model_bytes


def _with_alpha(picture: Image.Image) -> Image.Image:
    picture = picture.convert("RGBA")
    picture.putalpha(Image.linear_gradient("L").resize(picture.size))
    return picture


def _palette_with_transparency(size: tuple[int, int]) -> Image.Image:
    picture = pattern(size).quantize(16, method=Image.Quantize.MEDIANCUT)
    picture.info["transparency"] = 3
    return picture


UNCHANGED: list[tuple[str, Callable[[], bytes], int, str]] = [
    ("rgb png", lambda: encode(pattern((900, 600)), "PNG"), 512, "e9ad5c0292659600"),
    ("rgb jpeg", lambda: encode(pattern((900, 600)), "JPEG"), 512, "7304632888ba6b16"),
    (
        "jpeg turned 180",
        lambda: encode(pattern((900, 600)), "JPEG", exif=exif(3)),
        512,
        "2934318f1406436c",
    ),
    (
        "jpeg turned 90, not resized",
        lambda: encode(pattern((900, 600)), "JPEG", exif=exif(6)),
        1024,
        "6a33fc071f845f8f",
    ),
    (
        "palette",
        lambda: encode(_palette_with_transparency((900, 600)), "PNG"),
        512,
        "b3bd9dde38611fd6",
    ),
    ("rgba", lambda: encode(_with_alpha(pattern((900, 600))), "PNG"), 512, "61f8d4240b8ad75d"),
    (
        "grey and alpha",
        lambda: encode(_with_alpha(pattern((900, 600))).convert("LA"), "PNG"),
        512,
        "2a9923a34d525175",
    ),
    (
        "grey, not resized",
        lambda: encode(pattern((700, 500)).convert("L"), "PNG"),
        1024,
        "fa451b9bf666a6a4",
    ),
    (
        "16-bit grey",
        lambda: encode(pattern((600, 400)).convert("I;16"), "PNG"),
        512,
        "cbf6e9b227821416",
    ),
    ("cmyk", lambda: encode(pattern((600, 400)).convert("CMYK"), "TIFF"), 512, "72f528d592970a36"),
    ("rgb, 3.9 x max_side", lambda: encode(pattern((2000, 1200)), "PNG"), 512, "17c4d4328b891d20"),
]
"""Images under 4 x max_side (JPEG: under 3 x), not turned a quarter unless not resized,
and their model copy digests before the lean decode (commit 21c538e): their bytes,
hence cache keys and cassettes, are unchanged."""


@pytest.mark.parametrize(
    ("make", "max_side", "digest"),
    [case[1:] for case in UNCHANGED],
    ids=[case[0] for case in UNCHANGED],
)
def test_smaller_images_keep_their_model_bytes(
    make: Callable[[], bytes], max_side: int, digest: str
) -> None:
    prepared = prepare_image(make(), max_side=max_side)

    assert hashlib.sha256(prepared.model_bytes).hexdigest()[:16] == digest


@pytest.mark.parametrize(("feature", "limit"), [("read", 0.1), ("people", 0.5)])
def test_local_features_do_not_copy_an_rgb_image(
    pixel_peak: Callable[[Callable[[], Any]], int], feature: str, limit: float
) -> None:
    pytest.importorskip("cv2")
    from viewfinder.local import read
    from viewfinder.local.people import detect_people

    picture = pattern((1200, 900))
    call = {"read": lambda: read._to_bgr(picture), "people": lambda: detect_people(picture)}

    peak = pixel_peak(call[feature])

    # was one more copy: "converted" from RGB to RGB (people also makes a grey copy)
    assert peak <= limit * 1200 * 900 * 4
