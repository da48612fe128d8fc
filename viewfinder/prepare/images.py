"""Load, validate and shrink an input image into the copy sent to the model.

Every check Azure AI Vision makes on an input image (file size, format, pixel size)
runs here, from the header, before a single pixel is decoded; a bad input is a typed
`ImageError`, never a crash. The copy sent to the model is an RGB JPEG whose long
side is at most `max_side`, encoded deterministically: the same image always gives
the same bytes, which the result cache and the recorded cassettes rely on.

Geometry in results is expressed in the pixels of the *original* image as a viewer
shows it, that is after its EXIF orientation: `PreparedImage.width` and `.height`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
import stat
import struct
import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import BinaryIO, Final, TypeAlias

import httpx2
from PIL import ExifTags, Image, ImageOps

from viewfinder.errors import (
    DecompressionBombError,
    ImageFetchError,
    ImageFormatError,
    ImageSizeError,
    InvalidOptionError,
)
from viewfinder.prepare.fetch import fetch_image, redact_url, trusted_hosts

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_SIDE",
    "ImageInput",
    "ImageLimits",
    "LoadedImage",
    "PreparedImage",
    "load_image",
    "prepare_image",
    "redact_url",
]

logger = logging.getLogger(__name__)

ImageInput: TypeAlias = str | os.PathLike[str] | bytes | bytearray | BinaryIO | Image.Image
"""What `prepare_image` accepts. A `str` is a filesystem path or an http(s) URL."""

DEFAULT_MAX_SIDE: Final = 1024
"""Long side, in pixels, of the copy sent to the model."""

_MIN_MAX_SIDE: Final = 64
_MAX_REDIRECTS: Final = 5
_CHUNK: Final = 1024 * 1024
_MODEL_MEDIA_TYPE: Final = "image/jpeg"
_JPEG_OPTIONS: Final = {"quality": 90, "subsampling": 0, "optimize": False, "progressive": False}
# Modes Pillow can write as PNG; anything else is converted before encoding a PIL input.
_PNG_MODES: Final = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"})
# Errors Pillow raises on malformed data, besides its own `UnidentifiedImageError`.
_PIL_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    EOFError,
    struct.error,
)
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
# "c:" is a Windows drive, not a scheme: a scheme has two characters or more.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


@dataclass(frozen=True)
class ImageLimits:
    """What Azure AI Vision accepts; an image outside these limits is refused.

    Attributes:
        max_bytes: Files of this many bytes or more are refused (Azure: under 20 MB).
        min_side: Smallest accepted width and height, in pixels.
        max_side: Largest accepted width and height, in pixels.
        formats: Accepted Pillow format names.
        max_pixels: Decompression-bomb ceiling on width x height, read from the header.
            Pillow's own process-wide hard limit (`2 * PIL.Image.MAX_IMAGE_PIXELS`,
            about 179 megapixels by default) still applies on top of it.
    """

    max_bytes: int = 20 * 1024 * 1024
    min_side: int = 50
    max_side: int = 16_000
    formats: frozenset[str] = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "ICO", "TIFF", "MPO"})
    max_pixels: int = 16_000 * 16_000


DEFAULT_LIMITS: Final = ImageLimits()


@dataclass(frozen=True)
class PreparedImage:
    """A validated image and the copy of it sent to the model.

    Attributes:
        width: Width of the original image after its EXIF orientation, in pixels.
            All result geometry is expressed in these pixels.
        height: Height of the original image after its EXIF orientation, in pixels.
        format: Pillow format of the input, e.g. `"JPEG"`.
        sha256: Hex SHA-256 of the original input bytes (for a PIL image: of its
            deterministic PNG encoding).
        model_bytes: The encoded copy sent to the model.
        model_media_type: Media type of `model_bytes`.
        model_width: Width of the model copy, in pixels.
        model_height: Height of the model copy, in pixels.
        source: Printable description of the input: the path, `"<bytes>"`,
            `"<file object>"`, `"<PIL image>"`, or the URL without its query string.
    """

    width: int
    height: int
    format: str
    sha256: str
    model_bytes: bytes = field(repr=False)
    model_media_type: str
    model_width: int
    model_height: int
    source: str

    def data_url(self) -> str:
        """Return the model copy as a `data:` URL, ready for a chat message."""
        encoded = base64.b64encode(self.model_bytes).decode("ascii")
        return f"data:{self.model_media_type};base64,{encoded}"

    @cached_property
    def model_sha256(self) -> str:
        """Hex SHA-256 of `model_bytes`."""
        return hashlib.sha256(self.model_bytes).hexdigest()


@dataclass(frozen=True)
class LoadedImage:
    """An image's bytes, read but not decoded: enough to find a cached answer.

    Attributes:
        data: The input's bytes (for a PIL image: its deterministic PNG encoding).
        sha256: Hex SHA-256 of `data`.
        source: Printable description of the input (no URL query string).
    """

    data: bytes = field(repr=False)
    sha256: str
    source: str


def load_image(
    source: ImageInput | LoadedImage,
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
    fetch_timeout: float = 30.0,
    allow_hosts: Collection[str] | None = None,
) -> LoadedImage:
    """Read an image's bytes (path, URL, file object, bytes, PIL image) and hash them.

    Only the byte count is checked here; `prepare_image` checks and decodes the rest.
    `fetch_timeout` and `allow_hosts` apply to a URL, as for `prepare_image`.
    """
    if isinstance(source, LoadedImage):
        return source
    data, label = _load(source, limits, fetch_timeout, allow_hosts)
    return LoadedImage(data=data, sha256=hashlib.sha256(data).hexdigest(), source=label)


def prepare_image(
    source: ImageInput | LoadedImage,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    limits: ImageLimits = DEFAULT_LIMITS,
    fetch_timeout: float = 30.0,
    allow_hosts: Collection[str] | None = None,
) -> PreparedImage:
    """Load and validate an image, and build the copy sent to the model.

    Args:
        source: A path (`str` or path-like), an http(s) URL, the file's bytes, a
            binary file object, a PIL image, or a `LoadedImage` (not read again).
        max_side: Long side of the model copy in pixels (at least 64); smaller
            images are never upscaled.
        limits: What is accepted; Azure AI Vision's limits by default.
        fetch_timeout: Seconds allowed to fetch an http(s) URL: the whole fetch,
            redirects and body included, not each read.
        allow_hosts: Internal hosts (names or IPs) a URL may point at. A URL whose
            host is, or resolves to, a loopback, private, link-local or cloud
            metadata address is refused otherwise, before any connection, as Azure's
            service refuses it (see `viewfinder.prepare.fetch`). None (the default)
            reads `VIEWFINDER_ALLOW_HOSTS` (comma-separated); a value, even `()`,
            replaces it.

    Returns:
        The validated image and its model copy.

    Raises:
        InvalidOptionError: A bad `max_side`, an unsupported input type, a text-mode
            file object, or a URL scheme other than http(s).
        ImageFetchError: The file does not exist or cannot be read, or the URL is
            refused, cannot be fetched, or timed out.
        ImageSizeError: The file is empty or too large, or a side is out of range.
        ImageFormatError: Not an image, a corrupt image, or a refused format.
        DecompressionBombError: The header declares too many pixels.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < _MIN_MAX_SIDE:
        raise InvalidOptionError(
            f"max_side must be an integer >= {_MIN_MAX_SIDE}, got {max_side!r}"
        )
    loaded = load_image(source, limits=limits, fetch_timeout=fetch_timeout, allow_hosts=allow_hosts)
    data, label = loaded.data, loaded.source
    image = _open_checked(data, label, limits)
    fmt = str(image.format)
    (width, height), model = _model_copy(image, max_side, label)
    buffer = io.BytesIO()
    model.save(buffer, format="JPEG", **_JPEG_OPTIONS)
    return PreparedImage(
        width=width,
        height=height,
        format=fmt,
        sha256=loaded.sha256,
        model_bytes=buffer.getvalue(),
        model_media_type=_MODEL_MEDIA_TYPE,
        model_width=model.width,
        model_height=model.height,
        source=label,
    )


