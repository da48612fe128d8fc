"""The one image decoder: header checks, the lean decode of the model copy, full decodes.

Every check Azure AI Vision makes on an image's pixels (format, side lengths, pixel
count) runs here from the header, before a single pixel is decoded; a bad image is a
typed `ImageError`, never a crash. Three callers decode through this module:
`viewfinder.prepare.prepare_image` (`model_copy`, at the model copy's size, with as
little memory as the format allows), and `viewfinder.draw` and `viewfinder.local`
(`decode_rgb`, at full resolution). `decode_pixels` tells the server's pixel budget how
many pixels a decode will hold, from the same header reading.

Geometry in results is expressed in the pixels of the *original* image as a viewer
shows it, that is after its EXIF orientation: what `decode_rgb` returns and the size
`model_copy` reports.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from PIL import ExifTags, Image, ImageOps

from viewfinder.errors import DecompressionBombError, ImageFormatError, ImageSizeError
from viewfinder.prepare import copy_size
from viewfinder.prepare.inputs import DEFAULT_LIMITS, IMAGE_SUFFIXES, ImageLimits, has_image_suffix

__all__ = [
    "DEFAULT_LIMITS",
    "IMAGE_SUFFIXES",
    "PIL_ERRORS",
    "ImageLimits",
    "decode_frame",
    "decode_pixels",
    "decode_rgb",
    "has_image_suffix",
    "model_copy",
    "open_checked",
    "to_rgb",
]

PIL_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    EOFError,
    struct.error,
)
"""Errors Pillow raises on malformed data, besides its own `UnidentifiedImageError`."""

# A large image is first shrunk by an integer factor (Image.reduce, a box filter) to no
# less than this many times the model copy's size, then resampled with LANCZOS: Pillow's
# `thumbnail` default, "very close to fair resampling" (its documentation).
_REDUCING_GAP: Final = 2.0
# A JPEG decodes at 1/2, 1/4 or 1/8 scale (in the DCT domain) to no less than this many
# times the model copy's size: a 12-megapixel photo decodes at 1/2 scale for a 1024 copy.
# At 1.0 (decoding at the copy's own size) thin lines alias visibly more.
_DRAFT_GAP: Final = 1.5
# Pixels converted to RGB at once while a non-RGB image is reduced (4 MiB in RGB).
_BAND_PIXELS: Final = 1 << 20
# The transpose that shows an image upright, by EXIF orientation (as ImageOps.exif_transpose).
_ORIENTATIONS: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES: Final = frozenset(_ORIENTATIONS[o] for o in (5, 6, 7, 8))


def decode_rgb(data: bytes, label: str, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Decode an image file at full resolution, as a viewer shows it, in RGB.

    The checks of the model path (`open_checked`); the EXIF orientation applied, alpha
    flattened onto white. What `viewfinder.draw` draws on and the local engine reads:
    result geometry is in these pixels. Memory: one decoded copy, plus one RGB copy
    only when the image is not RGB or must be turned.

    Args:
        data: The image file's bytes.
        label: Printable description of the input, named in errors.
        limits: What is accepted.

    Raises:
        ImageError: The image is refused or cannot be decoded.
    """
    return to_rgb(_decode(open_checked(data, label, limits), label))


def decode_frame(
    data: bytes, label: str, index: int, limits: ImageLimits = DEFAULT_LIMITS
) -> Image.Image:
    """Decode frame `index` (from 0) of a multi-frame image, as stored (a TIFF's page).

    The checks of `open_checked` on the file, then on the frame's own sides; no
    orientation is applied and the mode is the frame's. Read 3.2 reads a TIFF's pages
    this way (`viewfinder.compat.read_pages`).

    Raises:
        ImageError: The image or the frame is refused, missing or cannot be decoded.
    """
    image = open_checked(data, label, limits)
    with _decoding(label):
        image.seek(index)
        _check_header(str(image.format), *image.size, label, limits)
        image.load()
    return image


