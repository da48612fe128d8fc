"""Read an image input into bytes: a path, an http(s) URL, a file object, bytes, a PIL image.

Loading reads and hashes the input without decoding it: a `LoadedImage` is enough to
find a cached answer, and only a miss goes on to `viewfinder.prepare.decode`. Only the
byte count is checked here (Azure's file-size limit); `is_url` is the one test of
whether a `str` input is a URL, and a URL is fetched by `viewfinder.prepare.fetch`, the
one image fetcher, with its address policy.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import BinaryIO, Final, TypeAlias

import httpx2
from PIL import Image, ImageOps

from viewfinder.errors import ImageFetchError, ImageFormatError, ImageSizeError, InvalidOptionError
from viewfinder.prepare.decode import PIL_ERRORS, to_rgb
from viewfinder.prepare.fetch import fetch_image, trusted_hosts
from viewfinder.prepare.inputs import DEFAULT_LIMITS, ImageLimits, is_url, url_scheme
from viewfinder.prepare.redact import redact_url

__all__ = ["ImageInput", "LoadedImage", "is_url", "load_image"]

logger = logging.getLogger(__name__)

ImageInput: TypeAlias = str | os.PathLike[str] | bytes | bytearray | BinaryIO | Image.Image
"""What `load_image` and `prepare_image` accept. A `str` is a path or an http(s) URL."""

_MAX_REDIRECTS: Final = 5
_CHUNK: Final = 1024 * 1024
# Modes Pillow can write as PNG; anything else is converted before encoding a PIL input.
_PNG_MODES: Final = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"})


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

    Only the byte count is checked here; `viewfinder.prepare.decode` checks the rest.
    `fetch_timeout` and `allow_hosts` apply to a URL, as for `prepare_image`.
    """
    if isinstance(source, LoadedImage):
        return source
    data, label = _load(source, limits, fetch_timeout, allow_hosts)
    return LoadedImage(data=data, sha256=hashlib.sha256(data).hexdigest(), source=label)


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
        if is_url(source):
            return _fetch(source, limits, timeout, allow_hosts), redact_url(source)
        name = url_scheme(source)
        if name is not None and not _exists(source):
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
            image = image.convert("RGBA") if image.has_transparency_data else to_rgb(image)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)  # fast; still deterministic
    except PIL_ERRORS:
        raise ImageFormatError("cannot encode the PIL image", source="<PIL image>") from None
    return buffer.getvalue()