# --- loading --------------------------------------------------------------------------


def _load(
    source: ImageInput,
    limits: ImageLimits,
    timeout: float,
    allow_hosts: Collection[str] | None,
) -> tuple[bytes, str]:
    """Return the input's bytes and its printable label."""
    if isinstance(source, Image.Image):
        return _encode_pil(source), "<PIL image>"
    if isinstance(source, bytes | bytearray):
        _check_byte_count(len(source), limits, "<bytes>")
        return bytes(source), "<bytes>"
    if isinstance(source, str):
        scheme = _SCHEME.match(source)
        if scheme and scheme.group(1).lower() in ("http", "https"):
            return _fetch(source, limits, timeout, allow_hosts), redact_url(source)
        if scheme and not _exists(source):
            name = scheme.group(1).lower()
            raise InvalidOptionError(f"unsupported URL scheme {name!r}: use http(s) or a path")
        return _read_path(source, limits)
    if isinstance(source, os.PathLike):
        return _read_path(source, limits)
    if isinstance(source, io.TextIOBase):
        raise InvalidOptionError("the file object is in text mode: open it with 'rb'")
    if callable(getattr(source, "read", None)):
        return _read_stream(source, limits, "<file object>"), "<file object>"
    raise InvalidOptionError(f"unsupported image input type: {type(source).__name__}")