def decode_pixels(data: bytes, max_side: int | None) -> int:
    """How many pixels decoding `data` holds at once, from its header alone.

    Args:
        data: The image file's bytes.
        max_side: The model copy's long side, for which a large JPEG decodes at 1/2,
            1/4 or 1/8 scale; `None` for a full-size decode (the local engine).

    Returns:
        Width x height as decoded; 0 when the header cannot be read (the decode will
        then fail at once, before holding memory).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if max_side is not None:
                _draft(image, _fit(image.size, max_side))  # the size becomes the draft's
            width, height = image.size
    except (Image.DecompressionBombError, *PIL_ERRORS):
        return 0
    return width * height


def open_checked(data: bytes, label: str, limits: ImageLimits) -> Image.Image:
    """Open the image lazily and check it from its header alone.

    The checks run in the service's order: format, then each side (`ImageSizeError`
    with `limit="dimensions"`), then the pixel ceiling (`DecompressionBombError`), so
    a 30000x30000 image is a size error wherever it is refused. Nothing is decoded:
    `model_copy` or `decode_rgb` decode the image this returns.

    Raises:
        ImageFormatError: Not an image, or a format outside `limits.formats`.
        ImageSizeError: A side out of range (`limit="dimensions"`).
        DecompressionBombError: The header declares more than `limits.max_pixels`.
    """
    try:
        with warnings.catch_warnings():
            # Pillow's soft ceiling is process-wide; `limits.max_pixels` replaces it below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        # Pillow refuses more than 2 * MAX_IMAGE_PIXELS before it returns the image:
        # read the header past that ceiling to say what is wrong, then refuse anyway.
        declared = _declared_header(data)
        if declared is None:
            raise DecompressionBombError(
                "the image declares too many pixels (decompression bomb)", source=label
            ) from None
        fmt, width, height = declared
        _check_header(fmt, width, height, label, limits)
        raise DecompressionBombError(
            f"the image declares {width}x{height} pixels, more than Pillow's "
            "decompression-bomb ceiling (2 * PIL.Image.MAX_IMAGE_PIXELS)",
            source=label,
        ) from None
    except PIL_ERRORS:
        raise ImageFormatError("not a recognised image", source=label) from None
    _check_header(str(image.format), *image.size, label, limits)
    return image


def _check_header(fmt: str, width: int, height: int, label: str, limits: ImageLimits) -> None:
    """Refuse a format outside `limits.formats`, a side out of range, then too many pixels."""
    if fmt not in limits.formats:
        accepted = ", ".join(sorted(limits.formats))
        raise ImageFormatError(
            f"image format {fmt} is not accepted (accepted: {accepted})", source=label
        )
    if not (limits.min_side < width < limits.max_side) or not (
        limits.min_side < height < limits.max_side
    ):
        raise ImageSizeError(
            f"the image is {width}x{height} pixels; each side must be more than "
            f"{limits.min_side} and less than {limits.max_side}",
            source=label,
            limit="dimensions",
        )
    if width * height > limits.max_pixels:
        raise DecompressionBombError(
            f"the image declares {width}x{height} pixels, more than {limits.max_pixels}",
            source=label,
        )


def _declared_header(data: bytes) -> tuple[str, int, int] | None:
    """The format and size a header declares, read past Pillow's pixel ceiling.

    `Image.open` asks each registered format plugin, in order, to parse the header,
    then refuses the image when it has more than `2 * Image.MAX_IMAGE_PIXELS`. Lifting
    that process-wide ceiling would race with other threads opening images, so this
    asks the same plugins in the same order without it. Nothing is decoded.

    Returns:
        `(format, width, height)`, or None when no plugin reads the header.
    """
    prefix = data[:16]
    for name in list(Image.ID):
        factory, accept = Image.OPEN[name]
        accepted = accept(prefix) if accept is not None else True
        if not accepted or isinstance(accepted, str):  # a str: "recognised, unsupported"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = factory(io.BytesIO(data), "")
        except (*PIL_ERRORS, Image.DecompressionBombError):
            continue  # not this format, or a frame beyond the ceiling: keep looking
        with image:
            return str(image.format), *image.size
    return None


@contextmanager
def _decoding(label: str) -> Iterator[None]:
    """Turn Pillow's errors while decoding into `ImageError`s."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except Image.DecompressionBombError:
        raise DecompressionBombError(
            "a frame declares too many pixels (decompression bomb)", source=label
        ) from None
    except PIL_ERRORS:
        raise ImageFormatError("corrupt or truncated image", source=label) from None


def _decode(image: Image.Image, label: str) -> Image.Image:
    """Decode the first frame and apply the EXIF orientation, in place.

    Returns `image` itself: no copy is made unless the orientation needs a transpose.
    """
    with _decoding(label):
        ImageOps.exif_transpose(image, in_place=True)
    return image


