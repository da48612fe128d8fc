"""Stage 1, prepare: an image input in, a validated `PreparedImage` out.

`prepare_image` is the stage, in three steps, one module each:

- `load`: the input (path, http(s) URL, file object, bytes, PIL image) read into bytes
  and hashed, not decoded (`load_image`, `LoadedImage`); a URL goes through `fetch`,
  the one image fetcher and its address policy (SSRF).
- `decode`: the header checked (format, sides, pixels) and the image decoded, at the
  model copy's size with as little memory as the format allows (`model_copy`), or at
  full size for `viewfinder.draw` and the local engine (`decode_rgb`).
- here: the copy encoded as the JPEG sent to the model (`PreparedImage`).

Beside them: `inputs` (what an input may be: limits, image suffixes, URLs; without
Pillow or httpx2, as this module), `redact` (the one redactor: URLs, messages, request
bodies) and `pixel_budget` (how many pixels the server decodes at once).

The copy sent to the model is an RGB JPEG whose long side is at most `max_side`, encoded
deterministically: the same image always gives the same bytes, which the result cache
and the recorded cassettes rely on. Geometry in results is expressed in the pixels of the
*original* image as a viewer shows it, that is after its EXIF orientation:
`PreparedImage.width` and `.height`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Final

from viewfinder.errors import InvalidOptionError
from viewfinder.prepare.inputs import DEFAULT_LIMITS, ImageLimits

if TYPE_CHECKING:
    from viewfinder.prepare.load import ImageInput, LoadedImage

__all__ = ["DEFAULT_MAX_SIDE", "MIN_MAX_SIDE", "PreparedImage", "copy_size", "prepare_image"]

DEFAULT_MAX_SIDE: Final = 1024
"""Long side, in pixels, of the copy sent to the model."""

MIN_MAX_SIDE: Final = 64
"""Smallest `max_side` accepted."""
_MODEL_MEDIA_TYPE: Final = "image/jpeg"
_JPEG_OPTIONS: Final = {"quality": 90, "subsampling": 0, "optimize": False, "progressive": False}


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


def copy_size(
    size: tuple[int, int],
    max_side: int,
    *,
    multiple: int = 1,
    max_pixels: int | None = None,
    min_pixels: int | None = None,
) -> tuple[int, int]:
    """The model copy's `(width, height)` for an image of `size` (after its orientation).

    `size` scaled down so its long side is at most `max_side` (never up). A model that
    resizes what it gets to its own grid gets a copy already on that grid, so its
    resize is the identity and its pixel answers are ours: each side rounded to a
    multiple of `multiple`, then the area brought within `min_pixels`..`max_pixels`
    keeping the aspect ratio, as Qwen2-VL's `smart_resize` computes it (Claude's limits
    are the same rule with `multiple=1`). Without a rule the copy is what it always was.
    """
    width, height = size
    long_side = max(width, height)
    if long_side > max_side:
        scale = max_side / long_side
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if multiple == 1 and max_pixels is None and min_pixels is None:
        return width, height
    step = multiple
    new_w, new_h = max(step, round(width / step) * step), max(step, round(height / step) * step)
    if max_pixels is not None and new_w * new_h > max_pixels:
        beta = math.sqrt(width * height / max_pixels)
        new_w = max(step, math.floor(width / beta / step) * step)
        new_h = max(step, math.floor(height / beta / step) * step)
    elif min_pixels is not None and new_w * new_h < min_pixels:
        beta = math.sqrt(min_pixels / (width * height))
        new_w = math.ceil(width * beta / step) * step
        new_h = math.ceil(height * beta / step) * step
    return new_w, new_h


def prepare_image(
    source: ImageInput | LoadedImage,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    limits: ImageLimits = DEFAULT_LIMITS,
    fetch_timeout: float = 30.0,
    allow_hosts: Collection[str] | None = None,
    multiple: int = 1,
    max_pixels: int | None = None,
    min_pixels: int | None = None,
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
        multiple: Each side of the copy a multiple of this (see `copy_size`).
        max_pixels: The copy's area at most this (see `copy_size`).
        min_pixels: The copy's area at least this (see `copy_size`).

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
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < MIN_MAX_SIDE:
        raise InvalidOptionError(f"max_side must be an integer >= {MIN_MAX_SIDE}, got {max_side!r}")
    # Pillow and httpx2 load with the first image, not with the package: the command
    # line's options and `import viewfinder` read this package (tests/test_startup.py).
    from viewfinder.prepare.decode import model_copy, open_checked
    from viewfinder.prepare.load import load_image

    loaded = load_image(source, limits=limits, fetch_timeout=fetch_timeout, allow_hosts=allow_hosts)
    label = loaded.source
    image = open_checked(loaded.data, label, limits)
    fmt = str(image.format)
    (width, height), model = model_copy(
        image, max_side, label, multiple=multiple, max_pixels=max_pixels, min_pixels=min_pixels
    )
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