def _exists(path: str) -> bool:
    try:
        return os.path.exists(path)
    except (OSError, ValueError):  # name too long, embedded NUL...
        return False


def _read_path(path: str | os.PathLike[str], limits: ImageLimits) -> tuple[bytes, str]:
    label = os.fsdecode(os.fspath(path))
    try:
        with open(path, "rb") as stream:
            status = os.fstat(stream.fileno())
            if stat.S_ISREG(status.st_mode) and status.st_size >= limits.max_bytes:
                _check_byte_count(status.st_size, limits, label)  # refused without reading
            return _read_stream(stream, limits, label), label
    except FileNotFoundError:
        raise ImageFetchError("no such file", source=label) from None
    except OSError as exc:
        raise ImageFetchError(f"cannot read image file: {exc.strerror}", source=label) from None


def _read_stream(stream: BinaryIO, limits: ImageLimits, label: str) -> bytes:
    """Read to the end, refusing as soon as `limits.max_bytes` is reached."""
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = stream.read(_CHUNK)
        except (OSError, ValueError) as exc:  # closed, not readable...
            raise ImageFetchError(f"cannot read the image: {exc}", source=label) from None
        if not chunk:
            break
        if not isinstance(chunk, bytes | bytearray):
            raise InvalidOptionError("the file object is in text mode: open it with 'rb'")
        chunks.append(bytes(chunk))
        total += len(chunk)
        if total >= limits.max_bytes:
            _check_byte_count(total, limits, label)
    _check_byte_count(total, limits, label)
    return b"".join(chunks)


def _check_byte_count(count: int, limits: ImageLimits, label: str) -> None:
    if count == 0:
        raise ImageSizeError("the image file is empty", source=label)
    if count >= limits.max_bytes:
        raise ImageSizeError(
            f"the image file must be smaller than {limits.max_bytes} bytes", source=label
        )


def _fetch(
    url: str, limits: ImageLimits, timeout: float, allow_hosts: Collection[str] | None
) -> bytes:
    """GET an http(s) URL through `viewfinder.prepare.fetch`, the one image fetcher.

    Internal addresses are refused unless trusted (`trusted_hosts`); `timeout` bounds
    the whole fetch, up to five redirects and the body included; the proxy environment
    is honoured.
    """
    label = redact_url(url)
    try:
        httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError, ValueError):
        raise InvalidOptionError(f"not a valid URL: {label}") from None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidOptionError(f"fetch_timeout must be a positive number, got {timeout!r}")
    logger.debug("fetching image %s", label)
    return fetch_image(
        url,
        allow_hosts=trusted_hosts(allow_hosts),
        max_bytes=limits.max_bytes,
        timeout=timeout,
        max_redirects=_MAX_REDIRECTS,
        trust_env=True,
    )