def model_copy(
    image: Image.Image,
    max_side: int,
    label: str,
    *,
    multiple: int = 1,
    max_pixels: int | None = None,
    min_pixels: int | None = None,
) -> tuple[tuple[int, int], Image.Image]:
    """Decode `image`; return its size as shown and its model copy, then free its pixels.

    The copy is RGB, without metadata, its long side at most `max_side`. Memory stays
    near one decoded copy of the image, in its own mode: a JPEG at least
    `2 * _DRAFT_GAP` times the copy's size decodes at 1/2, 1/4 or 1/8 scale
    (`Image.draft`); an image still at least `2 * _REDUCING_GAP` times the copy's size
    is first reduced by an integer factor (band by band when its mode needs converting
    to RGB); an RGB image is never copied whole; the EXIF orientation turns the small
    copy, not the decoded image. Smaller images, unless turned a quarter, get the same
    bytes as a full-size conversion and LANCZOS resize (cache keys, cassettes). A size
    rule (`multiple`, `max_pixels`, `min_pixels`: a box convention's, see
    `viewfinder.prepare.copy_size`) gives the copy the size a model keeps as it is.
    """
    header = image.size
    with _decoding(label):
        box = _draft(image, _fit(header, max_side))
        image.load()
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    full = header if box else image.size  # a frame can differ from the header (ICO)
    box = box or (0.0, 0.0, float(full[0]), float(full[1]))
    size = copy_size(
        full, max_side, multiple=multiple, max_pixels=max_pixels, min_pixels=min_pixels
    )
    factor = int(min((box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]) / _REDUCING_GAP)
    factor = max(1, factor)
    try:
        model = _reduced_rgb(image, factor)
    except PIL_ERRORS:
        raise ImageFormatError(f"unsupported colour mode {image.mode}", source=label) from None
    if model is not image:
        image.close()  # the decoded pixels go now, not when the caller lets go of `image`
    box = (box[0] / factor, box[1] / factor, box[2] / factor, box[3] / factor)
    if model.size != size or box != (0, 0, *model.size):
        resized = model.resize(size, Image.Resampling.LANCZOS, box=box)
        model.close()
        model = resized
    transpose = _ORIENTATIONS.get(orientation)
    if transpose is not None:
        model = model.transpose(transpose)
        full = (full[1], full[0]) if transpose in _SWAPS_SIDES else full
    model.info = {}  # no EXIF, ICC profile or comment in the copy
    return full, model


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` scaled down so that its long side is at most `max_side`."""
    long_side = max(size)
    if long_side <= max_side:
        return size
    scale = max_side / long_side
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _draft(image: Image.Image, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """Have a JPEG decode at 1/2, 1/4 or 1/8 scale, never below `_DRAFT_GAP` x `size`.

    Returns:
        Where the full image lies in the decoded pixels, `(0, 0, width / scale,
        height / scale)`, or `None` when the image decodes at full size (every
        format but JPEG, and JPEGs under twice `_DRAFT_GAP` x `size`).
    """
    wanted = (int(size[0] * _DRAFT_GAP), int(size[1] * _DRAFT_GAP))
    if min(image.width // wanted[0], image.height // wanted[1]) < 2:
        return None
    drafted = image.draft(None, wanted)
    return None if drafted is None else drafted[1]


def _reduced_rgb(image: Image.Image, factor: int) -> Image.Image:
    """`image` in RGB, reduced `factor` times by `Image.reduce` (a box filter).

    An RGB image is reduced whole, and returned itself when `factor` is 1. Any other
    mode (or an RGB image with a transparent colour) is converted band by band, each
    band reduced before the next is converted, so no full-size RGB copy exists when
    `factor` > 1. The pixels are those of `to_rgb` on the whole image, then reduced.
    """
    if image.mode == "RGB" and not image.has_transparency_data:
        return image if factor == 1 else image.reduce(factor)
    top = _grey_top(image) if image.mode.startswith("I") or image.mode == "F" else None
    width, height = image.size
    rows = max(1, _BAND_PIXELS // (width * factor)) * factor
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for y in range(0, height, rows):
        band = to_rgb(image.crop((0, y, width, min(height, y + rows))), grey_top=top)
        reduced.paste(band if factor == 1 else band.reduce(factor), (0, y // factor))
    return reduced


def to_rgb(image: Image.Image, *, grey_top: float | None = None) -> Image.Image:
    """Convert any mode to RGB: alpha flattened onto white, deep greys scaled to 8 bits.

    An RGB image without a transparent colour is returned itself, not copied.
    `grey_top` is the white level of a deep grey image (`_grey_top` of the whole image
    when converting a part of it).
    """
    if image.mode == "RGB" and not image.has_transparency_data:
        return image
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_grey(image, grey_top)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    return image.convert("RGB")


def _grey_top(image: Image.Image) -> float:
    """The value a 16-bit, 32-bit or float grey image's white is taken to be."""
    if image.mode.startswith("I;16"):
        return 65535.0
    high = image.getextrema()[1]
    assert isinstance(high, int | float)  # one band: (low, high)
    return 255.0 if high <= 255 else 65535.0 if high <= 65535 else float(high)


def _to_grey(image: Image.Image, top: float | None = None) -> Image.Image:
    """Scale a 16-bit, 32-bit or float grey image to 8-bit "L" (white at `top`)."""
    factor = 255.0 / (_grey_top(image) if top is None else top)
    return image.convert("F").point(lambda value: value * factor).convert("L")