def _encode_pil(image: Image.Image) -> bytes:
    """Encode a PIL image, as a viewer shows it, losslessly and deterministically to PNG.

    There is no file, so `limits.max_bytes` does not apply to the encoding.
    """
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode not in _PNG_MODES:
            image = image.convert("RGBA") if image.has_transparency_data else _to_rgb(image)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)  # fast; still deterministic
    except _PIL_ERRORS:
        raise ImageFormatError("cannot encode the PIL image", source="<PIL image>") from None
    return buffer.getvalue()


# --- checking and converting ----------------------------------------------------------


def _open_checked(data: bytes, label: str, limits: ImageLimits) -> Image.Image:
    """Open the image lazily and check it from its header alone.

    The checks run in the service's order: format, then each side (`ImageSizeError`
    with `limit="dimensions"`), then the pixel ceiling (`DecompressionBombError`), so
    a 30000x30000 image is a size error wherever it is refused.
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
    except _PIL_ERRORS:
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
    if not (limits.min_side <= width <= limits.max_side) or not (
        limits.min_side <= height <= limits.max_side
    ):
        raise ImageSizeError(
            f"the image is {width}x{height} pixels; each side must be between "
            f"{limits.min_side} and {limits.max_side}",
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
        except (*_PIL_ERRORS, Image.DecompressionBombError):
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
    except _PIL_ERRORS:
        raise ImageFormatError("corrupt or truncated image", source=label) from None


def _decode(image: Image.Image, label: str) -> Image.Image:
    """Decode the first frame and apply the EXIF orientation, in place.

    Returns `image` itself: no copy is made unless the orientation needs a transpose.
    """
    with _decoding(label):
        ImageOps.exif_transpose(image, in_place=True)
    return image


def _model_copy(
    image: Image.Image, max_side: int, label: str
) -> tuple[tuple[int, int], Image.Image]:
    """Decode `image`; return its size as shown and its model copy, then free its pixels.

    The copy is RGB, without metadata, its long side at most `max_side`. Memory stays
    near one decoded copy of the image, in its own mode: a JPEG at least
    `2 * _DRAFT_GAP` times the copy's size decodes at 1/2, 1/4 or 1/8 scale
    (`Image.draft`); an image still at least `2 * _REDUCING_GAP` times the copy's size
    is first reduced by an integer factor (band by band when its mode needs converting
    to RGB); an RGB image is never copied whole; the EXIF orientation turns the small
    copy, not the decoded image. Smaller images, unless turned a quarter, get the same
    bytes as a full-size conversion and LANCZOS resize (cache keys, cassettes).
    """
    header = image.size
    with _decoding(label):
        box = _draft(image, _fit(header, max_side))
        image.load()
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    full = header if box else image.size  # a frame can differ from the header (ICO)
    box = box or (0.0, 0.0, float(full[0]), float(full[1]))
    size = _fit(full, max_side)
    factor = int(min((box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1]) / _REDUCING_GAP)
    factor = max(1, factor)
    try:
        model = _reduced_rgb(image, factor)
    except _PIL_ERRORS:
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
    `factor` > 1. The pixels are those of `_to_rgb` on the whole image, then reduced.
    """
    if image.mode == "RGB" and not image.has_transparency_data:
        return image if factor == 1 else image.reduce(factor)
    top = _grey_top(image) if image.mode.startswith("I") or image.mode == "F" else None
    width, height = image.size
    rows = max(1, _BAND_PIXELS // (width * factor)) * factor
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for y in range(0, height, rows):
        band = _to_rgb(image.crop((0, y, width, min(height, y + rows))), grey_top=top)
        reduced.paste(band if factor == 1 else band.reduce(factor), (0, y // factor))
    return reduced


def _to_rgb(image: Image.Image, *, grey_top: float | None = None) -> Image.Image:
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
